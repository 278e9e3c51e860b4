/* Tunnels through the real proxy, once per dispatch strategy: WebSocket (Upgrade) to the test
 * backend's echo, and tcp listeners with a raw binary protocol. */
#include "itest.h"
#include "pattern.h"
#include "ws.h"

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static struct hc_resp R;

static int connect_proxy(void) {
  int fd = hc_connect(T.px.port, NULL);
  cr_assert_geq(fd, 0, "connect: %s", strerror(-fd));
  return fd;
}

/* ---- a WebSocket client on a blocking socket ---- */

/* The key and accept value of RFC 6455's own example. */
#define WS_KEY    "dGhlIHNhbXBsZSBub25jZQ=="
#define WS_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

/* Reads a response head byte by byte (so that no frame byte behind it is consumed). */
static void read_head(int fd, char *head, size_t cap) {
  size_t n = 0;

  while (n < cap - 1 && (n < 4 || memcmp(head + n - 4, "\r\n\r\n", 4) != 0)) {
    ssize_t r = recv(fd, head + n, 1, 0);
    cr_assert_eq(r, 1, "the connection ended inside a response head (%zu bytes)", n);
    n++;
  }
  head[n] = '\0';
}

/* The handshake for /ws; `early` (may be NULL) is sent right behind it, before the 101. */
static void ws_handshake(int fd, const void *early, size_t early_len) {
  static char req[1024], head[4096];
  int n = snprintf(req, sizeof(req),
                   "GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: " WS_KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n");

  cr_assert_eq(hc_send_all(fd, req, (size_t)n), 0);
  if (early != NULL)
    cr_assert_eq(hc_send_all(fd, early, early_len), 0);
  read_head(fd, head, sizeof(head));
  cr_assert(strncmp(head, "HTTP/1.1 101 ", 13) == 0, "not a 101:\n%s", head);
  cr_assert(strstr(head, "\r\nSec-WebSocket-Accept: " WS_ACCEPT "\r\n") != NULL, "%s", head);
  cr_assert(strstr(head, "\r\nUpgrade: websocket\r\n") != NULL, "%s", head);
  cr_assert(strstr(head, "\r\nConnection: upgrade\r\n") != NULL, "%s", head);
}

static size_t frame(uint8_t *out, int opcode, const void *data, size_t len) {
  static const uint8_t mask[4] = {0x12, 0x34, 0x56, 0x78};
  size_t h = ws_frame_head(out, 1, opcode, len, mask);

  memcpy(out + h, data, len);
  ws_unmask(out + h, len, mask, 0);
  return h + len;
}

static void ws_send(int fd, int opcode, const void *data, size_t len) {
  static uint8_t buf[1 << 16];
  cr_assert_leq(len + 14, sizeof(buf));
  cr_assert_eq(hc_send_all(fd, buf, frame(buf, opcode, data, len)), 0);
}

static void recv_all(int fd, void *p, size_t n) {
  for (size_t got = 0; got < n;) {
    ssize_t r = recv(fd, (char *)p + got, n - got, 0);
    cr_assert_gt(r, 0, "the tunnel ended early (%zd, %s)", r, strerror(errno));
    got += (size_t)r;
  }
}

/* Reads one frame's header from the server (never masked). */
static void ws_recv_head(int fd, struct ws_head *h) {
  uint8_t b;
  int done = 0;

  memset(h, 0, sizeof(*h));
  while (!done) {
    recv_all(fd, &b, 1);
    ws_head_feed(h, &b, 1, &done);
  }
  cr_assert(!h->masked, "a server frame was masked");
}

/* Reads one whole frame: its opcode, payload into buf (at most cap), its length. */
static size_t ws_recv(int fd, int *opcode, void *buf, size_t cap) {
  struct ws_head h;

  ws_recv_head(fd, &h);
  cr_assert_leq(h.len, cap);
  recv_all(fd, buf, (size_t)h.len);
  *opcode = h.opcode;
  return (size_t)h.len;
}

static void ws_close(int fd) {
  uint8_t payload[2] = {0x03, 0xe8}, buf[64]; /* 1000: normal closure */
  int op;

  ws_send(fd, WS_CLOSE, payload, 2);
  cr_assert_eq(ws_recv(fd, &op, buf, sizeof(buf)), 2);
  cr_assert_eq(op, WS_CLOSE);
  cr_assert(hc_wait_closed(fd, 10000), "the tunnel stayed open after the close frames");
}

IT_EACH_STRATEGY(tunnel, websocket_text_and_binary_frames_are_echoed) {
  uint8_t bin[3000], got[4096];
  int fd, op;

  it_start(dispatch, 2, 1, NULL);
  fd = connect_proxy();
  ws_handshake(fd, NULL, 0);
  ws_send(fd, WS_TEXT, "hello, tunnel", 13);
  cr_assert_eq(ws_recv(fd, &op, got, sizeof(got)), 13);
  cr_assert_eq(op, WS_TEXT);
  cr_assert_arr_eq(got, "hello, tunnel", 13);
  for (size_t i = 0; i < sizeof(bin); i++)
    bin[i] = (uint8_t)(i * 7 + 3);
  ws_send(fd, WS_BINARY, bin, sizeof(bin));
  cr_assert_eq(ws_recv(fd, &op, got, sizeof(got)), sizeof(bin));
  cr_assert_eq(op, WS_BINARY);
  cr_assert_arr_eq(got, bin, sizeof(bin));
  ws_send(fd, WS_PING, "p", 1);
  cr_assert_eq(ws_recv(fd, &op, got, sizeof(got)), 1);
  cr_assert_eq(op, WS_PONG);
  ws_close(fd);
  close(fd);
  it_stop();
}

IT_EACH_STRATEGY(tunnel, frames_sent_before_the_101_arrive_first) {
  uint8_t early[64], got[64];
  int fd, op;
  size_t n = frame(early, WS_TEXT, "early bird", 10);

  it_start(dispatch, 2, 1, NULL);
  fd = connect_proxy();
  ws_handshake(fd, early, n);
  cr_assert_eq(ws_recv(fd, &op, got, sizeof(got)), 10);
  cr_assert_arr_eq(got, "early bird", 10);
  ws_close(fd);
  close(fd);
  it_stop();
}

/* ---- 10 MiB one way while the echo streams back ---- */

struct big {
  int fd;
  uint64_t len;
};

/* Sends one binary frame of `len` pattern bytes, masked, in uneven pieces. */
static void *send_big(void *arg) {
  static const uint8_t mask[4] = {0xa5, 0x5a, 0x3c, 0xc3};
  struct big *b = arg;
  static uint8_t buf[70000];
  size_t h = ws_frame_head(buf, 1, WS_BINARY, b->len, mask);

  cr_assert_eq(hc_send_all(b->fd, buf, h), 0);
  for (uint64_t off = 0; off < b->len;) {
    size_t k = 1 + (size_t)(off * 7919 % 65000);
    if (k > b->len - off)
      k = (size_t)(b->len - off);
    pattern_fill(off, buf, k);
    ws_unmask(buf, k, mask, off);
    cr_assert_eq(hc_send_all(b->fd, buf, k), 0);
    off += k;
  }
  return NULL;
}

IT_EACH_STRATEGY(tunnel, a_ten_mib_message_goes_through_both_ways_intact) {
  static uint8_t buf[65536];
  struct big b = {.len = 10 << 20};
  struct ws_head h;
  uint64_t fnv = HC_FNV_INIT;
  pthread_t th;

  it_start(dispatch, 2, 1, NULL);
  b.fd = connect_proxy();
  ws_handshake(b.fd, NULL, 0);
  /* Write and read at once: the echo streams back while the message is still being sent, and
   * every buffer on the way is far smaller than the message. */
  pthread_create(&th, NULL, send_big, &b);
  ws_recv_head(b.fd, &h);
  cr_assert_eq(h.opcode, WS_BINARY);
  cr_assert_eq(h.len, b.len);
  for (uint64_t got = 0; got < b.len;) {
    size_t k = b.len - got < sizeof(buf) ? (size_t)(b.len - got) : sizeof(buf);
    ssize_t r = recv(b.fd, buf, k, 0);
    cr_assert_gt(r, 0, "the tunnel ended after %llu bytes", (unsigned long long)got);
    fnv = hc_fnv(fnv, buf, (size_t)r);
    got += (uint64_t)r;
  }
  pthread_join(th, NULL);
  cr_assert_eq(fnv, hc_pattern_fnv(b.len), "the echoed message differs");
  ws_close(b.fd);
  close(b.fd);
  it_stop();
}

IT_EACH_STRATEGY(tunnel, a_silent_tunnel_ends_after_tunnel_idle) {
  int64_t t0;
  int fd;

  it_start(dispatch, 2, 1, "timeouts:\n  tunnel_idle: 300ms\n  client_idle: 60s\n");
  fd = connect_proxy();
  ws_handshake(fd, NULL, 0);
  t0 = h_now_ms();
  cr_assert(hc_wait_closed(fd, 10000), "the idle tunnel stayed open");
  cr_assert_geq(h_now_ms() - t0, 250);
  close(fd);
  it_stop();
}

IT_EACH_STRATEGY(tunnel, an_upgrade_on_a_post_is_an_ordinary_request) {
  it_start(dispatch, 2, 1, NULL);
  int fd = connect_proxy();
  cr_assert_eq(hc_roundtrip(fd,
                            "POST /headers HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
                            "Connection: Upgrade\r\nContent-Length: 0\r\n\r\n",
                            &R),
               0);
  cr_assert_eq(R.status, 200);
  cr_assert_null(strstr(R.body, "Upgrade"), "Upgrade was forwarded:\n%s", R.body);
  cr_assert_eq(hc_roundtrip(fd, "GET / HTTP/1.1\r\nHost: t\r\n\r\n", &R), 0);
  cr_assert_eq(R.status, 200);
  close(fd);
  it_stop();
}

IT_EACH_STRATEGY(tunnel, tunnels_open_at_a_stop_are_closed_and_the_stop_is_clean) {
  uint8_t got[16];
  int fd[3], op;

  it_start(dispatch, 2, 1, NULL);
  for (int i = 0; i < 3; i++) {
    fd[i] = connect_proxy();
    ws_handshake(fd[i], NULL, 0);
    ws_send(fd[i], WS_TEXT, "x", 1);
    cr_assert_eq(ws_recv(fd[i], &op, got, sizeof(got)), 1);
  }
  it_stop(); /* exit status 0, no sanitizer report: tunnels torn down in the middle */
  for (int i = 0; i < 3; i++) {
    cr_assert(hc_wait_closed(fd[i], 10000));
    close(fd[i]);
  }
}

/* ---- tcp listeners ---- */

/* Starts b1 (HTTP) and `nraw` raw echo backends r1.. (T.be[1..]), and lbproxy with an http
 * listener over b1 (T.px.port) and a tcp listener over the raw ones on 127.0.0.2 (two listeners
 * on one host at port 0 would be one socket to the master's registry); returns the tcp port. */
static uint16_t start_tcp(const char *dispatch, int nraw, const char *top) {
  static const char *const raw[] = {"--raw", "1", NULL};
  char yaml[4096], line[1024], v[256], name[16];
  size_t n;
  int rc;

  memset(&T, 0, sizeof(T));
  cr_assert_eq(h_tmpdir(T.dir, sizeof(T.dir)), 0);
  T.dispatch = dispatch;
  T.workers = 2;
  for (int i = 0; i <= nraw; i++) {
    snprintf(name, sizeof(name), i == 0 ? "b1" : "r%d", i);
    cr_assert_eq(h_backend_start(&T.be[i], T.dir, name, i == 0 ? NULL : raw), 0, "%s", name);
    T.nbe = i + 1;
  }
  n = (size_t)snprintf(yaml, sizeof(yaml),
                       "workers: 2\ndispatch: %s\nstats_interval: 100ms\n%s"
                       "listeners:\n  - listen: 127.0.0.1:0\n"
                       "  - listen: 127.0.0.2:0\n    mode: tcp\n    upstream: raw\n"
                       "upstreams:\n  app:\n    servers: [127.0.0.1:%u]\n  raw:\n    servers:\n",
                       dispatch, top ? top : "", T.be[0].port);
  for (int i = 1; i <= nraw; i++)
    n += (size_t)snprintf(yaml + n, sizeof(yaml) - n, "      - 127.0.0.1:%u\n", T.be[i].port);
  snprintf(yaml + n, sizeof(yaml) - n, "routes:\n  - upstream: app\n");
  rc = h_proxy_start(&T.px, T.dir, yaml);
  if (rc != 0)
    it_dump(T.px.proc.log);
  cr_assert_eq(rc, 0, "lbproxy did not start");
  T.started = 1;
  cr_assert_gt(h_wait_line(T.px.proc.log, "ready listen=", 0, 1000, line, sizeof(line)), 0);
  cr_assert_eq(h_line_field(line, "listeners", v, sizeof(v)), 0, "%s", line);
  return (uint16_t)atoi(strrchr(v, ':') + 1);
}

/* A connection to the tcp listener (on 127.0.0.2). */
static int tcp_connect(uint16_t port) {
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
  int fd = socket(AF_INET, SOCK_STREAM, 0);

  cr_assert_geq(fd, 0);
  inet_pton(AF_INET, "127.0.0.2", &sa.sin_addr);
  cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "connect: %s", strerror(errno));
  return fd;
}

