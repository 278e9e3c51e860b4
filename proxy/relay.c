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
 * 5. Splice (both streams TCP sockets, the default): a direction does not let libuv read; its
 *    allocator hands libuv no buffer, so a readable socket comes to the read callback as
 *    UV_ENOBUFS (libuv's documented answer to an empty buffer, reading stays on), which splices
 *    socket -> pipe -> socket. The pipe is the process's one splice pipe and is empty whenever
 *    no splice is running: what the destination does not take at once is read out of it into
 *    the direction's buffer and written by step 1, which also stops reading until it is out.
 *    So an idle relay still costs nothing, the pipe costs two fds per process, and every
 *    deadline and end works as for copied bytes.
 *
 * A direction holds a buffer only while it has bytes in it, so an idle relay costs none.
 */
#include "relay.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#define SPLICE_PIPE_SIZE (256 * 1024) /* asked for; the kernel may give less */
#define SPLICE_ROUNDS    4            /* chunks per readable event, then other sockets' turn */

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

  if (d->from_fd >= 0) {
    *buf = uv_buf_init(NULL, 0); /* splice: the read callback moves the bytes (UV_ENOBUFS) */
    return;
  }
  if (d->b == NULL && (d->b = px_buf_get(r->pool)) == NULL) {
    *buf = uv_buf_init(NULL, 0); /* UV_ENOBUFS: the read callback ends the relay */
    return;
  }
  *buf = uv_buf_init(d->b->data + d->len, (unsigned)(r->pool->size - d->len));
}

/* The process's splice pipe (close-on-exec, non-blocking), made on first use; -1 when pipes
 * cannot be had, and relays copy. */
static int splice_pipe[2] = {-1, -1};
static size_t splice_cap;

