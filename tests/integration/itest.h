/* Integration-test fixture: real backends + the real lbproxy, per dispatch strategy. */
#ifndef LBP_ITEST_H
#define LBP_ITEST_H

#include "client.h"
#include "harness.h"

#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#define IT_MAX_BACKENDS 6
#define IT_MAX_WORKERS  8

/* Every dispatch strategy: suites marked IT_EACH_STRATEGY run once per entry. Criterion runs
 * each test in a fresh process of this binary, so parameters must be plain values (an index),
 * not pointers. */
extern const char *const it_strategies[];
extern int it_strategy_index[];
#define IT_NSTRATEGIES 5

struct itest {
  char dir[512];
  struct h_backend be[IT_MAX_BACKENDS];
  int nbe;
  struct h_proxy px;
  int workers;
  const char *dispatch;
  int started;
};

/* The fixture of the running test (one per test process: Criterion forks per test). */
extern struct itest T;

/* Starts `nbe` backends named b1.. and lbproxy with `workers` workers and `dispatch`; its
 * config is `top` (extra top-level YAML, may be NULL) plus an upstream "app" over all the
 * backends. The stats line is on every 100 ms. Fails the test if anything does not start. */
void it_start(const char *dispatch, int workers, int nbe, const char *top);

/* Like it_start, but `yaml` is the whole config after the first lines; "%1$u".."%4$u" in it
 * stand for the backends' ports (use printf positional syntax). */
void it_start_yaml(const char *dispatch, int workers, int nbe, const char *yaml);

/* The config it_start writes for `dispatch`, `workers` and `top` over the running backends. */
void it_yaml(char *out, size_t cap, const char *dispatch, int workers, const char *top);

/* Rewrites the proxy's config file with `yaml`, sends SIGHUP, and waits until the log says
 * generation `gen` is active. Returns the log offset after that line, or a negative error. */
long it_reload(const char *yaml, unsigned gen, int timeout_ms);

/* Polls the proxy log for `needle` after offset `from`; the offset past that line or < 0. */
long it_wait_log(const char *needle, long from, int timeout_ms);

/* Stops lbproxy and the backends; asserts that the master exited 0 and that no log holds a
 * sanitizer report. Call at the end of each test body (Criterion ignores asserts in .fini). */
void it_stop(void);

/* .fini for every suite: cleanup without asserts, after a failed test too. */
void it_fini(void);

/* Asserts that no "AddressSanitizer", "LeakSanitizer" or "runtime error" report is in `log`. */
void it_assert_log_clean(const char *log);

/* Copies a log to stderr (for a failing test). */
void it_dump(const char *log);

/* One GET on a new connection (Connection: close) from 127.0.0.1; asserts nothing. */
int it_get(const char *path, struct hc_resp *r);

/* Polls the proxy log until a stats line newer than offset `from` satisfies `ok` (given the
 * per-worker accepted and active counts), or the deadline passes. Returns 1 if it did, and
 * leaves the counts in accepted/active. */
int it_wait_stats(long from, int timeout_ms,
                  int (*ok)(const uint64_t *accepted, const uint64_t *active, int n, void *arg),
                  void *arg, uint64_t *accepted, uint64_t *active);

/* Current size of the proxy log (an offset for h_wait_line / it_wait_stats). */
long it_log_size(void);

/* Sends `raw` (a whole request) to the admin port and reads until the master closes: the
 * status (or -1 when no status line came) and the body, malloc'ed and NUL-terminated in *body
 * (may be NULL). The head goes to `head` when not NULL. */
int it_admin_raw(const char *raw, char **body, char *head, size_t headcap);
/* GET `path` from the admin API: the body (malloc'ed, NUL-terminated) or NULL; *status. */
char *it_admin_get(const char *path, int *status);

/* Worker pid of slot `slot` (1-based) from the latest "worker N ready pid=" line; -1 if none. */
pid_t it_worker_pid(int slot);
/* SIGSTOPs pid and waits (deadline 10 s) until the kernel says it is stopped: kill() returns
 * before a process running on another CPU has actually stopped. */
void it_sigstop(pid_t pid);

/* A test run once per dispatch strategy; the body sees `const char *dispatch`. */
#define IT_EACH_STRATEGY(suite, name)                                                              \
  ParameterizedTestParameters(suite, name) {                                                       \
    return cr_make_param_array(int, it_strategy_index, IT_NSTRATEGIES);                            \
  }                                                                                                \
  static void suite##_##name##_body(const char *dispatch);                                         \
  ParameterizedTest(int *param, suite, name, .fini = it_fini, .timeout = 180) {                    \
    suite##_##name##_body(it_strategies[*param]);                                                  \
  }                                                                                                \
  static void suite##_##name##_body(const char *dispatch)

/* A test run once, with the fixture's cleanup. */
#define IT_TEST(suite, name, ...) Test(suite, name, .fini = it_fini, .timeout = 180, ##__VA_ARGS__)

#endif
