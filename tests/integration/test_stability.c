/* Cluster stability for real: reloads and upgrades under load, drains, signals, crash loops, kill
 * storms. */
#include "itest.h"
#include "load.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static struct hc_resp R;
static char text[8192];

/* The pid in a pid file. 0 or -1. */
static int pidfile_read_pid(const char *path, long *pid) {
  char buf[32] = "";
  FILE *f = fopen(path, "r");
  int ok = f != NULL && fgets(buf, sizeof(buf), f) != NULL && (*pid = atol(buf)) > 0;
  if (f != NULL)
    fclose(f);
  return ok ? 0 : -1;
}

/* Waits until `ms` have passed since `*t0` and moves *t0 on: paces a series of actions (this is
 * the pattern of the test, not a wait for readiness). */
static void pace(int64_t *t0, int ms) {
  int64_t until = *t0 + ms, now;
  while ((now = h_now_ms()) < until)
    poll(NULL, 0, (int)(until - now));
  *t0 = until;
}

static void start_load(struct load *l, int keepalive, int threads, const char *header) {
  struct load_opts o = {.port = T.px.port,
                        .threads = threads,
                        .keepalive = keepalive,
                        .header = header,
                        .io_timeout_ms = 10000};
  cr_assert_eq(load_start(l, &o), 0);
  cr_assert(load_wait(l, 50, 20000), "the load never got going");
}

/* Both loads (keep-alive and one connection per request) stop; neither may have lost a
 * single request or seen a refused connection. */
static void stop_loads_expect_nothing_lost(struct load *ka, struct load *nc) {
  struct load_stats s;

  load_stop(ka, &s);
  /* The figures, for the record (stderr): requests, failures, connections. */
  fprintf(stderr, "[%s] keep-alive load: %s\n", T.dispatch, load_format(&s, text, sizeof(text)));
  if (load_failed(&s) != 0)
    it_dump(T.px.proc.log);
  cr_assert_eq(load_failed(&s), 0, "keep-alive load: %s", load_format(&s, text, sizeof(text)));
  cr_assert_gt(s.ok, 0);
  load_stop(nc, &s);
  fprintf(stderr, "[%s] new-connection load: %s\n", T.dispatch,
          load_format(&s, text, sizeof(text)));
  if (load_failed(&s) != 0)
    it_dump(T.px.proc.log);
  cr_assert_eq(load_failed(&s), 0, "new-connection load: %s", load_format(&s, text, sizeof(text)));
  cr_assert_eq(s.kinds[LOAD_REFUSED], 0);
  cr_assert_gt(s.ok, 0);
}

/* ---- reload ---- */

IT_EACH_STRATEGY(stability, twenty_reloads_under_load_lose_no_request) {
  struct load ka, nc;
  char yaml[8192];
  int64_t t0;

  it_start(dispatch, 2, 2, NULL);
  start_load(&ka, 1, 2, NULL);
  start_load(&nc, 0, 2, NULL);
  it_yaml(yaml, sizeof(yaml), dispatch, 2, NULL);
  t0 = h_now_ms();
  for (unsigned gen = 2; gen <= 21; gen++) {
    cr_assert_gt(it_reload(yaml, gen, 30000), 0, "generation %u never became active", gen);
    pace(&t0, 250);
  }
  cr_assert_gt(it_wait_log("generation: 20 retired", 0, 40000), 0);
  stop_loads_expect_nothing_lost(&ka, &nc);
  it_stop();
}

/* Reads the X-Lbproxy-Worker line of the last response: its "gen=" value. */
static unsigned served_by_generation(void) {
  char v[128], *g;
  cr_assert_eq(hc_header(&R, "X-Lbproxy-Worker", v, sizeof(v)), 0, "%s", R.head);
  g = strstr(v, "gen=");
  cr_assert_not_null(g);
  return (unsigned)atoi(g + 4);
}

IT_EACH_STRATEGY(stability, one_keep_alive_connection_lives_through_ten_reloads) {
  char yaml[8192];
  unsigned next = 2, gen = 0;
  int fd, i;

  if (strcmp(dispatch, "proxy") == 0)
    cr_skip_test("proxy dispatch: the master's relay holds the client socket, so a draining "
                 "worker ends the connection after a response (Connection: close) instead; see "
                 "proxy_dispatch_closes_kept_connections_cleanly_on_reload");
  it_start(dispatch, 2, 1, "debug_header: true\n");
  it_yaml(yaml, sizeof(yaml), dispatch, 2, "debug_header: true\n");
  fd = hc_connect(T.px.port, NULL);
  cr_assert_geq(fd, 0);
  /* A request every 20 ms; a reload after every fifth. */
  for (i = 0; next <= 11 || gen < 11; i++) {
    int64_t t0 = h_now_ms();
    cr_assert_eq(hc_roundtrip(fd, "GET / HTTP/1.1\r\nHost: t\r\n\r\n", &R), 0,
                 "request %d on the kept connection failed (connection closed or reset)", i);
    cr_assert_eq(R.status, 200);
    cr_assert(R.keep_alive, "request %d: the proxy asked to close", i);
    gen = served_by_generation();
    if (i % 5 == 4 && next <= 11) {
      long from = it_log_size();
      char needle[64];
      cr_assert_eq(h_write_file(T.dir, "lbproxy.yaml", yaml, NULL, 0), 0);
      cr_assert_eq(kill(T.px.proc.pid, SIGHUP), 0);
      snprintf(needle, sizeof(needle), "generation: %u active", next++);
      cr_assert_gt(it_wait_log(needle, from, 30000), 0);
    }
    pace(&t0, 20);
    cr_assert_lt(i, 2000, "the connection never reached generation 11 (now %u)", gen);
  }
  /* The same TCP connection, served by the newest generation's workers. */
  cr_assert_eq(gen, 11);
  close(fd);
  it_stop();
}

