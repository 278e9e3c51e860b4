/* The admin API of a real lbproxy: /stats read with a JSON parser and checked against the traffic
 * sent (per worker, per server, across a kill -9 and a reload), /metrics checked by promtool
 * and against the same traffic, /events, and an admin listener that bad clients cannot hurt. */
#include "itest.h"

#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define N_REQ 40

static const char body_yaml[] = "admin:\n  listen: 127.0.0.1:0\n"
                                "debug_header: true\n"
                                "upstreams:\n  app:\n"
                                "    servers: [127.0.0.1:%1$u, 127.0.0.1:%2$u]\n";

/* The whole config it_start_yaml writes (for a reload to the same). */
static void full_yaml(char *out, size_t cap, const char *dispatch, int workers) {
  int n = snprintf(out, cap, "listen: 127.0.0.1:0\nworkers: %d\ndispatch: %s\n", workers, dispatch);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
  snprintf(out + n, cap - (size_t)n, body_yaml, T.be[0].port, T.be[1].port);
#pragma GCC diagnostic pop
}

static json_t *get_json(const char *path) {
  json_error_t e;
  int status;
  char *body = it_admin_get(path, &status);
  json_t *j;

  cr_assert_eq(status, 200, "GET %s: %d", path, status);
  cr_assert_not_null(body);
  j = json_loads(body, 0, &e);
  if (j == NULL)
    fprintf(stderr, "%s\n", body);
  cr_assert_not_null(j, "GET %s: not JSON (%d:%d: %s)", path, e.line, e.column, e.text);
  free(body);
  return j;
}

/* A number at a dotted path ("totals.requests"). */
static uint64_t num(json_t *o, const char *path) {
  char key[64];
  const char *dot;

  while ((dot = strchr(path, '.')) != NULL) {
    snprintf(key, sizeof(key), "%.*s", (int)(dot - path), path);
    o = json_object_get(o, key);
    path = dot + 1;
  }
  o = json_object_get(o, path);
  cr_assert(json_is_integer(o), "%s is not an integer", path);
  return (uint64_t)json_integer_value(o);
}

/* /stats once its total of requests reached n (a request is counted when it ends, which may be
 * just after the client has its response). */
static json_t *stats_after(uint64_t n) {
  int64_t deadline = h_now_ms() + 10000;
  json_t *j;

  for (;;) {
    j = get_json("/stats");
    if (num(j, "totals.requests") >= n || h_now_ms() > deadline)
      return j;
    json_decref(j);
    usleep(20000);
  }
}

/* The traffic: n GETs, each on a new connection; which worker and which server took each. */
struct seen {
  uint64_t by_worker[IT_MAX_WORKERS + 1];
  uint64_t by_backend[IT_MAX_BACKENDS];
};

static void send_gets(int n, struct seen *s) {
  struct hc_resp r;
  char v[128];
  int slot;

  for (int i = 0; i < n; i++) {
    cr_assert_eq(it_get("/", &r), 0);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(hc_header(&r, "X-Lbproxy-Worker", v, sizeof(v)), 0);
    cr_assert_eq(sscanf(v, "slot=%d", &slot), 1);
    cr_assert(slot >= 1 && slot <= IT_MAX_WORKERS);
    s->by_worker[slot]++;
    cr_assert_eq(hc_header(&r, "X-Backend", v, sizeof(v)), 0);
    s->by_backend[v[1] - '1']++;
  }
}

static json_t *find_server(json_t *stats, uint16_t port) {
  char addr[32];
  size_t i;
  json_t *s;

  snprintf(addr, sizeof(addr), "127.0.0.1:%u", port);
  json_array_foreach(json_object_get(stats, "servers"), i, s) {
    if (strcmp(json_string_value(json_object_get(s, "server")), addr) == 0)
      return s;
  }
  cr_assert_fail("no server %s in /stats", addr);
  return NULL;
}

