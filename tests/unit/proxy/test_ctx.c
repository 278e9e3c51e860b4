/* Tests for proxy/ctx.c and proxy/client.c through the public API (proxy.h), in one process: the
 * connection limit, drain and handover, and the record of a finished request. */
#include "balancer.h"
#include "config.h"
#include "proxy.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static uv_loop_t loop;
static uv_tcp_t listener;
static uint16_t port;
static struct px_ctx *ctx;
static int closed_done;
static unsigned accept_flags; /* how the next connections "reached" the worker */

/* Every connection to `listener` is given to the data plane. */
static void on_conn(uv_stream_t *s, int status) {
  uv_tcp_t *tcp = px_client_new(ctx);
  struct px_accept a = {0, accept_flags, NULL, 0, NULL};

  cr_assert_not_null(tcp);
  cr_assert_eq(uv_accept(s, (uv_stream_t *)tcp), 0);
  px_client_start(tcp, &a);
}

/* A data plane from `yaml`, and a listening socket feeding it. */
static void start(const char *yaml) {
  struct px_gen gen = {0};
  struct cfg_error err;
  struct sockaddr_in sa;
  int len = sizeof(sa);

  cr_assert_eq(cfg_parse("t.yaml", yaml, strlen(yaml), &gen.cfg, &err), 0, "%s", err.msg);
  uv_loop_init(&loop);
  cr_assert_eq(px_ctx_new(&loop, &gen, &ctx), 0);
  uv_tcp_init(&loop, &listener);
  uv_ip4_addr("127.0.0.1", 0, &sa);
  cr_assert_eq(uv_tcp_bind(&listener, (struct sockaddr *)&sa, 0), 0);
  cr_assert_eq(uv_listen((uv_stream_t *)&listener, 64, on_conn), 0);
  uv_tcp_getsockname(&listener, (struct sockaddr *)&sa, &len);
  port = ntohs(sa.sin_port);
  closed_done = 0;
  accept_flags = 0;
}

static void ctx_closed(void *arg) {
  closed_done = 1;
}

