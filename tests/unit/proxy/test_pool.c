/* Tests for proxy/pool.c through the public API (proxy.h): server lists and states the master
 * pushes (px_ctx_set_servers, px_ctx_apply_states), passive failures reported (px_ctx_on_failing),
 * and the 503 of an upstream with nothing usable; real sockets, backends in the test's loop. */
#include "balancer.h"
#include "config.h"
#include "proxy.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static uv_loop_t loop;
static uv_tcp_t listener;
static uint16_t port;
static struct px_ctx *ctx;
static struct lbp_config *cfg; /* the context's */
static int closed_done;
static unsigned listener_index; /* the listener connections are given to */

/* ---- backends: HTTP servers in the test's loop that answer every head with their name ---- */

#define BE_HELD_MAX 8

struct backend;

struct be_conn {
  uv_tcp_t tcp;
  uv_write_t wreq;
  struct backend *be;
  unsigned id; /* 1, 2, ... in the order the backend accepted them */
  char buf[4096];
  size_t len;
};

struct backend {
  uv_tcp_t tcp;
  uint16_t port;
  char name[8];
  char resp[128];
  unsigned accepted;  /* connections accepted */
  unsigned requests;  /* request heads read */
  unsigned eofs;      /* connections the proxy closed */
  unsigned last_conn; /* the connection of the last request */
  int hold;           /* requests wait for be_release */
  struct be_conn *held[BE_HELD_MAX];
  unsigned nheld;
};

static struct backend be_a, be_b;

static void be_conn_closed(uv_handle_t *h) {
  free(h->data);
}

static void be_written(uv_write_t *w, int status) {
  (void)w;
  (void)status;
}

static void be_respond(struct be_conn *c) {
  uv_buf_t b = uv_buf_init(c->be->resp, (unsigned)strlen(c->be->resp));

  cr_assert_eq(uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, be_written), 0);
}

/* Every complete head (the tests send no bodies) is one request. */
static void be_heads(struct be_conn *c) {
  char *end;

  while ((end = memmem(c->buf, c->len, "\r\n\r\n", 4)) != NULL) {
    size_t used = (size_t)(end + 4 - c->buf);
    struct backend *be = c->be;

    memmove(c->buf, c->buf + used, c->len - used);
    c->len -= used;
    be->requests++;
    be->last_conn = c->id;
    if (be->hold) {
      cr_assert_lt(be->nheld, BE_HELD_MAX);
      be->held[be->nheld++] = c;
    } else {
      be_respond(c);
    }
  }
}

static void be_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  struct be_conn *c = h->data;

  (void)hint;
  *buf = uv_buf_init(c->buf + c->len, (unsigned)(sizeof(c->buf) - c->len));
}

static void be_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  struct be_conn *c = s->data;

  (void)buf;
  if (n < 0) {
    struct backend *be = c->be;
    be->eofs++;
    for (unsigned k = 0; k < be->nheld; k++)
      if (be->held[k] == c)
        be->held[k] = be->held[--be->nheld];
    uv_close((uv_handle_t *)&c->tcp, be_conn_closed);
    return;
  }
  c->len += (size_t)n;
  be_heads(c);
}

static void be_accept(uv_stream_t *s, int status) {
  struct backend *be = s->data;
  struct be_conn *c = calloc(1, sizeof(*c));

  cr_assert_eq(status, 0);
  cr_assert_not_null(c);
  c->be = be;
  c->id = ++be->accepted;
  uv_tcp_init(&loop, &c->tcp);
  c->tcp.data = c;
  cr_assert_eq(uv_accept(s, (uv_stream_t *)&c->tcp), 0);
  cr_assert_eq(uv_read_start((uv_stream_t *)&c->tcp, be_alloc, be_read), 0);
}

static void be_start(struct backend *be, const char *name) {
  struct sockaddr_in sa;
  int len = sizeof(sa);

  memset(be, 0, sizeof(*be));
  snprintf(be->name, sizeof(be->name), "%s", name);
  snprintf(be->resp, sizeof(be->resp), "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n%s",
           strlen(name), name);
  uv_tcp_init(&loop, &be->tcp);
  be->tcp.data = be;
  uv_ip4_addr("127.0.0.1", 0, &sa);
  cr_assert_eq(uv_tcp_bind(&be->tcp, (struct sockaddr *)&sa, 0), 0);
  cr_assert_eq(uv_listen((uv_stream_t *)&be->tcp, 64, be_accept), 0);
  uv_tcp_getsockname(&be->tcp, (struct sockaddr *)&sa, &len);
  be->port = ntohs(sa.sin_port);
}