struct raw_send {
  int fd;
  uint64_t len, fnv;
};

/* Sends `len` pseudo-random bytes in uneven pieces, then half-closes. */
static void *raw_sender(void *arg) {
  struct raw_send *s = arg;
  static unsigned char buf[70000];
  unsigned seed = 7;

  s->fnv = HC_FNV_INIT;
  for (uint64_t off = 0; off < s->len;) {
    size_t k = 1 + (size_t)(off * 104729 % 65000);
    if (k > s->len - off)
      k = (size_t)(s->len - off);
    for (size_t i = 0; i < k; i++)
      buf[i] = (unsigned char)rand_r(&seed);
    s->fnv = hc_fnv(s->fnv, buf, k);
    cr_assert_eq(hc_send_all(s->fd, buf, k), 0);
    off += k;
  }
  cr_assert_eq(shutdown(s->fd, SHUT_WR), 0);
  return NULL;
}

/* Sends `len` random bytes through the tcp listener while reading the echo, then the backend's
 * trailer after our half-close, then EOF; checks both checksums. The backend's name. */
static void raw_exchange(uint16_t port, uint64_t len, char *backend, size_t cap) {
  static char buf[65536], trailer[256];
  struct raw_send s = {.len = len};
  uint64_t got = 0, fnv = HC_FNV_INIT, tlen = 0;
  char want[64], v[64];
  pthread_t th;
  ssize_t r;

  s.fd = tcp_connect(port);
  pthread_create(&th, NULL, raw_sender, &s);
  while ((r = recv(s.fd, buf, sizeof(buf), 0)) > 0) {
    size_t echo = got < len ? (size_t)(len - got < (uint64_t)r ? len - got : (uint64_t)r) : 0;
    fnv = hc_fnv(fnv, buf, echo);
    cr_assert_lt(tlen + (size_t)r - echo, sizeof(trailer));
    memcpy(trailer + tlen, buf + echo, (size_t)r - echo);
    tlen += (size_t)r - echo;
    got += (uint64_t)r;
  }
  pthread_join(th, NULL);
  close(s.fd);
  trailer[tlen] = '\0';
  cr_assert_eq(r, 0, "the connection was reset (%s)", strerror(errno));
  cr_assert_geq(got, len, "only %llu of %llu bytes came back", (unsigned long long)got,
                (unsigned long long)len);
  cr_assert_eq(fnv, s.fnv, "the echo differs from what was sent");
  snprintf(want, sizeof(want), "len=%llu fnv=%016llx\n", (unsigned long long)len,
           (unsigned long long)s.fnv);
  cr_assert(strstr(trailer, want) != NULL, "the backend got something else: %s", trailer);
  cr_assert_eq(h_line_field(trailer, "name", v, sizeof(v)), 0, "%s", trailer);
  cr_assert_lt(strlen(v), cap);
  memcpy(backend, v, strlen(v) + 1);
}

