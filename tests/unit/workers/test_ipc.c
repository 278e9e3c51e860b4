/* Tests for workers/ipc.c: framing split at every byte, and fds travelling with their frames. */
#include "ipc.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- the decoder ---- */

struct seen {
  int n;
  uint8_t types[16];
  uint32_t lens[16];
  char payloads[16][256];
};

static int collect(void *arg, uint8_t type, const char *payload, uint32_t len) {
  struct seen *s = arg;
  cr_assert_lt(s->n, 16);
  cr_assert_leq(len, 256);
  s->types[s->n] = type;
  s->lens[s->n] = len;
  memcpy(s->payloads[s->n], payload, len);
  s->n++;
  return 0;
}

static size_t frame(unsigned char *out, uint8_t type, const char *payload, uint32_t len) {
  ipc_header(out, type, len);
  memcpy(out + IPC_HDR_LEN, payload, len);
  return IPC_HDR_LEN + len;
}

/* Three frames back to back: a config-like one, an empty one, an fd-flagged one. */
static size_t three_frames(unsigned char *buf) {
  size_t n = 0;
  n += frame(buf + n, IPC_CONFIG, "listen: 127.0.0.1:0\n", 20);
  n += frame(buf + n, IPC_STOP, "", 0);
  n += frame(buf + n, IPC_CONN, "\0\0\0\7", 4);
  return n;
}

static void check_three(const struct seen *s) {
  cr_assert_eq(s->n, 3);
  cr_assert_eq(s->types[0], IPC_CONFIG);
  cr_assert_eq(s->lens[0], 20);
  cr_assert_arr_eq(s->payloads[0], "listen: 127.0.0.1:0\n", 20);
  cr_assert_eq(s->types[1], IPC_STOP);
  cr_assert_eq(s->lens[1], 0);
  cr_assert_eq(s->types[2], IPC_CONN);
  cr_assert_eq(ipc_get_u32(s->payloads[2]), 7);
}

Test(ipc_decoder, delivers_frames_whole_when_fed_at_once) {
  unsigned char buf[128];
  size_t n = three_frames(buf);
  struct ipc_decoder d;
  struct seen s = {0};

  ipc_decoder_init(&d);
  cr_assert_eq(ipc_decode(&d, (char *)buf, n, collect, &s), 0);
  check_three(&s);
  ipc_decoder_free(&d);
}

Test(ipc_decoder, delivers_the_same_frames_when_split_at_every_byte_pair) {
  unsigned char buf[128];
  size_t n = three_frames(buf);

  for (size_t a = 0; a <= n; a++) {
    for (size_t b = a; b <= n; b++) {
      struct ipc_decoder d;
      struct seen s = {0};
      ipc_decoder_init(&d);
      cr_assert_eq(ipc_decode(&d, (char *)buf, a, collect, &s), 0);
      cr_assert_eq(ipc_decode(&d, (char *)buf + a, b - a, collect, &s), 0);
      cr_assert_eq(ipc_decode(&d, (char *)buf + b, n - b, collect, &s), 0);
      check_three(&s);
      cr_assert_eq(d.len, 0, "no partial frame may remain (split %zu/%zu)", a, b);
      ipc_decoder_free(&d);
    }
  }
}

Test(ipc_decoder, delivers_the_same_frames_one_byte_at_a_time) {
  unsigned char buf[128];
  size_t n = three_frames(buf);
  struct ipc_decoder d;
  struct seen s = {0};

  ipc_decoder_init(&d);
  for (size_t i = 0; i < n; i++)
    cr_assert_eq(ipc_decode(&d, (char *)buf + i, 1, collect, &s), 0);
  check_three(&s);
  ipc_decoder_free(&d);
}