/* Answers every request the backend holds, and holds no more. */
static void be_release(struct backend *be) {
  be->hold = 0;
  for (unsigned k = 0; k < be->nheld; k++)
    be_respond(be->held[k]);
  be->nheld = 0;
}

/* ---- the data plane, its listener, and requests ---- */

static struct px_request_log last;
static char last_upstream[64];
static int logged;

static void on_request(void *arg, const struct px_request_log *l) {
  (void)arg;
  last = *l;
  snprintf(last_upstream, sizeof(last_upstream), "%s", l->upstream ? l->upstream : "");
  last.upstream = last_upstream;
  logged++;
}

static void on_conn(uv_stream_t *s, int status) {
  uv_tcp_t *tcp = px_client_new(ctx);
  struct px_accept a = {listener_index, 0, NULL, 0, NULL};

  cr_assert_eq(status, 0);
  cr_assert_not_null(tcp);
  cr_assert_eq(uv_accept(s, (uv_stream_t *)tcp), 0);
  px_client_start(tcp, &a);
}

static uv_timer_t guard; /* wakes the loop at run_until's deadline when nothing else would */

static void guard_cb(uv_timer_t *t) {
  (void)t;
}

/* Runs the loop until `done` or 5 s of loop time. */
static void run_until(int (*done)(void)) {
  uint64_t deadline = uv_now(&loop) + 5000;

  uv_timer_start(&guard, guard_cb, 5000, 0);
  while (!done() && uv_now(&loop) < deadline) {
    uv_run(&loop, UV_RUN_ONCE);
    uv_update_time(&loop);
  }
  uv_timer_stop(&guard);
  cr_assert(done(), "timed out");
}

/* A data plane from `yaml` (the backends run), and a listening socket feeding it. */
static void start_cfg(const char *yaml) {
  struct px_gen gen = {0};
  struct cfg_error err;
  struct sockaddr_in sa;
  int len = sizeof(sa);

  cr_assert_eq(cfg_parse("t.yaml", yaml, strlen(yaml), &gen.cfg, &err), 0, "%s", err.msg);
  cfg = gen.cfg;
  cr_assert_eq(px_ctx_new(&loop, &gen, &ctx), 0);
  px_ctx_on_request(ctx, on_request, NULL);
  uv_tcp_init(&loop, &listener);
  uv_ip4_addr("127.0.0.1", 0, &sa);
  cr_assert_eq(uv_tcp_bind(&listener, (struct sockaddr *)&sa, 0), 0);
  cr_assert_eq(uv_listen((uv_stream_t *)&listener, 64, on_conn), 0);
  uv_tcp_getsockname(&listener, (struct sockaddr *)&sa, &len);
  port = ntohs(sa.sin_port);
  closed_done = 0;
  logged = 0;
  listener_index = 0;
}

/* Backends a and b, then a data plane whose config is `fmt` given the ports of the backends
 * named in `order` ("a", "b", "ab", "ba"), in that order. */
static void start(const char *fmt, const char *order) {
  char yaml[1024];
  uint16_t p[2] = {0, 0};

  uv_loop_init(&loop);
  uv_timer_init(&loop, &guard);
  be_start(&be_a, "a");
  be_start(&be_b, "b");
  for (int i = 0; i < 2 && order[i] != '\0'; i++)
    p[i] = order[i] == 'a' ? be_a.port : be_b.port;
  snprintf(yaml, sizeof(yaml), fmt, p[0], p[1]); /* a format may use only the first */
  start_cfg(yaml);
}

static void ctx_closed(void *arg) {
  (void)arg;
  closed_done = 1;
}

static void stop(void) {
  px_ctx_close(ctx, ctx_closed, NULL);
  uv_close((uv_handle_t *)&listener, NULL);
  uv_close((uv_handle_t *)&be_a.tcp, NULL);
  uv_close((uv_handle_t *)&be_b.tcp, NULL);
  uv_close((uv_handle_t *)&guard, NULL);
  uv_run(&loop, UV_RUN_DEFAULT); /* backend connections close at the proxy's EOF */
  cr_assert(closed_done, "the context never finished closing");
  cr_assert_eq(uv_loop_close(&loop), 0, "handles left open");
}

static int client(void) {
  struct sockaddr_in sa;
  int fd = socket(AF_INET, SOCK_STREAM, 0);

  uv_ip4_addr("127.0.0.1", port, &sa);
  cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  return fd;
}

static int want_logged;
static int logged_enough(void) {
  return logged >= want_logged;
}

