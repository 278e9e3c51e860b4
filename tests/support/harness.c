/* Test harness: temp dirs, spawning and reaping real processes, waiting for their log lines. */
#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define NAP_MS              3
#define BACKEND_DEADLINE_MS 20000
#define PROXY_DEADLINE_MS   30000
#define BACKEND_STOP_MS     5000
#define PROXY_STOP_MS       10000

int64_t h_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void nap(int ms) {
  struct timespec ts = {0, (long)ms * 1000000L};
  while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
  }
}

int h_tmpdir(char *out, size_t cap) {
  const char *base = getenv("TMPDIR");
  if (base == NULL || base[0] == '\0')
    base = "/tmp";
  int n = snprintf(out, cap, "%s/lbp-test-XXXXXX", base);
  if (n < 0 || (size_t)n >= cap)
    return -ENAMETOOLONG;
  return mkdtemp(out) ? 0 : -errno;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  remove(path);
  return 0;
}

void h_rmtree(const char *path) {
  if (path == NULL || path[0] == '\0' || strcmp(path, "/") == 0)
    return;
  nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int h_write_file(const char *dir, const char *name, const char *text, char *path_out, size_t cap) {
  char path[1024];
  int n = snprintf(path, sizeof(path), "%s/%s", dir, name);
  if (n < 0 || (size_t)n >= sizeof(path) || (path_out != NULL && (size_t)n >= cap))
    return -ENAMETOOLONG;
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    return -errno;
  size_t len = strlen(text), off = 0;
  while (off < len) {
    ssize_t w = write(fd, text + off, len - off);
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0) {
      int err = -errno;
      close(fd);
      return err;
    }
    off += (size_t)w;
  }
  if (close(fd) < 0)
    return -errno;
  if (path_out != NULL)
    memcpy(path_out, path, (size_t)n + 1);
  return 0;
}

/* In the child between fork and exec: only async-signal-safe calls. Reports a failure's errno
 * through `errfd` (close-on-exec, so a successful exec reports nothing). */
static void spawn_child(const char *const argv[], int logfd, int nullfd, int errfd, pid_t parent) {
  sigset_t none;
  int err;
  if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0)
    goto fail;
  if (getppid() != parent) /* the parent died before prctl took effect */
    _exit(126);
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  signal(SIGPIPE, SIG_DFL);
  if (dup2(nullfd, 0) < 0 || dup2(logfd, 1) < 0 || dup2(logfd, 2) < 0)
    goto fail;
  /* Keep errfd (close-on-exec) but drop everything else the test process had open. */
  for (int fd = 3; fd < errfd; fd++)
    close(fd);
  if (close_range((unsigned)errfd + 1, ~0U, 0) < 0) {
    for (int fd = errfd + 1; fd < 4096; fd++)
      close(fd);
  }
  execv(argv[0], (char *const *)argv);
fail:
  err = errno;
  while (write(errfd, &err, sizeof(err)) < 0 && errno == EINTR) {
  }
  _exit(127);
}