IT_TEST(stability, proxy_dispatch_closes_kept_connections_cleanly_on_reload) {
  char yaml[8192];
  int fd;

  it_start("proxy", 2, 1, "debug_header: true\n");
  it_yaml(yaml, sizeof(yaml), "proxy", 2, "debug_header: true\n");
  fd = hc_connect(T.px.port, NULL);
  cr_assert_geq(fd, 0);
  cr_assert_eq(hc_roundtrip(fd, "GET / HTTP/1.1\r\nHost: t\r\n\r\n", &R), 0);
  cr_assert(R.keep_alive);
  cr_assert_gt(it_reload(yaml, 2, 30000), 0);
  /* Idle at the reload: the old worker answers the next request, says close, and closes. */
  cr_assert_eq(hc_roundtrip(fd, "GET / HTTP/1.1\r\nHost: t\r\n\r\n", &R), 0);
  cr_assert_eq(R.status, 200);
  cr_assert(!R.keep_alive, "the last response of a draining worker says Connection: close");
  cr_assert(hc_wait_closed(fd, 10000));
  close(fd);
  cr_assert_gt(it_wait_log("generation: 1 retired", 0, 20000), 0);
  it_stop();
}

IT_TEST(stability, reload_changes_worker_count_and_dispatch_under_load) {
  static const struct {
    const char *dispatch;
    int workers;
  } steps[] = {{"reuseport", 4}, {"shared", 1}, {"handoff-least", 3}, {"proxy", 2}, {"handoff", 2}};
  struct load ka, nc;
  char yaml[8192], needle[64];

  it_start("handoff", 2, 2, NULL);
  start_load(&ka, 1, 2, NULL);
  start_load(&nc, 0, 2, NULL);
  for (unsigned i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
    uint64_t before;
    struct load_stats s;
    it_yaml(yaml, sizeof(yaml), steps[i].dispatch, steps[i].workers, NULL);
    cr_assert_gt(it_reload(yaml, i + 2, 30000), 0, "step %u (%s x%d) never became active", i,
                 steps[i].dispatch, steps[i].workers);
    snprintf(needle, sizeof(needle), "generation: %u retired", i + 1);
    cr_assert_gt(it_wait_log(needle, 0, 40000), 0, "generation %u never drained", i + 1);
    load_snapshot(&nc, &s);
    before = s.ok;
    cr_assert(load_wait(&nc, before + 50, 20000), "no traffic after step %u", i);
  }
  stop_loads_expect_nothing_lost(&ka, &nc);
  it_stop();
}

IT_TEST(stability, an_invalid_config_on_hup_keeps_the_old_one_and_names_line_and_column) {
  char line[1024];
  long from;

  it_start("handoff", 2, 1, NULL);
  from = it_log_size();
  cr_assert_eq(h_write_file(T.dir, "lbproxy.yaml",
                            "listen: 127.0.0.1:0\nworkers: 2\ntimeouts:\n  conect: 1s\n", NULL, 0),
               0);
  cr_assert_eq(kill(T.px.proc.pid, SIGHUP), 0);
  cr_assert_gt(h_wait_line(T.px.proc.log, "reload-failed", from, 20000, line, sizeof(line)), 0);
  cr_assert(strstr(line, "lbproxy.yaml:4:3: timeouts.conect: unknown key 'conect'") != NULL, "%s",
            line);
  cr_assert(strstr(line, "generation 1 keeps serving") != NULL, "%s", line);
  for (int i = 0; i < 10; i++) {
    cr_assert_eq(it_get("/", &R), 0);
    cr_assert_eq(R.status, 200);
  }
  cr_assert_eq(h_count_lines(T.px.proc.log, "fork pid="), 2, "no worker was replaced");
  it_stop();
}

IT_TEST(stability, a_reload_whose_new_worker_crashes_is_abandoned_and_the_old_one_serves) {
  char yaml[8192], line[1024];
  struct load nc;
  long from;

  setenv("LBPROXY_TEST_CRASH", "2@2", 1); /* generation 2's worker 2 crashes at start-up */
  it_start("handoff", 2, 1, NULL);
  unsetenv("LBPROXY_TEST_CRASH");
  start_load(&nc, 0, 2, NULL);
  it_yaml(yaml, sizeof(yaml), "handoff", 2, NULL);
  from = it_log_size();
  cr_assert_eq(h_write_file(T.dir, "lbproxy.yaml", yaml, NULL, 0), 0);
  cr_assert_eq(kill(T.px.proc.pid, SIGHUP), 0);
  cr_assert_gt(h_wait_line(T.px.proc.log, "reload-failed", from, 30000, line, sizeof(line)), 0);
  cr_assert(strstr(line, "generation 2: code=3; generation 1 keeps serving") != NULL, "%s", line);
  {
    struct load_stats s;
    load_snapshot(&nc, &s);
    cr_assert(load_wait(&nc, s.ok + 100, 20000), "no traffic after the failed reload");
  }
  /* Its other new worker went away again; generation 1's two serve. */
  cr_assert_gt(it_wait_log("worker 1 exit", from, 20000), 0);
  {
    struct load_stats s;
    load_stop(&nc, &s);
    cr_assert_eq(load_failed(&s), 0, "%s", load_format(&s, text, sizeof(text)));
  }
  cr_assert_eq(h_count_lines(T.px.proc.log, "generation: 2 active"), 0);
  /* A later reload (generation 3, no crash hook for it) works. */
  cr_assert_gt(it_reload(yaml, 3, 30000), 0);
  it_stop();
}

/* ---- supervision ---- */

