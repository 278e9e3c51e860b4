/* IPC framing and the libuv channel that carries frames and fds between master and workers. */

/*
 * The master<->worker protocol.
 *
 * 1. Transport. Each worker has one AF_UNIX socketpair to the master, created by uv_spawn
 *    (UV_CREATE_PIPE on a uv_pipe_t with ipc = 1) and inherited as fd 3 in the worker, whose
 *    number is also in the environment as LBPROXY_CHANNEL_FD (Node's NODE_CHANNEL_FD).
 *
 * 2. Framing. Every message is `u32 length | u8 type | payload`; length counts the payload
 *    only, big-endian, at most IPC_MAX_PAYLOAD. Frames are a byte stream: a reader must accept
 *    them split at any byte, and several in one read (ipc_decode does; its test splits every
 *    frame at every byte).
 *
 * 3. Fds. A type with bit 0x80 (IPC_FD_FLAG) carries exactly one fd; no other type carries
 *    any. Such a frame is sent alone by one uv_write2(), so its fd rides SCM_RIGHTS on the
 *    frame's first byte. The kernel never merges a message carrying fds with bytes before it,
 *    so by the time the reader has the frame's last byte, libuv has queued exactly the fds of
 *    this and earlier fd frames, in order. The reader takes one pending fd per fd frame, so fds
 *    and frames cannot get out of step; an fd frame with no pending fd is a protocol error.
 *
 * 4. Start-up. worker: HELLO(pid) -> master: CONFIG(generation, slot, file name, the exact
 *    bytes the master validated) -> worker parses them, builds its data plane ->
 *    master: LISTEN(kind, fd) for each socket the strategy gives this slot -> worker: READY(port
 *    of its private listener, or 0). The master counts a worker as serving only after READY.
 *
 * 5. Connections (handoff strategies). master: CONN(seq, fd) with seq increasing per worker.
 *    The master keeps its copy of the fd until the worker acknowledges it: at the end of each
 *    loop iteration in which anything changed, the worker sends one STATUS(highest seq it has
 *    taken, active connections, connections accepted in total). A worker that will not serve
 *    a connection (it is stopping) answers REFUSE(seq). The master then hands that fd, or every
 *    un-acknowledged fd of a worker that died, to another worker: nothing is dropped or leaked.
 *
 * 6. Status. STATUS also carries load for handoff-least and the per-worker counters in the
 *    master's stats line, for every strategy (workers that accept themselves report too).
 *
 * 7. Stop. master: STOP -> the worker closes its listeners and exits. A closed channel means
 *    the master is gone: the worker exits too.
 */
#include "ipc.h"

#include <stdlib.h>
#include <string.h>

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

/* Accepts and closes a pending fd nobody took, so it does not leak. */
static void ch_discard_fd(struct ipc_channel *ch) {
  uv_handle_type t = uv_pipe_pending_type(&ch->pipe);
  uv_stream_t *s;

  if (t == UV_TCP) {
    s = malloc(sizeof(uv_tcp_t));
    if (s == NULL || uv_tcp_init(ch->pipe.loop, (uv_tcp_t *)s) != 0) {
      free(s);
      return;
    }
  } else {
    s = malloc(sizeof(uv_pipe_t));
    if (s == NULL || uv_pipe_init(ch->pipe.loop, (uv_pipe_t *)s, 0) != 0) {
      free(s);
      return;
    }
  }
  uv_accept((uv_stream_t *)&ch->pipe, s);
  uv_close((uv_handle_t *)s, discard_close_cb);
}

static int ch_frame(void *arg, uint8_t type, const char *payload, uint32_t len) {
  struct ipc_channel *ch = arg;

  if (ch->failed)
    return UV_ECANCELED;
  if (type & IPC_FD_FLAG) {
    if (uv_pipe_pending_count(&ch->pipe) < 1)
      return UV_EPROTO;
    ch->fd_taken = 0;
  }
  ch->on_frame(ch, type, payload, len);
  if ((type & IPC_FD_FLAG) && !ch->fd_taken && !uv_is_closing((uv_handle_t *)&ch->pipe))
    ch_discard_fd(ch);
  return ch->failed ? UV_ECANCELED : 0;
}

static void ch_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  static char rbuf[IPC_READ_BUF];
  /* One buffer serves every channel: ipc_decode consumes a read before the next is made. */
  buf->base = rbuf;
  buf->len = sizeof(rbuf);
}

static void ch_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  struct ipc_channel *ch = s->data;
  int rc;

  if (nread > 0) {
    rc = ipc_decode(&ch->dec, buf->base, (size_t)nread, ch_frame, ch);
    if (rc < 0 && rc != UV_ECANCELED)
      ch_fail(ch, rc);
  } else if (nread < 0) {
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
  int rc = uv_accept((uv_stream_t *)&ch->pipe, handle);
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

int ipc_send_small(struct ipc_channel *ch, struct ipc_out *out, uint8_t type, const void *payload,
                   uint32_t len, uv_stream_t *send_handle, ipc_sent_cb cb) {
  uv_buf_t b;

  if (len > IPC_SMALL || (send_handle != NULL) != ((type & IPC_FD_FLAG) != 0))
    return UV_EINVAL;
  if (ch->failed)
    return UV_EPIPE;
  ipc_header(out->frame, type, len);
  if (len)
    memcpy(out->frame + IPC_HDR_LEN, payload, len);
  out->cb = cb;
  b = uv_buf_init((char *)out->frame, IPC_HDR_LEN + len);
  return uv_write2(&out->req, (uv_stream_t *)&ch->pipe, &b, 1, send_handle, out_cb);
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

static void handle_out_cb(struct ipc_out *out, int status) {
  free(out);
}

int ipc_send_handle(struct ipc_channel *ch, uint8_t type, const void *payload, uint32_t len,
                    uv_stream_t *send_handle) {
  struct ipc_out *out = malloc(sizeof(*out));
  int rc;

  if (out == NULL)
    return UV_ENOMEM;
  rc = ipc_send_small(ch, out, type, payload, len, send_handle, handle_out_cb);
  if (rc != 0)
    free(out);
  return rc;
}
