/* Upstream health and discovery end to end: passive and active checks, retries, 503, DNS. */
#include "itest.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

static struct hc_resp R;

/* Attempts the data plane sent to server 127.0.0.1:port of upstream app, all workers and
 * generations (the admin API's counter, which never goes backwards). */
static long attempts(uint16_t port) {
  char needle[128], *text, *p;
  long n = 0;
  int status;

  snprintf(needle, sizeof(needle),
           "lbproxy_server_requests_total{upstream=\"app\",server=\"127.0.0.1:%u\"} ", port);
  text = it_admin_get("/metrics", &status);
  cr_assert_not_null(text);
  cr_assert_eq(status, 200);
  if ((p = strstr(text, needle)) != NULL)
    n = strtol(p + strlen(needle), NULL, 10);
  free(text);
  return n;
}

/* ---- a client load running beside the test ---- */

struct load {
  pthread_t th;
  atomic_int stop;
  atomic_long done, errors;
  uint16_t port;
  char last_error[128];
};

static void *load_main(void *arg) {
  struct load *l = arg;
  static struct hc_resp r;

  while (!atomic_load(&l->stop)) {
    int rc = hc_get(l->port, "/", &r);
    if (rc != 0 || r.status != 200) {
      snprintf(l->last_error, sizeof(l->last_error), "rc=%d status=%d", rc, r.status);
      atomic_fetch_add(&l->errors, 1);
    }
    atomic_fetch_add(&l->done, 1);
  }
  return NULL;
}

static void load_start(struct load *l) {
  memset(l, 0, sizeof(*l));
  l->port = T.px.port;
  cr_assert_eq(pthread_create(&l->th, NULL, load_main, l), 0);
}

/* Waits until the load made `n` more requests (bounded). */
static void load_wait(struct load *l, long n) {
  long target = atomic_load(&l->done) + n;
  for (int64_t deadline = h_now_ms() + 30000; atomic_load(&l->done) < target;) {
    cr_assert_lt(h_now_ms(), deadline, "the load stalled");
    poll(NULL, 0, 5);
  }
}

static long load_stop(struct load *l) {
  atomic_store(&l->stop, 1);
  pthread_join(l->th, NULL);
  return atomic_load(&l->errors);
}

/* ---- passive health ---- */

IT_TEST(health, a_dead_server_is_skipped_by_every_worker_after_max_fails) {
  long before;

  /* Port 1 refuses (nothing listens there as a rule on a test machine). */
  it_start_yaml("handoff", 2, 1,
                "upstreams:\n  app:\n    max_fails: 2\n    fail_timeout: 30s\n"
                "    servers: [127.0.0.1:1, 127.0.0.1:%1$u]\n");
  for (int i = 0; i < 8; i++) {
    cr_assert_eq(it_get("/", &R), 0);
    cr_assert_eq(R.status, 200, "request %d: %d (a retry hides the dead server)", i, R.status);
  }
  /* Each failure was a retried attempt; the master spread the first worker's verdict, so at
   * most max_fails per worker ever tried it, not one attempt per request. */
  cr_assert_gt(it_wait_log("server 127.0.0.1:1: failing", 0, 5000), 0);
  cr_assert_geq(attempts(1), 2, "max_fails failed attempts make it failing"); /* counted */
  cr_assert_leq(attempts(1), 2 * 2 - 1);
  before = attempts(1);
  for (int i = 0; i < 20; i++) {
    cr_assert_eq(it_get("/", &R), 0);
    cr_assert_eq(R.status, 200);
  }
  cr_assert_eq(attempts(1), before, "a worker still tries the failing server");
  it_stop();
}

/* ---- active checks ---- */

#define CHECKS "    health_check: {interval: 200ms, timeout: 150ms, fall: 2, rise: 2, jitter: 0}\n"