IT_TEST(stability, a_worker_crashing_at_start_up_backs_off_then_its_slot_is_errored) {
  char line[1024];
  int64_t t_first = 0, t_last = 0;

  setenv("LBPROXY_TEST_CRASH", "2", 1);
  it_start("handoff", 2, 1,
           "restart:\n  delay: 50ms\n  max_delay: 400ms\n  max_exits: 4\n  window: 1m\n");
  unsetenv("LBPROXY_TEST_CRASH");
  cr_assert_gt(it_wait_log("worker 2 errored", 0, 30000), 0);
  /* The delays doubled: 50, 100, 200, 400 ms. */
  cr_assert_gt(it_wait_log("restart in 50 ms", 0, 1000), 0);
  cr_assert_gt(it_wait_log("restart in 100 ms", 0, 1000), 0);
  cr_assert_gt(it_wait_log("restart in 200 ms", 0, 1000), 0);
  cr_assert_gt(it_wait_log("restart in 400 ms", 0, 1000), 0);
  cr_assert_eq(h_count_lines(T.px.proc.log, "worker 2 fork"), 5, "4 restarts, then no more");
  cr_assert_gt(h_wait_line(T.px.proc.log, "worker 2 errored", 0, 1000, line, sizeof(line)), 0);
  cr_assert(strstr(line, "5 exits within") != NULL && strstr(line, "code=3") != NULL, "%s", line);
  (void)t_first;
  (void)t_last;
  /* The master goes on with the other slot. */
  for (int i = 0; i < 10; i++) {
    cr_assert_eq(it_get("/", &R), 0);
    cr_assert_eq(R.status, 200);
  }
  it_stop();
}

IT_TEST(stability, when_every_slot_is_errored_the_master_exits_non_zero_naming_the_cause) {
  char yaml[1024], log[600], line[1024];
  struct h_proc p;
  const char *argv[] = {LBP_PROXY_BIN, "-c", NULL, NULL};
  char path[600];
  int status;

  memset(&T, 0, sizeof(T));
  cr_assert_eq(h_tmpdir(T.dir, sizeof(T.dir)), 0);
  snprintf(yaml, sizeof(yaml),
           "listen: 127.0.0.1:0\nworkers: 1\nrestart:\n  delay: 10ms\n  max_exits: 2\n"
           "upstreams:\n  a:\n    servers: [127.0.0.1:1]\n");
  cr_assert_eq(h_write_file(T.dir, "lbproxy.yaml", yaml, path, sizeof(path)), 0);
  argv[2] = path;
  snprintf(log, sizeof(log), "%s/lbproxy.log", T.dir);
  setenv("LBPROXY_TEST_CRASH", "1", 1);
  cr_assert_eq(h_spawn(&p, argv, log), 0);
  unsetenv("LBPROXY_TEST_CRASH");
  for (int64_t deadline = h_now_ms() + 20000; !h_exited(&p) && h_now_ms() < deadline;)
    poll(NULL, 0, 5);
  status = p.pid > 0 ? h_stop(&p, SIGKILL, 100) : p.status;
  cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 1, "status %#x", status);
  cr_assert_gt(h_wait_line(log, "giving up", 0, 1000, line, sizeof(line)), 0);
  cr_assert(strstr(line, "every worker slot is errored") && strstr(line, "code=3"), "%s", line);
}

/* ---- kill storm ---- */

static int children_of(pid_t parent, pid_t *out, int max, int *zombies) {
  DIR *d = opendir("/proc");
  struct dirent *e;
  int n = 0;

  *zombies = 0;
  while (d != NULL && (e = readdir(d)) != NULL) {
    char path[300], buf[512], state;
    int pid, ppid;
    FILE *f;
    if (e->d_name[0] < '0' || e->d_name[0] > '9')
      continue;
    snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
    if ((f = fopen(path, "r")) == NULL)
      continue;
    if (fgets(buf, sizeof(buf), f) != NULL) {
      char *close = strrchr(buf, ')');
      if (close != NULL && sscanf(close + 2, "%c %d", &state, &ppid) == 2 && ppid == parent) {
        pid = atoi(e->d_name);
        if (state == 'Z')
          (*zombies)++;
        else if (n < max)
          out[n++] = pid;
      }
    }
    fclose(f);
  }
  if (d != NULL)
    closedir(d);
  return n;
}

IT_EACH_STRATEGY(stability, a_kill_storm_fails_only_requests_in_flight_and_leaks_nothing) {
  struct load nc;
  struct load_stats s;
  pid_t kids[16];
  int kills = 0, zombies, base, now = -1, n;
  int64_t t0, end;
  char needle[64];

  it_start(dispatch, 3, 2, "restart:\n  delay: 10ms\n  max_delay: 50ms\n  max_exits: 100\n");
  base = h_fd_count(T.px.proc.pid);
  start_load(&nc, 0, 3, NULL);
  srand(7);
  t0 = h_now_ms();
  end = t0 + 10000;
  while (h_now_ms() < end) {
    n = children_of(T.px.proc.pid, kids, 16, &zombies);
    if (n > 0 && kill(kids[rand() % n], SIGKILL) == 0)
      kills++;
    pace(&t0, 200);
  }
  load_stop(&nc, &s);
  fprintf(stderr, "[%s] kill storm, %d kills: %s\n", T.dispatch, kills,
          load_format(&s, text, sizeof(text)));
  /* At most the requests in flight on the killed worker: one per load thread per kill. */
  cr_assert_leq(load_failed(&s), (uint64_t)kills * 3, "%d kills: %s", kills,
                load_format(&s, text, sizeof(text)));
  cr_assert_gt(s.ok, (uint64_t)kills, "%s", load_format(&s, text, sizeof(text)));
  cr_assert_eq(s.kinds[LOAD_REFUSED], 0, "%s", load_format(&s, text, sizeof(text)));
  /* Every slot comes back. */
  for (int slot = 1; slot <= 3; slot++) {
    pid_t w;
    int64_t deadline = h_now_ms() + 20000;
    while ((w = it_worker_pid(slot)) <= 0 || kill(w, 0) != 0) {
      cr_assert_lt(h_now_ms(), deadline, "slot %d never came back", slot);
      poll(NULL, 0, 10);
    }
    snprintf(needle, sizeof(needle), "worker %d ready pid=%d", slot, (int)w);
    cr_assert_gt(it_wait_log(needle, 0, 20000), 0);
  }
  for (int i = 0; i < 10; i++) {
    cr_assert_eq(it_get("/", &R), 0);
    cr_assert_eq(R.status, 200);
  }
  /* No zombies, and the master's fds are back where they started. */
  for (int64_t deadline = h_now_ms() + 20000; h_now_ms() < deadline; poll(NULL, 0, 20)) {
    now = h_fd_count(T.px.proc.pid);
    children_of(T.px.proc.pid, kids, 16, &zombies);
    if (now == base && zombies == 0)
      break;
  }
  cr_assert_eq(zombies, 0, "zombie workers");
  cr_assert_eq(now, base, "master fds: %d before, %d after %d kills", base, now, kills);
  it_stop();
}