Test(ipc_decoder, rejects_a_frame_longer_than_the_limit) {
  unsigned char hdr[IPC_HDR_LEN];
  struct ipc_decoder d;
  struct seen s = {0};

  ipc_header(hdr, IPC_CONFIG, IPC_MAX_PAYLOAD + 1);
  ipc_decoder_init(&d);
  cr_assert_eq(ipc_decode(&d, (char *)hdr, 3, collect, &s), 0);
  cr_assert_eq(ipc_decode(&d, (char *)hdr + 3, 2, collect, &s), UV_EPROTO);
  cr_assert_eq(s.n, 0);
  ipc_decoder_free(&d);
}

static int stop_after_first(void *arg, uint8_t type, const char *payload, uint32_t len) {
  int *count = arg;
  (*count)++;
  return -42;
}

Test(ipc_decoder, stops_when_a_callback_says_so) {
  unsigned char buf[128];
  size_t n = three_frames(buf);
  struct ipc_decoder d;
  int count = 0;

  ipc_decoder_init(&d);
  cr_assert_eq(ipc_decode(&d, (char *)buf, n, stop_after_first, &count), -42);
  cr_assert_eq(count, 1);
  ipc_decoder_free(&d);
}

struct big_ctx {
  uint32_t len;
  int got;
  const unsigned char *want;
};

static int check_big(void *arg, uint8_t type, const char *payload, uint32_t len) {
  struct big_ctx *ctx = arg;
  ctx->len = len;
  ctx->got++;
  cr_assert_eq(memcmp(payload, ctx->want, len), 0);
  return 0;
}

Test(ipc_decoder, reassembles_a_large_frame_fed_in_odd_pieces) {
  size_t plen = 300000, total = IPC_HDR_LEN + 300000;
  unsigned char *buf = malloc(total);
  struct ipc_decoder d;
  struct big_ctx ctx = {0, 0, NULL};

  for (size_t i = 0; i < plen; i++)
    buf[IPC_HDR_LEN + i] = (unsigned char)(i * 7);
  ipc_header(buf, IPC_CONFIG, (uint32_t)plen);
  ctx.want = buf + IPC_HDR_LEN;
  ipc_decoder_init(&d);
  for (size_t off = 0; off < total;) {
    size_t piece = 1 + (off * 31) % 7001;
    if (off + piece > total)
      piece = total - off;
    cr_assert_eq(ipc_decode(&d, (char *)buf + off, piece, check_big, &ctx), 0);
    off += piece;
  }
  cr_assert_eq(ctx.got, 1);
  cr_assert_eq(ctx.len, plen);
  ipc_decoder_free(&d);
  free(buf);
}

/* ---- the channel: real fds over a real socketpair ---- */

#define NCONN 6

struct fdtest {
  uv_loop_t *loop;
  struct ipc_channel tx, rx;
  struct ipc_out outs[NCONN];
  uv_pipe_t sent[NCONN]; /* one end of each pipe, sent over the channel */
  uv_pipe_t got[NCONN];  /* ... as received */
  int keep[NCONN];       /* the other end, kept here to write a marker into */
  uv_tcp_t dummy;
  int frames, fds, sent_ok;
  char marker_seen[NCONN];
  char order[4 * NCONN]; /* what arrived: 's' for a STATUS, 'a' + idx for an fd frame */
};

static void noop_error(struct ipc_channel *ch, int err) {}

/* Each CONN-like frame's payload names the pipe whose end travels with it; reading a byte
 * from the received fd proves it is that pipe. */
