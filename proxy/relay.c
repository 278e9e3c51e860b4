/* A byte relay between two borrowed streams: one buffer per direction, half-close, resets,
 * idle and send timeouts. Shared by the master's proxy dispatch, Upgrade tunnels and TCP mode. */

/*
 * 1. Each direction is a small state machine: read into its buffer; write the buffer to the
 *    other side (directly if the socket takes it all, else with uv_write and no reading until
 *    it completes: one buffer per direction is the whole backpressure story); on EOF, shut the
 *    other side's write half once that write is done.
 * 2. The relay ends when both directions have ended (PX_RELAY_DONE), or at once when a side
 *    fails (PX_RELAY_RESET: the owner resets the other side, so a reset travels through like
 *    the bytes do), or at a deadline.
 * 3. Deadlines share one timer and cost nothing per read: a read only stamps `last_io` with
 *    the loop's cached time; the timer, armed for the earliest deadline, re-checks when it
 *    fires and re-arms for what is left. Idle: no byte either way for idle_ms. Send: a write
 *    pending for send_ms (its reader stopped reading; without this a relay that stopped reading
 *    one side to wait for the other would never learn that side closed). Linger: a side ended
 *    and the other did not within linger_ms.
 * 4. Ending is asynchronous: reads stop and the streams' `data` is given back at once; `done`
 *    runs from the timer's close callback, so it never runs inside the owner's own call.
 *
 * A direction holds a buffer only while it has bytes in it, so an idle relay costs none.
 */
#include "relay.h"

#include <string.h>

enum { R_NEW, R_RUNNING, R_ENDING, R_ENDED };

static void dir_read_start(struct px_relay *r, struct px_relay_dir *d);
static void dir_flush(struct px_relay *r, struct px_relay_dir *d);
static void relay_arm(struct px_relay *r);

static void buf_release(struct px_relay *r, struct px_relay_dir *d) {
  px_buf_put(r->pool, d->b);
  d->b = NULL;
  d->len = 0;
}

static void timer_close_cb(uv_handle_t *h) {
  struct px_relay *r = h->data;

  r->state = R_ENDED;
  for (int i = 0; i < 2; i++)
    if (!r->dir[i].writing)
      buf_release(r, &r->dir[i]); /* a pending write gives its buffer back when it completes */
  r->done(r, (enum px_relay_end)r->end_why, r->end_side);
}

/* Stops everything that calls into the owner's streams and schedules `done`. */
static void relay_end(struct px_relay *r, enum px_relay_end why, int side) {
  if (r->state != R_RUNNING)
    return;
  r->state = R_ENDING;
  r->end_why = (uint8_t)why;
  r->end_side = (int8_t)side;
  for (int i = 0; i < 2; i++) {
    struct px_relay_dir *d = &r->dir[i];
    if (d->reading)
      uv_read_stop(d->from);
    d->reading = 0;
    d->from->data = r->saved_data[i];
  }
  uv_close((uv_handle_t *)&r->timer, timer_close_cb);
}

void px_relay_stop(struct px_relay *r) {
  relay_end(r, PX_RELAY_STOPPED, -1);
}

static int side_of(const struct px_relay *r, const uv_stream_t *s) {
  return s == r->dir[0].from ? 0 : 1;
}

static void shutdown_cb(uv_shutdown_t *req, int status) {
  struct px_relay_dir *d = req->data;
  struct px_relay *r = d->r;

  d->shut_done = 1;
  if (r->state != R_RUNNING)
    return;
  if (status < 0 && status != UV_ENOTCONN) {
    relay_end(r, PX_RELAY_RESET, side_of(r, d->to));
    return;
  }
  if (r->dir[0].shut_done && r->dir[1].shut_done)
    relay_end(r, PX_RELAY_DONE, -1);
}

/* The source hit EOF and everything read is written: pass the half-close on. */
static void dir_shut(struct px_relay *r, struct px_relay_dir *d) {
  int rc;

  if (d->shut)
    return;
  d->shut = 1;
  if (r->linger_ms > 0 && d == &r->dir[r->linger_side]) {
    r->linger_since = uv_now(r->timer.loop);
    relay_arm(r);
  }
  rc = uv_shutdown(&d->sreq, d->to, shutdown_cb);
  if (rc != 0 && rc != UV_ENOTCONN) {
    relay_end(r, PX_RELAY_RESET, side_of(r, d->to));
    return;
  }
  if (rc != 0) {
    d->shut_done = 1;
    if (r->dir[0].shut_done && r->dir[1].shut_done)
      relay_end(r, PX_RELAY_DONE, -1);
  }
}

