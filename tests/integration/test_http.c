/* HTTP through the real proxy, once per dispatch strategy: balancing, keep-alive, bodies, errors.
 */
#include "itest.h"
#include "pattern.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static struct hc_resp R; /* large: off the stack */

/* The lines lbproxy adds to every forwarded request, after X-Forwarded-For. */
#define OURS(host) "X-Forwarded-Proto: http\r\nX-Forwarded-Host: " host "\r\nVia: 1.1 lbproxy\r\n"

static void header_is(const char *name, const char *want) {
  char v[256];
  cr_assert_eq(hc_header(&R, name, v, sizeof(v)), 0, "no %s header in:\n%s", name, R.head);
  cr_assert_str_eq(v, want, "%s", name);
}

static uint64_t header_u64(const char *name) {
  char v[64];
  cr_assert_eq(hc_header(&R, name, v, sizeof(v)), 0, "no %s header", name);
  return strtoull(v, NULL, 10);
}

/* The last exchange on a connection: `req` gets status `status` with Connection: close, and
 * then the proxy closes the connection. */
static void last_exchange(int fd, const char *req, int status) {
  cr_assert_eq(hc_roundtrip(fd, req, &R), 0);
  cr_assert_eq(R.status, status, "%d instead of %d", R.status, status);
  header_is("Connection", "close");
  cr_assert(hc_wait_closed(fd, 10000), "the connection stayed open");
}

static int connect_proxy(void) {
  int fd = hc_connect(T.px.port, NULL);
  cr_assert_geq(fd, 0, "connect: %s", strerror(-fd));
  return fd;
}

IT_EACH_STRATEGY(http, round_robin_alternates_between_two_backends) {
  char prev[16] = "";
  int b1 = 0, b2 = 0;

  it_start(dispatch, 2, 2, NULL);
  for (int i = 0; i < 8; i++) {
    char v[16];
    cr_assert_eq(it_get("/", &R), 0);
    cr_assert_eq(R.status, 200);
    cr_assert_eq(hc_header(&R, "X-Backend", v, sizeof(v)), 0);
    cr_assert_str_neq(v, prev, "request %d went to %s twice in a row", i, v);
    snprintf(prev, sizeof(prev), "%s", v);
    b1 += strcmp(v, "b1") == 0;
    b2 += strcmp(v, "b2") == 0;
  }
  cr_assert_eq(b1, 4);
  cr_assert_eq(b2, 4);
  it_stop();
}

IT_EACH_STRATEGY(http, keep_alive_reuses_connections_on_both_sides) {
  int fd, conns = 0;

  it_start(dispatch, 2, 2, NULL);
  fd = connect_proxy();
  for (int i = 0; i < 20; i++) {
    cr_assert_eq(hc_roundtrip(fd, "GET / HTTP/1.1\r\nHost: t\r\n\r\n", &R), 0, "request %d", i);
    cr_assert_eq(R.status, 200);
    cr_assert(R.keep_alive, "response %d closes the client connection", i);
  }
  /* From the fifth request on, each backend serves on a connection it served before. */
  cr_assert_gt(header_u64("X-Conn-Requests"), 1);
  close(fd);
  /* Count at the backends: one client connection, 20 requests -> one upstream connection per
   * backend (the worker pools them), not 20. The direct /conns request counts itself. */
  for (int i = 0; i < 2; i++) {
    cr_assert_eq(hc_get(T.be[i].port, "/conns", &R), 0);
    conns += (int)header_u64("X-Conns") - 1;
  }
  cr_assert_leq(conns, 2, "%d upstream connections for 20 requests", conns);
  it_stop();
}

IT_EACH_STRATEGY(http, chunked_download_of_one_mib_arrives_intact) {
  it_start(dispatch, 2, 1, NULL);
  cr_assert_eq(it_get("/chunked?n=1048576&chunk=10000", &R), 0);
  cr_assert_eq(R.status, 200);
  cr_assert(R.chunked);
  cr_assert_eq(R.body_len, 1048576);
  cr_assert_eq(R.body_fnv, hc_pattern_fnv(1048576));
  it_stop();
}

IT_EACH_STRATEGY(http, content_length_download_of_four_mib_arrives_intact) {
  it_start(dispatch, 2, 1, NULL);
  cr_assert_eq(it_get("/bytes?n=4194304", &R), 0);
  cr_assert_eq(R.status, 200);
  cr_assert_eq(R.body_len, 4194304);
  cr_assert_eq(R.body_fnv, hc_pattern_fnv(4194304));
  it_stop();
}