/* ---- stopping ---- */

static int active_at_least(const uint64_t *acc, const uint64_t *act, int n, void *arg) {
  uint64_t sum = 0;
  for (int i = 0; i < n; i++)
    sum += act[i];
  return sum >= *(uint64_t *)arg;
}

struct slow_req {
  int fd, rc, status;
};

static void *read_slow(void *arg) {
  struct slow_req *q = arg;
  struct hc_resp *r = malloc(sizeof(*r));
  q->rc = hc_read_response(q->fd, r, 0);
  q->status = r->status;
  free(r);
  return NULL;
}

IT_EACH_STRATEGY(stability, sigquit_lets_a_request_in_flight_finish_then_exits_zero) {
  struct slow_req q = {0};
  pthread_t th;
  int status;

  it_start(dispatch, 2, 1, NULL);
  q.fd = hc_connect(T.px.port, NULL);
  cr_assert_geq(q.fd, 0);
  cr_assert_eq(hc_send_all(q.fd, "GET /delay?ms=2000 HTTP/1.1\r\nHost: t\r\n\r\n", 40), 0);
  cr_assert_eq(pthread_create(&th, NULL, read_slow, &q), 0);
  /* The request is in a worker (its stats line counts it active) before the stop. */
  {
    uint64_t one = 1, acc[IT_MAX_WORKERS], act[IT_MAX_WORKERS];
    cr_assert(it_wait_stats(0, 10000, active_at_least, &one, acc, act), "never in a worker");
  }
  cr_assert_eq(kill(T.px.proc.pid, SIGQUIT), 0);
  pthread_join(th, NULL);
  cr_assert_eq(q.rc, 0, "the request in flight was cut (%d)", q.rc);
  cr_assert_eq(q.status, 200);
  cr_assert(hc_wait_closed(q.fd, 10000), "the connection stayed open after the last response");
  close(q.fd);
  /* New clients were refused from the QUIT on, not queued to be reset at the end. */
  cr_assert_eq(hc_connect(T.px.port, NULL), -ECONNREFUSED);
  status = h_stop(&T.px.proc, 0, 20000);
  T.started = 0;
  cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %#x", status);
  it_assert_log_clean(T.px.proc.log);
  it_stop();
}

IT_TEST(stability, a_worker_whose_master_died_drains_and_exits) {
  pid_t w1, w2;

  it_start("handoff", 2, 1, NULL);
  w1 = it_worker_pid(1);
  w2 = it_worker_pid(2);
  cr_assert_eq(kill(T.px.proc.pid, SIGKILL), 0);
  h_stop(&T.px.proc, 0, 5000);
  T.started = 0;
  for (int64_t deadline = h_now_ms() + 15000; kill(w1, 0) == 0 || kill(w2, 0) == 0;) {
    cr_assert_lt(h_now_ms(), deadline, "orphaned workers are still running");
    poll(NULL, 0, 20);
  }
  cr_assert_gt(h_count_lines(T.px.proc.log, "lost the master"), 0);
  it_stop();
}

/* ---- signals ---- */

IT_TEST(stability, signals_with_nothing_to_do_never_kill_the_master) {
  static const int sigs[] = {SIGALRM, SIGVTALRM, SIGPROF, SIGIO, SIGPWR, SIGXFSZ, SIGWINCH};

  it_start("handoff", 1, 1, NULL);
  for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
    cr_assert_eq(kill(T.px.proc.pid, sigs[i]), 0);
  cr_assert_eq(kill(T.px.proc.pid, SIGRTMIN + 1), 0);
  cr_assert_eq(it_get("/", &R), 0);
  cr_assert_eq(R.status, 200);
  cr_assert(!h_exited(&T.px.proc), "the master died of a harmless signal");
  it_stop();
}