IT_TEST(health, a_stopped_server_is_taken_out_without_client_errors_and_comes_back) {
  char down[128], up[128], extra_listen[64];
  struct load l;
  long from, before;
  int64_t t0, took;
  uint16_t port;

  it_start_yaml("handoff", 2, 3,
                "upstreams:\n  app:\n" CHECKS
                "    servers: [127.0.0.1:%1$u, 127.0.0.1:%2$u, 127.0.0.1:%3$u]\n");
  port = T.be[1].port;
  snprintf(down, sizeof(down), "server 127.0.0.1:%u: down by the active check", port);
  snprintf(up, sizeof(up), "server 127.0.0.1:%u: up by the active check", port);
  load_start(&l);
  load_wait(&l, 30);
  t0 = h_now_ms();
  h_backend_stop(&T.be[1]);
  /* Passive health (each worker, then every worker) may skip it first; the checks take it out
   * for good. The retries hide the failed attempts from the clients. */
  cr_assert_gt((from = it_wait_log(down, 0, 10000)), 0, "never marked down");
  took = h_now_ms() - t0;
  /* fall x interval, plus up to one interval until the first failing check, plus slack for a
   * loaded machine. */
  cr_assert_lt(took, 2 * 200 + 200 + 1500, "down after %lld ms", (long long)took);
  load_wait(&l, 5); /* a few rounds: every worker has applied the state by now */
  before = attempts(port);
  load_wait(&l, 50);
  cr_assert_eq(attempts(port), before, "requests still reach the stopped server");
  /* Back on the same port: up after rise passes. */
  snprintf(extra_listen, sizeof(extra_listen), "127.0.0.1:%u", port);
  const char *const extra[] = {"--listen", extra_listen, NULL};
  cr_assert_eq(h_backend_start(&T.be[1], T.dir, "b2", extra), 0);
  t0 = h_now_ms();
  cr_assert_gt(it_wait_log(up, from, 10000), 0, "never back up");
  took = h_now_ms() - t0;
  cr_assert_lt(took, 2 * 200 + 200 + 1500, "up after %lld ms", (long long)took);
  cr_assert_eq(load_stop(&l), 0, "clients saw errors (%s)", l.last_error);
  /* Traffic returns to it. */
  int seen = 0;
  for (int i = 0; i < 12 && !seen; i++) {
    char v[16];
    cr_assert_eq(it_get("/", &R), 0);
    cr_assert_eq(R.status, 200);
    seen = hc_header(&R, "X-Backend", v, sizeof(v)) == 0 && strcmp(v, "b2") == 0;
  }
  cr_assert(seen, "b2 gets no traffic after coming back");
  it_stop();
}

/* A server that accepts connections and never answers: the kernel completes the handshake,
 * nothing reads. The test's thread accepts and reads, counting proxied requests apart from
 * health checks. */
struct blackhole {
  int lfd;
  uint16_t port;
  pthread_t th;
  atomic_int stop;
  atomic_int checks, requests;
};

static void *blackhole_main(void *arg) {
  struct blackhole *b = arg;
  int fds[256], n = 0;

  while (!atomic_load(&b->stop)) {
    struct pollfd p = {.fd = b->lfd, .events = POLLIN};
    char buf[2048];
    if (poll(&p, 1, 20) <= 0)
      continue;
    int fd = accept(b->lfd, NULL, NULL);
    if (fd < 0)
      continue;
    /* Read what the client sends (within 100 ms), never answer. */
    struct pollfd q = {.fd = fd, .events = POLLIN};
    ssize_t got = poll(&q, 1, 100) > 0 ? read(fd, buf, sizeof(buf) - 1) : 0;
    if (got > 0) {
      buf[got] = '\0';
      if (strstr(buf, "lbproxy-health-check") != NULL)
        atomic_fetch_add(&b->checks, 1);
      else
        atomic_fetch_add(&b->requests, 1);
    }
    if (n < 256)
      fds[n++] = fd; /* kept open: a blackhole never closes either */
    else
      close(fd);
  }
  for (int i = 0; i < n; i++)
    close(fds[i]);
  return NULL;
}