static void send_get(int fd) {
  static const char req[] = "GET / HTTP/1.1\r\nHost: t\r\n\r\n";

  cr_assert_eq(send(fd, req, sizeof(req) - 1, 0), (ssize_t)sizeof(req) - 1);
}

/* Reads what the proxy wrote to fd so far (a request is logged once its response is out). */
static void read_response(int fd, char *resp, size_t cap) {
  ssize_t n = recv(fd, resp, cap - 1, MSG_DONTWAIT);

  cr_assert_gt(n, 0, "no response");
  resp[n] = '\0';
}

/* One GET on fd, served to the end: its status; the server's name in last_upstream. */
static int get(int fd, char *resp, size_t cap) {
  send_get(fd);
  want_logged = logged + 1;
  run_until(logged_enough);
  read_response(fd, resp, cap);
  return last.status;
}

/* The name a server of upstream app has in logs, and its spec as the master would send it. */
static struct px_server_spec spec_of(const struct backend *be) {
  struct px_server_spec s;
  struct sockaddr_in sa;

  memset(&s, 0, sizeof(s));
  uv_ip4_addr("127.0.0.1", be->port, &sa);
  memcpy(&s.addr, &sa, sizeof(sa));
  snprintf(s.name, sizeof(s.name), "127.0.0.1:%u", be->port);
  s.id = bal_server_id("app", s.name);
  s.weight = 1;
  return s;
}

/* Which backends n GETs on fd reached: a bit each (1 a, 2 b); every answer a 200. */
static unsigned reached(int fd, int n) {
  char resp[512];
  unsigned seen = 0;

  for (int i = 0; i < n; i++) {
    cr_assert_eq(get(fd, resp, sizeof(resp)), 200, "%s", resp);
    cr_assert_neq(strstr(resp, "\r\n\r\n"), NULL);
    seen |= strcmp(strstr(resp, "\r\n\r\n") + 4, "a") == 0 ? 1u : 2u;
  }
  return seen;
}

static const char *const one_server = "listen: 127.0.0.1:0\nupstreams:\n  app:\n"
                                      "    keepalive_timeout: 1h\n"
                                      "    servers: [127.0.0.1:%u]\n";
static const char *const two_servers = "listen: 127.0.0.1:0\nupstreams:\n  app:\n"
                                       "    keepalive_timeout: 1h\n"
                                       "    servers: [127.0.0.1:%u, 127.0.0.1:%u]\n";

TestSuite(pool, .timeout = 30);

/* ---- server lists ---- */

Test(pool, a_server_added_gets_new_requests_and_a_kept_server_keeps_its_pooled_connection) {
  struct px_server_spec specs[2];
  int c;

  start(one_server, "a");
  c = client();
  cr_assert_eq(reached(c, 1), 1u);
  cr_assert_eq(be_a.accepted, 1);
  cr_assert_eq(px_server_spec_literal(&cfg->upstreams[0], 0, &specs[0]), 0);
  specs[1] = spec_of(&be_b);
  cr_assert_eq(px_ctx_set_servers(ctx, 0, specs, 2), 0);
  cr_assert_eq(reached(c, 4), 3u, "both servers get requests");
  cr_assert_eq(be_a.accepted, 1, "the kept server's pooled connection was not reused");
  cr_assert_eq(be_a.last_conn, 1);
  cr_assert_eq(be_a.eofs, 0);
  close(c);
  stop();
}

static int b_holds_two(void) {
  return be_b.nheld == 2;
}
static int b_holds_one(void) {
  return be_b.nheld == 1;
}
static int b_closed_one(void) {
  return be_b.eofs >= 1;
}
static int b_closed_two(void) {
  return be_b.eofs >= 2;
}

