/* Integration-test fixture: starts backends and lbproxy, checks clean exits and logs. */
#include "itest.h"

#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

const char *const it_strategies[IT_NSTRATEGIES] = {"handoff", "handoff-least", "proxy", "shared",
                                                   "reuseport"};
int it_strategy_index[IT_NSTRATEGIES] = {0, 1, 2, 3, 4};

struct itest T;

void it_dump(const char *log) {
  char line[2048];
  FILE *f = fopen(log, "r");
  while (f != NULL && fgets(line, sizeof(line), f) != NULL)
    fprintf(stderr, "  | %s", line);
  if (f != NULL)
    fclose(f);
}

void it_assert_log_clean(const char *log) {
  static const char *const bad[] = {"AddressSanitizer", "LeakSanitizer",
                                    "runtime error:", "UndefinedBehaviorSanitizer"};
  char line[4096];
  FILE *f = fopen(log, "r");
  int dirty = 0;

  while (f != NULL && !dirty && fgets(line, sizeof(line), f) != NULL)
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
      if (strstr(line, bad[i]) != NULL)
        dirty = 1;
  if (f != NULL)
    fclose(f);
  if (dirty)
    it_dump(log);
  cr_assert(!dirty, "sanitizer report in %s", log);
}

static void start_backends(int nbe) {
  char name[16];

  cr_assert_leq(nbe, IT_MAX_BACKENDS);
  for (int i = 0; i < nbe; i++) {
    snprintf(name, sizeof(name), "b%d", i + 1);
    int rc = h_backend_start(&T.be[i], T.dir, name, NULL);
    if (rc != 0)
      it_dump(T.be[i].proc.log);
    cr_assert_eq(rc, 0, "backend %s did not start (%d)", name, rc);
    T.nbe = i + 1;
  }
}

/* The config as the proxy gets it: with the admin API on a port of its own (port 0) unless
 * the test sets admin: itself, so that tests running side by side never fight over the
 * default port and every test can read /stats and /metrics. */
static const char *with_admin(const char *yaml, char *buf, size_t cap) {
  size_t n = strlen(yaml);

  if (strncmp(yaml, "admin:", 6) == 0 || strstr(yaml, "\nadmin:") != NULL)
    return yaml;
  cr_assert_lt(n + 40, cap, "config too long");
  snprintf(buf, cap, "%s%sadmin:\n  listen: 127.0.0.1:0\n", yaml,
           n > 0 && yaml[n - 1] != '\n' ? "\n" : "");
  return buf;
}

static void start_proxy(const char *yaml) {
  char buf[16384];
  int rc;

  yaml = with_admin(yaml, buf, sizeof(buf));
  rc = h_proxy_start(&T.px, T.dir, yaml);
  if (rc != 0) {
    fprintf(stderr, "config:\n%s\n", yaml);
    it_dump(T.px.proc.log);
  }
  cr_assert_eq(rc, 0, "lbproxy did not become ready (%d)", rc);
  T.started = 1;
}

static void begin(const char *dispatch, int workers, int nbe) {
  memset(&T, 0, sizeof(T));
  cr_assert_eq(h_tmpdir(T.dir, sizeof(T.dir)), 0);
  T.dispatch = dispatch;
  T.workers = workers;
  start_backends(nbe);
}

void it_yaml(char *yaml, size_t cap, const char *dispatch, int workers, const char *top) {
  size_t n;

  /* A reload that keeps "listen: 127.0.0.1:0" keeps the socket bound for that line. */
  n = (size_t)snprintf(yaml, cap, "listen: 127.0.0.1:0\n");
  n += (size_t)snprintf(yaml + n, cap - n,
                        "workers: %d\ndispatch: %s\nstats_interval: 100ms\n%s"
                        "upstreams:\n  app:\n    servers:\n",
                        workers, dispatch, top ? top : "");
  for (int i = 0; i < T.nbe && n < cap; i++)
    n += (size_t)snprintf(yaml + n, cap - n, "      - 127.0.0.1:%u\n", T.be[i].port);
}

void it_start(const char *dispatch, int workers, int nbe, const char *top) {
  char yaml[8192];

  begin(dispatch, workers, nbe);
  it_yaml(yaml, sizeof(yaml), dispatch, workers, top);
  start_proxy(yaml);
}

long it_wait_log(const char *needle, long from, int timeout_ms) {
  return h_wait_line(T.px.proc.log, needle, from, timeout_ms, NULL, 0);
}

long it_reload(const char *yaml, unsigned gen, int timeout_ms) {
  char needle[64], buf[16384];
  long from = it_log_size();
  int rc = h_write_file(T.dir, "lbproxy.yaml", with_admin(yaml, buf, sizeof(buf)), NULL, 0);

  if (rc != 0)
    return rc;
  if (kill(T.px.proc.pid, SIGHUP) != 0)
    return -errno;
  snprintf(needle, sizeof(needle), "generation: %u active", gen);
  return it_wait_log(needle, from, timeout_ms);
}

void it_start_yaml(const char *dispatch, int workers, int nbe, const char *fmt) {
  char yaml[8192], body[6144];
  unsigned p[IT_MAX_BACKENDS] = {0};

  begin(dispatch, workers, nbe);
  for (int i = 0; i < nbe; i++)
    p[i] = T.be[i].port;
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
  snprintf(body, sizeof(body), fmt, p[0], p[1], p[2], p[3]);
#pragma GCC diagnostic pop
  snprintf(yaml, sizeof(yaml), "listen: 127.0.0.1:0\nworkers: %d\ndispatch: %s\n%s", workers,
           dispatch, body);
  start_proxy(yaml);
}