IT_EACH_STRATEGY(tcp, random_bytes_both_ways_and_half_closes_pass_through_intact) {
  char name[32];
  uint16_t port = start_tcp(dispatch, 1, NULL);

  raw_exchange(port, 4 << 20, name, sizeof(name));
  cr_assert_str_eq(name, "r1");
  raw_exchange(port, 1, name, sizeof(name));
  /* The http listener serves on beside it. */
  cr_assert_eq(it_get("/", &R), 0);
  cr_assert_eq(R.status, 200);
  it_stop();
}

IT_EACH_STRATEGY(tcp, connections_are_balanced_and_a_dead_server_is_skipped) {
  char name[32];
  int r1 = 0, r2 = 0;
  uint16_t port = start_tcp(dispatch, 2, NULL);

  for (int i = 0; i < 4; i++) {
    raw_exchange(port, 1000, name, sizeof(name));
    r1 += strcmp(name, "r1") == 0;
    r2 += strcmp(name, "r2") == 0;
  }
  cr_assert_eq(r1, 2, "r1 served %d of 4", r1);
  cr_assert_eq(r2, 2, "r2 served %d of 4", r2);
  h_backend_stop(&T.be[1]); /* r1: its connects are refused now */
  for (int i = 0; i < 4; i++) {
    raw_exchange(port, 1000, name, sizeof(name));
    cr_assert_str_eq(name, "r2", "connection %d", i);
  }
  it_stop();
}

IT_EACH_STRATEGY(tcp, with_no_server_reachable_the_client_is_closed) {
  uint16_t port = start_tcp(dispatch, 1, NULL);
  int fd;

  h_backend_stop(&T.be[1]);
  fd = tcp_connect(port);
  cr_assert(hc_wait_closed(fd, 10000), "the client stayed open with no server to reach");
  close(fd);
  it_stop();
}

IT_EACH_STRATEGY(tcp, a_silent_connection_ends_after_tcp_idle) {
  uint16_t port = start_tcp(dispatch, 1, "timeouts:\n  tcp_idle: 300ms\n");
  int64_t t0 = h_now_ms();
  int fd = tcp_connect(port);

  cr_assert(hc_wait_closed(fd, 10000), "the idle connection stayed open");
  cr_assert_geq(h_now_ms() - t0, 250);
  close(fd);
  it_stop();
}