static json_t *worker(json_t *stats, int slot) {
  json_t *w = json_array_get(json_object_get(stats, "workers"), (size_t)slot - 1);
  cr_assert_not_null(w, "no worker %d in /stats", slot);
  cr_assert_eq(num(w, "worker"), (uint64_t)slot);
  return w;
}

IT_EACH_STRATEGY(admin, stats_count_every_request_per_worker_and_per_server) {
  struct seen s = {0};
  json_t *j;

  it_start_yaml(dispatch, 2, 2, body_yaml);
  cr_assert_gt(T.px.admin_port, 0, "no admin= in the ready line");
  send_gets(N_REQ, &s);
  j = stats_after(N_REQ);
  cr_assert_str_eq(json_string_value(json_object_get(j, "dispatch")), dispatch);
  cr_assert_eq(num(j, "generation"), 1);
  cr_assert_eq(num(j, "totals.requests"), N_REQ);
  cr_assert_eq(num(j, "totals.responses_2xx"), N_REQ);
  cr_assert_eq(num(j, "totals.accepted"), N_REQ, "one connection per request");
  cr_assert_eq(num(j, "totals.request_time.count"), N_REQ);
  cr_assert_eq(num(j, "totals.upstream_time.count"), N_REQ);
  for (int w = 1; w <= 2; w++) {
    json_t *o = worker(j, w);
    cr_assert_eq(num(o, "requests"), s.by_worker[w], "worker %d: %llu requests, sent %llu", w,
                 (unsigned long long)num(o, "requests"), (unsigned long long)s.by_worker[w]);
    cr_assert_eq(num(o, "accepted"), s.by_worker[w]);
    cr_assert_eq(num(o, "pid"), (uint64_t)it_worker_pid(w));
    cr_assert_str_eq(json_string_value(json_object_get(o, "state")), "ready");
  }
  for (int b = 0; b < 2; b++) {
    json_t *o = find_server(j, T.be[b].port);
    cr_assert_eq(num(o, "requests"), s.by_backend[b], "server b%d: %llu, sent %llu", b + 1,
                 (unsigned long long)num(o, "requests"), (unsigned long long)s.by_backend[b]);
    cr_assert_eq(num(o, "errors"), 0);
    cr_assert_eq(num(o, "active"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(o, "health")), "up");
  }
  json_decref(j);
  it_stop();
}

/* Per-slot and per-server totals of two snapshots: the later one is never smaller. */
static void assert_not_backwards(json_t *before, json_t *after) {
  cr_assert_geq(num(after, "totals.requests"), num(before, "totals.requests"));
  for (int w = 1; w <= 2; w++) {
    cr_assert_geq(num(worker(after, w), "requests"), num(worker(before, w), "requests"),
                  "worker %d went backwards", w);
    cr_assert_geq(num(worker(after, w), "accepted"), num(worker(before, w), "accepted"));
    cr_assert_geq(num(worker(after, w), "request_time.count"),
                  num(worker(before, w), "request_time.count"));
  }
  for (int b = 0; b < 2; b++)
    cr_assert_geq(num(find_server(after, T.be[b].port), "requests"),
                  num(find_server(before, T.be[b].port), "requests"));
}

