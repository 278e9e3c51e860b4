/* A byte relay between two TCP streams: one buffer per direction, half-close, resets. */

/*
 * Each direction is a small state machine: read into its buffer; write the buffer to the
 * other side (directly if the socket takes it all, else with uv_write and no reading until it
 * completes); on EOF, shut the other side's write half once that write is done. The relay
 * closes when both directions have ended, or at once, with RST on the other side, when a side
 * fails (ECONNRESET and friends), so a reset travels through like the bytes do.
 *
 * A direction holds a buffer only while it has bytes in it (taken from a small free list on
 * each read, given back once written), so an idle relayed connection costs no buffer. Both
 * sockets get TCP_NODELAY: a relay writes whatever each read brought, and Nagle holding back
 * a small tail until the peer's (delayed) ACK would add up to 40 ms to every exchange.
 */
#include "relay.h"

#include <stdlib.h>
#include <string.h>

struct relay_buf {
  struct relay_buf *next;
  size_t size;
  char data[];
};

struct relay_dir {
  uv_tcp_t *from, *to;
  struct relay_buf *rb; /* NULL while empty */
  size_t len;
  uv_write_t wreq;
  uv_shutdown_t sreq;
  unsigned char reading, writing, eof, shut;
};

struct px_relay {
  uv_tcp_t tcp[2];
  uv_timer_t timer; /* the linger limit */
  uint64_t linger_ms;
  int linger_side;
  struct relay_dir dir[2]; /* dir[0]: side 0 -> side 1, dir[1]: side 1 -> side 0 */
  size_t bufsize;
  px_relay_done_cb done;
  void *arg;
  uv_write_t preq; /* the prefix (the caller's memory, valid until done) */
  int closing, open_handles;
};

#define FREE_MAX 64
static struct relay_buf *free_bufs;
static unsigned nfree;

static struct relay_buf *buf_get(size_t size) {
  struct relay_buf *b = free_bufs;
  if (b != NULL && b->size == size) {
    free_bufs = b->next;
    nfree--;
    return b;
  }
  b = malloc(sizeof(*b) + size);
  if (b != NULL)
    b->size = size;
  return b;
}

static void buf_put(struct relay_dir *d) {
  struct relay_buf *b = d->rb;
  d->rb = NULL;
  d->len = 0;
  if (b == NULL)
    return;
  if (nfree >= FREE_MAX) {
    free(b);
    return;
  }
  b->next = free_bufs;
  free_bufs = b;
  nfree++;
}

static void dir_read_start(struct px_relay *r, struct relay_dir *d);

static void relay_close_cb(uv_handle_t *h) {
  struct px_relay *r = h->data;
  if (--r->open_handles == 0) {
    buf_put(&r->dir[0]);
    buf_put(&r->dir[1]);
    r->done(r, r->arg);
    free(r);
  }
}

void px_relay_close(struct px_relay *r, int reset) {
  if (r->closing)
    return;
  r->closing = 1;
  uv_close((uv_handle_t *)&r->timer, relay_close_cb);
  for (int i = 0; i < 2; i++) {
    uv_handle_t *h = (uv_handle_t *)&r->tcp[i];
    if (uv_is_closing(h))
      continue;
    if (!reset || uv_tcp_close_reset(&r->tcp[i], relay_close_cb) != 0)
      uv_close(h, relay_close_cb);
  }
}

/* A side failed: the other side learns it the way a direct peer would, by a reset. */
static void relay_fail(struct px_relay *r, uv_tcp_t *failed) {
  uv_tcp_t *other = failed == &r->tcp[0] ? &r->tcp[1] : &r->tcp[0];
  if (r->closing)
    return;
  r->closing = 1;
  uv_close((uv_handle_t *)&r->timer, relay_close_cb);
  uv_close((uv_handle_t *)failed, relay_close_cb);
  if (uv_tcp_close_reset(other, relay_close_cb) != 0)
    uv_close((uv_handle_t *)other, relay_close_cb);
}

static void maybe_finish(struct px_relay *r) {
  if (r->dir[0].shut && r->dir[1].shut && !r->dir[0].writing && !r->dir[1].writing)
    px_relay_close(r, 0);
}

static void shutdown_cb(uv_shutdown_t *req, int status) {
  struct px_relay *r = req->handle->data;
  if (r->closing)
    return;
  maybe_finish(r);
}

static void linger_cb(uv_timer_t *t) {
  px_relay_close(t->data, 0);
}

/* The source hit EOF and everything read is written: pass the half-close on. */
static void dir_shut(struct px_relay *r, struct relay_dir *d) {
  if (d->shut)
    return;
  d->shut = 1;
  if (r->linger_ms > 0 && d == &r->dir[r->linger_side])
    uv_timer_start(&r->timer, linger_cb, r->linger_ms, 0);
  if (uv_shutdown(&d->sreq, (uv_stream_t *)d->to, shutdown_cb) != 0)
    maybe_finish(r);
}