static void on_frame(struct ipc_channel *ch, uint8_t type, const char *payload, uint32_t len) {
  struct fdtest *t = ch->data;
  if (t->frames < (int)sizeof(t->order) - 1)
    t->order[t->frames] = type == IPC_STATUS ? 's' : (char)('a' + payload[0]);
  t->frames++;
  if (type == IPC_STATUS)
    return; /* fd-less frames interleaved with fd frames */
  cr_assert_eq(type, IPC_LISTEN, "type %u after %d frames", type, t->frames);
  cr_assert_eq(len, 1);
  int idx = payload[0];
  uv_pipe_t *p = &t->got[idx];
  uv_os_fd_t fd;
  char c = 0;
  cr_assert_eq(uv_pipe_pending_type(&ch->pipe), UV_NAMED_PIPE);
  cr_assert(idx >= 0 && idx < NCONN);
  cr_assert_eq(uv_pipe_init(t->loop, p, 0), 0);
  cr_assert_eq(ipc_channel_accept(ch, (uv_stream_t *)p), 0);
  cr_assert_eq(uv_fileno((uv_handle_t *)p, &fd), 0);
  /* The marker byte was written into the other end before sending. */
  for (int tries = 0; tries < 1000 && read(fd, &c, 1) != 1; tries++)
    usleep(1000);
  cr_assert_eq(c, 'a' + idx, "frame %d carried the fd of pipe %d", idx, c - 'a');
  t->marker_seen[idx] = 1;
  t->fds++;
  /* Closed by the test's loop (never run it from here: a read would reuse the buffer being
   * decoded). */
  uv_close((uv_handle_t *)p, NULL);
}

static void out_cb(struct ipc_out *out, int status) {
  struct fdtest *t = out->req.data;
  cr_assert_eq(status, 0);
  t->sent_ok++;
}

/* A fresh fdtest on a socketpair: t->tx sends, t->rx receives (not started). `sndbuf` > 0
 * shrinks the sender's buffer so that libuv has to queue. */
static void pair_up(struct fdtest *t, int sndbuf) {
  int sv[2];

  memset(t, 0, sizeof(*t));
  t->loop = uv_default_loop();
  cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  if (sndbuf > 0)
    cr_assert_eq(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf)), 0);
  cr_assert_eq(ipc_channel_init(t->loop, &t->tx, on_frame, noop_error, t), 0);
  cr_assert_eq(ipc_channel_init(t->loop, &t->rx, on_frame, noop_error, t), 0);
  cr_assert_eq(ipc_channel_open(&t->tx, sv[0]), 0);
  cr_assert_eq(ipc_channel_open(&t->rx, sv[1]), 0);
}

/* A socketpair whose far end holds the marker 'a' + i (kept in t->keep[i]); the near end, the
 * fd to send. */
static int marked_fd(struct fdtest *t, int i) {
  int p[2];
  char mark = (char)('a' + i);

  cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, p), 0);
  cr_assert_eq(write(p[1], &mark, 1), 1);
  t->keep[i] = p[1];
  return p[0];
}

/* Every marker seen; everything closed; the loop ends empty. */
static void finish(struct fdtest *t) {
  for (int i = 0; i < NCONN; i++) {
    cr_assert(t->marker_seen[i], "fd %d", i);
    close(t->keep[i]);
  }
  ipc_channel_close(&t->tx, NULL);
  ipc_channel_close(&t->rx, NULL);
  uv_run(t->loop, UV_RUN_DEFAULT);
  cr_assert_eq(uv_loop_close(t->loop), 0);
}

Test(ipc_channel, carries_each_fd_with_its_own_frame_in_order) {
  static struct fdtest t;

  pair_up(&t, 0);
  cr_assert_eq(ipc_channel_start(&t.rx), 0);
  for (int i = 0; i < NCONN; i++) {
    unsigned char idx = (unsigned char)i;
    cr_assert_eq(uv_pipe_init(t.loop, &t.sent[i], 0), 0);
    cr_assert_eq(uv_pipe_open(&t.sent[i], marked_fd(&t, i)), 0);
    t.outs[i].req.data = &t;
    cr_assert_eq(
        ipc_send_small(&t.tx, &t.outs[i], IPC_LISTEN, &idx, 1, (uv_stream_t *)&t.sent[i], out_cb),
        0);
    /* An fd-less frame between fd frames must not take or shift an fd. */
    cr_assert_eq(ipc_send(&t.tx, IPC_STATUS, "0123456789abcdef", 16), 0);
  }
  for (int spins = 0; spins < 2000 && t.frames < 2 * NCONN; spins++)
    uv_run(t.loop, UV_RUN_ONCE);
  cr_assert_eq(t.frames, 2 * NCONN);
  cr_assert_eq(t.fds, NCONN);
  cr_assert_eq(t.sent_ok, NCONN);
  for (int i = 0; i < NCONN; i++)
    uv_close((uv_handle_t *)&t.sent[i], NULL);
  finish(&t);
}

