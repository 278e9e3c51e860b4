/* IPC framing and the libuv channel that carries frames and fds between master and workers. */

/*
 * The master<->worker protocol.
 *
 * 1. Transport. Each worker has one AF_UNIX socketpair to the master, created by uv_spawn
 *    (UV_CREATE_PIPE on a uv_pipe_t with ipc = 1) and inherited as fd 3 in the worker, whose
 *    number is also in the environment as LBPROXY_CHANNEL_FD (Node's NODE_CHANNEL_FD). A binary
 *    upgrade uses the same framing between the old master and the new one (LBPROXY_UPGRADE_FD).
 *
 * 2. Framing. Every message is `u32 length | u8 type | payload`; length counts the payload
 *    only, big-endian, at most IPC_MAX_PAYLOAD. Frames are a byte stream: a reader must accept
 *    them split at any byte, and several in one read (ipc_decode does; its test splits every
 *    frame at every byte). Integers in payloads are big-endian.
 *
 * 3. Fds. A type with bit 0x80 (IPC_FD_FLAG) carries exactly one fd; no other type carries
 *    any. Such a frame is sent alone by one sendmsg (uv_write2(), or ipc_send_fd_now when
 *    nothing is queued; or a batch of up to IPC_BATCH_MAX such frames in one sendmsg, with
 *    all their fds), so its fd rides SCM_RIGHTS on the first byte of its message. A read ends
 *    after a message that carries fds, so by the time the reader has a frame's last byte,
 *    libuv has queued the fds of this and earlier fd frames, in order. The reader takes one
 *    pending fd per fd frame, so fds and frames do not get out of step. A receiver at its fd
 *    limit gets the frame without its fd (the kernel drops it and flags the message
 *    truncated): the frame is still delivered, marked fd_here = 0, and what it carried is
 *    refused, not lost (the sender kept its own copy). Known gap: when a message was written
 *    in part (its remaining bytes follow without fds) and the receiver was at its fd limit
 *    for that message, the remaining bytes can be read together with the next message and its
 *    fds, and the pairing slips (the reviewer's finding; a per-message fd count is the fix).
 *
 * 4. Start-up. worker: HELLO(u32 pid) -> master: CONFIG(u32 generation | u16 slot | u8 number
 *    of LISTEN frames that follow | u8 flags | u32 shared-memory size | 16-byte generation
 *    secret | u16 name length | file name | the exact config bytes the master validated) ->
 *    worker parses them without resolving anything (servers given as IP addresses are read as
 *    such; those given as host names come in SERVERS frames, see 10), maps the generation's
 *    shared memory at the size given (never one it computed), builds its data plane ->
 *    master: LISTEN(u8 kind | u16 listener index, fd) for each socket the strategy gives this
 *    slot -> worker: READY. The master counts a worker as serving only after READY, and
 *    switches a reload to a new generation only once every one of its workers is.
 *
 * 5. Connections. master: CONN(u32 seq | u16 listener index | u8 flags | [the client's
 *    address: u8 family 4 or 6 | u16 port | 4 or 16 bytes, with flag PEER] | bytes already
 *    read, fd), seq increasing per worker; flag HANDED marks a connection a draining worker gave
 *    back (it is between requests: the idle timeout applies, not the header one); flag PEER
 *    says the master's accept gave the address (the worker need not ask the socket); the bytes
 *    are empty for a fresh accept, and are the start of the next request for a handed one. The
 *    master keeps its copy of the fd until the worker acknowledges it: at the end of the loop
 *    iteration that took them, the worker sends one STATUS(u32 highest seq taken | u32 active
 *    connections | u64 accepted in total). A worker that will not serve a connection answers
 *    REFUSE(u32 seq | u8 reason); the master hands that fd, or every unacknowledged fd of a
 *    worker that died, to another worker: nothing is dropped or leaked.
 *
 * 6. Drain. master: DRAIN(u32 deadline ms | u8 handover). The worker stops accepting, finishes
 *    requests in flight, and gives each connection that is between requests back:
 *    HANDOVER(u16 listener index | bytes of the next request already read, fd), which the master
 *    hands to a worker of the new generation as a CONN; with handover 0 (graceful stop) idle
 *    connections are closed instead. When nothing is left, or at the deadline (what remains is
 *    closed and counted), the worker sends BYE(u8 reason | text) and exits. The channel stays
 *    open until then: only an exit without BYE is a crash.
 *
 * 7. BYE. A worker that must leave for any reason says so first: reason DRAINED (planned, the
 *    end of a drain) or FATAL (text says why); the master starts a replacement at once rather
 *    than after a crash backoff (Node's exitedAfterDisconnect).
 *
 * 8. Other. STOP: stop now (fast shutdown). LOGFD(u8 which, fd): a log file the master opened,
 *    so a worker never needs the right to open one. which 0: the error log was reopened
 *    (SIGUSR1); the worker makes the fd its stderr. which 1: the access log, sent after CONFIG
 *    (when access_log is not off) and again after each reopen; the worker writes what it has
 *    buffered to the old fd, then uses the new one.
 *    A closed channel means the master is gone: the worker drains briefly and exits.
 *
 * 9. Binary upgrade (old master <-> new master over LBPROXY_UPGRADE_FD). old: UP_SECRET(16 bytes,
 *    the secret of its PROXY headers, read by the new master before anything else) -> new:
 *    UP_READY(u32 pid)
 *    once all its workers are ready -> old: drains its workers, forwarding each HANDOVER as
 *    UP_CONN(u8 address length | listener address | bytes already read, fd); the new master maps
 *    the address to its own listener. The old master exits when its workers are gone; the
 *    channel's EOF tells the new master it is alone.
 *
 * 10. Upstream servers (workers/srvwire.h has the byte layouts). master: SERVERS(u16 upstream
 *    index | u16 n | n server records) replaces the servers of one upstream that uses host
 *    names: after CONFIG (before any LISTEN) and whenever a name's addresses change.
 *    STATES(n state records: id, health, admin state, weight, slow-start origin, failing-until)
 *    after CONFIG (all of the generation's servers) and at each change (the one server);
 *    workers apply records by server id and ignore unknown ids. worker: FAILING(one state
 *    record) when its passive health made a server failing; the master spreads it as STATES.
 *
 * 11. Rebalancing (dispatch handoff-least, workers/rebalance.c). master: SHED(u16 permille)
 *    asks a worker that serves more than its share of requests to give about that share of
 *    its requests back as whole keep-alive connections; the worker hands each back with
 *    HANDOVER (as in 6) when it is next between requests, and goes on serving. The master
 *    takes HANDOVERs from a serving worker only for a while after asking it.
 */