Test(pool, a_server_removed_finishes_its_request_closes_its_connections_and_gets_no_more) {
  struct px_server_spec spec_a;
  char resp[512];
  int c1, c2, c3;

  start(one_server, "b");
  /* b gets two idle pooled connections: two requests at once, answered together. */
  c1 = client();
  c2 = client();
  be_b.hold = 1;
  send_get(c1);
  send_get(c2);
  run_until(b_holds_two);
  be_release(&be_b);
  want_logged = 2;
  run_until(logged_enough);
  read_response(c1, resp, sizeof(resp));
  read_response(c2, resp, sizeof(resp));
  cr_assert_eq(be_b.accepted, 2);
  /* One request in flight on b (on one of them), the other connection idle. */
  be_b.hold = 1;
  c3 = client();
  send_get(c3);
  run_until(b_holds_one);
  spec_a = spec_of(&be_a);
  cr_assert_eq(px_ctx_set_servers(ctx, 0, &spec_a, 1), 0);
  run_until(b_closed_one); /* the idle connection, at once */
  cr_assert_eq(be_b.eofs, 1);
  cr_assert_eq(logged, 2, "the request in flight was cut");
  be_release(&be_b);
  want_logged = 3;
  run_until(logged_enough);
  read_response(c3, resp, sizeof(resp));
  cr_assert_eq(last.status, 200);
  cr_assert(strstr(resp, "\r\n\r\nb") != NULL, "%s", resp);
  cr_assert_str_eq(last_upstream, spec_of(&be_b).name);
  run_until(b_closed_two); /* the busy one, after its exchange, instead of being pooled */
  /* Later requests, on old and new client connections, all go to a. */
  cr_assert_eq(reached(c1, 3), 1u);
  cr_assert_eq(reached(c3, 3), 1u);
  cr_assert_eq(be_b.requests, 3);
  cr_assert_eq(be_b.accepted, 2);
  close(c1);
  close(c2);
  close(c3);
  stop();
}

/* A 503 of our own, with Retry-After, on the keep-alive connection fd. */
static void assert_503(int fd) {
  char resp[512];

  cr_assert_eq(get(fd, resp, sizeof(resp)), 503);
  cr_assert(strncmp(resp, "HTTP/1.1 503 ", 13) == 0, "%s", resp);
  cr_assert(strstr(resp, "\r\nRetry-After: 1\r\n") != NULL, "%s", resp);
  cr_assert(strstr(resp, "\r\nConnection: keep-alive\r\n") != NULL, "%s", resp);
}

Test(pool, an_upstream_with_no_server_answers_503_with_retry_after_until_one_comes) {
  struct px_server_spec spec_b;
  int c;

  /* Only a host name: the pool starts empty, until the master sends what it resolved to. */
  start("listen: 127.0.0.1:0\nupstreams:\n  app:\n    servers: [backend.invalid:80]\n", "");
  c = client();
  assert_503(c);
  spec_b = spec_of(&be_b);
  cr_assert_eq(px_ctx_set_servers(ctx, 0, &spec_b, 1), 0);
  cr_assert_eq(reached(c, 2), 2u, "the keep-alive connection goes on after the 503");
  cr_assert_eq(px_ctx_set_servers(ctx, 0, NULL, 0), 0);
  assert_503(c);
  cr_assert_eq(be_b.requests, 2);
  cr_assert_eq(px_ctx_set_servers(ctx, 0, &spec_b, 1), 0);
  cr_assert_eq(reached(c, 1), 2u);
  close(c);
  stop();
}

Test(pool, bad_server_lists_are_refused_and_the_old_servers_stay) {
  struct px_server_spec specs[BAL_MAX_SERVERS + 1];
  int c;

  start(one_server, "a");
  specs[0] = spec_of(&be_b);
  specs[1] = spec_of(&be_b);
  cr_assert_eq(px_ctx_set_servers(ctx, 1, specs, 1), UV_EINVAL, "no upstream 1");
  cr_assert_eq(px_ctx_set_servers(ctx, 0, specs, 2), UV_EINVAL, "an id twice");
  specs[1].weight = 0;
  specs[1].id++;
  cr_assert_eq(px_ctx_set_servers(ctx, 0, specs, 2), UV_EINVAL, "weight 0");
  specs[1].weight = 1001;
  cr_assert_eq(px_ctx_set_servers(ctx, 0, specs, 2), UV_EINVAL, "weight 1001");
  specs[1].weight = 1;
  specs[1].id = 0;
  cr_assert_eq(px_ctx_set_servers(ctx, 0, specs, 2), UV_EINVAL, "id 0");
  specs[1].id = 7;
  specs[1].addr.ss_family = AF_UNIX;
  cr_assert_eq(px_ctx_set_servers(ctx, 0, specs, 2), UV_EINVAL, "not an IP address");
  for (unsigned k = 0; k <= BAL_MAX_SERVERS; k++) {
    specs[k] = spec_of(&be_b);
    specs[k].id = k + 1;
  }
  cr_assert_eq(px_ctx_set_servers(ctx, 0, specs, BAL_MAX_SERVERS + 1), UV_EINVAL, "too many");
  c = client();
  cr_assert_eq(reached(c, 3), 1u, "the configured server stays");
  close(c);
  stop();
}

/* ---- states ---- */