IT_TEST(stability, usr1_reopens_the_error_log_in_the_master_and_the_workers) {
  char yaml[8192], path[700], moved[700], top[800], line[1024];
  const char *argv[] = {LBP_PROXY_BIN, "-c", NULL, NULL};

  memset(&T, 0, sizeof(T));
  cr_assert_eq(h_tmpdir(T.dir, sizeof(T.dir)), 0);
  cr_assert_eq(h_backend_start(&T.be[0], T.dir, "b1", NULL), 0);
  T.nbe = 1;
  snprintf(path, sizeof(path), "%s/error.log", T.dir);
  snprintf(moved, sizeof(moved), "%s/error.log.1", T.dir);
  /* One upstream that works, one that refuses: a request to it makes a worker log a line. */
  snprintf(top, sizeof(top), "error_log: %s\n", path);
  snprintf(yaml, sizeof(yaml),
           "listen: 127.0.0.1:0\nworkers: 1\n%s"
           "upstreams:\n  ok:\n    servers: [127.0.0.1:%u]\n  dead:\n    servers: [127.0.0.1:1]\n"
           "routes:\n  - path: /dead\n    upstream: dead\n  - upstream: ok\n",
           top, T.be[0].port);
  cr_assert_eq(h_write_file(T.dir, "lbproxy.yaml", yaml, T.px.config, sizeof(T.px.config)), 0);
  argv[2] = T.px.config;
  {
    char log[600]; /* h_spawn clears T.px.proc, log path included, before it reads it */
    cr_assert_lt(snprintf(log, sizeof(log), "%s/lbproxy.log", T.dir), (int)sizeof(log));
    cr_assert_eq(h_spawn(&T.px.proc, argv, log), 0);
  }
  T.started = 1;
  cr_assert_gt(h_wait_line(path, "ready listen=", 0, 30000, line, sizeof(line)), 0, "no ready");
  {
    char v[128];
    cr_assert_eq(h_line_field(line, "listen", v, sizeof(v)), 0);
    T.px.port = (uint16_t)atoi(strrchr(v, ':') + 1);
  }
  cr_assert_eq(rename(path, moved), 0);
  cr_assert_eq(kill(T.px.proc.pid, SIGUSR1), 0);
  cr_assert_gt(h_wait_line(path, "master info: reopen: ", 0, 10000, NULL, 0), 0, "master");
  cr_assert_gt(h_wait_line(path, "worker 1 info: error log reopened", 0, 10000, NULL, 0), 0);
  cr_assert_eq(it_get("/dead", &R), 0);
  cr_assert_eq(R.status, 502);
  cr_assert_gt(h_wait_line(path, "worker 1 warn: upstream 127.0.0.1:1", 0, 10000, NULL, 0), 0,
               "the worker still writes to the old file");
  cr_assert_eq(h_count_lines(moved, "upstream 127.0.0.1:1"), 0, "a worker wrote to the old file");
  cr_assert_eq(h_count_lines(moved, "reopen: "), 0, "the master wrote to the old file");
  /* it_stop checks this log */
  cr_assert_lt(snprintf(T.px.proc.log, sizeof(T.px.proc.log), "%s", path),
               (int)sizeof(T.px.proc.log));
  it_stop();
}

/* ---- binary upgrade ---- */

static void copy_file(const char *from, const char *to) {
  char buf[65536];
  int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0755);
  ssize_t n;

  cr_assert(in >= 0 && out >= 0);
  while ((n = read(in, buf, sizeof(buf))) > 0)
    cr_assert_eq(write(out, buf, (size_t)n), n);
  close(in);
  close(out);
}

/* Starts lbproxy from a copy of the binary in the test's directory, with a pid file. */
static void start_copied(const char *dispatch, char *bin, size_t cap, char *pidfile, size_t pcap) {
  char yaml[8192], top[800], line[1024], v[128];
  const char *argv[] = {NULL, "-c", NULL, NULL};

  memset(&T, 0, sizeof(T));
  cr_assert_eq(h_tmpdir(T.dir, sizeof(T.dir)), 0);
  for (int i = 0; i < 2; i++) {
    char name[8];
    snprintf(name, sizeof(name), "b%d", i + 1);
    cr_assert_eq(h_backend_start(&T.be[i], T.dir, name, NULL), 0);
    T.nbe = i + 1;
  }
  T.workers = 2;
  T.dispatch = dispatch;
  snprintf(bin, cap, "%s/lbproxy", T.dir);
  snprintf(pidfile, pcap, "%s/lbproxy.pid", T.dir);
  copy_file(LBP_PROXY_BIN, bin);
  snprintf(top, sizeof(top), "pid_file: %s\ndebug_header: true\n", pidfile);
  it_yaml(yaml, sizeof(yaml), dispatch, 2, top);
  cr_assert_eq(h_write_file(T.dir, "lbproxy.yaml", yaml, T.px.config, sizeof(T.px.config)), 0);
  argv[0] = bin;
  argv[2] = T.px.config;
  {
    char log[600]; /* h_spawn clears T.px.proc, log path included, before it reads it */
    cr_assert_lt(snprintf(log, sizeof(log), "%s/lbproxy.log", T.dir), (int)sizeof(log));
    cr_assert_eq(h_spawn(&T.px.proc, argv, log), 0);
  }
  T.started = 1;
  cr_assert_gt(h_wait_line(T.px.proc.log, "ready listen=", 0, 30000, line, sizeof(line)), 0);
  cr_assert_eq(h_line_field(line, "listen", v, sizeof(v)), 0);
  T.px.port = (uint16_t)atoi(strrchr(v, ':') + 1);
}

IT_EACH_STRATEGY(stability, a_binary_upgrade_under_load_loses_no_request) {
  char bin[600], pidfile[600];
  struct load ka, nc;
  struct h_proc newm;
  long oldpid, newpid;
  int status;

  start_copied(dispatch, bin, sizeof(bin), pidfile, sizeof(pidfile));
  cr_assert_eq(pidfile_read_pid(pidfile, &oldpid), 0);
  cr_assert_eq(oldpid, T.px.proc.pid);
  start_load(&ka, 1, 2, NULL);
  start_load(&nc, 0, 2, NULL);
  /* The binary on disk is replaced (by a copy: a new inode), as a package upgrade does. */
  cr_assert_eq(unlink(bin), 0);
  copy_file(LBP_PROXY_BIN, bin);
  cr_assert_eq(kill(T.px.proc.pid, SIGUSR2), 0);
  /* The old master hands over and exits 0 by itself. */
  for (int64_t deadline = h_now_ms() + 40000; !h_exited(&T.px.proc);) {
    cr_assert_lt(h_now_ms(), deadline, "the old master never left");
    poll(NULL, 0, 10);
  }
  status = T.px.proc.status;
  if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0))
    it_dump(T.px.proc.log);
  cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s: old master status %#x", dispatch,
            status);
  cr_assert_gt(it_wait_log("the previous master is gone", 0, 10000), 0);
  for (int64_t deadline = h_now_ms() + 10000;
       pidfile_read_pid(pidfile, &newpid) != 0 || newpid == oldpid;) {
    cr_assert_lt(h_now_ms(), deadline, "the new master never wrote the pid file");
    poll(NULL, 0, 10);
  }
  cr_assert(load_wait(&nc, 200, 20000));
  stop_loads_expect_nothing_lost(&ka, &nc);
  /* The new master is in charge: stopping it ends everything. */
  memset(&newm, 0, sizeof(newm));
  cr_assert_eq(kill((pid_t)newpid, SIGTERM), 0);
  for (int64_t deadline = h_now_ms() + 20000; kill((pid_t)newpid, 0) == 0;) {
    cr_assert_lt(h_now_ms(), deadline, "the new master did not stop");
    poll(NULL, 0, 10);
  }
  T.started = 0;
  it_assert_log_clean(T.px.proc.log);
  it_stop();
}