IT_TEST(admin, totals_never_go_backwards_across_a_worker_kill_and_a_reload) {
  struct seen s = {0};
  char yaml[2048];
  json_t *a, *b, *c, *d;
  pid_t victim;
  long from;

  it_start_yaml("handoff", 2, 2, body_yaml);
  send_gets(20, &s);
  a = stats_after(20);
  victim = it_worker_pid(1);
  from = it_log_size();
  cr_assert_eq(kill(victim, SIGKILL), 0);
  cr_assert_gt(it_wait_log("worker 1 ready", from, 20000), 0, "worker 1 was not restarted");
  send_gets(20, &s);
  b = stats_after(40);
  cr_assert_eq(num(b, "totals.requests"), 40);
  cr_assert_eq(num(worker(b, 1), "restarts"), 1);
  cr_assert_neq(num(worker(b, 1), "pid"), (uint64_t)victim);
  assert_not_backwards(a, b);
  full_yaml(yaml, sizeof(yaml), "handoff", 2);
  from = it_reload(yaml, 2, 30000);
  cr_assert_gt(from, 0, "the reload did not happen");
  send_gets(20, &s);
  c = stats_after(60);
  cr_assert_eq(num(c, "generation"), 2);
  cr_assert_eq(num(c, "totals.requests"), 60);
  assert_not_backwards(b, c);
  /* Once generation 1 is gone its counters live on in the master's totals. */
  cr_assert_gt(it_wait_log("generation: 1 retired", from, 30000), 0);
  d = get_json("/stats");
  cr_assert_eq(json_array_size(json_object_get(d, "generations")), 1);
  cr_assert_eq(num(d, "totals.requests"), 60);
  assert_not_backwards(c, d);
  cr_assert_eq(num(find_server(d, T.be[0].port), "requests") +
                   num(find_server(d, T.be[1].port), "requests"),
               60);
  json_decref(a);
  json_decref(b);
  json_decref(c);
  json_decref(d);
  it_stop();
}

/* Sum of the samples of `name` (exactly that name, any labels) in a Prometheus text. */
static uint64_t prom_sum(const char *text, const char *name) {
  size_t n = strlen(name);
  uint64_t sum = 0;

  for (const char *p = text; p != NULL && *p != '\0'; p = strchr(p, '\n'), p = p ? p + 1 : p) {
    const char *sp;
    if (strncmp(p, name, n) != 0 || (p[n] != '{' && p[n] != ' '))
      continue;
    if ((sp = strchr(p, ' ')) != NULL)
      sum += strtoull(sp + 1, NULL, 10);
  }
  return sum;
}

IT_TEST(admin, metrics_pass_promtool_and_agree_with_the_traffic) {
  struct seen s = {0};
  char path[600], cmd[1400];
  int status;
  char *text;
  json_t *j;
  FILE *f;

  it_start_yaml("handoff", 2, 2, body_yaml);
  send_gets(30, &s);
  json_decref(stats_after(30));
  text = it_admin_get("/metrics", &status);
  cr_assert_eq(status, 200);
  cr_assert_not_null(text);
  snprintf(path, sizeof(path), "%s/metrics.txt", T.dir);
  cr_assert_not_null(f = fopen(path, "w"));
  fputs(text, f);
  fclose(f);
  if (access("/usr/bin/promtool", X_OK) == 0) {
    snprintf(cmd, sizeof(cmd), "promtool check metrics < %s > %s.out 2>&1", path, path);
    status = system(cmd);
    if (status != 0) {
      snprintf(cmd, sizeof(cmd), "%s.out", path);
      it_dump(cmd);
    }
    cr_assert_eq(status, 0, "promtool check metrics failed (output above)");
  } else {
    fprintf(stderr, "SKIPPED promtool check: /usr/bin/promtool is missing (Debian package "
                    "prometheus; `make test` installs it)\n");
  }
  cr_assert_eq(prom_sum(text, "lbproxy_requests_total"), 30);
  cr_assert_eq(prom_sum(text, "lbproxy_responses_total"), 30);
  cr_assert_eq(prom_sum(text, "lbproxy_connections_accepted_total"), 30);
  cr_assert_eq(prom_sum(text, "lbproxy_server_requests_total"), 30);
  cr_assert_eq(prom_sum(text, "lbproxy_request_duration_seconds_count"), 30);
  cr_assert_not_null(
      strstr(text, "lbproxy_request_duration_seconds_bucket{worker=\"1\",le=\"+Inf\"}"));
  cr_assert_not_null(strstr(text, "# TYPE lbproxy_request_duration_seconds histogram"));
  j = get_json("/stats");
  for (int w = 1; w <= 2; w++) {
    char needle[96];
    snprintf(needle, sizeof(needle), "lbproxy_requests_total{worker=\"%d\"} %llu\n", w,
             (unsigned long long)s.by_worker[w]);
    cr_assert_not_null(strstr(text, needle), "no line %s", needle);
  }
  json_decref(j);
  free(text);
  it_stop();
}