#include "ipc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define IPC_READ_BUF 65536

const char *ipc_type_name(uint8_t type) {
  switch (type) {
  case IPC_HELLO:
    return "hello";
  case IPC_CONFIG:
    return "config";
  case IPC_READY:
    return "ready";
  case IPC_CONN:
    return "conn";
  case IPC_STATUS:
    return "status";
  case IPC_REFUSE:
    return "refuse";
  case IPC_LISTEN:
    return "listen";
  case IPC_STOP:
    return "stop";
  case IPC_DRAIN:
    return "drain";
  case IPC_BYE:
    return "bye";
  case IPC_HANDOVER:
    return "handover";
  case IPC_LOGFD:
    return "logfd";
  case IPC_UP_READY:
    return "up-ready";
  case IPC_UP_CONN:
    return "up-conn";
  case IPC_UP_SECRET:
    return "up-secret";
  case IPC_SHED:
    return "shed";
  case IPC_SERVERS:
    return "servers";
  case IPC_STATES:
    return "states";
  case IPC_FAILING:
    return "failing";
  default:
    return "unknown";
  }
}

void ipc_header(unsigned char hdr[IPC_HDR_LEN], uint8_t type, uint32_t len) {
  ipc_put_u32(hdr, len);
  hdr[4] = type;
}

void ipc_decoder_init(struct ipc_decoder *d) {
  memset(d, 0, sizeof(*d));
}

void ipc_decoder_free(struct ipc_decoder *d) {
  free(d->buf);
  memset(d, 0, sizeof(*d));
}

