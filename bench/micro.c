/* lbp-micro: the per-request and per-connection hot paths in a loop, counted under callgrind. */

/*
 * Usage: lbp-micro head|handoff|handoff-batch[:N]|select[:ALGORITHM] ITERATIONS
 *
 * 1. "head" does, per iteration, what a worker does for one keep-alive request (proxy/client.c):
 *    llhttp over a typical 400-byte browser request head with px_request_settings (pausing at
 *    headers complete), px_head_complete, px_route against a three-route config parsed by
 *    cfg_parse, px_head_iov (hop-by-hop lines dropped, X-Forwarded-For extended), then the
 *    empty execute that reaches message complete, so the parser is ready for the next request.
 * 2. "handoff" passes one accepted TCP socket over an IPC socketpair per iteration, as the
 *    master does with IPC_CONN (ipc_send_small with the handle), and receives it as a worker
 *    does: the frame is decoded, the fd is accepted into a uv_tcp_t, which is then closed. Both
 *    ends live in one process and one libuv loop; the loop runs until the frame has arrived,
 *    the received handle is closed and the send callback has run.
 * 2a. "handoff-batch" hands N accepted TCP sockets (default and at most IPC_BATCH_MAX, 32) over
 *    in one batch, as the master does with the connections of one accept wakeup: N CONN frames
 *    (sequence number, listener 0, flag PEER and the client's address from accept4), each laid
 *    out with ipc_frame, leave with their N fds in one ipc_send_frames_now (one sendmsg); the
 *    worker end decodes each frame as worker.c take_conn does (ipc_get_peer included), accepts
 *    its fd into a uv_tcp_t and closes it; the loop runs until all N are closed. The master's
 *    own batch logic (handoff.c stage, send_staged) is static and tied to its workers, so it is
 *    not in the count; nor are the worker's STATUS ack and the master's close of its copies
 *    ("handoff" leaves them out too). ITERATIONS counts connections, not batches (the last
 *    batch is smaller when N does not divide it), so Ir / ITERATIONS is per connection and
 *    compares with "handoff".
 * 2b. "select" picks a server and releases it, as a worker does once per request attempt
 *    (balancer.h: bal_select, bal_release), in a pool of 8 servers of weights 1 to 3 with
 *    in-flight counters in (here, local) shared memory and passive failure accounting on.
 *    "select" is round_robin; "select:least_conn", "select:random2", "select:hash" the
 *    others (hash includes bal_hash_key of an 8-byte key).
 * 3. A warm-up (a tenth of the iterations, at least 100) runs first, so lazy symbol binding and
 *    first-touch costs are not counted; then CALLGRIND_START_INSTRUMENTATION, the measured
 *    loop, CALLGRIND_STOP_INSTRUMENTATION. Run under
 *      valgrind --tool=callgrind --instr-atstart=no lbp-micro head 100000
 *    and divide the total Ir by ITERATIONS. Without valgrind the macros do nothing and the
 *    wall-clock time per iteration is printed instead (noisy; callgrind's count is the figure).
 * 4. Each mode checks its result (route, iovec count, byte count, fds received, every server
 *    picked and every counter back to 0) and exits 1 if
 *    something is off, so a broken hot path cannot produce a flattering number. handoff-batch
 *    checks each frame's sequence number and address in every batch, and in the warm-up and
 *    one batch after the measured loop also that each fd received is a stream socket of its
 *    own, connected to the client its frame names (check_got).
 */
#include "balancer.h"
#include "config.h"
#include "http_head.h"
#include "ipc.h"
#include "router.h"

#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifdef LBP_HAVE_CALLGRIND_H
#include <valgrind/callgrind.h>
#else
#define CALLGRIND_START_INSTRUMENTATION
#define CALLGRIND_STOP_INSTRUMENTATION
#endif