static int splice_pipe_ready(void) {
  static int failed;
  int cap;

  if (splice_pipe[0] >= 0)
    return 1;
  if (failed || pipe2(splice_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
    failed = 1;
    return 0;
  }
  /* Never fds 0-2: a process started with them closed would later make one of them its log
   * (dup2 onto 2), and spliced bytes would go there. */
  for (int i = 0; i < 2; i++)
    if (splice_pipe[i] <= 2) {
      int fd = fcntl(splice_pipe[i], F_DUPFD_CLOEXEC, 3);
      if (fd < 0) {
        close(splice_pipe[0]);
        close(splice_pipe[1]);
        splice_pipe[0] = splice_pipe[1] = -1;
        failed = 1;
        return 0;
      }
      close(splice_pipe[i]);
      splice_pipe[i] = fd;
    }
  cap = fcntl(splice_pipe[1], F_SETPIPE_SZ, SPLICE_PIPE_SIZE);
  if (cap < 0)
    cap = fcntl(splice_pipe[1], F_GETPIPE_SZ);
  splice_cap = cap > 0 ? (size_t)cap : 4096;
  return 1;
}

int px_relay_splice_prepare(void) {
  return splice_pipe_ready() ? 0 : -1;
}

/* Empties the pipe into dst (at most n bytes, all that is in it); returns the bytes read. */
static size_t pipe_drain(char *dst, size_t n) {
  static char scratch[16 * 1024];
  size_t got = 0;
  ssize_t k;

  while (dst == NULL || got < n) {
    k = read(splice_pipe[0], dst != NULL ? dst + got : scratch,
             dst != NULL ? n - got : sizeof(scratch));
    if (k > 0)
      got += (size_t)k;
    else if (k < 0 && errno == EINTR)
      continue;
    else
      break;
  }
  return got;
}

static void dir_eof(struct px_relay *r, struct px_relay_dir *d);

/* A spliced direction reads once the copying way: when splice cannot take what is readable
 * (TCP urgent data stops it at the mark: EAGAIN while epoll keeps saying readable, a busy
 * loop; a plain read steps over the mark), and while the owner still has bytes queued for the
 * destination in libuv (they go first: dir_flush queues behind them). */
static void dir_copy_once(struct px_relay *r, struct px_relay_dir *d) {
  ssize_t n;

  if (d->b == NULL && (d->b = px_buf_get(r->pool)) == NULL) {
    relay_end(r, PX_RELAY_RESET, side_of(r, d->from));
    return;
  }
  do
    n = read(d->from_fd, d->b->data + d->len, r->pool->size - d->len);
  while (n < 0 && errno == EINTR);
  if (n > 0) {
    r->last_io = uv_now(d->from->loop);
    d->len += (size_t)n;
    dir_flush(r, d);
    return;
  }
  if (d->len == 0)
    buf_release(r, d);
  if (n == 0)
    dir_eof(r, d);
  else if (errno != EAGAIN)
    relay_end(r, PX_RELAY_RESET, side_of(r, d->from));
}

/* Readable source, splice mode: up to SPLICE_ROUNDS chunks socket -> pipe -> socket. A chunk
 * the destination does not take goes into the direction's buffer and out by dir_flush. */
static void dir_splice(struct px_relay *r, struct px_relay_dir *d) {
  size_t chunk = r->pool->size < splice_cap ? r->pool->size : splice_cap;

  if (uv_stream_get_write_queue_size(d->to) > 0) {
    dir_copy_once(r, d);
    return;
  }
  for (int round = 0; round < SPLICE_ROUNDS && r->state == R_RUNNING; round++) {
    ssize_t n =
        splice(d->from_fd, NULL, splice_pipe[1], NULL, chunk, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    size_t left;

    if (n == 0) {
      dir_eof(r, d);
      return;
    }
    if (n < 0) {
      if (errno == EINTR)
        continue;
      if (errno == EINVAL || errno == ENOSYS)
        d->from_fd = -1; /* this socket cannot splice: copy from now on */
      else if (errno != EAGAIN)
        relay_end(r, PX_RELAY_RESET, side_of(r, d->from));
      else if (round == 0)
        dir_copy_once(r, d); /* readable, yet nothing to splice: urgent data */
      return;
    }
    r->last_io = uv_now(d->from->loop);
    for (left = (size_t)n; left > 0;) {
      ssize_t w =
          splice(splice_pipe[0], NULL, d->to_fd, NULL, left, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (w > 0) {
        left -= (size_t)w;
        r->spliced += (uint64_t)w;
      } else if (w < 0 && errno == EINTR) {
        continue;
      } else if (w < 0 && errno != EAGAIN) {
        pipe_drain(NULL, 0);
        relay_end(r, PX_RELAY_RESET, side_of(r, d->to));
        return;
      } else {
        break; /* the destination is full */
      }
    }
    if (left == 0)
      continue;
    /* The rest waits in the direction's buffer; the pipe is empty again. */
    r->splice_fallbacks++;
    if ((d->b = px_buf_get(r->pool)) == NULL) {
      pipe_drain(NULL, 0);
      relay_end(r, PX_RELAY_RESET, side_of(r, d->from));
      return;
    }
    d->len = pipe_drain(d->b->data, left);
    if (d->len != left) { /* cannot be: the pipe held exactly `left` bytes */
      pipe_drain(NULL, 0);
      relay_end(r, PX_RELAY_RESET, side_of(r, d->from));
      return;
    }
    dir_flush(r, d);
    return;
  }
}

static void dir_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  struct px_relay *r = s->data;
  int side = side_of(r, s);
  struct px_relay_dir *d = &r->dir[side];

  if (nread == UV_ENOBUFS && d->from_fd >= 0) {
    dir_splice(r, d);
    return;
  }
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
  if (nread != UV_EOF) {
    uv_read_stop(s);
    d->reading = 0;
    relay_end(r, PX_RELAY_RESET, side);
    return;
  }
  dir_eof(r, d);
}

/* The source ended: no more reading; the shutdown follows once the pending write is done. */
static void dir_eof(struct px_relay *r, struct px_relay_dir *d) {
  uv_read_stop(d->from);
  d->reading = 0;
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
  r->splice = 1;
}

void px_relay_set_splice(struct px_relay *r, int on) {
  r->splice = (uint8_t)(on != 0);
}

/* Both streams' fds when both are TCP sockets and splice is on and possible, else -1s. */
static void relay_splice_fds(struct px_relay *r) {
  uv_os_fd_t fd[2];

  for (int i = 0; i < 2; i++)
    r->dir[i].from_fd = r->dir[i].to_fd = -1;
  if (!r->splice || r->dir[0].from->type != UV_TCP || r->dir[1].from->type != UV_TCP ||
      uv_fileno((uv_handle_t *)r->dir[0].from, &fd[0]) != 0 ||
      uv_fileno((uv_handle_t *)r->dir[1].from, &fd[1]) != 0 || !splice_pipe_ready())
    return;
  for (int i = 0; i < 2; i++) {
    r->dir[i].from_fd = fd[i];
    r->dir[i].to_fd = fd[1 - i];
  }
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
  relay_splice_fds(r);
  /* dir[i] carries bytes to side 1 - i: pre[1 - i] goes first. */
  for (int i = 0; i < 2 && r->state == R_RUNNING; i++)
    dir_prefix(r, &r->dir[i], pre != NULL ? &pre[1 - i] : NULL);
  for (int i = 0; i < 2 && r->state == R_RUNNING; i++)
    if (!r->dir[i].writing)
      dir_read_start(r, &r->dir[i]);
  relay_arm(r);
}