/* Appends up to `want` bytes to the partial frame; returns how many were taken or UV_ENOMEM. */
static long dec_append(struct ipc_decoder *d, const char *data, size_t n, size_t want) {
  size_t take = n < want ? n : want;
  if (d->len + take > d->cap) {
    size_t cap = d->cap ? d->cap : 256;
    char *nb;
    while (cap < d->len + take)
      cap *= 2;
    nb = realloc(d->buf, cap);
    if (nb == NULL)
      return UV_ENOMEM;
    d->buf = nb;
    d->cap = cap;
  }
  memcpy(d->buf + d->len, data, take);
  d->len += take;
  return (long)take;
}

int ipc_decode(struct ipc_decoder *d, const char *data, size_t n, ipc_frame_cb cb, void *arg) {
  while (n > 0) {
    uint32_t plen;
    long took;
    int rc;

    if (d->len == 0 && n >= IPC_HDR_LEN) {
      /* Fast path: a whole frame in the chunk is delivered without a copy. */
      plen = ipc_get_u32(data);
      if (plen > IPC_MAX_PAYLOAD)
        return UV_EPROTO;
      if (n - IPC_HDR_LEN >= plen) {
        rc = cb(arg, (uint8_t)data[4], data + IPC_HDR_LEN, plen);
        if (rc < 0)
          return rc;
        data += IPC_HDR_LEN + plen;
        n -= IPC_HDR_LEN + plen;
        continue;
      }
    }
    if (d->len < IPC_HDR_LEN) {
      took = dec_append(d, data, n, IPC_HDR_LEN - d->len);
      if (took < 0)
        return (int)took;
      data += took;
      n -= (size_t)took;
      if (d->len < IPC_HDR_LEN)
        break;
    }
    plen = ipc_get_u32(d->buf);
    if (plen > IPC_MAX_PAYLOAD)
      return UV_EPROTO;
    took = dec_append(d, data, n, IPC_HDR_LEN + plen - d->len);
    if (took < 0)
      return (int)took;
    data += took;
    n -= (size_t)took;
    if (d->len == IPC_HDR_LEN + plen) {
      d->len = 0;
      rc = cb(arg, (uint8_t)d->buf[4], d->buf + IPC_HDR_LEN, plen);
      if (rc < 0)
        return rc;
    }
  }
  return 0;
}

/* ---- the channel ---- */

static void ch_fail(struct ipc_channel *ch, int err) {
  if (ch->failed)
    return;
  ch->failed = 1;
  uv_read_stop((uv_stream_t *)&ch->pipe);
  ch->on_error(ch, err);
}

static void discard_close_cb(uv_handle_t *h) {
  free(h);
}

/* Accepts and closes a pending fd nobody took, so it does not leak. A uv_pipe_t takes any kind
 * of fd (uv_accept only moves the number), and closing it closes the fd. */
static void ch_discard_fd(struct ipc_channel *ch) {
  uv_pipe_t *p = malloc(sizeof(*p));

  if (p == NULL || uv_pipe_init(ch->pipe.loop, p, 0) != 0) {
    free(p);
    return;
  }
  uv_accept((uv_stream_t *)&ch->pipe, (uv_stream_t *)p);
  uv_close((uv_handle_t *)p, discard_close_cb);
}

static int ch_frame(void *arg, uint8_t type, const char *payload, uint32_t len) {
  struct ipc_channel *ch = arg;

  if (ch->failed)
    return UV_ECANCELED;
  if (type & IPC_FD_FLAG) {
    /* No fd queued: the kernel dropped it (we are at the fd limit). See (3) above. */
    ch->fd_here = uv_pipe_pending_count(&ch->pipe) > 0;
    ch->fd_taken = 0;
  }
  ch->on_frame(ch, type, payload, len);
  if ((type & IPC_FD_FLAG) && ch->fd_here && !ch->fd_taken &&
      !uv_is_closing((uv_handle_t *)&ch->pipe))
    ch_discard_fd(ch);
  ch->fd_here = 0;
  return ch->failed ? UV_ECANCELED : 0;
}

static void ch_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void ch_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  static char rbuf[IPC_READ_BUF];
  /* One buffer serves every channel: ipc_decode consumes a read before the next is made. */
  buf->base = rbuf;
  buf->len = sizeof(rbuf);
}