static const char cfg_yaml[] = "listen: 127.0.0.1:0\n"
                               "workers: 1\n"
                               "upstreams:\n"
                               "  api:\n"
                               "    servers:\n"
                               "      - 127.0.0.1:9001\n"
                               "      - 127.0.0.1:9002\n"
                               "  web:\n"
                               "    servers:\n"
                               "      - 127.0.0.1:9003\n"
                               "  static:\n"
                               "    servers:\n"
                               "      - 127.0.0.1:9004\n"
                               "routes:\n"
                               "  - host: static.example.com\n"
                               "    upstream: static\n"
                               "  - host: app.example.com\n"
                               "    path: /api/\n"
                               "    upstream: api\n"
                               "  - path: /\n"
                               "    upstream: web\n";

/* A browser-like request as a proxy sees it: keep-alive, a cookie, and a hop-by-hop header. */
static const char request[] =
    "GET /api/v1/items?id=42&sort=desc HTTP/1.1\r\n"
    "Host: app.example.com\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n"
    "Accept: application/json, text/plain, */*\r\n"
    "Accept-Language: en-US,en;q=0.5\r\n"
    "Accept-Encoding: gzip, deflate, br\r\n"
    "Connection: keep-alive\r\n"
    "Keep-Alive: timeout=5\r\n"
    "Cookie: session=7f3a9c2e41d84b6fa0c5e9d1b2a3c4d5; theme=dark\r\n"
    "X-Forwarded-For: 198.51.100.7\r\n"
    "\r\n";

static long long now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* ---- head: parse + route + rewrite ---- */

struct head_bench {
  const struct lbp_config *cfg;
  llhttp_t parser;
  struct px_head head;
  size_t bytes; /* forwarded bytes, summed so the work cannot be optimized away */
};

/* One request through the worker's head path. Returns the route index, or -1 on any failure. */
static int head_once(struct head_bench *b) {
  static const char xff_text[] = ", 192.0.2.10";
  const uint32_t len = sizeof(request) - 1;
  uv_buf_t iov[PX_HEAD_MAX_IOV], xff = uv_buf_init((char *)xff_text, sizeof(xff_text) - 1);
  llhttp_errno_t err;
  uint32_t end;
  int route, n;

  px_head_reset(&b->head, request, 1, 0);
  err = llhttp_execute(&b->parser, request, len);
  if (err != HPE_PAUSED)
    return -1;
  end = (uint32_t)(llhttp_get_error_pos(&b->parser) - request);
  llhttp_resume(&b->parser);
  if (end != len || px_head_complete(&b->head, end) < 0 || !llhttp_should_keep_alive(&b->parser))
    return -1;
  route = px_route(b->cfg, request + b->head.host.off, b->head.host.len, request + b->head.url.off,
                   b->head.url.len);
  n = px_head_iov(&b->head, &xff, NULL, 0, 0, iov, PX_HEAD_MAX_IOV);
  if (n < 0)
    return -1;
  for (int i = 0; i < n; i++)
    b->bytes += iov[i].len;
  /* No body: an empty execute runs the parser to message complete (client.c finish_bodyless). */
  if (llhttp_execute(&b->parser, request + len, 0) != HPE_PAUSED)
    return -1;
  llhttp_resume(&b->parser);
  return route;
}

static int run_head(long iters) {
  struct head_bench b;
  struct lbp_config *cfg;
  struct cfg_error cerr;
  long warm = iters / 10 > 100 ? iters / 10 : 100;
  long long t0;
  int bad = 0, rc;

  rc = cfg_parse("micro.yaml", cfg_yaml, sizeof(cfg_yaml) - 1, &cfg, &cerr);
  if (rc != 0) {
    fprintf(stderr, "lbp-micro: %s\n", cerr.msg);
    return 1;
  }
  memset(&b, 0, sizeof(b));
  b.cfg = cfg;
  llhttp_init(&b.parser, HTTP_REQUEST, &px_request_settings);
  b.parser.data = &b.head;
  for (long i = 0; i < warm; i++)
    bad |= head_once(&b) != 1;
  b.bytes = 0;
  t0 = now_ns();
  CALLGRIND_START_INSTRUMENTATION;
  for (long i = 0; i < iters; i++)
    bad |= head_once(&b) != 1;
  CALLGRIND_STOP_INSTRUMENTATION;
  t0 = now_ns() - t0;
  /* Connection and Keep-Alive are dropped; ", 192.0.2.10" extends X-Forwarded-For. */
  if (bad || b.bytes != (size_t)iters * (sizeof(request) - 1 - 24 - 23 + 12)) {
    fprintf(stderr, "lbp-micro: head: wrong route or rewrite (bytes=%zu)\n", b.bytes);
    cfg_free(cfg);
    return 1;
  }
  printf("micro head iterations=%ld head_bytes=%zu route=api ns_per_op=%.1f\n", iters,
         sizeof(request) - 1, (double)t0 / (double)iters);
  cfg_free(cfg);
  return 0;
}