static int has_event(json_t *evs, const char *type, int slot, const char *detail) {
  size_t i;
  json_t *e;

  json_array_foreach(evs, i, e) {
    if (strcmp(json_string_value(json_object_get(e, "type")), type) == 0 &&
        json_integer_value(json_object_get(e, "worker")) == slot &&
        (detail == NULL || strstr(json_string_value(json_object_get(e, "detail")), detail)))
      return 1;
  }
  return 0;
}

IT_TEST(admin, events_list_the_lifecycle_of_the_workers) {
  json_t *j;
  long from;

  it_start_yaml("handoff", 2, 2, body_yaml);
  from = it_log_size();
  cr_assert_eq(kill(it_worker_pid(2), SIGKILL), 0);
  cr_assert_gt(it_wait_log("worker 2 ready", from, 20000), 0);
  j = get_json("/events");
  json_t *evs = json_object_get(j, "events");
  cr_assert(json_is_array(evs));
  for (int w = 1; w <= 2; w++) {
    cr_assert(has_event(evs, "fork", w, NULL), "no fork of worker %d", w);
    cr_assert(has_event(evs, "ready", w, NULL), "no ready of worker %d", w);
  }
  cr_assert(has_event(evs, "exit", 2, "signal=9"), "the kill is not in /events");
  cr_assert(json_integer_value(json_object_get(json_array_get(evs, 0), "time_ms")) > 0);
  json_decref(j);
  it_stop();
}

/* ---- a listener bad clients cannot hurt ---- */

static int answer(const char *raw, char *head, size_t cap) {
  return it_admin_raw(raw, NULL, head, cap);
}