static void write_cb(uv_write_t *req, int status) {
  struct px_relay_dir *d = req->data;
  struct px_relay *r = d->r;

  d->writing = 0;
  if (r->state == R_ENDED) {
    buf_release(r, d); /* cancelled as the owner closed the streams */
    return;
  }
  if (r->state != R_RUNNING)
    return; /* the timer's close callback releases the buffer */
  if (status < 0) {
    relay_end(r, PX_RELAY_RESET, side_of(r, d->to));
    return;
  }
  r->last_io = uv_now(req->handle->loop);
  buf_release(r, d);
  if (d->eof)
    dir_shut(r, d);
  else
    dir_read_start(r, d);
}

/* Writes what the direction's buffer holds: at once if the socket takes it, else queued, with
 * reading stopped until it is written. */
static void dir_flush(struct px_relay *r, struct px_relay_dir *d) {
  uv_buf_t b = uv_buf_init(d->b->data, (unsigned)d->len);
  int rc = uv_try_write(d->to, &b, 1);

  if (rc == (int)d->len) {
    buf_release(r, d);
    return;
  }
  if (rc < 0 && rc != UV_EAGAIN) {
    relay_end(r, PX_RELAY_RESET, side_of(r, d->to));
    return;
  }
  if (rc > 0) {
    memmove(d->b->data, d->b->data + rc, d->len - (size_t)rc);
    d->len -= (size_t)rc;
  }
  if (d->reading) {
    uv_read_stop(d->from);
    d->reading = 0;
  }
  b = uv_buf_init(d->b->data, (unsigned)d->len);
  if (uv_write(&d->wreq, d->to, &b, 1, write_cb) != 0) {
    relay_end(r, PX_RELAY_RESET, side_of(r, d->to));
    return;
  }
  d->writing = 1;
  d->write_since = uv_now(r->timer.loop);
  /* A send deadline may come before the one the timer is armed for. */
  if (r->send_ms > 0 &&
      (!uv_is_active((uv_handle_t *)&r->timer) || uv_timer_get_due_in(&r->timer) > r->send_ms))
    relay_arm(r);
}

static void dir_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  struct px_relay *r = h->data;
  struct px_relay_dir *d = &r->dir[side_of(r, (uv_stream_t *)h)];

  if (d->b == NULL && (d->b = px_buf_get(r->pool)) == NULL) {
    *buf = uv_buf_init(NULL, 0); /* UV_ENOBUFS: the read callback ends the relay */
    return;
  }
  *buf = uv_buf_init(d->b->data + d->len, (unsigned)(r->pool->size - d->len));
}

static void dir_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  struct px_relay *r = s->data;
  int side = side_of(r, s);
  struct px_relay_dir *d = &r->dir[side];

  if (nread > 0) {
    r->last_io = uv_now(s->loop);
    d->len += (size_t)nread;
    dir_flush(r, d);
    return;
  }
  if (d->len == 0)
    buf_release(r, d);
  if (nread == 0)
    return;
  uv_read_stop(s);
  d->reading = 0;
  if (nread != UV_EOF) {
    relay_end(r, PX_RELAY_RESET, side);
    return;
  }
  d->eof = 1;
  if (!d->writing)
    dir_shut(r, d);
}

static void dir_read_start(struct px_relay *r, struct px_relay_dir *d) {
  if (d->reading || d->eof || r->state != R_RUNNING)
    return;
  if (uv_read_start(d->from, dir_alloc, dir_read_cb) != 0) {
    relay_end(r, PX_RELAY_RESET, side_of(r, d->from));
    return;
  }
  d->reading = 1;
}