/* ---- handoff: one fd over the IPC channel ---- */

struct handoff_bench {
  uv_loop_t loop;
  struct ipc_channel tx, rx; /* master end, worker end */
  uv_tcp_t conn;             /* the accepted client connection being handed over */
  uv_tcp_t got;              /* the worker's handle for the received fd */
  struct ipc_out out;
  int sent, received, closed, failed;
  uint32_t seq;
};

static void sent_cb(struct ipc_out *out, int status) {
  struct handoff_bench *b =
      (struct handoff_bench *)((char *)out - offsetof(struct handoff_bench, out));
  b->sent = 1;
  b->failed |= status != 0;
}

static void got_close_cb(uv_handle_t *h) {
  struct handoff_bench *b = h->data;
  b->closed = 1;
}

static void rx_frame(struct ipc_channel *ch, uint8_t type, const char *payload, uint32_t len) {
  struct handoff_bench *b = ch->data;

  if (type != IPC_CONN || len != 4 || ipc_get_u32(payload) != b->seq ||
      uv_tcp_init(&b->loop, &b->got) != 0) {
    b->failed = 1;
    return;
  }
  b->got.data = b;
  if (ipc_channel_accept(ch, (uv_stream_t *)&b->got) != 0)
    b->failed = 1;
  b->received = 1;
  uv_close((uv_handle_t *)&b->got, got_close_cb);
}

static void ch_error(struct ipc_channel *ch, int err) {
  struct handoff_bench *b = ch->data;
  fprintf(stderr, "lbp-micro: channel: %s\n", uv_strerror(err));
  b->failed = 1;
}

/* One fd from the master end to the worker end. Returns 0, or -1 on any failure. */
static int handoff_once(struct handoff_bench *b) {
  unsigned char seq[4];

  b->sent = b->received = b->closed = 0;
  ipc_put_u32(seq, ++b->seq);
  if (ipc_send_small(&b->tx, &b->out, IPC_CONN, seq, 4, (uv_stream_t *)&b->conn, sent_cb) != 0)
    return -1;
  while (!(b->sent && b->received && b->closed) && !b->failed)
    uv_run(&b->loop, UV_RUN_ONCE);
  return b->failed ? -1 : 0;
}

/* Real accepted TCP sockets to hand over: n clients connect to one loopback listener, and each
 * is accepted as the master does (non-blocking, its address from accept4 into peers[i] when
 * peers is not NULL). */
static int make_conns(unsigned n, int *clients, int *servers, struct sockaddr_in *peers) {
  struct sockaddr_in sa;
  socklen_t len = sizeof(sa), plen;
  int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), rc = 0;

  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (l < 0 || bind(l, (struct sockaddr *)&sa, len) != 0 || listen(l, (int)n) != 0 ||
      getsockname(l, (struct sockaddr *)&sa, &len) != 0) {
    perror("lbp-micro: loopback listener");
    return -1;
  }
  for (unsigned i = 0; i < n && rc == 0; i++) {
    plen = sizeof(*peers);
    clients[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (clients[i] < 0 || connect(clients[i], (struct sockaddr *)&sa, len) != 0 ||
        (servers[i] = accept4(l, peers ? (struct sockaddr *)&peers[i] : NULL, peers ? &plen : NULL,
                              SOCK_CLOEXEC | SOCK_NONBLOCK)) < 0) {
      perror("lbp-micro: loopback connection");
      rc = -1;
    }
  }
  close(l);
  return rc;
}