static void stop(void) {
  px_ctx_close(ctx, ctx_closed, NULL);
  uv_close((uv_handle_t *)&listener, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
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

/* Runs the loop until `done` or 5 s of loop time. */
static void run_until(int (*done)(void)) {
  uint64_t deadline = uv_now(&loop) + 5000;

  while (!done() && uv_now(&loop) < deadline) {
    uv_run(&loop, UV_RUN_ONCE);
    uv_update_time(&loop);
  }
  cr_assert(done(), "timed out");
}

static const char *const base_yaml = "listen: 127.0.0.1:0\nupstreams:\n  app:\n"
                                     "    servers: [127.0.0.1:9]\n";

/* ---- the connection limit ---- */

static int rooms;
static void on_room(void *arg) {
  rooms++;
}
static int two_active(void) {
  return px_ctx_counters(ctx)->active == 2;
}
static int one_active(void) {
  return px_ctx_counters(ctx)->active == 1;
}

Test(ctx, is_full_at_max_connections_and_says_when_there_is_room_again) {
  char yaml[256];
  int a, b;

  snprintf(yaml, sizeof(yaml), "%slimits:\n  max_connections: 2\n", base_yaml);
  start(yaml);
  rooms = 0;
  px_ctx_on_room(ctx, on_room, NULL);
  a = client();
  cr_assert_eq(px_ctx_full(ctx), 0);
  b = client();
  run_until(two_active);
  cr_assert_eq(px_ctx_full(ctx), 1);
  cr_assert_null(px_client_new(ctx), "a full context took one more");
  close(a);
  run_until(one_active);
  cr_assert_eq(px_ctx_full(ctx), 0);
  cr_assert_eq(rooms, 1);
  close(b);
  stop();
}

/* ---- a connection handed over between requests ---- */

static int none_left(void) {
  return px_ctx_counters(ctx)->active == 0;
}

Test(ctx, a_handed_over_connection_is_not_a_new_client_and_waits_as_idle) {
  char yaml[256];
  int fd;

  snprintf(yaml, sizeof(yaml), "%stimeouts:\n  client_header: 1h\n  client_idle: 50ms\n",
           base_yaml);
  start(yaml);
  accept_flags = PX_CLIENT_FD_SHARED | PX_CLIENT_HANDED;
  fd = client();
  run_until(one_active);
  cr_assert_eq(px_ctx_counters(ctx)->accepted, 0, "counted as a new client");
  run_until(none_left); /* the idle timeout, not the 1 h head timeout, ends it */
  close(fd);
  stop();
}

/* ---- drain and handover ---- */

static struct handed {
  uv_tcp_t *tcp;
  char bytes[256];
  size_t len;
} handed[4];
static int nhanded;

static int take(void *arg, uv_tcp_t *tcp, unsigned l, const char *bytes, size_t len) {
  struct handed *h = &handed[nhanded++];
  h->tcp = tcp;
  h->len = len;
  if (len > 0)
    memcpy(h->bytes, bytes, len);
  return 0;
}

static int idle_read(void) {
  return px_ctx_counters(ctx)->accepted == 2;
}

Test(ctx, draining_hands_over_idle_connections_and_partial_heads_with_their_bytes) {
  const char partial[] = "GET / HTTP/1.1\r\nHo";
  int a, b;

  start(base_yaml);
  nhanded = 0;
  a = client();
  b = client();
  cr_assert_eq(send(b, partial, sizeof(partial) - 1, 0), (ssize_t)sizeof(partial) - 1);
  run_until(idle_read);
  for (int i = 0; i < 20; i++)
    uv_run(&loop, UV_RUN_NOWAIT); /* let the partial head be read */
  px_ctx_drain(ctx, take, NULL);
  cr_assert_eq(nhanded, 2);
  {
    /* Connections still on their way (fds handed before the switch) are taken, to be served
     * and handed over in turn. */
    uv_tcp_t *t = px_client_new(ctx);
    cr_assert_not_null(t);
    px_client_discard(t);
  }
  {
    int found_idle = 0, found_partial = 0;
    for (int i = 0; i < nhanded; i++) {
      found_idle += handed[i].len == 0;
      found_partial += handed[i].len == sizeof(partial) - 1 &&
                       memcmp(handed[i].bytes, partial, handed[i].len) == 0;
    }
    cr_assert_eq(found_idle, 1);
    cr_assert_eq(found_partial, 1);
  }
  for (int i = 0; i < nhanded; i++)
    px_client_handed_over(handed[i].tcp);
  close(a);
  close(b);
  stop();
}

static int none_active(void) {
  return px_ctx_counters(ctx)->active == 0;
}

Test(ctx, a_graceful_stop_closes_idle_connections_and_accepts_nothing) {
  int a;

  start(base_yaml);
  a = client();
  run_until(one_active);
  px_ctx_drain(ctx, NULL, NULL);
  cr_assert_null(px_client_new(ctx));
  run_until(none_active);
  close(a);
  stop();
}

/* ---- the record of a finished request ---- */

static struct px_request_log last;
static char last_target[64], last_upstream[64], last_method[16];
static int logged;

static void on_request(void *arg, const struct px_request_log *l) {
  last = *l;
  snprintf(last_target, sizeof(last_target), "%.*s", (int)l->target_len, l->target);
  snprintf(last_upstream, sizeof(last_upstream), "%s", l->upstream ? l->upstream : "");
  snprintf(last_method, sizeof(last_method), "%s", l->method ? l->method : "");
  logged++;
}

static int lfd;

/* One exchange: reads a head, answers 201 with a 5-byte body. */
static void *upstream_main(void *arg) {
  char buf[4096];
  size_t n = 0;
  int fd = accept(lfd, NULL, NULL);
  const char resp[] = "HTTP/1.1 201 Created\r\nContent-Length: 5\r\n\r\nhello";

  while (n < 4 || memcmp(buf + n - 4, "\r\n\r\n", 4) != 0) {
    if (recv(fd, buf + n, 1, 0) != 1)
      return NULL;
    n++;
  }
  send(fd, resp, sizeof(resp) - 1, 0);
  while (recv(fd, buf, sizeof(buf), 0) > 0)
    ;
  close(fd);
  return NULL;
}

static int got_log(void) {
  return logged > 0;
}

Test(ctx, every_request_ends_in_one_record_for_the_access_log) {
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof(sa);
  char yaml[256], resp[512];
  pthread_t th;
  int c;
  ssize_t r;

  lfd = socket(AF_INET, SOCK_STREAM, 0);
  cr_assert_eq(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  cr_assert_eq(listen(lfd, 4), 0);
  getsockname(lfd, (struct sockaddr *)&sa, &len);
  pthread_create(&th, NULL, upstream_main, NULL);
  snprintf(yaml, sizeof(yaml),
           "listen: 127.0.0.1:0\nupstreams:\n  app:\n"
           "    servers: [127.0.0.1:%u]\n",
           ntohs(sa.sin_port));
  start(yaml);
  logged = 0;
  px_ctx_on_request(ctx, on_request, NULL);
  c = client();
  const char *req = "GET /x?y=1 HTTP/1.1\r\nHost: t\r\n\r\n";
  cr_assert_eq(send(c, req, strlen(req), 0), (ssize_t)strlen(req));
  run_until(got_log);
  cr_assert_eq(logged, 1, "logged %d times, status %d", logged, last.status);
  cr_assert_eq(last.status, 201);
  cr_assert_eq(last.upstream_status, 201);
  cr_assert_str_eq(last_method, "GET");
  cr_assert_str_eq(last_target, "/x?y=1");
  cr_assert_eq(last.tries, 1);
  cr_assert_eq(last.bytes_in, strlen(req));
  cr_assert_gt(last.bytes_out, 5);
  cr_assert(last.complete);
  cr_assert_neq(last_upstream[0], '\0');
  r = recv(c, resp, sizeof(resp), 0);
  cr_assert_gt(r, 0);
  close(c);
  stop();
  pthread_join(th, NULL);
  close(lfd);
}

/* ---- servers from the config ---- */

Test(ctx, literal_servers_get_their_name_and_id_from_the_config_and_names_wait_for_the_master) {
  static const char yaml[] = "listen: 127.0.0.1:0\nupstreams:\n  app:\n    servers:\n"
                             "      - 10.0.0.1:80\n"
                             "      - address: \"[::1]:8080\"\n        weight: 7\n"
                             "        backup: true\n"
                             "      - backend.example:81\n";
  struct lbp_config *cfg;
  struct cfg_error err;
  struct px_server_spec s;

  cr_assert_eq(cfg_parse("t.yaml", yaml, strlen(yaml), &cfg, &err), 0, "%s", err.msg);
  cr_assert_eq(px_server_spec_literal(&cfg->upstreams[0], 0, &s), 0);
  cr_assert_str_eq(s.name, "10.0.0.1:80");
  cr_assert_eq(s.id, bal_server_id("app", "10.0.0.1:80"));
  cr_assert_eq(s.addr.ss_family, AF_INET);
  cr_assert_eq(ntohs(((struct sockaddr_in *)&s.addr)->sin_port), 80);
  cr_assert_eq(ntohl(((struct sockaddr_in *)&s.addr)->sin_addr.s_addr), 0x0a000001);
  cr_assert_eq(s.weight, 1);
  cr_assert_eq(s.backup, 0);
  cr_assert_eq(px_server_spec_literal(&cfg->upstreams[0], 1, &s), 0);
  cr_assert_str_eq(s.name, "[::1]:8080");
  cr_assert_eq(s.id, bal_server_id("app", "[::1]:8080"));
  cr_assert_eq(s.addr.ss_family, AF_INET6);
  cr_assert_eq(ntohs(((struct sockaddr_in6 *)&s.addr)->sin6_port), 8080);
  cr_assert(IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)&s.addr)->sin6_addr));
  cr_assert_eq(s.weight, 7);
  cr_assert_eq(s.backup, 1);
  cr_assert_eq(px_server_spec_literal(&cfg->upstreams[0], 2, &s), UV_EAGAIN);
  cfg_free(cfg);
}