/* A false end of file. When the peer has hung up (POLLHUP), libuv takes a read shorter than its
 * buffer to mean the socket is drained and reports UV_EOF at once. But a unix socket also ends
 * a read early at a message that carries fds (see 3 above), so frames can still be queued: a
 * worker's last HANDOVERs, STATUS and BYE, written just before it exits, were lost that way.
 * So an EOF right after data is checked by reading once more; only an EOF with nothing read
 * since the last one is believed. */
static int ch_false_eof(struct ipc_channel *ch) {
  if (ch->eof_seen)
    return 0;
  ch->eof_seen = 1;
  return uv_read_start((uv_stream_t *)&ch->pipe, ch_alloc, ch_read) == 0;
}

static void ch_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  struct ipc_channel *ch = s->data;
  int rc;

  if (nread > 0) {
    ch->eof_seen = 0;
    rc = ipc_decode(&ch->dec, buf->base, (size_t)nread, ch_frame, ch);
    if (rc < 0 && rc != UV_ECANCELED)
      ch_fail(ch, rc);
  } else if (nread < 0) {
    if (nread == UV_EOF && !ch->failed && ch_false_eof(ch))
      return;
    ch_fail(ch, (int)nread);
  }
}

int ipc_channel_init(uv_loop_t *loop, struct ipc_channel *ch, ipc_channel_frame_cb on_frame,
                     ipc_channel_error_cb on_error, void *data) {
  memset(ch, 0, sizeof(*ch));
  ipc_decoder_init(&ch->dec);
  ch->on_frame = on_frame;
  ch->on_error = on_error;
  ch->data = data;
  ch->pipe.data = ch;
  return uv_pipe_init(loop, &ch->pipe, 1);
}

int ipc_channel_open(struct ipc_channel *ch, int fd) {
  return uv_pipe_open(&ch->pipe, fd);
}

int ipc_channel_start(struct ipc_channel *ch) {
  ch->pipe.data = ch;
  return uv_read_start((uv_stream_t *)&ch->pipe, ch_alloc, ch_read);
}

int ipc_channel_accept(struct ipc_channel *ch, uv_stream_t *handle) {
  int rc;

  if (!ch->fd_here || ch->fd_taken)
    return UV_EBADF;
  rc = uv_accept((uv_stream_t *)&ch->pipe, handle);
  if (rc == 0)
    ch->fd_taken = 1;
  return rc;
}

void ipc_channel_close(struct ipc_channel *ch, uv_close_cb cb) {
  ch->failed = 1;
  ipc_decoder_free(&ch->dec);
  if (!uv_is_closing((uv_handle_t *)&ch->pipe))
    uv_close((uv_handle_t *)&ch->pipe, cb);
}

static void out_cb(uv_write_t *req, int status) {
  struct ipc_out *out = (struct ipc_out *)req;
  out->cb(out, status);
}

int ipc_send_out(struct ipc_channel *ch, struct ipc_out *out, uint8_t type, const void *payload,
                 uint32_t len, const void *extra, uint32_t extralen, uv_stream_t *send_handle,
                 ipc_sent_cb cb) {
  uv_buf_t b[2];

  if (len > IPC_SMALL || extralen > IPC_MAX_PAYLOAD - len ||
      (send_handle != NULL) != ((type & IPC_FD_FLAG) != 0))
    return UV_EINVAL;
  if (ch->failed)
    return UV_EPIPE;
  ipc_header(out->frame, type, len + extralen);
  if (len)
    memcpy(out->frame + IPC_HDR_LEN, payload, len);
  out->cb = cb;
  b[0] = uv_buf_init((char *)out->frame, IPC_HDR_LEN + len);
  b[1] = uv_buf_init((char *)extra, extralen);
  return uv_write2(&out->req, (uv_stream_t *)&ch->pipe, b, extralen ? 2 : 1, send_handle, out_cb);
}

/* One sendmsg of `iov` with `nfds` fds on its first byte, when nothing is queued on the
 * channel (frames leave in order: what libuv holds goes first). The bytes written, or UV_EAGAIN
 * (queued bytes, or a full buffer: ENOBUFS too, as libuv takes it), or another UV error. */