/* Sets the state of server k (of upstream app, as configured) as the master would. */
static void set_state(size_t k, int health, int admin) {
  struct px_server_spec s;
  struct bal_server_state st = {.health = (uint8_t)health, .admin = (uint8_t)admin};

  cr_assert_eq(px_server_spec_literal(&cfg->upstreams[0], k, &s), 0);
  st.id = s.id;
  px_ctx_apply_states(ctx, &st, 1);
}

Test(pool, states_from_the_master_take_a_server_out_of_the_rotation_and_back) {
  static const struct {
    int health, admin;
  } out[] = {
      {BAL_HEALTH_DOWN, BAL_ADMIN_ENABLED},
      {BAL_HEALTH_UP, BAL_ADMIN_DISABLED},
      {BAL_HEALTH_UP, BAL_ADMIN_DRAINING},
  };
  int c;

  start(two_servers, "ab");
  c = client();
  cr_assert_eq(reached(c, 2), 3u);
  for (size_t i = 0; i < sizeof(out) / sizeof(out[0]); i++) {
    unsigned before = be_b.requests;
    set_state(1, out[i].health, out[i].admin);
    cr_assert_eq(reached(c, 6), 1u, "state %zu: b still gets requests", i);
    cr_assert_eq(be_b.requests, before);
    set_state(1, BAL_HEALTH_UP, BAL_ADMIN_ENABLED);
    cr_assert_eq(reached(c, 2), 3u, "state %zu: b did not come back", i);
  }
  close(c);
  stop();
}

/* ---- passive failures ---- */

static struct bal_server_state failing_st;
static int failings;

static void on_failing(void *arg, const struct bal_server_state *st) {
  (void)arg;
  failing_st = *st;
  failings++;
}

/* A port nothing listens on (connections are refused). */
static uint16_t dead_port(void) {
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof(sa);
  int fd = socket(AF_INET, SOCK_STREAM, 0);

  cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
  close(fd);
  return ntohs(sa.sin_port);
}

Test(pool, a_server_that_became_failing_here_is_reported_once) {
  char yaml[512], resp[512];
  struct px_server_spec dead;
  int c;

  snprintf(yaml, sizeof(yaml),
           "listen: 127.0.0.1:0\nupstreams:\n  app:\n    max_fails: 1\n    fail_timeout: 1h\n"
           "    servers: [127.0.0.1:%%u, 127.0.0.1:%u]\n",
           dead_port());
  start(yaml, "a");
  failings = 0;
  px_ctx_on_failing(ctx, on_failing, NULL);
  cr_assert_eq(px_server_spec_literal(&cfg->upstreams[0], 1, &dead), 0);
  c = client();
  for (int i = 0; i < 6; i++)
    cr_assert_eq(get(c, resp, sizeof(resp)), 200, "%s", resp); /* retried on a */
  cr_assert_eq(failings, 1);
  cr_assert_eq(failing_st.id, dead.id);
  cr_assert_gt(failing_st.failing_until_ms, uv_now(&loop));
  cr_assert_eq(be_a.requests, 6);
  close(c);
  stop();
}

/* ---- tcp relays ---- */

static int tcp_fd;
static int fd_readable(void) {
  struct pollfd pfd = {.fd = tcp_fd, .events = POLLIN};
  return poll(&pfd, 1, 0) == 1;
}
static int a_closed(void) {
  return be_a.eofs == 1;
}

/* Sends a GET on the relay of tcp_fd and reads a's answer. */
static void relay_get(void) {
  char resp[512];

  send_get(tcp_fd);
  run_until(fd_readable);
  read_response(tcp_fd, resp, sizeof(resp));
  cr_assert(strstr(resp, "\r\n\r\na") != NULL, "%s", resp);
}

Test(pool, a_tcp_relay_to_a_server_removed_goes_on_until_it_ends) {
  char byte;
  int c;

  start("listeners:\n  - listen: 127.0.0.1:0\n    mode: tcp\n    upstream: app\n"
        "upstreams:\n  app:\n    servers: [127.0.0.1:%u]\n",
        "a");
  tcp_fd = c = client();
  relay_get();
  cr_assert_eq(px_ctx_set_servers(ctx, 0, NULL, 0), 0);
  relay_get(); /* the same relay, to the server that left */
  cr_assert_eq(be_a.accepted, 1);
  /* A new connection finds no server: it is closed. */
  tcp_fd = client();
  run_until(fd_readable);
  cr_assert_eq(recv(tcp_fd, &byte, 1, MSG_DONTWAIT), 0);
  close(tcp_fd);
  close(c);
  run_until(a_closed);
  stop();
}