int h_spawn(struct h_proc *p, const char *const argv[], const char *logpath) {
  int pipefd[2], err = 0;
  memset(p, 0, sizeof(*p));
  if (strlen(logpath) >= sizeof(p->log))
    return -ENAMETOOLONG;
  strcpy(p->log, logpath);
  int logfd = open(logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (logfd < 0)
    return -errno;
  int nullfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (nullfd < 0) {
    err = -errno;
    goto fail_null;
  }
  if (pipe2(pipefd, O_CLOEXEC) < 0) {
    err = -errno;
    goto fail_pipe;
  }
  pid_t parent = getpid(), pid = fork();
  if (pid == 0)
    spawn_child(argv, logfd, nullfd, pipefd[1], parent);
  if (pid < 0) {
    err = -errno;
    goto fail_fork;
  }
  close(pipefd[1]);
  ssize_t r;
  int child_err;
  while ((r = read(pipefd[0], &child_err, sizeof(child_err))) < 0 && errno == EINTR) {
  }
  close(pipefd[0]);
  close(nullfd);
  close(logfd);
  p->pid = pid;
  if (r == (ssize_t)sizeof(child_err)) { /* exec failed: reap the child now */
    h_stop(p, 0, 1000);
    return -child_err;
  }
  return 0;

fail_fork:
  close(pipefd[0]);
  close(pipefd[1]);
fail_pipe:
  close(nullfd);
fail_null:
  close(logfd);
  return err;
}

static void reaped(struct h_proc *p, int status) {
  p->status = status;
  p->pid = 0;
}

int h_exited(struct h_proc *p) {
  int status;
  if (p->pid <= 0)
    return 1;
  pid_t r = waitpid(p->pid, &status, WNOHANG);
  if (r == p->pid) {
    reaped(p, status);
    return 1;
  }
  if (r < 0 && errno == ECHILD) {
    reaped(p, 0);
    return 1;
  }
  return 0;
}

int h_stop(struct h_proc *p, int sig, int timeout_ms) {
  int status = 0;
  if (p->pid <= 0)
    return -1;
  if (sig > 0)
    kill(p->pid, sig);
  int64_t deadline = h_now_ms() + timeout_ms;
  for (;;) {
    if (h_exited(p))
      return p->status;
    if (h_now_ms() >= deadline)
      break;
    nap(NAP_MS);
  }
  kill(p->pid, SIGKILL);
  while (waitpid(p->pid, &status, 0) < 0 && errno == EINTR) {
  }
  reaped(p, status);
  return status;
}

/* Scans complete lines of `logpath` from byte `*pos` on; returns 1 and advances *pos past the
 * first line containing needle (copied into line), else 0 with *pos at the first partial line. */
static int scan_lines(const char *logpath, const char *needle, long *pos, char *line, size_t cap) {
  char buf[8192];
  int fd = open(logpath, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return 0;
  size_t have = 0;
  int found = 0;
  for (;;) {
    ssize_t r = pread(fd, buf + have, sizeof(buf) - 1 - have, *pos + (long)have);
    if (r <= 0)
      break;
    have += (size_t)r;
    buf[have] = '\0';
    char *start = buf, *nl;
    while ((nl = memchr(start, '\n', have - (size_t)(start - buf))) != NULL) {
      *nl = '\0';
      *pos += nl - start + 1;
      if (strstr(start, needle) != NULL) {
        if (line != NULL && cap > 0)
          snprintf(line, cap, "%s", start);
        found = 1;
        goto out;
      }
      start = nl + 1;
    }
    size_t rest = have - (size_t)(start - buf);
    if (rest == sizeof(buf) - 1) { /* an overlong line: skip its head */
      *pos += (long)rest;
      rest = 0;
    }
    memmove(buf, start, rest);
    have = rest;
  }
out:
  close(fd);
  return found;
}

/* h_wait_line, but gives up as soon as `proc` (when not NULL) has exited. */
static long wait_line_proc(struct h_proc *proc, const char *logpath, const char *needle, long from,
                           int timeout_ms, char *line, size_t cap) {
  int64_t deadline = h_now_ms() + timeout_ms;
  long pos = from;
  for (;;) {
    if (scan_lines(logpath, needle, &pos, line, cap))
      return pos;
    if (proc != NULL && h_exited(proc))
      return scan_lines(logpath, needle, &pos, line, cap) ? pos : -ECHILD;
    if (h_now_ms() >= deadline)
      return -ETIMEDOUT;
    nap(NAP_MS);
  }
}

long h_wait_line(const char *logpath, const char *needle, long from, int timeout_ms, char *line,
                 size_t cap) {
  return wait_line_proc(NULL, logpath, needle, from, timeout_ms, line, cap);
}

int h_count_lines(const char *logpath, const char *needle) {
  FILE *f = fopen(logpath, "re");
  if (f == NULL)
    return 0;
  char *line = NULL;
  size_t cap = 0;
  int n = 0;
  while (getline(&line, &cap, f) >= 0) {
    if (strstr(line, needle) != NULL)
      n++;
  }
  free(line);
  fclose(f);
  return n;
}

int h_line_field(const char *line, const char *key, char *out, size_t cap) {
  size_t kl = strlen(key);
  for (const char *p = line; (p = strstr(p, key)) != NULL; p++) {
    if ((p != line && p[-1] != ' ') || p[kl] != '=')
      continue;
    const char *v = p + kl + 1;
    size_t n = strcspn(v, " \t\r\n");
    if (n >= cap)
      return -1;
    memcpy(out, v, n);
    out[n] = '\0';
    return 0;
  }
  return -1;
}

static long file_size(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 ? (long)st.st_size : 0;
}

/* The port after the last ':' of field `key` of a log line, or 0. */
static uint16_t line_port(const char *line, const char *key) {
  char v[256];
  const char *colon;

  if (h_line_field(line, key, v, sizeof(v)) < 0 || (colon = strrchr(v, ':')) == NULL ||
      atoi(colon + 1) <= 0 || atoi(colon + 1) > 65535)
    return 0;
  return (uint16_t)atoi(colon + 1);
}

/* Starts argv and waits for its "ready listen=HOST:PORT" line; parses PORT after the last ':'.
 * `admin` (may be NULL) gets the port of an "admin=HOST:PORT" field, or 0. */
static int start_and_wait_ready(struct h_proc *p, const char *const argv[], const char *log,
                                int timeout_ms, uint16_t *port, uint16_t *admin) {
  char line[1024], listen[256];
  long from = file_size(log); /* a restart appends to the same log: skip older ready lines */
  int err = h_spawn(p, argv, log);
  if (err < 0)
    return err;
  long r = wait_line_proc(p, log, "ready listen=", from, timeout_ms, line, sizeof(line));
  if (r < 0) {
    h_stop(p, SIGTERM, 2000);
    return (int)r;
  }
  const char *colon;
  if (h_line_field(line, "listen", listen, sizeof(listen)) < 0 ||
      (colon = strrchr(listen, ':')) == NULL || atoi(colon + 1) <= 0 || atoi(colon + 1) > 65535) {
    h_stop(p, SIGTERM, 2000);
    return -EPROTO;
  }
  *port = (uint16_t)atoi(colon + 1);
  if (admin != NULL)
    *admin = line_port(line, "admin");
  return 0;
}

int h_backend_start(struct h_backend *b, const char *dir, const char *name,
                    const char *const extra[]) {
  const char *argv[64] = {LBP_BACKEND_BIN, "--listen", "127.0.0.1:0", "--name", name};
  char log[512];
  int argc = 5;
  memset(b, 0, sizeof(*b));
  if (strlen(name) >= sizeof(b->name))
    return -ENAMETOOLONG;
  for (int i = 0; extra != NULL && extra[i] != NULL; i++) {
    if (argc >= 62)
      return -E2BIG;
    argv[argc++] = extra[i];
  }
  argv[argc] = NULL;
  int n = snprintf(log, sizeof(log), "%s/backend-%s.log", dir, name);
  if (n < 0 || (size_t)n >= sizeof(log))
    return -ENAMETOOLONG;
  strcpy(b->name, name);
  return start_and_wait_ready(&b->proc, argv, log, BACKEND_DEADLINE_MS, &b->port, NULL);
}

void h_backend_stop(struct h_backend *b) {
  h_stop(&b->proc, SIGTERM, BACKEND_STOP_MS);
}

int h_proxy_start(struct h_proxy *px, const char *dir, const char *yaml) {
  char log[512];
  memset(px, 0, sizeof(*px));
  int err = h_write_file(dir, "lbproxy.yaml", yaml, px->config, sizeof(px->config));
  if (err < 0)
    return err;
  int n = snprintf(log, sizeof(log), "%s/lbproxy.log", dir);
  if (n < 0 || (size_t)n >= sizeof(log))
    return -ENAMETOOLONG;
  /* LBP_TEST_PROXY_BIN runs the tests against another build (an older one, to see a test fail
   * without the change it covers). */
  const char *bin = getenv("LBP_TEST_PROXY_BIN");
  const char *argv[] = {bin != NULL ? bin : LBP_PROXY_BIN, "-c", px->config, NULL};
  return start_and_wait_ready(&px->proc, argv, log, PROXY_DEADLINE_MS, &px->port, &px->admin_port);
}

int h_proxy_stop(struct h_proxy *px) {
  return h_stop(&px->proc, SIGTERM, PROXY_STOP_MS);
}

int h_proxy_worker_pids(const struct h_proxy *px, pid_t *pids, int max) {
  for (int i = 0; i < max; i++)
    pids[i] = 0;
  FILE *f = fopen(px->proc.log, "re");
  if (f == NULL)
    return 0;
  char *line = NULL;
  size_t cap = 0;
  while (getline(&line, &cap, f) >= 0) {
    for (const char *p = line; (p = strstr(p, "worker ")) != NULL; p++) {
      int slot, pid, end = 0;
      if (sscanf(p, "worker %d ready pid=%d%n", &slot, &pid, &end) == 2 && end > 0 && slot >= 0 &&
          slot < max && pid > 0) {
        pids[slot] = (pid_t)pid;
        break;
      }
    }
  }
  free(line);
  fclose(f);
  int n = 0;
  for (int i = 0; i < max; i++)
    n += pids[i] != 0;
  return n;
}

int h_fd_count(pid_t pid) {
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
  DIR *d = opendir(path);
  if (d == NULL)
    return -1;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] != '.')
      n++;
  }
  closedir(d);
  return n;
}