static void write_cb(uv_write_t *req, int status) {
  struct relay_dir *d = req->data;
  struct px_relay *r = d->from->data;

  d->writing = 0;
  if (r->closing)
    return;
  if (status < 0) {
    relay_fail(r, d->to);
    return;
  }
  buf_put(d);
  if (d->eof)
    dir_shut(r, d);
  else
    dir_read_start(r, d);
}

static void dir_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  struct px_relay *r = h->data;
  struct relay_dir *d = &r->dir[(uv_tcp_t *)h == &r->tcp[0] ? 0 : 1];
  if (d->rb == NULL && (d->rb = buf_get(r->bufsize)) == NULL) {
    *buf = uv_buf_init(NULL, 0); /* UV_ENOBUFS: the read callback fails the relay */
    return;
  }
  *buf = uv_buf_init(d->rb->data + d->len, (unsigned)(r->bufsize - d->len));
}

static void dir_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  struct px_relay *r = s->data;
  struct relay_dir *d = &r->dir[(uv_tcp_t *)s == &r->tcp[0] ? 0 : 1];
  uv_buf_t b;
  int rc;

  if (nread == 0) {
    if (d->len == 0)
      buf_put(d);
    return;
  }
  if (nread < 0) {
    if (d->len == 0)
      buf_put(d);
    uv_read_stop(s);
    d->reading = 0;
    if (nread != UV_EOF) {
      relay_fail(r, d->from);
      return;
    }
    d->eof = 1;
    if (!d->writing)
      dir_shut(r, d);
    return;
  }
  d->len += (size_t)nread;
  b = uv_buf_init(d->rb->data, (unsigned)d->len);
  rc = uv_try_write((uv_stream_t *)d->to, &b, 1);
  if (rc == (int)d->len) {
    buf_put(d);
    return;
  }
  if (rc < 0 && rc != UV_EAGAIN) {
    relay_fail(r, d->to);
    return;
  }
  if (rc > 0) {
    memmove(d->rb->data, d->rb->data + rc, d->len - (size_t)rc);
    d->len -= (size_t)rc;
  }
  uv_read_stop(s);
  d->reading = 0;
  b = uv_buf_init(d->rb->data, (unsigned)d->len);
  d->writing = 1;
  if (uv_write(&d->wreq, (uv_stream_t *)d->to, &b, 1, write_cb) != 0) {
    d->writing = 0;
    relay_fail(r, d->to);
  }
}

static void dir_read_start(struct px_relay *r, struct relay_dir *d) {
  if (d->reading || d->eof || r->closing)
    return;
  if (uv_read_start((uv_stream_t *)d->from, dir_alloc, dir_read_cb) == 0)
    d->reading = 1;
  else
    relay_fail(r, d->from);
}

struct px_relay *px_relay_new(uv_loop_t *loop, size_t bufsize, px_relay_done_cb done, void *arg) {
  struct px_relay *r = malloc(sizeof(*r));

  if (r == NULL)
    return NULL;
  memset(r, 0, sizeof(*r));
  r->bufsize = bufsize;
  r->done = done;
  r->arg = arg;
  for (int i = 0; i < 2; i++) {
    uv_tcp_init(loop, &r->tcp[i]);
    r->tcp[i].data = r;
    r->dir[i].from = &r->tcp[i];
    r->dir[i].to = &r->tcp[1 - i];
    r->dir[i].wreq.data = &r->dir[i];
  }
  uv_timer_init(loop, &r->timer);
  r->timer.data = r;
  r->open_handles = 3;
  return r;
}

void px_relay_set_linger(struct px_relay *r, int side, uint64_t ms) {
  r->linger_side = side;
  r->linger_ms = ms;
}

uv_tcp_t *px_relay_tcp(struct px_relay *r, int side) {
  return &r->tcp[side];
}

static void prefix_cb(uv_write_t *req, int status) {
  struct px_relay *r = req->data;
  if (status < 0 && !r->closing)
    relay_fail(r, &r->tcp[1]);
}

int px_relay_start(struct px_relay *r, const void *prefix, size_t prefixlen) {
  uv_tcp_nodelay(&r->tcp[0], 1);
  uv_tcp_nodelay(&r->tcp[1], 1);
  if (prefixlen > 0) {
    /* Queued before anything else, so it is the first thing side 1 receives: while it is
     * queued, uv_try_write in dir_read_cb returns UV_EAGAIN and later data queues behind. */
    uv_buf_t b = uv_buf_init((char *)prefix, (unsigned)prefixlen);
    int rc;
    r->preq.data = r;
    rc = uv_write(&r->preq, (uv_stream_t *)&r->tcp[1], &b, 1, prefix_cb);
    if (rc != 0)
      return rc;
  }
  dir_read_start(r, &r->dir[0]);
  dir_read_start(r, &r->dir[1]);
  return 0;
}