IT_TEST(stability, a_binary_upgrade_to_a_binary_that_fails_rolls_back) {
  char bin[600], pidfile[600], line[1024];
  long pid;

  start_copied("handoff", bin, sizeof(bin), pidfile, sizeof(pidfile));
  cr_assert_eq(unlink(bin), 0);
  cr_assert_eq(
      h_write_file(T.dir, "lbproxy", "#!/bin/sh\necho broken build >&2\nexit 1\n", NULL, 0), 0);
  cr_assert_eq(chmod(bin, 0755), 0);
  cr_assert_eq(kill(T.px.proc.pid, SIGUSR2), 0);
  cr_assert_gt(h_wait_line(T.px.proc.log, "upgrade-failed", 0, 20000, line, sizeof(line)), 0);
  cr_assert(strstr(line, "exited with code 1") != NULL, "%s", line);
  cr_assert(strstr(line, "this master keeps serving") != NULL, "%s", line);
  for (int i = 0; i < 10; i++) {
    cr_assert_eq(it_get("/", &R), 0);
    cr_assert_eq(R.status, 200);
  }
  cr_assert_eq(pidfile_read_pid(pidfile, &pid), 0);
  cr_assert_eq(pid, T.px.proc.pid);
  it_stop();
}

/* ---- one address, one lbproxy ---- */

IT_EACH_STRATEGY(stability, a_second_lbproxy_on_the_same_port_refuses_to_start) {
  char yaml[1024], path[700], log[700], line[1024];
  const char *argv[] = {LBP_PROXY_BIN, "-c", NULL, NULL};
  struct h_proc second;
  int status;

  it_start(dispatch, 2, 1, NULL);
  snprintf(yaml, sizeof(yaml),
           "listen: 127.0.0.1:%u\nworkers: 2\ndispatch: %s\n"
           "upstreams:\n  a:\n    servers: [127.0.0.1:%u]\n",
           T.px.port, dispatch, T.be[0].port);
  cr_assert_eq(h_write_file(T.dir, "second.yaml", yaml, path, sizeof(path)), 0);
  argv[2] = path;
  snprintf(log, sizeof(log), "%s/second.log", T.dir);
  cr_assert_eq(h_spawn(&second, argv, log), 0);
  for (int64_t deadline = h_now_ms() + 20000; !h_exited(&second);) {
    if (h_now_ms() > deadline)
      break;
    poll(NULL, 0, 10);
  }
  status = second.pid > 0 ? h_stop(&second, SIGKILL, 100) : second.status;
  cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 1, "second lbproxy status %#x", status);
  cr_assert_gt(h_wait_line(log, "address already in use", 0, 1000, line, sizeof(line)), 0);
  /* The first one still has every connection. */
  for (int i = 0; i < 20; i++) {
    cr_assert_eq(it_get("/", &R), 0);
    cr_assert_eq(R.status, 200);
  }
  it_stop();
}

/* ---- a slot without a worker loses nothing ---- */

IT_TEST(stability, reuseport_with_a_crash_looping_slot_answers_every_connection_at_once) {
  setenv("LBPROXY_TEST_CRASH", "2", 1);
  it_start("reuseport", 3, 1, "restart:\n  delay: 20ms\n  max_exits: 100\n");
  unsetenv("LBPROXY_TEST_CRASH");
  /* Each new connection hashes to one of three sockets; the crash-looping slot's is accepted
   * on by the master meanwhile. Each must be answered well within 2 s. */
  for (int i = 0; i < 60; i++) {
    int64_t t0 = h_now_ms();
    cr_assert_eq(it_get("/", &R), 0, "connection %d got no answer", i);
    cr_assert_eq(R.status, 200);
    cr_assert_lt(h_now_ms() - t0, 2000, "connection %d waited %lld ms", i,
                 (long long)(h_now_ms() - t0));
  }
  it_stop();
}

/* ---- workers never resolve names ---- */

/* A private mount namespace with our own /etc/hosts (root only). */
static int private_hosts(const char *hosts) {
  if (geteuid() != 0 || unshare(CLONE_NEWNS) != 0 ||
      mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
      mount(hosts, "/etc/hosts", NULL, MS_BIND, NULL) != 0)
    return -1;
  return 0;
}