/* The earliest deadline from now, or 0 if there is none; ends the relay if one passed. */
static uint64_t next_deadline(struct px_relay *r, uint64_t now) {
  uint64_t next = UINT64_MAX;

  if (r->idle_ms > 0) {
    if (now - r->last_io >= r->idle_ms) {
      relay_end(r, PX_RELAY_IDLE, -1);
      return 0;
    }
    next = r->last_io + r->idle_ms - now;
  }
  for (int i = 0; i < 2 && r->send_ms > 0; i++) {
    struct px_relay_dir *d = &r->dir[i];
    if (!d->writing)
      continue;
    if (now - d->write_since >= r->send_ms) {
      relay_end(r, PX_RELAY_SEND_TIMEOUT, side_of(r, d->to));
      return 0;
    }
    if (d->write_since + r->send_ms - now < next)
      next = d->write_since + r->send_ms - now;
  }
  if (r->linger_ms > 0 && r->dir[r->linger_side].shut) {
    if (now - r->linger_since >= r->linger_ms) {
      relay_end(r, PX_RELAY_LINGER, 1 - r->linger_side);
      return 0;
    }
    if (r->linger_since + r->linger_ms - now < next)
      next = r->linger_since + r->linger_ms - now;
  }
  return next == UINT64_MAX ? 0 : next;
}

static void timer_cb(uv_timer_t *t) {
  relay_arm(t->data);
}

static void relay_arm(struct px_relay *r) {
  uint64_t ms;

  if (r->state != R_RUNNING)
    return;
  ms = next_deadline(r, uv_now(r->timer.loop));
  if (ms > 0)
    uv_timer_start(&r->timer, timer_cb, ms, 0);
  else if (r->state == R_RUNNING)
    uv_timer_stop(&r->timer);
}

void px_relay_init(struct px_relay *r, struct px_bufpool *pool, uint64_t idle_ms, uint64_t send_ms,
                   int linger_side, uint64_t linger_ms) {
  void *data = r->data;

  memset(r, 0, sizeof(*r));
  r->data = data;
  r->pool = pool;
  r->idle_ms = idle_ms;
  r->send_ms = send_ms;
  r->linger_side = linger_side >= 0 ? linger_side : 0;
  r->linger_ms = linger_side >= 0 ? linger_ms : 0;
  r->end_side = -1;
}

/* Writes bytes the owner already had for this direction's destination (they stay the owner's):
 * the direction reads nothing before they are out, so they arrive first. */
static void dir_prefix(struct px_relay *r, struct px_relay_dir *d, const uv_buf_t *pre) {
  uv_buf_t b;
  int rc;

  if (pre == NULL || pre->len == 0)
    return;
  b = *pre;
  rc = uv_try_write(d->to, &b, 1);
  if (rc == (int)b.len)
    return;
  if (rc < 0 && rc != UV_EAGAIN) {
    relay_end(r, PX_RELAY_RESET, side_of(r, d->to));
    return;
  }
  if (rc > 0) {
    b.base += rc;
    b.len -= (size_t)rc;
  }
  if (uv_write(&d->wreq, d->to, &b, 1, write_cb) != 0) {
    relay_end(r, PX_RELAY_RESET, side_of(r, d->to));
    return;
  }
  d->writing = 1;
  d->write_since = uv_now(r->timer.loop);
}

void px_relay_start(struct px_relay *r, uv_loop_t *loop, uv_stream_t *s0, uv_stream_t *s1,
                    const uv_buf_t pre[2], px_relay_done_cb done) {
  uv_stream_t *s[2] = {s0, s1};

  uv_timer_init(loop, &r->timer);
  r->timer.data = r;
  r->done = done;
  r->state = R_RUNNING;
  r->last_io = uv_now(loop);
  for (int i = 0; i < 2; i++) {
    struct px_relay_dir *d = &r->dir[i];
    d->r = r;
    d->from = s[i];
    d->to = s[1 - i];
    d->wreq.data = d;
    d->sreq.data = d;
    r->saved_data[i] = s[i]->data;
    s[i]->data = r;
  }
  /* dir[i] carries bytes to side 1 - i: pre[1 - i] goes first. */
  for (int i = 0; i < 2 && r->state == R_RUNNING; i++)
    dir_prefix(r, &r->dir[i], pre != NULL ? &pre[1 - i] : NULL);
  for (int i = 0; i < 2 && r->state == R_RUNNING; i++)
    if (!r->dir[i].writing)
      dir_read_start(r, &r->dir[i]);
  relay_arm(r);
}