Test(ipc_channel, refuses_a_handle_on_a_type_without_the_fd_flag) {
  uv_loop_t *loop = uv_default_loop();
  struct ipc_channel ch;
  struct ipc_out out;
  uv_pipe_t p;
  int sv[2];

  cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  cr_assert_eq(ipc_channel_init(loop, &ch, NULL, noop_error, NULL), 0);
  cr_assert_eq(ipc_channel_open(&ch, sv[0]), 0);
  cr_assert_eq(uv_pipe_init(loop, &p, 0), 0);
  cr_assert_eq(uv_pipe_open(&p, sv[1]), 0);
  cr_assert_eq(ipc_send_small(&ch, &out, IPC_STATUS, "x", 1, (uv_stream_t *)&p, NULL), UV_EINVAL);
  cr_assert_eq(ipc_send_small(&ch, &out, IPC_CONN, "x", 1, NULL, NULL), UV_EINVAL);
  uv_close((uv_handle_t *)&p, NULL);
  ipc_channel_close(&ch, NULL);
  uv_run(loop, UV_RUN_DEFAULT);
}

Test(ipc_channel, sends_a_raw_fd_itself_when_idle_and_defers_to_libuv_when_bytes_are_queued) {
  static struct fdtest t;
  static char big[1 << 20];

  pair_up(&t, 4096);
  for (int i = 0; i < NCONN; i++) {
    unsigned char idx = (unsigned char)i;
    int fd = marked_fd(&t, i);
    t.outs[i].req.data = &t;
    if (i >= NCONN / 2) {
      /* A frame libuv could not write at once (the reader is not reading yet): no fd frame
       * may overtake it, so they all go through libuv from then on. */
      if (i == NCONN / 2)
        cr_assert_eq(ipc_send(&t.tx, IPC_STATUS, big, sizeof(big)), 0);
      cr_assert_gt(uv_stream_get_write_queue_size((uv_stream_t *)&t.tx.pipe), 0);
      cr_assert_eq(ipc_send_fd_now(&t.tx, &t.outs[i], IPC_LISTEN, &idx, 1, NULL, 0, fd, out_cb),
                   UV_EAGAIN);
      cr_assert_eq(uv_pipe_init(t.loop, &t.sent[i], 0), 0);
      cr_assert_eq(uv_pipe_open(&t.sent[i], fd), 0);
      cr_assert_eq(
          ipc_send_small(&t.tx, &t.outs[i], IPC_LISTEN, &idx, 1, (uv_stream_t *)&t.sent[i], out_cb),
          0);
      continue;
    }
    /* Idle channel: the whole frame leaves now, with its fd, and no callback follows. */
    cr_assert_eq(ipc_send_fd_now(&t.tx, &t.outs[i], IPC_LISTEN, &idx, 1, NULL, 0, fd, out_cb), 0);
    close(fd); /* the sender's copy: the receiver has its own now */
    t.sent_ok++;
  }
  cr_assert_eq(ipc_send_fd_now(&t.tx, &t.outs[0], IPC_STATUS, "x", 1, NULL, 0, 0, out_cb),
               UV_EINVAL);
  cr_assert_eq(ipc_channel_start(&t.rx), 0);
  for (int spins = 0; spins < 5000 && (t.frames < NCONN + 1 || t.sent_ok < NCONN); spins++)
    uv_run(t.loop, UV_RUN_ONCE);
  cr_assert_eq(t.frames, NCONN + 1);
  cr_assert_str_eq(t.order, "abcsdef", "frames out of order: %s", t.order);
  cr_assert_eq(t.fds, NCONN);
  cr_assert_eq(t.sent_ok, NCONN);
  for (int i = NCONN / 2; i < NCONN; i++)
    uv_close((uv_handle_t *)&t.sent[i], NULL);
  finish(&t);
}