static ssize_t send_fds_now(struct ipc_channel *ch, struct iovec *iov, unsigned niov,
                            const int *fds, unsigned nfds) {
  union {
    struct cmsghdr h;
    char space[CMSG_SPACE(sizeof(int) * IPC_BATCH_MAX)];
  } ctl;
  struct msghdr msg;
  struct cmsghdr *cm;
  uv_os_fd_t pfd;
  ssize_t n;

  if (nfds == 0 || nfds > IPC_BATCH_MAX)
    return UV_EINVAL;
  if (ch->failed)
    return UV_EPIPE;
  if (uv_stream_get_write_queue_size((uv_stream_t *)&ch->pipe) != 0 ||
      uv_fileno((uv_handle_t *)&ch->pipe, &pfd) != 0)
    return UV_EAGAIN;
  memset(&msg, 0, sizeof(msg));
  memset(&ctl, 0, sizeof(ctl));
  msg.msg_iov = iov;
  msg.msg_iovlen = niov;
  msg.msg_control = ctl.space;
  msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
  cm = CMSG_FIRSTHDR(&msg);
  cm->cmsg_level = SOL_SOCKET;
  cm->cmsg_type = SCM_RIGHTS;
  cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
  memcpy(CMSG_DATA(cm), fds, sizeof(int) * nfds);
  do
    n = sendmsg(pfd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  if (n < 0)
    return errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS ? UV_EAGAIN : -errno;
  return n;
}

int ipc_send_fd_now(struct ipc_channel *ch, struct ipc_out *out, uint8_t type, const void *payload,
                    uint32_t len, const void *extra, uint32_t extralen, int fd, ipc_sent_cb cb) {
  struct iovec iov[2];
  size_t total = IPC_HDR_LEN + (size_t)len + extralen, head = IPC_HDR_LEN + (size_t)len;
  ssize_t n;
  uv_buf_t rest[2];
  unsigned nrest = 0;

  if (len > IPC_SMALL || extralen > IPC_MAX_PAYLOAD - len || !(type & IPC_FD_FLAG) || fd < 0)
    return UV_EINVAL;
  ipc_header(out->frame, type, len + extralen);
  if (len)
    memcpy(out->frame + IPC_HDR_LEN, payload, len);
  iov[0] = (struct iovec){out->frame, head};
  iov[1] = (struct iovec){(void *)extra, extralen};
  if ((n = send_fds_now(ch, iov, extralen ? 2 : 1, &fd, 1)) < 0)
    return (int)n;
  if ((size_t)n == total)
    return 0;
  /* The fd left with the first byte; the rest of the frame follows before anything else. */
  if ((size_t)n < head)
    rest[nrest++] = uv_buf_init((char *)out->frame + n, (unsigned)(head - (size_t)n));
  if (extralen && (size_t)n < total)
    rest[nrest++] = uv_buf_init((char *)extra + ((size_t)n > head ? (size_t)n - head : 0),
                                (unsigned)(total - ((size_t)n > head ? (size_t)n : head)));
  out->cb = cb;
  n = uv_write(&out->req, (uv_stream_t *)&ch->pipe, rest, nrest, out_cb);
  if (n != 0) {
    ch->failed = 1; /* half a frame is on the wire: the channel cannot go on */
    return (int)n;
  }
  return 1;
}

size_t ipc_frame(struct ipc_out *out, uint8_t type, const void *payload, uint32_t len) {
  ipc_header(out->frame, type, len);
  if (len)
    memcpy(out->frame + IPC_HDR_LEN, payload, len);
  return IPC_HDR_LEN + (size_t)len;
}

ssize_t ipc_send_frames_now(struct ipc_channel *ch, struct ipc_out *const *outs, const size_t *lens,
                            const int *fds, unsigned n) {
  struct iovec iov[IPC_BATCH_MAX];

  if (n == 0 || n > IPC_BATCH_MAX)
    return UV_EINVAL;
  for (unsigned i = 0; i < n; i++)
    iov[i] = (struct iovec){outs[i]->frame, lens[i]};
  return send_fds_now(ch, iov, n, fds, n);
}

int ipc_send_laid_out(struct ipc_channel *ch, struct ipc_out *out, size_t len,
                      uv_stream_t *send_handle, ipc_sent_cb cb) {
  uv_buf_t b = uv_buf_init((char *)out->frame, (unsigned)len);

  if (len < IPC_HDR_LEN || len > sizeof(out->frame) || send_handle == NULL)
    return UV_EINVAL;
  if (ch->failed)
    return UV_EPIPE;
  out->cb = cb;
  return uv_write2(&out->req, (uv_stream_t *)&ch->pipe, &b, 1, send_handle, out_cb);
}

int ipc_write_rest(struct ipc_channel *ch, struct ipc_out *out, size_t from, size_t len,
                   ipc_sent_cb cb) {
  uv_buf_t b = uv_buf_init((char *)out->frame + from, (unsigned)(len - from));
  int rc;

  out->cb = cb;
  if ((rc = uv_write(&out->req, (uv_stream_t *)&ch->pipe, &b, 1, out_cb)) != 0)
    ch->failed = 1;
  return rc;
}

size_t ipc_put_peer(unsigned char *p, const struct sockaddr *sa) {
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
    p[0] = 4;
    memcpy(p + 1, &in->sin_port, 2); /* both in network order */
    memcpy(p + 3, &in->sin_addr, 4);
    return 7;
  }
  if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
    p[0] = 6;
    memcpy(p + 1, &in6->sin6_port, 2);
    memcpy(p + 3, &in6->sin6_addr, 16);
    return 19;
  }
  return 0;
}