/* Sends a POST /sum of `n` pattern bytes, chunked or with Content-Length, and checks the
 * length and checksum the backend computed. */
static void upload(int fd, uint64_t n, int chunked) {
  static unsigned char buf[70000];
  char head[256], want[32];
  int hl;

  hl = chunked ? snprintf(head, sizeof(head),
                          "POST /sum HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
               : snprintf(head, sizeof(head),
                          "POST /sum HTTP/1.1\r\nHost: t\r\nContent-Length: %llu\r\n\r\n",
                          (unsigned long long)n);
  cr_assert_eq(hc_send_all(fd, head, (size_t)hl), 0);
  for (uint64_t off = 0; off < n;) {
    size_t k = 1 + (size_t)(off * 7919 % 65000); /* uneven pieces */
    if (k > n - off)
      k = (size_t)(n - off);
    pattern_fill(off, buf, k);
    if (chunked) {
      char ch[32];
      int cl = snprintf(ch, sizeof(ch), "%zx\r\n", k);
      cr_assert_eq(hc_send_all(fd, ch, (size_t)cl), 0);
    }
    cr_assert_eq(hc_send_all(fd, buf, k), 0);
    if (chunked)
      cr_assert_eq(hc_send_all(fd, "\r\n", 2), 0);
    off += k;
  }
  if (chunked)
    cr_assert_eq(hc_send_all(fd, "0\r\n\r\n", 5), 0);
  cr_assert_eq(hc_read_response(fd, &R, 0), 0);
  cr_assert_eq(R.status, 200);
  cr_assert_eq(header_u64("X-Body-Len"), n);
  snprintf(want, sizeof(want), "%016llx", (unsigned long long)hc_pattern_fnv(n));
  header_is("X-Body-Fnv", want);
}

IT_EACH_STRATEGY(http, upload_of_ten_mib_chunked_arrives_intact) {
  it_start(dispatch, 2, 1, NULL);
  int fd = connect_proxy();
  upload(fd, 10 << 20, 1);
  close(fd);
  it_stop();
}

IT_EACH_STRATEGY(http, upload_of_ten_mib_with_content_length_arrives_intact) {
  it_start(dispatch, 2, 1, NULL);
  int fd = connect_proxy();
  upload(fd, 10 << 20, 0);
  upload(fd, 100000, 0); /* the connection stays usable after a large body */
  close(fd);
  it_stop();
}

IT_EACH_STRATEGY(http, backend_down_gives_502_with_a_body) {
  it_start(dispatch, 2, 1, NULL);
  h_backend_stop(&T.be[0]);
  T.nbe = 0;
  int fd = connect_proxy();
  cr_assert_eq(hc_roundtrip(fd, "GET / HTTP/1.1\r\nHost: t\r\n\r\n", &R), 0);
  cr_assert_eq(R.status, 502);
  cr_assert_str_eq(R.body, "502 Bad Gateway\n");
  header_is("Connection", "keep-alive");
  /* A body-less request keeps its connection: the next one gets its own answer. */
  last_exchange(fd, "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", 502);
  close(fd);
  it_stop();
}

IT_EACH_STRATEGY(http, garbage_gets_400_and_the_connection_closes) {
  it_start(dispatch, 2, 1, NULL);
  int fd = connect_proxy();
  last_exchange(fd, "HELLO THERE\r\n\r\n", 400);
  cr_assert_str_eq(R.body, "400 Bad Request\n");
  close(fd);
  it_stop();
}

IT_EACH_STRATEGY(http, smuggling_shapes_get_400) {
  static const char *const bad[] = {
      "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: t\nX-A: b\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
      "GET / HTTP/1.1\r\nX-No-Host: 1\r\n\r\n",
  };
  it_start(dispatch, 2, 1, NULL);
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    int fd = connect_proxy();
    cr_assert_eq(hc_roundtrip(fd, bad[i], &R), 0, "case %zu", i);
    cr_assert_eq(R.status, 400, "case %zu: %d", i, R.status);
    cr_assert(hc_wait_closed(fd, 10000));
    close(fd);
  }
  it_stop();
}

