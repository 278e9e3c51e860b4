/* Test harness: temp dirs, spawning and reaping real processes, waiting for log lines. */
#ifndef LBP_TEST_HARNESS_H
#define LBP_TEST_HARNESS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Paths of the binaries under test (set by CMake as compile definitions). */
#ifndef LBP_PROXY_BIN
#define LBP_PROXY_BIN "lbproxy"
#endif
#ifndef LBP_BACKEND_BIN
#define LBP_BACKEND_BIN "lbp-backend"
#endif

/* A child process whose stdout and stderr both go to `log` (a file in the test's temp dir). */
struct h_proc {
  pid_t pid; /* 0 once reaped */
  char log[512];
  int status; /* wait status once reaped */
};

/* Creates a fresh private temp dir (mkdtemp under $TMPDIR or /tmp) into `out`. 0 or -errno. */
int h_tmpdir(char *out, size_t cap);
/* Removes a temp dir made by h_tmpdir, recursively. */
void h_rmtree(const char *path);
/* Writes `text` into dir/name; the full path goes to `path_out`. 0 or -errno. */
int h_write_file(const char *dir, const char *name, const char *text, char *path_out, size_t cap);

/* Starts argv[0] (a path) with stdout+stderr appended to `logpath`, stdin from /dev/null, and
 * PR_SET_PDEATHSIG=SIGTERM so it cannot outlive the test process. 0 or -errno. */
int h_spawn(struct h_proc *p, const char *const argv[], const char *logpath);

/* Polls `logpath` every few ms until a line containing `needle` appears after byte `from`
 * (use 0 for the whole file), or `timeout_ms` passes. Copies that line (without '\n') into
 * `line` and returns the byte offset just past it (> 0), or -ETIMEDOUT. */
long h_wait_line(const char *logpath, const char *needle, long from, int timeout_ms, char *line,
                 size_t cap);

/* Counts lines of `logpath` containing `needle`. */
int h_count_lines(const char *logpath, const char *needle);

/* Sends `sig`, waits up to `timeout_ms` for exit, then SIGKILLs; always reaps. Returns the
 * wait status (or -1 if there was no process). Safe to call twice. */
int h_stop(struct h_proc *p, int sig, int timeout_ms);

/* Nonblocking check: 1 if the process has exited (and reaps it), else 0. */
int h_exited(struct h_proc *p);

/* Parses "key=value" out of a log line: copies value (up to a space) into out. 0 or -1. */
int h_line_field(const char *line, const char *key, char *out, size_t cap);

/* A running lbp-backend. */
struct h_backend {
  struct h_proc proc;
  uint16_t port;
  char name[64];
};

/* Starts lbp-backend named `name` on 127.0.0.1:0 in `dir` (its log is dir/backend-NAME.log),
 * with optional extra arguments (NULL-terminated, may be NULL), and waits for its ready line.
 * 0 or a negative error. */
int h_backend_start(struct h_backend *b, const char *dir, const char *name,
                    const char *const extra[]);
void h_backend_stop(struct h_backend *b);

/* A running lbproxy master (and its workers). */
struct h_proxy {
  struct h_proc proc;
  uint16_t port;       /* from the master's "ready listen=HOST:PORT" line */
  uint16_t admin_port; /* from its "admin=HOST:PORT" field, 0 when the admin API is off */
  char config[512];    /* path of the config file written for it */
};

/* Writes `yaml` to dir/lbproxy.yaml, starts `lbproxy -c` on it (log dir/lbproxy.log) and
 * waits for the master's ready line. 0 or a negative error (the log explains). The binary is
 * $LBP_TEST_PROXY_BIN when set (to run a test against an older build), else this build's. */
int h_proxy_start(struct h_proxy *px, const char *dir, const char *yaml);
/* SIGTERM, wait (SIGKILL after a deadline), reap. Returns the master's wait status. */
int h_proxy_stop(struct h_proxy *px);

/* Collects the pids of workers that logged "worker N ready pid=P" (latest per slot N) into
 * pids[0..max) indexed by slot; returns how many slots have a pid. */
int h_proxy_worker_pids(const struct h_proxy *px, pid_t *pids, int max);

/* Current number of open fds of process `pid` (counts /proc/PID/fd entries), or -1. */
int h_fd_count(pid_t pid);

/* Milliseconds from a monotonic clock. */
int64_t h_now_ms(void);

#endif