Test(ipc_peer, an_ipv4_and_an_ipv6_address_round_trip_and_bad_bytes_are_refused) {
  struct sockaddr_in in = {.sin_family = AF_INET, .sin_port = htons(40001)};
  struct sockaddr_in6 in6 = {.sin6_family = AF_INET6, .sin6_port = htons(443)};
  struct sockaddr_storage ss;
  unsigned char b[IPC_PEER_MAX];

  inet_pton(AF_INET, "10.1.2.3", &in.sin_addr);
  inet_pton(AF_INET6, "2001:db8::7", &in6.sin6_addr);
  cr_assert_eq(ipc_put_peer(b, (struct sockaddr *)&in), 7);
  cr_assert_eq(ipc_get_peer((const char *)b, 7, &ss), 7);
  cr_assert_eq(ss.ss_family, AF_INET);
  cr_assert_eq(memcmp(&((struct sockaddr_in *)&ss)->sin_addr, &in.sin_addr, 4), 0);
  cr_assert_eq(((struct sockaddr_in *)&ss)->sin_port, in.sin_port);
  cr_assert_eq(ipc_get_peer((const char *)b, 6, &ss), 0, "a short address is refused");
  cr_assert_eq(ipc_put_peer(b, (struct sockaddr *)&in6), 19);
  cr_assert_eq(ipc_get_peer((const char *)b, 19, &ss), 19);
  cr_assert_eq(ss.ss_family, AF_INET6);
  cr_assert_eq(memcmp(&((struct sockaddr_in6 *)&ss)->sin6_addr, &in6.sin6_addr, 16), 0);
  cr_assert_eq(ipc_get_peer((const char *)b, 18, &ss), 0);
  b[0] = 5;
  cr_assert_eq(ipc_get_peer((const char *)b, 19, &ss), 0, "an unknown family is refused");
  struct sockaddr un = {.sa_family = AF_UNIX};
  cr_assert_eq(ipc_put_peer(b, &un), 0);
}

Test(ipc_channel, a_batch_of_fd_frames_leaves_in_one_sendmsg_and_pairs_each_fd_with_its_frame) {
  static struct fdtest t;
  static char big[1 << 20];
  struct ipc_out *outs[NCONN];
  size_t lens[NCONN];
  int fds[NCONN], small = 4096;
  uv_os_fd_t txfd;

  pair_up(&t, 0);
  for (int i = 0; i < NCONN; i++) {
    unsigned char idx = (unsigned char)i;
    fds[i] = marked_fd(&t, i);
    outs[i] = &t.outs[i];
    lens[i] = ipc_frame(outs[i], IPC_LISTEN, &idx, 1);
  }
  cr_assert_eq(ipc_send_frames_now(&t.tx, outs, lens, fds, 0), UV_EINVAL);
  cr_assert_eq(ipc_send_frames_now(&t.tx, outs, lens, fds, NCONN), (ssize_t)(NCONN * lens[0]));
  for (int i = 0; i < NCONN; i++)
    close(fds[i]); /* the receiver has its own copies */
  /* Bytes queued in libuv: a batch must wait its turn. */
  cr_assert_eq(uv_fileno((uv_handle_t *)&t.tx.pipe, &txfd), 0);
  cr_assert_eq(setsockopt(txfd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
  cr_assert_eq(ipc_send(&t.tx, IPC_STATUS, big, sizeof(big)), 0);
  cr_assert_eq(ipc_send_frames_now(&t.tx, outs, lens, fds, 1), UV_EAGAIN);
  cr_assert_eq(ipc_channel_start(&t.rx), 0);
  for (int spins = 0; spins < 5000 && t.frames < NCONN + 1; spins++)
    uv_run(t.loop, UV_RUN_ONCE);
  cr_assert_eq(t.frames, NCONN + 1);
  cr_assert_str_eq(t.order, "abcdefs");
  cr_assert_eq(t.fds, NCONN);
  finish(&t);
}