IT_EACH_STRATEGY(http, huge_header_gets_431_and_a_large_one_passes) {
  static char req[40000];
  it_start(dispatch, 2, 1, "limits:\n  max_header_bytes: 16k\n");

  int fd = connect_proxy();
  int n = snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: t\r\nX-Big: ");
  memset(req + n, 'a', 12000);
  strcpy(req + n + 12000, "\r\n\r\n");
  cr_assert_eq(hc_roundtrip(fd, req, &R), 0);
  cr_assert_eq(R.status, 200, "a 12 KB head is under the 16k limit");
  memset(req + n, 'b', 20000);
  strcpy(req + n + 20000, "\r\n\r\n");
  last_exchange(fd, req, 431);
  close(fd);
  it_stop();
}

IT_EACH_STRATEGY(http, backend_sees_the_real_client_and_no_hop_by_hop_headers) {
  it_start(dispatch, 2, 1, NULL);
  int fd = hc_connect(T.px.port, "127.0.0.2");
  cr_assert_geq(fd, 0);
  cr_assert_eq(hc_roundtrip(fd,
                            "GET /headers HTTP/1.1\r\nHost: t\r\nConnection: keep-alive, X-Hop\r\n"
                            "X-Hop: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\nX-Keep: yes\r\n\r\n",
                            &R),
               0);
  cr_assert_eq(R.status, 200);
  cr_assert_str_eq(R.body, "GET /headers HTTP/1.1\r\nHost: t\r\nX-Keep: yes\r\n"
                           "X-Forwarded-For: 127.0.0.2\r\n" OURS("t") "\r\n");
  cr_assert_eq(
      hc_roundtrip(fd, "GET /headers HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 10.1.2.3\r\n\r\n", &R),
      0);
  cr_assert_str_eq(R.body, "GET /headers HTTP/1.1\r\nHost: t\r\n"
                           "X-Forwarded-For: 10.1.2.3, 127.0.0.2\r\n" OURS("t") "\r\n");
  close(fd);
  it_stop();
}

IT_EACH_STRATEGY(http, head_responses_have_no_body_and_keep_the_connection) {
  it_start(dispatch, 2, 1, NULL);
  int fd = connect_proxy();
  cr_assert_eq(hc_send_all(fd, "HEAD /bytes?n=5000 HTTP/1.1\r\nHost: t\r\n\r\n", 40), 0);
  cr_assert_eq(hc_read_response(fd, &R, 1), 0);
  cr_assert_eq(R.status, 200);
  cr_assert_eq(R.body_len, 0);
  header_is("Content-Length", "5000");
  cr_assert_eq(hc_roundtrip(fd, "GET /bytes?n=10 HTTP/1.1\r\nHost: t\r\n\r\n", &R), 0);
  cr_assert_eq(R.body_len, 10);
  close(fd);
  it_stop();
}

IT_EACH_STRATEGY(http, pipelined_requests_are_answered_in_order) {
  const char *three = "GET /status?code=201 HTTP/1.1\r\nHost: t\r\n\r\n"
                      "GET /status?code=202 HTTP/1.1\r\nHost: t\r\n\r\n"
                      "GET /status?code=203 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
  it_start(dispatch, 2, 1, NULL);
  int fd = connect_proxy();
  cr_assert_eq(hc_send_all(fd, three, strlen(three)), 0);
  for (int code = 201; code <= 203; code++) {
    cr_assert_eq(hc_read_response(fd, &R, 0), 0);
    cr_assert_eq(R.status, code);
  }
  cr_assert(hc_wait_closed(fd, 10000));
  close(fd);
  it_stop();
}

IT_EACH_STRATEGY(http, a_silent_upstream_gets_504) {
  it_start(dispatch, 2, 1, "timeouts:\n  upstream_response: 300ms\n");
  int64_t t0 = h_now_ms();
  cr_assert_eq(it_get("/hang", &R), 0);
  cr_assert_eq(R.status, 504);
  cr_assert_str_eq(R.body, "504 Gateway Timeout\n");
  cr_assert_geq(h_now_ms() - t0, 300);
  it_stop();
}