IT_TEST(stability, a_restarted_worker_does_not_resolve_names_again) {
  char hosts[700], top[64], yaml[1024], path[700];
  pid_t w;

  memset(&T, 0, sizeof(T));
  cr_assert_eq(h_tmpdir(T.dir, sizeof(T.dir)), 0);
  cr_assert_eq(h_write_file(T.dir, "hosts", "127.0.0.1 lbp-backend-a.test\n", hosts, sizeof(hosts)),
               0);
  if (private_hosts(hosts) != 0)
    cr_skip_test("needs root to give the test its own /etc/hosts");
  cr_assert_eq(h_backend_start(&T.be[0], T.dir, "b1", NULL), 0);
  T.nbe = 1;
  (void)top;
  snprintf(yaml, sizeof(yaml),
           "listen: 127.0.0.1:0\nworkers: 1\nupstreams:\n  a:\n"
           "    resolve_interval: 0\n    servers: [lbp-backend-a.test:%u]\n",
           T.be[0].port);
  cr_assert_eq(h_proxy_start(&T.px, T.dir, yaml), 0);
  T.started = 1;
  cr_assert_eq(it_get("/", &R), 0);
  cr_assert_eq(R.status, 200);
  /* The name stops resolving (the file is changed in place: it is what /etc/hosts shows). */
  cr_assert_eq(h_write_file(T.dir, "hosts", "# nothing\n", path, sizeof(path)), 0);
  w = it_worker_pid(1);
  cr_assert_eq(kill(w, SIGKILL), 0);
  for (int64_t deadline = h_now_ms() + 20000; it_worker_pid(1) == w || it_worker_pid(1) <= 0;) {
    cr_assert_lt(h_now_ms(), deadline, "the worker was not replaced");
    poll(NULL, 0, 10);
  }
  for (int i = 0; i < 5; i++) {
    cr_assert_eq(it_get("/", &R), 0);
    cr_assert_eq(R.status, 200, "the new worker cannot reach the server by its old address");
  }
  cr_assert_eq(h_count_lines(T.px.proc.log, "errored"), 0);
  it_stop();
}

/* ---- regressions from the review ---- */

IT_TEST(stability, a_worker_that_says_bye_at_start_up_is_backed_off_and_errored_like_a_crash) {
  char line[1024];

  setenv("LBPROXY_TEST_CRASH", "2:bye", 1);
  it_start("handoff", 2, 1,
           "restart:\n  delay: 50ms\n  max_delay: 400ms\n  max_exits: 3\n  window: 1m\n");
  unsetenv("LBPROXY_TEST_CRASH");
  cr_assert_gt(h_wait_line(T.px.proc.log, "worker 2 errored", 0, 30000, line, sizeof(line)), 0);
  cr_assert(strstr(line, "test hook: a fatal error") != NULL, "%s", line);
  cr_assert_gt(it_wait_log("restart in 100 ms", 0, 1000), 0, "no backoff");
  cr_assert_eq(h_count_lines(T.px.proc.log, "worker 2 fork"), 4, "3 restarts, then errored");
  cr_assert_eq(it_get("/", &R), 0);
  cr_assert_eq(R.status, 200);
  it_stop();
}

IT_TEST(stability, a_reload_whose_new_worker_says_bye_fails_at_once_with_its_reason) {
  char yaml[8192], line[1024];
  int64_t t0;

  setenv("LBPROXY_TEST_CRASH", "1@2:bye", 1);
  it_start("handoff", 2, 1, NULL);
  unsetenv("LBPROXY_TEST_CRASH");
  it_yaml(yaml, sizeof(yaml), "handoff", 2, NULL);
  cr_assert_eq(h_write_file(T.dir, "lbproxy.yaml", yaml, NULL, 0), 0);
  t0 = h_now_ms();
  cr_assert_eq(kill(T.px.proc.pid, SIGHUP), 0);
  cr_assert_gt(h_wait_line(T.px.proc.log, "reload-failed", 0, 30000, line, sizeof(line)), 0);
  cr_assert_lt(h_now_ms() - t0, 10000, "the reload waited for its start timeout");
  cr_assert(strstr(line, "test hook: a fatal error") != NULL, "%s", line);
  cr_assert_eq(it_get("/", &R), 0);
  cr_assert_eq(R.status, 200);
  it_stop();
}

/* Listening sockets (inodes of state LISTEN in /proc/net/tcp*) among the fds of `pid`. */
static int listening_fds(pid_t pid) {
  static const char *const tables[] = {"/proc/net/tcp", "/proc/net/tcp6"};
  unsigned long inodes[256];
  int ninodes = 0, n = 0;
  char path[64], link[64], line[512];
  struct dirent *e;
  DIR *d;

  for (int t = 0; t < 2; t++) {
    FILE *f = fopen(tables[t], "r");
    while (f != NULL && fgets(line, sizeof(line), f) != NULL && ninodes < 256) {
      unsigned st;
      unsigned long ino;
      if (sscanf(line, "%*d: %*s %*s %x %*s %*s %*s %*s %*s %lu", &st, &ino) == 2 && st == 0x0A)
        inodes[ninodes++] = ino;
    }
    if (f != NULL)
      fclose(f);
  }
  snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
  if ((d = opendir(path)) == NULL)
    return -1;
  while ((e = readdir(d)) != NULL) {
    char fdpath[400];
    ssize_t k;
    unsigned long ino;
    snprintf(fdpath, sizeof(fdpath), "%s/%s", path, e->d_name);
    if ((k = readlink(fdpath, link, sizeof(link) - 1)) <= 0)
      continue;
    link[k] = '\0';
    if (sscanf(link, "socket:[%lu]", &ino) == 1)
      for (int i = 0; i < ninodes; i++)
        n += inodes[i] == ino;
  }
  closedir(d);
  return n;
}

IT_TEST(stability, after_a_binary_upgrade_each_worker_holds_only_its_own_socket) {
  char bin[600], pidfile[600], needle[64];
  long newpid = 0;
  pid_t kids[16];
  int n, zombies;

  start_copied("reuseport", bin, sizeof(bin), pidfile, sizeof(pidfile));
  cr_assert_eq(kill(T.px.proc.pid, SIGUSR2), 0);
  for (int64_t deadline = h_now_ms() + 40000; !h_exited(&T.px.proc);) {
    cr_assert_lt(h_now_ms(), deadline, "the old master never left");
    poll(NULL, 0, 10);
  }
  for (int64_t deadline = h_now_ms() + 10000;
       pidfile_read_pid(pidfile, &newpid) != 0 || newpid == T.px.proc.pid || newpid <= 0;) {
    cr_assert_lt(h_now_ms(), deadline, "no new master in the pid file");
    poll(NULL, 0, 10);
  }
  snprintf(needle, sizeof(needle), "lbproxy[%ld] master info: ready", newpid);
  cr_assert_gt(it_wait_log(needle, 0, 10000), 0);
  n = children_of((pid_t)newpid, kids, 16, &zombies);
  cr_assert_eq(n, 2);
  for (int i = 0; i < n; i++)
    cr_assert_eq(listening_fds(kids[i]), 1, "worker %d holds %d listening sockets", (int)kids[i],
                 listening_fds(kids[i]));
  kill((pid_t)newpid, SIGTERM);
  for (int64_t deadline = h_now_ms() + 20000; kill((pid_t)newpid, 0) == 0;) {
    cr_assert_lt(h_now_ms(), deadline, "the new master did not stop");
    poll(NULL, 0, 10);
  }
  T.started = 0;
  it_stop();
}