size_t ipc_get_peer(const char *p, size_t len, struct sockaddr_storage *ss) {
  memset(ss, 0, sizeof(*ss));
  if (len >= 7 && p[0] == 4) {
    struct sockaddr_in *in = (struct sockaddr_in *)ss;
    in->sin_family = AF_INET;
    memcpy(&in->sin_port, p + 1, 2);
    memcpy(&in->sin_addr, p + 3, 4);
    return 7;
  }
  if (len >= 19 && p[0] == 6) {
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    in6->sin6_family = AF_INET6;
    memcpy(&in6->sin6_port, p + 1, 2);
    memcpy(&in6->sin6_addr, p + 3, 16);
    return 19;
  }
  return 0;
}

int ipc_send_small(struct ipc_channel *ch, struct ipc_out *out, uint8_t type, const void *payload,
                   uint32_t len, uv_stream_t *send_handle, ipc_sent_cb cb) {
  return ipc_send_out(ch, out, type, payload, len, NULL, 0, send_handle, cb);
}

struct big_out {
  uv_write_t req;
  unsigned char bytes[];
};

static void big_cb(uv_write_t *req, int status) {
  free(req);
}

int ipc_send(struct ipc_channel *ch, uint8_t type, const void *payload, uint32_t len) {
  struct big_out *o;
  uv_buf_t b;
  int rc;

  if (len > IPC_MAX_PAYLOAD || (type & IPC_FD_FLAG))
    return UV_EINVAL;
  if (ch->failed)
    return UV_EPIPE;
  o = malloc(sizeof(*o) + IPC_HDR_LEN + len);
  if (o == NULL)
    return UV_ENOMEM;
  ipc_header(o->bytes, type, len);
  if (len)
    memcpy(o->bytes + IPC_HDR_LEN, payload, len);
  b = uv_buf_init((char *)o->bytes, IPC_HDR_LEN + len);
  rc = uv_write(&o->req, (uv_stream_t *)&ch->pipe, &b, 1, big_cb);
  if (rc != 0)
    free(o);
  return rc;
}

struct handle_out {
  struct ipc_out out;
  unsigned char bytes[];
};

static void handle_out_cb(struct ipc_out *out, int status) {
  free(out); /* out is the first member of its handle_out */
}

int ipc_send_handle(struct ipc_channel *ch, uint8_t type, const void *payload, uint32_t len,
                    uv_stream_t *send_handle) {
  struct handle_out *o;
  int rc;

  if (len > IPC_MAX_PAYLOAD)
    return UV_EINVAL;
  if ((o = malloc(sizeof(*o) + len)) == NULL)
    return UV_ENOMEM;
  if (len)
    memcpy(o->bytes, payload, len);
  rc = ipc_send_out(ch, &o->out, type, NULL, 0, o->bytes, len, send_handle, handle_out_cb);
  if (rc != 0)
    free(o);
  return rc;
}