IT_EACH_STRATEGY(http, routes_by_host_and_path_and_404s_the_rest) {
  it_start_yaml(dispatch, 2, 2,
                "upstreams:\n"
                "  web:\n    servers: [127.0.0.1:%1$u]\n"
                "  api:\n    servers: [127.0.0.1:%2$u]\n"
                "routes:\n"
                "  - host: api.test\n    upstream: api\n"
                "  - path: /v2/\n    upstream: api\n"
                "  - path: /web/\n    upstream: web\n");
  int fd = connect_proxy();
  cr_assert_eq(hc_roundtrip(fd, "GET / HTTP/1.1\r\nHost: api.test:80\r\n\r\n", &R), 0);
  header_is("X-Backend", "b2");
  cr_assert_eq(hc_roundtrip(fd, "GET /v2/x HTTP/1.1\r\nHost: www.test\r\n\r\n", &R), 0);
  header_is("X-Backend", "b2");
  cr_assert_eq(hc_roundtrip(fd, "GET /web/x HTTP/1.1\r\nHost: www.test\r\n\r\n", &R), 0);
  header_is("X-Backend", "b1");
  cr_assert_eq(hc_roundtrip(fd, "GET /other HTTP/1.1\r\nHost: www.test\r\n\r\n", &R), 0);
  cr_assert_eq(R.status, 404);
  cr_assert(R.keep_alive);
  close(fd);
  it_stop();
}