IT_TEST(stability, a_new_master_lost_during_the_handover_is_replaced_from_memory) {
  char bin[600], pidfile[600], line[1024];
  struct slow_req q = {0};
  pthread_t th;
  long newpid = 0;

  start_copied("handoff", bin, sizeof(bin), pidfile, sizeof(pidfile));
  /* A slow request keeps an old worker (and so the old master) in the handover a while. */
  q.fd = hc_connect(T.px.port, NULL);
  cr_assert_geq(q.fd, 0);
  cr_assert_eq(hc_send_all(q.fd, "GET /delay?ms=3000 HTTP/1.1\r\nHost: t\r\n\r\n", 40), 0);
  cr_assert_eq(pthread_create(&th, NULL, read_slow, &q), 0);
  {
    uint64_t one = 1, acc[IT_MAX_WORKERS], act[IT_MAX_WORKERS];
    cr_assert(it_wait_stats(0, 10000, active_at_least, &one, acc, act));
  }
  cr_assert_eq(kill(T.px.proc.pid, SIGUSR2), 0);
  cr_assert_gt(h_wait_line(T.px.proc.log, "is ready: handing over", 0, 30000, line, sizeof(line)),
               0);
  cr_assert_eq(sscanf(strstr(line, "pid=") + 4, "%ld", &newpid), 1);
  /* The file now says what only the new binary would understand: the rollback must not read
   * it, but start workers again from what the old master already validated. */
  cr_assert_eq(h_write_file(T.dir, "lbproxy.yaml", "bogus_key: 1\n", NULL, 0), 0);
  cr_assert_eq(kill((pid_t)newpid, SIGKILL), 0);
  cr_assert_gt(it_wait_log("upgrade-failed", 0, 20000), 0);
  cr_assert_gt(it_wait_log("generation: 2 active", 0, 30000), 0, "no workers again");
  for (int i = 0; i < 5; i++) {
    cr_assert_eq(it_get("/", &R), 0);
    cr_assert_eq(R.status, 200);
  }
  pthread_join(th, NULL);
  cr_assert_eq(q.rc, 0);
  cr_assert_eq(q.status, 200);
  close(q.fd);
  it_stop();
}

IT_TEST(stability, a_draining_worker_that_never_finishes_is_killed_after_the_deadline) {
  char yaml[8192];
  pid_t w1;

  it_start("handoff", 1, 1, "shutdown_timeout: 500ms\n");
  w1 = it_worker_pid(1);
  it_sigstop(w1);
  it_yaml(yaml, sizeof(yaml), "handoff", 1, "shutdown_timeout: 500ms\n");
  cr_assert_gt(it_reload(yaml, 2, 30000), 0);
  cr_assert_gt(it_wait_log("still draining after", 0, 20000), 0, "the stuck worker was left");
  cr_assert_gt(it_wait_log("generation: 1 retired", 0, 20000), 0);
  it_stop();
}

IT_TEST(stability, quit_during_a_reload_exits_cleanly) {
  char yaml[8192];
  int status;

  it_start("reuseport", 2, 1, NULL);
  it_yaml(yaml, sizeof(yaml), "reuseport", 4, NULL);
  cr_assert_eq(h_write_file(T.dir, "lbproxy.yaml", yaml, NULL, 0), 0);
  cr_assert_eq(kill(T.px.proc.pid, SIGHUP), 0);
  cr_assert_eq(kill(T.px.proc.pid, SIGQUIT), 0);
  status = h_stop(&T.px.proc, 0, 30000);
  T.started = 0;
  cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %#x", status);
  it_assert_log_clean(T.px.proc.log);
  it_stop();
}

IT_TEST(stability, a_stop_right_after_a_drain_with_handovers_in_flight_is_clean) {
  enum { N = 600 };
  static int fds[N];
  char yaml[8192];
  int status;
  long from;

  it_start("handoff", 1, 1, NULL);
  for (int i = 0; i < N; i++) {
    fds[i] = hc_connect(T.px.port, NULL);
    cr_assert_geq(fds[i], 0);
    cr_assert_eq(hc_roundtrip(fds[i], "GET / HTTP/1.1\r\nHost: t\r\n\r\n", &R), 0);
  }
  it_yaml(yaml, sizeof(yaml), "handoff", 1, NULL);
  from = it_log_size();
  cr_assert_eq(h_write_file(T.dir, "lbproxy.yaml", yaml, NULL, 0), 0);
  cr_assert_eq(kill(T.px.proc.pid, SIGHUP), 0);
  /* The old worker is handing 600 connections back: stop everything in the middle of it. */
  cr_assert_gt(it_wait_log("generation: 2 active", from, 30000), 0);
  cr_assert_eq(kill(T.px.proc.pid, SIGTERM), 0);
  status = h_stop(&T.px.proc, 0, 30000);
  T.started = 0;
  cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %#x", status);
  cr_assert_eq(h_count_lines(T.px.proc.log, "signal=11"), 0, "a worker crashed");
  cr_assert_eq(h_count_lines(T.px.proc.log, "signal=6"), 0, "a worker aborted");
  it_assert_log_clean(T.px.proc.log);
  for (int i = 0; i < N; i++)
    close(fds[i]);
  it_stop();
}