static void blackhole_start(struct blackhole *b) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t alen = sizeof(a);

  memset(b, 0, sizeof(*b));
  b->lfd = socket(AF_INET, SOCK_STREAM, 0);
  cr_assert_geq(b->lfd, 0);
  cr_assert_eq(bind(b->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
  cr_assert_eq(listen(b->lfd, 128), 0);
  cr_assert_eq(getsockname(b->lfd, (struct sockaddr *)&a, &alen), 0);
  b->port = ntohs(a.sin_port);
  cr_assert_eq(pthread_create(&b->th, NULL, blackhole_main, b), 0);
}

static void blackhole_stop(struct blackhole *b) {
  atomic_store(&b->stop, 1);
  pthread_join(b->th, NULL);
  close(b->lfd);
}

IT_TEST(health, a_blackholed_server_is_marked_down_by_the_http_check) {
  struct blackhole b;
  char yaml[1024], down[128];
  int before;

  blackhole_start(&b);
  snprintf(yaml, sizeof(yaml),
           "upstreams:\n  app:\n    max_fails: 0\n"
           "    health_check: {type: http, path: /, interval: 200ms, timeout: 100ms, fall: 2, "
           "jitter: 0}\n"
           "    servers: [127.0.0.1:%%1$u, 127.0.0.1:%u]\n",
           b.port);
  it_start_yaml("handoff", 2, 1, yaml);
  snprintf(down, sizeof(down), "server 127.0.0.1:%u: down by the active check", b.port);
  cr_assert_gt(it_wait_log(down, 0, 10000), 0, "the blackhole was never marked down");
  cr_assert_gt(it_wait_log("timeout after", 0, 1000), 0, "the check did not time out");
  before = atomic_load(&b.requests);
  for (int i = 0; i < 20; i++) {
    cr_assert_eq(it_get("/", &R), 0);
    cr_assert_eq(R.status, 200);
  }
  cr_assert_eq(atomic_load(&b.requests), before, "requests still go to the blackhole");
  cr_assert_geq(atomic_load(&b.checks), 2);
  blackhole_stop(&b);
  it_stop();
}

/* ---- retries ---- */

/* Connections backend i accepted so far, not counting the one that asks. Each attempt on a
 * /drop server is a new connection (the server closes it), so this counts attempts. */
static long be_conns(int i) {
  long n = -1;

  cr_assert_eq(hc_get(T.be[i].port, "/conns", &R), 0);
  cr_assert_eq(sscanf(R.body, "conns=%ld", &n), 1, "%s", R.body);
  return n - 1;
}

IT_TEST(health, a_post_whose_body_was_sent_is_not_retried_but_a_get_is) {
  long a0, b0, a1, b1;

  /* Both servers read the whole request and close without answering (/drop). */
  it_start_yaml("handoff", 1, 2,
                "upstreams:\n  app:\n    retries: 3\n    max_fails: 0\n"
                "    servers: [127.0.0.1:%1$u, 127.0.0.1:%2$u]\n");
  a0 = be_conns(0);
  b0 = be_conns(1);
  int fd = hc_connect(T.px.port, NULL);
  cr_assert_geq(fd, 0);
  cr_assert_eq(
      hc_roundtrip(fd, "POST /drop HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello", &R), 0);
  cr_assert_eq(R.status, 502);
  close(fd);
  /* Our own /conns requests count too: one each since a0 and b0. */
  a1 = be_conns(0) - 1;
  b1 = be_conns(1) - 1;
  cr_assert_eq((a1 - a0) + (b1 - b0), 1, "the POST was sent again after its body (%ld + %ld)",
               a1 - a0, b1 - b0);
  cr_assert_eq(it_get("/drop", &R), 0);
  cr_assert_eq(R.status, 502);
  /* The GET went to both servers (never the same one twice: two servers, two attempts). */
  cr_assert_eq(be_conns(0) - 1 - a1 - 1, 1);
  cr_assert_eq(be_conns(1) - 1 - b1 - 1, 1);
  it_stop();
}

/* ---- nothing usable ---- */

IT_TEST(health, no_usable_server_answers_503_with_retry_after) {
  char v[32];

  /* The check asks for a 503: the server is up, but its check fails. */
  it_start_yaml("handoff", 2, 1,
                "upstreams:\n  app:\n"
                "    health_check: {type: http, path: \"/status?code=503\", interval: 100ms, "
                "timeout: 80ms, fall: 1, jitter: 0}\n"
                "    servers: [127.0.0.1:%1$u]\n");
  cr_assert_gt(it_wait_log("down by the active check", 0, 10000), 0);
  cr_assert_gt(it_wait_log("http status 503", 0, 1000), 0);
  cr_assert_eq(it_get("/", &R), 0);
  cr_assert_eq(R.status, 503);
  cr_assert_eq(hc_header(&R, "Retry-After", v, sizeof(v)), 0, "no Retry-After");
  cr_assert_gt(atoi(v), 0);
  it_stop();
}

IT_TEST(health, panic_mode_tries_every_server_when_none_is_usable) {
  it_start_yaml("handoff", 2, 1,
                "upstreams:\n  app:\n    panic: true\n"
                "    health_check: {type: http, path: \"/status?code=503\", interval: 100ms, "
                "timeout: 80ms, fall: 1, jitter: 0}\n"
                "    servers: [127.0.0.1:%1$u]\n");
  cr_assert_gt(it_wait_log("down by the active check", 0, 10000), 0);
  for (int i = 0; i < 4; i++) {
    cr_assert_eq(it_get("/", &R), 0);
    cr_assert_eq(R.status, 200, "panic: the down server is tried anyway");
  }
  it_stop();
}

/* ---- state across worker restarts and reloads ---- */

IT_TEST(health, a_new_worker_and_a_reload_keep_a_server_down) {
  char yaml[2048], down[128];
  long before;
  pid_t w;

  it_start_yaml("handoff", 1, 2,
                "upstreams:\n  app:\n    max_fails: 0\n"
                "    health_check: {interval: 200ms, timeout: 150ms, fall: 1, rise: 100, "
                "jitter: 0}\n"
                "    servers: [127.0.0.1:%1$u, 127.0.0.1:%2$u]\n");
  snprintf(down, sizeof(down), "server 127.0.0.1:%u: down by the active check", T.be[1].port);
  h_backend_stop(&T.be[1]);
  cr_assert_gt(it_wait_log(down, 0, 10000), 0);
  cr_assert_eq(it_get("/", &R), 0); /* the worker has the state (the STATES frame came first) */
  before = attempts(T.be[1].port);
  /* A replacement worker gets the state with its config: not one attempt on the down server. */
  w = it_worker_pid(1);
  cr_assert_eq(kill(w, SIGKILL), 0);
  for (int64_t deadline = h_now_ms() + 20000; it_worker_pid(1) == w || it_worker_pid(1) <= 0;) {
    cr_assert_lt(h_now_ms(), deadline, "the worker was not replaced");
    poll(NULL, 0, 10);
  }
  for (int i = 0; i < 10; i++) {
    cr_assert_eq(it_get("/", &R), 0);
    cr_assert_eq(R.status, 200);
  }
  cr_assert_eq(attempts(T.be[1].port), before, "the new worker tried the down server");
  /* A reload that keeps the server keeps its state. */
  snprintf(yaml, sizeof(yaml),
           "listen: 127.0.0.1:%u\nworkers: 1\ndispatch: handoff\nupstreams:\n  app:\n"
           "    max_fails: 0\n"
           "    health_check: {interval: 200ms, timeout: 150ms, fall: 1, rise: 100, jitter: 0}\n"
           "    servers: [127.0.0.1:%u, 127.0.0.1:%u]\n",
           T.px.port, T.be[0].port, T.be[1].port);
  long rl = it_reload(yaml, 2, 20000);
  if (rl <= 0)
    it_dump(T.px.proc.log);
  cr_assert_gt(rl, 0);
  for (int i = 0; i < 10; i++) {
    cr_assert_eq(it_get("/", &R), 0);
    cr_assert_eq(R.status, 200);
  }
  cr_assert_eq(attempts(T.be[1].port), before, "the reloaded generation tried the down server");
  it_stop();
}

/* ---- DNS ---- */

static int private_hosts(const char *hosts) {
  if (geteuid() != 0 || unshare(CLONE_NEWNS) != 0 ||
      mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
      mount(hosts, "/etc/hosts", NULL, MS_BIND, NULL) != 0)
    return -1;
  return 0;
}

/* Rewrites the bind-mounted hosts file in place (a rename would not show through the mount). */
static void hosts_set(const char *path, const char *text) {
  FILE *f = fopen(path, "r+");
  cr_assert_not_null(f);
  cr_assert_eq(ftruncate(fileno(f), 0), 0);
  cr_assert_eq(fputs(text, f) >= 0, 1);
  cr_assert_eq(fclose(f), 0);
}

/* Sends requests until each backend in want[0..n) answered, or the deadline. */
static int all_answer(const char *const *want, int n, int timeout_ms) {
  int seen[8] = {0}, left = n;
  char v[32];

  for (int64_t deadline = h_now_ms() + timeout_ms; left > 0 && h_now_ms() < deadline;) {
    if (it_get("/", &R) != 0 || R.status != 200 || hc_header(&R, "X-Backend", v, sizeof(v)) != 0)
      continue;
    for (int i = 0; i < n; i++)
      if (!seen[i] && strcmp(v, want[i]) == 0) {
        seen[i] = 1;
        left--;
      }
  }
  return left == 0;
}

/* Sends `n` requests; 1 if every one was answered 200 by a backend in want[0..nw). */
static int only_these(const char *const *want, int nw, int n) {
  char v[32];

  for (int k = 0; k < n; k++) {
    int ok = 0;
    if (it_get("/", &R) != 0 || R.status != 200 || hc_header(&R, "X-Backend", v, sizeof(v)) != 0)
      return 0;
    for (int i = 0; i < nw; i++)
      ok |= strcmp(v, want[i]) == 0;
    if (!ok)
      return 0;
  }
  return 1;
}

/* A test of host names: its own /etc/hosts (path in `hosts`), and n backends named names[i]
 * on one port at 127.0.0.2, .3, ... (all of 127/8 is loopback). The port, or a skipped test
 * where the mount namespace cannot be had. */
static uint16_t dns_setup(char *hosts, size_t cap, const char *const *names, int n) {
  char listen_at[64];
  uint16_t port = 0;

  memset(&T, 0, sizeof(T));
  cr_assert_eq(h_tmpdir(T.dir, sizeof(T.dir)), 0);
  cr_assert_eq(h_write_file(T.dir, "hosts", "127.0.0.1 localhost\n", hosts, cap), 0);
  if (private_hosts(hosts) != 0)
    cr_skip_test("needs root to give the test its own /etc/hosts");
  for (int i = 0; i < n; i++) {
    const char *extra[3] = {"--listen", listen_at, NULL};
    snprintf(listen_at, sizeof(listen_at), "127.0.0.%d:%u", i + 2, port);
    cr_assert_eq(h_backend_start(&T.be[i], T.dir, names[i], extra), 0, "backend %d", i);
    T.nbe = i + 1;
    port = T.be[i].port;
  }
  return port;
}

IT_TEST(health, a_host_name_is_re_resolved_and_each_address_is_a_server) {
  static const char *const names[] = {"d1", "d2", "d3", "d4", "d5"};
  char hosts[700], yaml[1024];
  uint16_t port = dns_setup(hosts, sizeof(hosts), names, 5); /* 127.0.0.2 .. 127.0.0.6 */

  hosts_set(hosts, "127.0.0.1 localhost\n127.0.0.2 web.test\n127.0.0.3 web.test\n"
                   "127.0.0.4 web.test\n");
  snprintf(yaml, sizeof(yaml),
           "listen: 127.0.0.1:0\nworkers: 2\ndispatch: handoff\nupstreams:\n  app:\n"
           "    resolve_interval: 200ms\n    servers: [web.test:%u]\n",
           port);
  cr_assert_eq(h_proxy_start(&T.px, T.dir, yaml), 0);
  T.started = 1;
  /* Ready means resolved: the three servers answer at once. */
  cr_assert(all_answer(names, 3, 10000), "3 addresses: not all got traffic");
  cr_assert(only_these(names, 3, 12));
  hosts_set(hosts, "127.0.0.1 localhost\n127.0.0.2 web.test\n127.0.0.3 web.test\n"
                   "127.0.0.4 web.test\n127.0.0.5 web.test\n127.0.0.6 web.test\n");
  cr_assert(all_answer(names, 5, 10000), "5 addresses: not all got traffic");
  hosts_set(hosts, "127.0.0.1 localhost\n127.0.0.5 web.test\n127.0.0.6 web.test\n");
  cr_assert_gt(it_wait_log("web.test resolves to 2 addresses", 0, 10000), 0);
  cr_assert(only_these(names + 3, 2, 20), "a removed address still gets traffic");
  cr_assert(all_answer(names + 3, 2, 10000));
  /* The name disappears: no server, 503 (not a crash, not the old addresses). */
  hosts_set(hosts, "127.0.0.1 localhost\n");
  cr_assert_gt(it_wait_log("web.test resolves to 0 addresses", 0, 10000), 0);
  cr_assert_eq(it_get("/", &R), 0);
  cr_assert_eq(R.status, 503);
  it_stop();
}

IT_TEST(health, a_drained_address_stays_drained_when_a_dns_answer_leaves_it_out_for_a_while) {
  static const char *const names[] = {"d1", "d2"};
  char hosts[700], yaml[1024], req[256], *body = NULL;
  uint16_t port = dns_setup(hosts, sizeof(hosts), names, 2);
  long from;

  hosts_set(hosts, "127.0.0.1 localhost\n127.0.0.2 web.test\n127.0.0.3 web.test\n");
  snprintf(yaml, sizeof(yaml),
           "listen: 127.0.0.1:0\nworkers: 2\ndispatch: handoff\nadmin:\n  listen: 127.0.0.1:0\n"
           "upstreams:\n  app:\n    resolve_interval: 100ms\n    servers: [web.test:%u]\n",
           port);
  cr_assert_eq(h_proxy_start(&T.px, T.dir, yaml), 0);
  T.started = 1;
  cr_assert(all_answer(names, 2, 10000));
  snprintf(req, sizeof(req),
           "POST /upstreams/app/servers/127.0.0.3:%u/drain HTTP/1.1\r\nHost: a\r\n"
           "Content-Length: 0\r\n\r\n",
           port);
  cr_assert_eq(it_admin_raw(req, &body, NULL, 0), 200, "%s", body ? body : "");
  free(body);
  cr_assert(only_these(names, 1, 10), "a drained address got traffic");
  /* The answer leaves it out, then gives it back: it comes back drained. */
  from = it_log_size();
  hosts_set(hosts, "127.0.0.1 localhost\n127.0.0.2 web.test\n");
  cr_assert_gt((from = it_wait_log("web.test resolves to 1 address", from, 10000)), 0);
  hosts_set(hosts, "127.0.0.1 localhost\n127.0.0.2 web.test\n127.0.0.3 web.test\n");
  cr_assert_gt(it_wait_log("web.test resolves to 2 addresses", from, 10000), 0);
  cr_assert(only_these(names, 1, 20), "the drain was forgotten when the address came back");
  body = it_admin_get("/upstreams/app", &(int){0});
  cr_assert_not_null(body);
  snprintf(req, sizeof(req), "\"server\":\"127.0.0.3:%u\"", port);
  char *at = strstr(body, req);
  cr_assert_not_null(at, "%s", body);
  cr_assert(strncmp(strstr(at, "\"state\":"), "\"state\":\"draining\"", 18) == 0, "%s", at);
  free(body);
  it_stop();
}

IT_TEST(health, an_unresolvable_name_at_start_is_a_warning_and_a_down_server) {
  char yaml[512];

  memset(&T, 0, sizeof(T));
  cr_assert_eq(h_tmpdir(T.dir, sizeof(T.dir)), 0);
  cr_assert_eq(h_backend_start(&T.be[0], T.dir, "b1", NULL), 0);
  T.nbe = 1;
  snprintf(yaml, sizeof(yaml),
           "listen: 127.0.0.1:0\nworkers: 1\nupstreams:\n  app:\n"
           "    servers: [nohost.invalid:80, 127.0.0.1:%u]\n",
           T.be[0].port);
  cr_assert_eq(h_proxy_start(&T.px, T.dir, yaml), 0, "an unresolvable name must not stop it");
  T.started = 1;
  cr_assert_gt(it_wait_log("nohost.invalid", 0, 5000), 0, "no warning about the name");
  for (int i = 0; i < 6; i++) {
    cr_assert_eq(it_get("/", &R), 0);
    cr_assert_eq(R.status, 200);
  }
  it_stop();
}