IT_EACH_STRATEGY(http, http10_clients_get_keep_alive_only_when_they_ask) {
  it_start(dispatch, 2, 1, NULL);
  int fd = connect_proxy();
  cr_assert_eq(hc_roundtrip(fd, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", &R), 0);
  cr_assert_eq(R.status, 200);
  header_is("Connection", "keep-alive");
  last_exchange(fd, "GET / HTTP/1.0\r\n\r\n", 200);
  close(fd);
  it_stop();
}

IT_EACH_STRATEGY(http, connection_close_from_the_client_is_honoured) {
  it_start(dispatch, 2, 1, NULL);
  int fd = connect_proxy();
  last_exchange(fd, "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", 200);
  close(fd);
  it_stop();
}

IT_EACH_STRATEGY(http, expect_100_continue_uploads_complete) {
  static char body[100000];
  char head[256], interim[256];
  size_t got = 0;

  it_start(dispatch, 2, 1, NULL);
  int fd = connect_proxy();
  int hl = snprintf(head, sizeof(head),
                    "POST /sum HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
                    "Content-Length: %zu\r\n\r\n",
                    sizeof(body));
  cr_assert_eq(hc_send_all(fd, head, (size_t)hl), 0);
  /* The 100 Continue comes from the backend, through the proxy, before any body byte. */
  while (got < sizeof(interim) - 1 && (got < 4 || memcmp(interim + got - 4, "\r\n\r\n", 4))) {
    ssize_t n = recv(fd, interim + got, 1, 0);
    cr_assert_eq(n, 1);
    got++;
  }
  interim[got] = '\0';
  cr_assert(strncmp(interim, "HTTP/1.1 100", 12) == 0, "%s", interim);
  memset(body, 'x', sizeof(body));
  cr_assert_eq(hc_send_all(fd, body, sizeof(body)), 0);
  cr_assert_eq(hc_read_response(fd, &R, 0), 0);
  cr_assert_eq(R.status, 200);
  cr_assert_eq(header_u64("X-Body-Len"), sizeof(body));
  close(fd);
  it_stop();
}

IT_EACH_STRATEGY(http, a_request_that_exactly_fills_a_read_buffer_is_answered) {
  /* Regression: when a request's last byte filled the 32 KiB read buffer, the next read had
   * no room and the connection was dropped instead of answered. */
  static char req[32768];
  it_start(dispatch, 2, 1, NULL);
  for (int round = 0; round < 3; round++) {
    int fd = connect_proxy();
    int hl = snprintf(req, sizeof(req),
                      "POST /sum HTTP/1.1\r\nHost: t\r\nContent-Length: %05d\r\n\r\n", 0);
    int blen = (int)sizeof(req) - hl;
    hl = snprintf(req, sizeof(req), "POST /sum HTTP/1.1\r\nHost: t\r\nContent-Length: %05d\r\n\r\n",
                  blen);
    memset(req + hl, 'y', (size_t)blen);
    cr_assert_eq(hc_send_all(fd, req, sizeof(req)), 0);
    cr_assert_eq(hc_read_response(fd, &R, 0), 0, "round %d", round);
    cr_assert_eq(R.status, 200);
    cr_assert_eq(header_u64("X-Body-Len"), (uint64_t)blen);
    close(fd);
  }
  it_stop();
}

static int one_active(const uint64_t *acc, const uint64_t *act, int n, void *arg) {
  uint64_t total = 0;
  for (int i = 0; i < n; i++)
    total += act[i];
  return total == 1;
}

static int all_idle(const uint64_t *acc, const uint64_t *act, int n, void *arg) {
  for (int i = 0; i < n; i++)
    if (act[i] != 0)
      return 0;
  return 1;
}

IT_EACH_STRATEGY(http, a_client_that_stops_reading_is_dropped_after_client_send) {
  uint64_t acc[IT_MAX_WORKERS], act[IT_MAX_WORKERS];
  static char sink[65536];
  uint64_t got = 0;
  ssize_t n;

  it_start(dispatch, 2, 1, "timeouts:\n  client_send: 300ms\n");
  int fd = connect_proxy();
  cr_assert_eq(hc_send_all(fd, "GET /bytes?n=200000000 HTTP/1.1\r\nHost: t\r\n\r\n", 45), 0);
  /* Not reading: socket buffers fill, the proxy's write waits, then gives up. First see the
   * connection counted (reports are coalesced), then see it gone. */
  cr_assert(it_wait_stats(it_log_size(), 30000, one_active, NULL, acc, act),
            "the connection never showed up in the stats");
  cr_assert(it_wait_stats(it_log_size(), 30000, all_idle, NULL, acc, act),
            "the stalled client connection is still open");
  while ((n = recv(fd, sink, sizeof(sink), 0)) > 0)
    got += (uint64_t)n;
  cr_assert_lt(got, 200000000, "the whole body arrived: the connection was not cut");
  close(fd);
  it_stop();
}

IT_EACH_STRATEGY(http, a_slow_request_head_gets_408) {
  it_start(dispatch, 2, 1, "timeouts:\n  client_header: 300ms\n");
  int fd = connect_proxy();
  cr_assert_eq(hc_send_all(fd, "GET / HTTP/1.1\r\nHost: t\r\n", 25), 0);
  cr_assert_eq(hc_read_response(fd, &R, 0), 0);
  cr_assert_eq(R.status, 408);
  cr_assert(hc_wait_closed(fd, 10000));
  close(fd);
  it_stop();
}

IT_EACH_STRATEGY(http, an_idle_keep_alive_connection_is_closed_after_client_idle) {
  it_start(dispatch, 2, 1, "timeouts:\n  client_idle: 300ms\n");
  int fd = connect_proxy();
  cr_assert_eq(hc_roundtrip(fd, "GET / HTTP/1.1\r\nHost: t\r\n\r\n", &R), 0);
  cr_assert_eq(R.status, 200);
  cr_assert(hc_wait_closed(fd, 10000));
  close(fd);
  it_stop();
}

/* ---- regressions found in review ---- */

IT_EACH_STRATEGY(http, an_early_response_while_the_body_still_arrives_is_delivered_whole) {
  /* The backend answers /early at the head, before reading the body (like a 413). The client
   * keeps sending its body while reading: the response completes while the request is still
   * arriving. That must neither crash the worker nor truncate the response. */
  static unsigned char chunk[16384];
  const uint64_t resp_len = 2 << 20, body_len = 8 << 20;
  char head[160];
  uint64_t sent = 0;

  it_start(dispatch, 2, 1, NULL);
  memset(chunk, 'z', sizeof(chunk));
  for (int round = 0; round < 3; round++) {
    int fd = connect_proxy();
    int hl = snprintf(head, sizeof(head),
                      "POST /early?n=%llu HTTP/1.1\r\nHost: t\r\nContent-Length: %llu\r\n\r\n",
                      (unsigned long long)resp_len, (unsigned long long)body_len);
    cr_assert_eq(hc_send_all(fd, head, (size_t)hl), 0);
    /* Send a part of the body, enough to be mid-body when the response completes, without
     * blocking on a proxy that stops reading once the exchange is over. */
    for (sent = 0; sent < 256 * 1024; sent += sizeof(chunk))
      if (send(fd, chunk, sizeof(chunk), MSG_DONTWAIT) < 0)
        break;
    cr_assert_eq(hc_read_response(fd, &R, 0), 0, "%s round %d: the response was cut", dispatch,
                 round);
    cr_assert_eq(R.status, 200);
    cr_assert_eq(R.body_len, resp_len);
    cr_assert_eq(R.body_fnv, hc_pattern_fnv(resp_len));
    header_is("Connection", "close");
    close(fd);
  }
  cr_assert_eq(it_get("/", &R), 0);
  cr_assert_eq(R.status, 200);
  cr_assert_eq(h_count_lines(T.px.proc.log, " exit pid="), 0, "a worker died");
  it_stop();
}

IT_EACH_STRATEGY(http, a_pipelined_head_cut_by_a_full_buffer_is_completed) {
  /* A 20 KB POST and a GET with a 14 KB header in one write: the GET's head does not fit in
   * the buffer left after the POST, so reading must resume once the POST is answered. */
  static char req[40000], body[20000];
  int n;

  it_start(dispatch, 2, 1, NULL);
  memset(body, 'p', sizeof(body));
  n = snprintf(req, sizeof(req), "POST /sum HTTP/1.1\r\nHost: t\r\nContent-Length: %zu\r\n\r\n",
               sizeof(body));
  memcpy(req + n, body, sizeof(body));
  n += (int)sizeof(body);
  n += snprintf(req + n, sizeof(req) - (size_t)n, "GET / HTTP/1.1\r\nHost: t\r\nX-Big: ");
  memset(req + n, 'g', 14000);
  n += 14000;
  n += snprintf(req + n, sizeof(req) - (size_t)n, "\r\n\r\n");
  int fd = connect_proxy();
  cr_assert_eq(hc_send_all(fd, req, (size_t)n), 0);
  cr_assert_eq(hc_read_response(fd, &R, 0), 0);
  cr_assert_eq(R.status, 200);
  cr_assert_eq(header_u64("X-Body-Len"), sizeof(body));
  cr_assert_eq(hc_read_response(fd, &R, 0), 0);
  cr_assert_eq(R.status, 200, "the pipelined GET got %d", R.status);
  close(fd);
  it_stop();
}

IT_EACH_STRATEGY(http, an_upgrade_the_server_refuses_continues_as_http) {
  it_start(dispatch, 2, 1, NULL);
  int fd = connect_proxy();
  cr_assert_eq(hc_roundtrip(fd,
                            "GET /headers HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, X-Hop\r\n"
                            "Upgrade: websocket\r\nX-Hop: 1\r\n\r\n",
                            &R),
               0);
  cr_assert_eq(R.status, 200);
  /* Forwarded as a tunnel request (our own Connection line), answered as plain HTTP. */
  cr_assert_str_eq(R.body,
                   "GET /headers HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
                   "X-Forwarded-For: 127.0.0.1\r\n" OURS("t") "Connection: upgrade\r\n\r\n");
  cr_assert(R.keep_alive);
  cr_assert_eq(hc_roundtrip(fd, "GET / HTTP/1.1\r\nHost: t\r\n\r\n", &R), 0);
  cr_assert_eq(R.status, 200);
  close(fd);
  it_stop();
}

IT_EACH_STRATEGY(http, x_forwarded_for_cannot_be_hidden_or_emptied) {
  it_start(dispatch, 2, 1, NULL);
  int fd = connect_proxy();
  cr_assert_eq(hc_roundtrip(fd,
                            "GET /headers HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 1.2.3.4\r\n"
                            "Connection: X-Forwarded-For\r\n\r\n",
                            &R),
               0);
  cr_assert_str_eq(R.body, "GET /headers HTTP/1.1\r\nHost: t\r\n"
                           "X-Forwarded-For: 1.2.3.4, 127.0.0.1\r\n" OURS("t") "\r\n");
  cr_assert_eq(hc_roundtrip(fd, "GET /headers HTTP/1.1\r\nHost: t\r\nX-Forwarded-For:\r\n\r\n", &R),
               0);
  cr_assert_str_eq(
      R.body,
      "GET /headers HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 127.0.0.1\r\n" OURS("t") "\r\n");
  close(fd);
  it_stop();
}

IT_EACH_STRATEGY(http, folded_headers_and_chunked_http10_requests_get_400) {
  static const char *const bad[] = {
      "GET / HTTP/1.1\r\nHost: t\r\nX-A: 1\r\nX-Foo: a\r\n b\r\nConnection: x-foo\r\n\r\n",
      "POST /sum HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
      "GET http://no-path HTTP/1.1\r\nHost: t\r\n\r\n",
  };
  it_start(dispatch, 2, 1, NULL);
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    int fd = connect_proxy();
    cr_assert_eq(hc_roundtrip(fd, bad[i], &R), 0, "case %zu", i);
    cr_assert_eq(R.status, 400, "case %zu: %d", i, R.status);
    close(fd);
  }
  it_stop();
}

IT_EACH_STRATEGY(http, an_absolute_form_target_routes_by_its_authority_and_becomes_origin_form) {
  it_start_yaml(dispatch, 2, 2,
                "upstreams:\n"
                "  web:\n    servers: [127.0.0.1:%1$u]\n"
                "  api:\n    servers: [127.0.0.1:%2$u]\n"
                "routes:\n"
                "  - host: api.test\n    upstream: api\n"
                "  - upstream: web\n");
  int fd = connect_proxy();
  cr_assert_eq(hc_roundtrip(fd,
                            "GET http://api.test:80/headers?x=1 HTTP/1.1\r\nHost: web.test\r\n"
                            "Accept: */*\r\n\r\n",
                            &R),
               0);
  cr_assert_eq(R.status, 200);
  header_is("X-Backend", "b2");
  cr_assert_str_eq(R.body, "GET /headers?x=1 HTTP/1.1\r\nAccept: */*\r\nHost: api.test:80\r\n"
                           "X-Forwarded-For: 127.0.0.1\r\n" OURS("api.test:80") "\r\n");
  close(fd);
  it_stop();
}

IT_EACH_STRATEGY(http, a_client_that_half_closes_after_pipelining_gets_every_response) {
  const char *three = "GET /status?code=201 HTTP/1.1\r\nHost: t\r\n\r\n"
                      "GET /status?code=202 HTTP/1.1\r\nHost: t\r\n\r\n"
                      "GET /status?code=203 HTTP/1.1\r\nHost: t\r\n\r\n";
  it_start(dispatch, 2, 1, NULL);
  int fd = connect_proxy();
  cr_assert_eq(hc_send_all(fd, three, strlen(three)), 0);
  cr_assert_eq(shutdown(fd, SHUT_WR), 0);
  for (int code = 201; code <= 203; code++) {
    cr_assert_eq(hc_read_response(fd, &R, 0), 0, "no response %d", code);
    cr_assert_eq(R.status, code);
  }
  cr_assert(hc_wait_closed(fd, 10000));
  close(fd);
  it_stop();
}

IT_EACH_STRATEGY(http, a_431_reaches_a_client_still_sending_its_head) {
  /* Without a lingering close, closing with unread bytes sends RST, and the client's kernel
   * throws the 431 away before it is read. */
  static char req[200000];
  int n = snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: t\r\n");

  it_start(dispatch, 2, 1, NULL);
  while (n < (int)sizeof(req) - 64)
    n += snprintf(req + n, sizeof(req) - (size_t)n, "X-Pad: %060d\r\n", n);
  int fd = connect_proxy();
  for (int off = 0; off < n;) {
    ssize_t k = send(fd, req + off, (size_t)(n - off), 0);
    if (k <= 0)
      break; /* the proxy may stop reading: what matters is the answer */
    off += (int)k;
  }
  cr_assert_eq(hc_read_response(fd, &R, 0), 0, "the 431 was lost");
  cr_assert_eq(R.status, 431);
  close(fd);
  it_stop();
}

IT_EACH_STRATEGY(http, a_client_reset_frees_its_worker_connection_at_once) {
  /* The header deadline is long, so only the reset itself can end the connection in time
   * (in the proxy strategy the master's relay must pass it on to the worker as a reset). */
  uint64_t acc[IT_MAX_WORKERS], act[IT_MAX_WORKERS];
  struct linger lg = {1, 0};

  it_start(dispatch, 2, 1, "timeouts:\n  client_header: 60s\n");
  int fd = connect_proxy();
  cr_assert_eq(hc_send_all(fd, "GET / HTTP/1.1\r\nHost: t\r\n", 25), 0);
  cr_assert(it_wait_stats(it_log_size(), 20000, one_active, NULL, acc, act),
            "the connection never showed up in the stats");
  cr_assert_eq(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
  close(fd); /* RST */
  cr_assert(it_wait_stats(it_log_size(), 20000, all_idle, NULL, acc, act),
            "the reset connection is still open in a worker");
  it_stop();
}