IT_TEST(admin, bad_requests_get_4xx_with_a_reason_and_the_master_lives_on) {
  char big[12000], head[2048], *body;
  pid_t master;

  it_start_yaml("handoff", 2, 2, body_yaml);
  master = T.px.proc.pid;
  cr_assert_eq(answer("GET /nope HTTP/1.1\r\nHost: a\r\n\r\n", head, sizeof(head)), 404);
  cr_assert_eq(it_admin_raw("POST /stats HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi", &body,
                            head, sizeof(head)),
               405);
  cr_assert_not_null(strstr(head, "Allow: GET, HEAD"), "%s", head);
  cr_assert_not_null(strstr(body, "405"), "the reason is in the body: %s", body);
  free(body);
  cr_assert_eq(
      answer("GET /stats HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc", head, sizeof(head)),
      400, "a GET with a body");
  cr_assert_eq(answer("GARBAGE\r\n\r\n", head, sizeof(head)), 400);
  cr_assert_eq(
      answer("GET /stats HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n", head, sizeof(head)), 400);
  cr_assert_eq(
      answer("GET /stats HTTP/1.1\r\nHost: a\r\nX: 1\r\n folded\r\n\r\n", head, sizeof(head)), 400,
      "obs-fold");
  cr_assert_eq(answer("GET /a%zz HTTP/1.1\r\nHost: a\r\n\r\n", head, sizeof(head)), 400);
  cr_assert_eq(answer("GET /a%00b HTTP/1.1\r\nHost: a\r\n\r\n", head, sizeof(head)), 400);
  cr_assert_eq(answer("GET http://x/stats HTTP/1.1\r\nHost: a\r\n\r\n", head, sizeof(head)), 400);
  snprintf(big, sizeof(big), "GET /%03000d HTTP/1.1\r\nHost: a\r\n\r\n", 7);
  cr_assert_eq(answer(big, head, sizeof(head)), 414);
  memset(big, 'a', sizeof(big));
  memcpy(big, "GET /stats HTTP/1.1\r\nX: ", 24);
  memcpy(big + sizeof(big) - 5, "\r\n\r\n", 5);
  cr_assert_eq(answer(big, head, sizeof(head)), 431);
  memcpy(big, "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11); /* a TLS hello */
  cr_assert_eq(answer(big, head, sizeof(head)), 400);
  cr_assert_eq(answer("HEAD /stats HTTP/1.1\r\nHost: a\r\n\r\n", head, sizeof(head)), 200);
  cr_assert_not_null(strstr(head, "Content-Length: "));
  cr_assert_eq(kill(master, 0), 0, "the master died");
  json_decref(get_json("/stats"));
  cr_assert_eq(h_count_lines(T.px.proc.log, " exit pid="), 0, "a worker died");
  it_stop();
}

IT_TEST(admin, slow_and_excess_connections_are_cut_without_starving_the_admin) {
  int slow[64], fd, n = 0, status;
  char buf[512];
  int64_t t0;
  ssize_t r;

  it_start_yaml("handoff", 2, 2, body_yaml);
  /* 64 slowloris connections: a partial head each, never finished. */
  for (int i = 0; i < 64; i++) {
    cr_assert_geq(slow[i] = hc_connect(T.px.admin_port, NULL), 0);
    cr_assert_eq(hc_send_all(slow[i], "GET /stats HTTP/1.1\r\nHo", 23), 0);
  }
  /* The 65th is refused at once with a 503, not queued behind them. */
  fd = hc_connect(T.px.admin_port, NULL);
  cr_assert_geq(fd, 0);
  hc_send_all(fd, "GET /stats HTTP/1.1\r\nHost: a\r\n\r\n", 33);
  r = recv(fd, buf, sizeof(buf) - 1, 0);
  cr_assert_gt(r, 0);
  buf[r] = '\0';
  cr_assert_not_null(strstr(buf, " 503 "), "%s", buf);
  close(fd);
  /* Each slow one gets a 408 within the 5 s head deadline, and is closed. */
  t0 = h_now_ms();
  for (int i = 0; i < 64; i++) {
    r = recv(slow[i], buf, sizeof(buf) - 1, 0);
    if (r > 0) {
      buf[r] = '\0';
      n += strstr(buf, " 408 ") != NULL;
    }
    hc_wait_closed(slow[i], 5000);
    close(slow[i]);
  }
  cr_assert_eq(n, 64, "%d of 64 slow connections got a 408", n);
  cr_assert_lt(h_now_ms() - t0, 15000);
  free(it_admin_get("/stats", &status));
  cr_assert_eq(status, 200, "the admin API serves again");
  it_stop();
}

IT_TEST(admin, is_off_when_asked_and_never_public_by_accident) {
  char path[600], cmd[1400];

  it_start_yaml("handoff", 1, 2,
                "admin:\n  listen: \"off\"\nupstreams:\n  app:\n    servers: [127.0.0.1:%1$u]\n");
  cr_assert_eq(T.px.admin_port, 0);
  cr_assert_gt(h_count_lines(T.px.proc.log, "generation=1 admin=off"), 0);
  it_stop();
  cr_assert_eq(h_write_file(T.dir, "public.yaml",
                            "admin:\n  listen: 0.0.0.0:9900\n"
                            "upstreams:\n  app:\n    servers: [127.0.0.1:1]\n",
                            path, sizeof(path)),
               0);
  snprintf(cmd, sizeof(cmd), "%s -t -c %s > %s.out 2>&1", LBP_PROXY_BIN, path, path);
  cr_assert_neq(system(cmd), 0, "a public admin address without allow_public loads");
  snprintf(cmd, sizeof(cmd), "%s.out", path);
  cr_assert_eq(h_count_lines(cmd, "admin.listen: 0.0.0.0:9900 is not a loopback address"), 1);
  cr_assert_eq(h_write_file(T.dir, "public.yaml",
                            "admin:\n  listen: 0.0.0.0:9900\n  allow_public: true\n"
                            "upstreams:\n  app:\n    servers: [127.0.0.1:1]\n",
                            path, sizeof(path)),
               0);
  snprintf(cmd, sizeof(cmd), "%s -t -c %s > /dev/null 2>&1", LBP_PROXY_BIN, path);
  cr_assert_eq(system(cmd), 0, "allow_public: true loads");
}

/* The sum of the servers' in-flight counts, polled until it is `want` (or the deadline). */
static uint64_t wait_active(uint64_t want) {
  int64_t deadline = h_now_ms() + 10000;
  uint64_t sum;

  for (;;) {
    json_t *j = get_json("/stats");
    sum = num(find_server(j, T.be[0].port), "active") + num(find_server(j, T.be[1].port), "active");
    json_decref(j);
    if (sum == want || h_now_ms() > deadline)
      return sum;
    usleep(20000);
  }
}

static int send_slow(void) {
  static const char req[] = "GET /delay?ms=3000 HTTP/1.1\r\nHost: t\r\n\r\n";
  int fd = hc_connect(T.px.port, NULL);

  cr_assert_geq(fd, 0);
  cr_assert_eq(hc_send_all(fd, req, sizeof(req) - 1), 0);
  return fd;
}

IT_TEST(admin,
        server_active_counts_requests_in_flight_of_every_worker_and_a_crash_gives_them_back) {
  struct hc_resp r;
  int a, b;
  long from;

  it_start_yaml("handoff", 2, 2,
                "admin:\n  listen: 127.0.0.1:0\nupstreams:\n  app:\n    balance: least_conn\n"
                "    servers: [127.0.0.1:%1$u, 127.0.0.1:%2$u]\n");
  a = send_slow(); /* one per worker (handoff takes turns) */
  b = send_slow();
  cr_assert_eq(wait_active(2), 2, "both workers' requests are in the shared counts");
  cr_assert_eq(hc_read_response(a, &r, 0), 0);
  cr_assert_eq(hc_read_response(b, &r, 0), 0);
  close(a);
  close(b);
  cr_assert_eq(wait_active(0), 0);
  /* A worker killed with a request in flight: what it held is given back. */
  from = it_log_size();
  a = send_slow();
  b = send_slow();
  cr_assert_eq(wait_active(2), 2);
  cr_assert_eq(kill(it_worker_pid(1), SIGKILL), 0);
  cr_assert_gt(it_wait_log("worker 1 ready", from, 20000), 0);
  cr_assert_eq(wait_active(1), 1, "the killed worker's request is still counted in flight");
  close(a);
  close(b);
  cr_assert_eq(wait_active(0), 0);
  it_stop();
}

/* After its answer the master reads until the client's FIN (up to a second): bytes a client
 * sends late are read and dropped, so the close is a FIN, never an RST that could destroy the
 * answer on a real network. */
IT_TEST(admin, lingers_after_an_answer_so_late_client_bytes_do_not_reset_it) {
  struct hc_resp r;
  char junk[1000], c;
  int fd;
  ssize_t n;

  it_start("handoff", 1, 1, NULL);
  fd = hc_connect(T.px.admin_port, NULL);
  cr_assert_geq(fd, 0);
  const char *req = "GET /events HTTP/1.1\r\nHost: admin\r\n\r\n";
  cr_assert_eq(hc_send_all(fd, req, strlen(req)), 0);
  cr_assert_eq(hc_read_response(fd, &r, 0), 0);
  cr_assert_eq(r.status, 200);
  /* The master has shut its side by now; give it time to have closed if it did not linger. */
  poll(NULL, 0, 100);
  memset(junk, 'x', sizeof(junk));
  /* A closed socket answers the first bytes with an RST, and the next send fails. */
  cr_assert_eq(send(fd, junk, sizeof(junk), MSG_NOSIGNAL), (ssize_t)sizeof(junk));
  poll(NULL, 0, 50);
  n = send(fd, junk, sizeof(junk), MSG_NOSIGNAL);
  cr_assert_eq(n, (ssize_t)sizeof(junk), "the master reset the connection: %s",
               n < 0 ? strerror(errno) : "short send");
  shutdown(fd, SHUT_WR);
  n = recv(fd, &c, 1, 0);
  cr_assert_eq(n, 0, "expected the master's FIN, got %zd (%s)", n, n < 0 ? strerror(errno) : "data");
  close(fd);
  it_stop();
}