static int handoff_setup(struct handoff_bench *b, int *client) {
  int sv[2], server;

  memset(b, 0, sizeof(*b));
  if (uv_loop_init(&b->loop) != 0 || make_conns(1, client, &server, NULL) != 0 ||
      socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
    return -1;
  if (ipc_channel_init(&b->loop, &b->tx, rx_frame, ch_error, b) != 0 ||
      ipc_channel_init(&b->loop, &b->rx, rx_frame, ch_error, b) != 0 ||
      ipc_channel_open(&b->tx, sv[0]) != 0 || ipc_channel_open(&b->rx, sv[1]) != 0 ||
      ipc_channel_start(&b->rx) != 0 || uv_tcp_init(&b->loop, &b->conn) != 0 ||
      uv_tcp_open(&b->conn, server) != 0)
    return -1;
  return 0;
}

static void handoff_teardown(struct handoff_bench *b, int client) {
  ipc_channel_close(&b->tx, NULL);
  ipc_channel_close(&b->rx, NULL);
  uv_close((uv_handle_t *)&b->conn, NULL);
  uv_run(&b->loop, UV_RUN_DEFAULT);
  uv_loop_close(&b->loop);
  close(client);
}

static int run_handoff(long iters) {
  struct handoff_bench b;
  long warm = iters / 10 > 100 ? iters / 10 : 100;
  long long t0;
  int client, bad = 0;

  if (handoff_setup(&b, &client) != 0) {
    fprintf(stderr, "lbp-micro: handoff setup failed: %s\n", strerror(errno));
    return 1;
  }
  for (long i = 0; i < warm && !bad; i++)
    bad |= handoff_once(&b);
  t0 = now_ns();
  CALLGRIND_START_INSTRUMENTATION;
  for (long i = 0; i < iters && !bad; i++)
    bad |= handoff_once(&b);
  CALLGRIND_STOP_INSTRUMENTATION;
  t0 = now_ns() - t0;
  if (bad || b.seq != (uint32_t)(warm + iters)) {
    fprintf(stderr, "lbp-micro: handoff failed after %u fds\n", b.seq);
    return 1;
  }
  handoff_teardown(&b, client);
  printf("micro handoff iterations=%ld ns_per_op=%.1f\n", iters, (double)t0 / (double)iters);
  return 0;
}

/* ---- handoff-batch: N fds over the IPC channel in one sendmsg ---- */

struct batch_bench {
  uv_loop_t loop;
  struct ipc_channel tx, rx; /* master end, worker end */
  unsigned n;                /* connections per batch */
  int clients[IPC_BATCH_MAX];
  int fds[IPC_BATCH_MAX];                  /* the master's copies of the accepted sockets */
  struct sockaddr_in peers[IPC_BATCH_MAX]; /* their client addresses, as accept4 gave them */
  struct ipc_out outs[IPC_BATCH_MAX];
  struct ipc_out *outp[IPC_BATCH_MAX];
  size_t lens[IPC_BATCH_MAX];
  uv_tcp_t got[IPC_BATCH_MAX]; /* the worker's handles for the received fds */
  int got_fd[IPC_BATCH_MAX];   /* their fd numbers (checked batches only) */
  unsigned want, received, closed;
  int failed, check;
  uint32_t seq, rseq; /* last sequence number sent, last received */
};

static int same_peer(const struct sockaddr_in *a, const struct sockaddr_storage *b) {
  const struct sockaddr_in *in = (const struct sockaddr_in *)b;
  return b->ss_family == AF_INET && in->sin_port == a->sin_port &&
         in->sin_addr.s_addr == a->sin_addr.s_addr;
}

/* The checked batches' test of the i-th fd received: a stream socket, a descriptor of its own
 * (not the master's copy, not one received before in this batch: the kernel installs a batch's
 * fds together, so they differ even though each is closed right after it is taken), connected
 * to the client whose address the frame carried, which is the client of the i-th fd sent. */
static int check_got(struct batch_bench *b, unsigned i, const struct sockaddr_storage *peer) {
  struct sockaddr_storage sa;
  socklen_t len = sizeof(int);
  uv_os_fd_t fd;
  int type = 0;

  if (uv_fileno((uv_handle_t *)&b->got[i], &fd) != 0 ||
      getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_STREAM)
    return -1;
  for (unsigned k = 0; k < b->n; k++)
    if (b->fds[k] == fd || (k < i && b->got_fd[k] == fd))
      return -1;
  b->got_fd[i] = fd;
  len = sizeof(sa);
  if (!same_peer(&b->peers[i], peer) || getpeername(fd, (struct sockaddr *)&sa, &len) != 0 ||
      !same_peer(&b->peers[i], &sa))
    return -1;
  return 0;
}

static void batch_close_cb(uv_handle_t *h) {
  struct batch_bench *b = h->data;
  b->closed++;
}

/* The worker's side of one CONN (worker.c take_conn): sequence number, listener index, flags,
 * the client's address; the fd into a fresh uv_tcp_t, closed at once. */
static void batch_frame(struct ipc_channel *ch, uint8_t type, const char *payload, uint32_t len) {
  struct batch_bench *b = ch->data;
  struct sockaddr_storage peer;
  uv_tcp_t *t = &b->got[b->received];

  if (type != IPC_CONN || len < 7 || b->received == b->want || ipc_get_u32(payload) != ++b->rseq ||
      ipc_get_u16(payload + 4) != 0 || !((uint8_t)payload[6] & IPC_CONN_PEER) ||
      ipc_get_peer(payload + 7, len - 7, &peer) == 0 || uv_tcp_init(&b->loop, t) != 0) {
    b->failed = 1;
    return;
  }
  t->data = b;
  if (ipc_channel_accept(ch, (uv_stream_t *)t) != 0 ||
      (b->check && check_got(b, b->received, &peer) != 0))
    b->failed = 1;
  b->received++;
  uv_close((uv_handle_t *)t, batch_close_cb);
}

static void batch_error(struct ipc_channel *ch, int err) {
  struct batch_bench *b = ch->data;
  fprintf(stderr, "lbp-micro: channel: %s\n", uv_strerror(err));
  b->failed = 1;
}

/* k (<= n) fds from the master end to the worker end in one batch: each CONN laid out in its own
 * frame (ipc_frame, as handoff.c stage() does), all of them with their fds in one
 * ipc_send_frames_now (handoff.c send_staged). Returns 0, or -1 on any failure. */
static int batch_once(struct batch_bench *b, unsigned k) {
  unsigned char p[7 + IPC_PEER_MAX];
  size_t total = 0, npeer;

  b->want = k;
  b->received = b->closed = 0;
  for (unsigned i = 0; i < k; i++) {
    ipc_put_u32(p, ++b->seq);
    ipc_put_u16(p + 4, 0);
    p[6] = IPC_CONN_PEER;
    npeer = ipc_put_peer(p + 7, (const struct sockaddr *)&b->peers[i]);
    b->lens[i] = ipc_frame(&b->outs[i], IPC_CONN, p, 7 + (uint32_t)npeer);
    total += b->lens[i];
  }
  /* A short write would be finished with ipc_write_rest; with the channel emptied after every
   * batch it does not happen here, so it counts as a failure. */
  if (ipc_send_frames_now(&b->tx, b->outp, b->lens, b->fds, k) != (ssize_t)total)
    return -1;
  while (!(b->received == k && b->closed == k) && !b->failed)
    uv_run(&b->loop, UV_RUN_ONCE);
  return b->failed ? -1 : 0;
}

/* conns connections, in batches of n (the last one smaller when n does not divide conns). */
static int batch_run(struct batch_bench *b, long conns) {
  for (long done = 0; done < conns;) {
    unsigned k = conns - done < (long)b->n ? (unsigned)(conns - done) : b->n;
    if (batch_once(b, k) != 0)
      return -1;
    done += k;
  }
  return 0;
}

static int batch_setup(struct batch_bench *b, unsigned n) {
  int sv[2];

  memset(b, 0, sizeof(*b));
  b->n = n;
  for (unsigned i = 0; i < n; i++) {
    b->clients[i] = b->fds[i] = -1;
    b->outp[i] = &b->outs[i];
  }
  if (uv_loop_init(&b->loop) != 0 || make_conns(n, b->clients, b->fds, b->peers) != 0 ||
      socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
    return -1;
  if (ipc_channel_init(&b->loop, &b->tx, batch_frame, batch_error, b) != 0 ||
      ipc_channel_init(&b->loop, &b->rx, batch_frame, batch_error, b) != 0 ||
      ipc_channel_open(&b->tx, sv[0]) != 0 || ipc_channel_open(&b->rx, sv[1]) != 0 ||
      ipc_channel_start(&b->rx) != 0)
    return -1;
  return 0;
}

static void batch_teardown(struct batch_bench *b) {
  ipc_channel_close(&b->tx, NULL);
  ipc_channel_close(&b->rx, NULL);
  uv_run(&b->loop, UV_RUN_DEFAULT);
  uv_loop_close(&b->loop);
  for (unsigned i = 0; i < b->n; i++) {
    close(b->fds[i]);
    close(b->clients[i]);
  }
}

static int run_handoff_batch(unsigned n, long iters) {
  struct batch_bench b;
  long warm = iters / 10 > 100 ? iters / 10 : 100;
  long long t0;
  int bad;

  if (batch_setup(&b, n) != 0) {
    fprintf(stderr, "lbp-micro: handoff-batch setup failed: %s\n", strerror(errno));
    return 1;
  }
  /* The warm-up and one batch after the measured loop check every fd (check_got); the measured
   * batches run the same code without those system calls. */
  b.check = 1;
  bad = batch_run(&b, warm);
  b.check = 0;
  t0 = now_ns();
  CALLGRIND_START_INSTRUMENTATION;
  if (bad == 0)
    bad = batch_run(&b, iters);
  CALLGRIND_STOP_INSTRUMENTATION;
  t0 = now_ns() - t0;
  b.check = 1;
  if (bad == 0)
    bad = batch_run(&b, n);
  if (bad || b.seq != (uint32_t)(warm + iters + n) || b.rseq != b.seq) {
    fprintf(stderr, "lbp-micro: handoff-batch failed after %u fds sent, %u received\n", b.seq,
            b.rseq);
    return 1;
  }
  batch_teardown(&b);
  printf("micro handoff-batch batch=%u iterations=%ld batches=%ld ns_per_op=%.1f\n", n, iters,
         (iters + n - 1) / n, (double)t0 / (double)iters);
  return 0;
}

/* ---- select: one balancer pick and release ---- */

#define SELECT_SERVERS 8

struct select_bench {
  struct bal_pool pool;
  _Atomic uint32_t shared[SELECT_SERVERS];
  _Atomic uint64_t rotation;
  uint64_t picked[SELECT_SERVERS];
};

static int select_setup(struct select_bench *b, const struct bal_ops *ops) {
  struct bal_server_conf sc[SELECT_SERVERS];
  struct bal_conf conf = {.max_fails = 3, .fail_timeout_ms = 10000};
  char addr[32];

  memset(b, 0, sizeof(*b));
  for (unsigned i = 0; i < SELECT_SERVERS; i++) {
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", 9001 + i);
    sc[i] = (struct bal_server_conf){
        .id = bal_server_id("micro", addr), .weight = 1 + i % 3, .shared = &b->shared[i]};
  }
  return bal_pool_init(&b->pool, ops, &conf, sc, SELECT_SERVERS, &b->rotation);
}

/* One attempt: pick, release. Returns 0, or -1 if no server was picked. */
static int select_once(struct select_bench *b, uint64_t i) {
  struct bal_tried t;
  struct bal_pick pk;
  uint64_t key = BAL_NO_KEY;

  if (b->pool.ops->flags & BAL_USES_KEY)
    key = bal_hash_key(&i, sizeof(i));
  bal_tried_clear(&t);
  if (bal_select(&b->pool, &t, key, 1000000 + i / 1000, &pk) != 0)
    return -1;
  b->picked[pk.idx]++;
  bal_release(&b->pool, &pk, BAL_OK, 1000000 + i / 1000);
  return 0;
}

static int run_select(const char *name, long iters) {
  const struct bal_ops *ops = bal_find(name);
  struct select_bench b;
  long warm = iters / 10 > 100 ? iters / 10 : 100;
  long long t0;
  int bad = 0;

  if (ops == NULL || select_setup(&b, ops) != 0) {
    fprintf(stderr, "lbp-micro: select: no algorithm '%s' (or no memory)\n", name);
    return 1;
  }
  for (long i = 0; i < warm; i++)
    bad |= select_once(&b, (uint64_t)i);
  t0 = now_ns();
  CALLGRIND_START_INSTRUMENTATION;
  for (long i = 0; i < iters; i++)
    bad |= select_once(&b, (uint64_t)(warm + i));
  CALLGRIND_STOP_INSTRUMENTATION;
  t0 = now_ns() - t0;
  for (unsigned i = 0; i < SELECT_SERVERS; i++)
    bad |= b.picked[i] == 0 || atomic_load(&b.shared[i]) != 0;
  bal_pool_free(&b.pool);
  if (bad) {
    fprintf(stderr,
            "lbp-micro: select %s: a pick failed, a server was never picked, or a "
            "counter did not return to 0\n",
            name);
    return 1;
  }
  printf("micro select algorithm=%s iterations=%ld servers=%d ns_per_op=%.1f\n", name, iters,
         SELECT_SERVERS, (double)t0 / (double)iters);
  return 0;
}

/* "handoff-batch" or "handoff-batch:N": N (1 to IPC_BATCH_MAX, default IPC_BATCH_MAX) fds per
 * batch. Returns 0 when arg names no such mode, -1 when its N is out of range. */
static int batch_size(const char *arg, unsigned *n) {
  char *end;
  long v;

  if (strcmp(arg, "handoff-batch") == 0) {
    *n = IPC_BATCH_MAX;
    return 1;
  }
  if (strncmp(arg, "handoff-batch:", 14) != 0)
    return 0;
  v = strtol(arg + 14, &end, 10);
  if (end == arg + 14 || *end != '\0' || v < 1 || v > IPC_BATCH_MAX)
    return -1;
  *n = (unsigned)v;
  return 1;
}

static int usage(void) {
  fprintf(stderr,
          "usage: lbp-micro head|handoff|handoff-batch[:N]|select[:ALGORITHM] ITERATIONS\n");
  return 2;
}

int main(int argc, char **argv) {
  long iters = argc == 3 ? strtol(argv[2], NULL, 10) : 0;
  unsigned n;
  int batch;

  if (iters <= 0 || iters > 100000000L)
    return usage();
  if (strcmp(argv[1], "head") == 0)
    return run_head(iters);
  if (strcmp(argv[1], "handoff") == 0)
    return run_handoff(iters);
  if ((batch = batch_size(argv[1], &n)) > 0)
    return run_handoff_batch(n, iters);
  if (batch < 0) {
    fprintf(stderr, "lbp-micro: handoff-batch:N takes 1 to %d fds per batch\n", IPC_BATCH_MAX);
    return 2;
  }
  if (strcmp(argv[1], "select") == 0)
    return run_select("round_robin", iters);
  if (strncmp(argv[1], "select:", 7) == 0)
    return run_select(argv[1] + 7, iters);
  return usage();
}