void it_stop(void) {
  int status;

  if (T.started) {
    status = h_proxy_stop(&T.px);
    if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0))
      it_dump(T.px.proc.log);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "lbproxy wait status %#x", status);
    it_assert_log_clean(T.px.proc.log);
    T.started = 0;
  }
  for (int i = 0; i < T.nbe; i++) {
    h_backend_stop(&T.be[i]);
    it_assert_log_clean(T.be[i].proc.log);
  }
  T.nbe = 0;
}

/* Kills every process running a binary from `dir` (a copied lbproxy a failed upgrade test may
 * have left behind: the new master is not our child). */
static void kill_strays(const char *dir) {
  size_t n = strlen(dir);
  struct dirent *e;
  DIR *d;

  if (n == 0 || (d = opendir("/proc")) == NULL)
    return;
  while ((e = readdir(d)) != NULL) {
    char path[300], exe[1024];
    ssize_t k;
    if (e->d_name[0] < '0' || e->d_name[0] > '9')
      continue;
    snprintf(path, sizeof(path), "/proc/%s/exe", e->d_name);
    if ((k = readlink(path, exe, sizeof(exe) - 1)) <= 0)
      continue;
    exe[k] = '\0';
    if (strncmp(exe, dir, n) == 0 && exe[n] == '/')
      kill((pid_t)atoi(e->d_name), SIGKILL);
  }
  closedir(d);
}

void it_fini(void) {
  kill_strays(T.dir);
  if (T.started)
    h_proxy_stop(&T.px);
  for (int i = 0; i < T.nbe; i++)
    h_backend_stop(&T.be[i]);
  if (T.dir[0])
    h_rmtree(T.dir);
  memset(&T, 0, sizeof(T));
}

int it_get(const char *path, struct hc_resp *r) {
  return hc_get(T.px.port, path, r);
}

long it_log_size(void) {
  struct stat st;
  return stat(T.px.proc.log, &st) == 0 ? (long)st.st_size : 0;
}

/* Parses "key=1,2,3" out of a stats line. Returns how many numbers. */
static int parse_list(const char *line, const char *key, uint64_t *out, int max) {
  char val[1024];
  int n = 0;
  char *p, *end;

  if (h_line_field(line, key, val, sizeof(val)) != 0)
    return 0;
  for (p = val; *p && n < max; p = *end ? end + 1 : end) {
    out[n++] = strtoull(p, &end, 10);
    if (end == p)
      break;
  }
  return n;
}

int it_wait_stats(long from, int timeout_ms,
                  int (*ok)(const uint64_t *, const uint64_t *, int, void *), void *arg,
                  uint64_t *accepted, uint64_t *active) {
  int64_t deadline = h_now_ms() + timeout_ms;
  char line[2048];

  while (h_now_ms() < deadline) {
    long next = h_wait_line(T.px.proc.log, " stats ", from, 1000, line, sizeof(line));
    if (next < 0)
      continue;
    from = next;
    int n = parse_list(line, "accepted", accepted, IT_MAX_WORKERS);
    if (parse_list(line, "active", active, IT_MAX_WORKERS) == n && n == T.workers &&
        ok(accepted, active, n, arg))
      return 1;
  }
  return 0;
}

void it_sigstop(pid_t pid) {
  char path[64], buf[512], *p;
  int64_t deadline = h_now_ms() + 10000;

  cr_assert_eq(kill(pid, SIGSTOP), 0);
  snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
  for (;;) {
    FILE *f = fopen(path, "r");
    size_t n = f != NULL ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
    if (f != NULL)
      fclose(f);
    buf[n] = '\0';
    /* "pid (comm) S ...": the state follows the last ')'. */
    if ((p = strrchr(buf, ')')) != NULL && p[1] == ' ' && (p[2] == 'T' || p[2] == 't'))
      return;
    cr_assert_lt(h_now_ms(), deadline, "process %ld never stopped", (long)pid);
    poll(NULL, 0, 1);
  }
}

pid_t it_worker_pid(int slot) {
  pid_t pids[IT_MAX_WORKERS + 2] = {0};
  h_proxy_worker_pids(&T.px, pids, IT_MAX_WORKERS + 1);
  return pids[slot] > 0 ? pids[slot] : -1;
}

int it_admin_raw(const char *raw, char **body, char *head, size_t headcap) {
  size_t len = 0, cap = 65536;
  char *buf = malloc(cap + 1), *end;
  int fd = hc_connect(T.px.admin_port, NULL), status = -1;
  ssize_t n;

  if (body != NULL)
    *body = NULL;
  if (fd < 0 || buf == NULL || hc_send_all(fd, raw, strlen(raw)) != 0) {
    if (fd >= 0)
      close(fd);
    free(buf);
    return -1;
  }
  while ((n = recv(fd, buf + len, cap - len, 0)) > 0) {
    len += (size_t)n;
    if (len == cap) {
      char *more = realloc(buf, cap * 2 + 1);
      if (more == NULL)
        break;
      buf = more;
      cap *= 2;
    }
  }
  close(fd);
  buf[len] = '\0';
  if (sscanf(buf, "HTTP/1.1 %d ", &status) != 1)
    status = -1;
  end = strstr(buf, "\r\n\r\n");
  if (head != NULL)
    snprintf(head, headcap, "%.*s", end != NULL ? (int)(end - buf) : (int)len, buf);
  if (body != NULL && end != NULL) {
    memmove(buf, end + 4, len - (size_t)(end + 4 - buf) + 1);
    *body = buf;
  } else {
    free(buf);
  }
  return status;
}

char *it_admin_get(const char *path, int *status) {
  char req[1024];
  char *body;

  snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: admin\r\n\r\n", path);
  *status = it_admin_raw(req, &body, NULL, 0);
  return body;
}
