/* The fd handoff engine (master -> worker, with acks and re-dispatch); strategies handoff and
 * handoff-least. */

/*
 * Handoff with an acknowledgement window, after Node's RoundRobinHandle.
 *
 * 1. The master holds a client connection (struct mconn): one it accepted, or one a draining
 *    worker handed back with the bytes of its next request. It sends the fd to a serving worker
 *    of the current generation (IPC_CONN with a per-worker sequence number, the listener index
 *    in that worker's generation, and those bytes) and keeps its own copy until the worker
 *    acknowledges: the worker's STATUS carries the highest sequence number it has taken. Until
 *    then the fd can be handed to another worker if this one refuses it or dies, so no
 *    connection is lost or leaked.
 * 2. Node allows one unacknowledged handle per worker, which costs a round trip per connection.
 *    Here a worker may hold WINDOW of them: acks are coalesced per loop iteration, so under load
 *    one STATUS frame acknowledges many connections. A worker whose window is full is skipped;
 *    when every worker is full the master stops accepting (lsock.c) and the kernel's backlog
 *    holds the rest. A worker that refused an fd because it is out of fds is skipped for
 *    NOFD_SKIP_MS, so a pool at its fd limit cannot make the master spin.
 * 3. Connections no worker can take now wait in one FIFO (m->pending), in order, and go out as
 *    soon as a worker has room (handoff_flush).
 * 4. The strategies differ in one member, `pick`: handoff goes round-robin; handoff-least picks
 *    the worker with the fewest connections, counting the ones it reported open (STATUS) plus
 *    the ones handed but not yet acknowledged, which the report cannot include yet; ties go
 *    round-robin. Every other strategy uses this engine too, round-robin, for what the master
 *    holds: handed-back connections, a reuseport socket whose worker is down, a retired socket.
 */
#include "dispatch.h"

#include "log.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WINDOW           256
#define NOFD_SKIP_MS     100
#define PENDING_RETRY_MS 10 /* how soon held connections are looked at again (see flush) */

/* ---- FIFOs ---- */

static void fifo_push(struct mconn_fifo *f, struct mconn *c) {
  c->next = NULL;
  if (f->tail)
    f->tail->next = c;
  else
    f->head = c;
  f->tail = c;
  f->len++;
}

static void fifo_push_front(struct mconn_fifo *f, struct mconn *c) {
  c->next = f->head;
  f->head = c;
  if (f->tail == NULL)
    f->tail = c;
  f->len++;
}

static struct mconn *fifo_pop(struct mconn_fifo *f) {
  struct mconn *c = f->head;
  if (c == NULL)
    return NULL;
  f->head = c->next;
  if (f->head == NULL)
    f->tail = NULL;
  f->len--;
  c->next = NULL;
  return c;
}

/* Removes the connection with sequence `seq`; NULL if it is not there. */
static struct mconn *fifo_take(struct mconn_fifo *f, uint32_t seq) {
  struct mconn **pp = &f->head, *prev = NULL, *c;

  while (*pp != NULL && (*pp)->seq != seq) {
    prev = *pp;
    pp = &(*pp)->next;
  }
  if ((c = *pp) == NULL)
    return NULL;
  *pp = c->next;
  if (f->tail == c)
    f->tail = prev;
  f->len--;
  c->next = NULL;
  return c;
}

/* ---- connections ---- */

/* Most connections never get a libuv handle: the master only passes their fd on (accept4,
 * sendmsg, close). A handle is made when libuv must carry the fd (mconn_stream) or take it
 * from a channel (mconn_accept); then closing goes through libuv. */

static void mconn_free(struct mconn *c) {
  struct master *m = c->m;

  if (c->ls != NULL)
    lsock_release(c->ls);
  c->ls = NULL;
  free(c->bytes);
  c->bytes = NULL;
  c->next = m->free_mconns;
  m->free_mconns = c;
}

static void mconn_close_cb(uv_handle_t *h) {
  struct mconn *c = h->data;

  if (c->fd_loose && c->fd >= 0)
    close(c->fd);
  mconn_free(c);
}

void mconn_close(struct mconn *c) {
  if (c->has_tcp) {
    uv_close((uv_handle_t *)&c->tcp, mconn_close_cb);
    return;
  }
  if (c->fd >= 0)
    close(c->fd);
  c->fd = -1;
  mconn_free(c);
}

struct mconn *mconn_new(struct master *m, struct lsock *ls, int fd) {
  struct mconn *c = m->free_mconns;

  if (c != NULL)
    m->free_mconns = c->next;
  else if ((c = malloc(sizeof(*c))) == NULL) {
    if (fd >= 0)
      close(fd);
    return NULL;
  } else {
    m->nmconns++;
  }
  memset(c, 0, sizeof(*c));
  c->m = m;
  c->fd = fd;
  c->ls = ls->kind == LSOCK_PUBLIC ? ls : ls->group;
  lsock_hold(c->ls);
  if (fd < 0) {
    uv_tcp_init(m->loop, &c->tcp); /* for mconn_accept */
    c->tcp.data = c;
    c->has_tcp = 1;
  }
  return c;
}

int mconn_accept(struct mconn *c, struct ipc_channel *ch) {
  uv_os_fd_t fd;
  int rc;

  if (!c->has_tcp || c->fd >= 0)
    return UV_EINVAL;
  if ((rc = ipc_channel_accept(ch, (uv_stream_t *)&c->tcp)) != 0)
    return rc;
  if ((rc = uv_fileno((uv_handle_t *)&c->tcp, &fd)) != 0)
    return rc;
  c->fd = fd;
  return 0;
}

uv_stream_t *mconn_stream(struct mconn *c) {
  if (c->has_tcp)
    return (uv_stream_t *)&c->tcp;
  uv_tcp_init(c->m->loop, &c->tcp);
  c->tcp.data = c;
  c->has_tcp = 1;
  if (uv_tcp_open(&c->tcp, c->fd) != 0) {
    c->fd_loose = 1; /* the handle owns nothing: mconn_close closes the fd itself */
    return NULL;
  }
  return (uv_stream_t *)&c->tcp;
}

/* ---- choosing a worker ---- */

/* A worker whose oldest unacknowledged connection waits this long is not given more (it is
 * stopped or stuck; the master's watchdog kills it if it stays so). */
#define STALL_MS 5000

static int has_room(const struct master *m, const struct worker *w) {
  uint64_t now = uv_now(m->loop);

  return w != NULL && w->gen == m->cur && worker_serving(w) && w->hp.unacked.len < WINDOW &&
         w->hp.skip_until <= now &&
         (w->hp.unacked.head == NULL || now - w->hp.unacked.head->t_sent < STALL_MS);
}

struct worker *handoff_pick_rr(struct master *m) {
  unsigned n = m->cur->nslots;

  for (unsigned k = 0; k < n; k++) {
    struct worker *w = m->cur->by_slot[m->rr % n];
    m->rr = (m->rr + 1) % n;
    if (has_room(m, w))
      return w;
  }
  return NULL;
}

/* The worker with room and the fewest connections; ties in turn from the round-robin point. */
static struct worker *pick_least(struct master *m) {
  unsigned n = m->cur->nslots;
  struct worker *best = NULL;
  uint64_t best_load = 0;

  for (unsigned k = 0; k < n; k++) {
    struct worker *w = m->cur->by_slot[(m->rr + k) % n];
    uint64_t load;
    if (!has_room(m, w))
      continue;
    load = (uint64_t)w->active + w->hp.unacked.len;
    if (best == NULL || load < best_load) {
      best = w;
      best_load = load;
    }
  }
  if (best != NULL)
    m->rr = (best->slot->id + 1) % n;
  return best;
}

int handoff_has_room(struct master *m) {
  if (m->cur == NULL)
    return 0;
  for (unsigned i = 0; i < m->cur->nslots; i++)
    if (has_room(m, m->cur->by_slot[i]))
      return 1;
  return 0;
}

/* ---- sending ---- */

static void sent_cb(struct ipc_out *out, int status) {
  struct mconn *c = (struct mconn *)((char *)out - offsetof(struct mconn, out));
  struct master *m = c->m;

  c->sending = 0;
  if (c->acked) {
    mconn_close(c);
  } else if (c->refused) {
    c->refused = 0; /* its write request is free again only now: hand it on */
    if (m->stopping) {
      mconn_close(c);
    } else {
      fifo_push_front(&m->pending, c);
      handoff_flush(m);
    }
  }
  /* status < 0: the channel broke; the connection is still in the worker's FIFO and is handed
   * to another worker once the channel has closed (handoff_worker_gone). */
}

/* ---- batches ---- */

/* Sends w's staged CONN frames: one sendmsg with every fd when the channel is idle; what it
 * did not write follows through libuv, in order, without fds (they all went with the first
 * byte). A busy channel: each frame through libuv with its handle. */
static void send_staged(struct worker *w) {
  struct hpeer *h = &w->hp;
  struct ipc_out *outs[IPC_BATCH_MAX];
  int fds[IPC_BATCH_MAX];
  unsigned n = h->nstaged;
  ssize_t wr;
  size_t off = 0;

  if (n == 0)
    return;
  h->nstaged = 0;
  for (unsigned i = 0; i < n; i++) {
    outs[i] = &h->staged[i]->out;
    fds[i] = h->staged[i]->fd;
  }
  wr = ipc_send_frames_now(&w->ch, outs, h->staged_len, fds, n);
  for (unsigned i = 0; i < n; i++) {
    struct mconn *c = h->staged[i];
    size_t len = h->staged_len[i];
    uv_stream_t *s;
    int out = 0;
    if (wr == UV_EAGAIN) {
      s = mconn_stream(c);
      c->sending = s != NULL && ipc_send_laid_out(&w->ch, &c->out, len, s, sent_cb) == 0;
    } else if (wr < 0) {
      c->sending = 0; /* the channel failed */
    } else if ((size_t)wr >= off + len) {
      c->sending = 0;
      out = 1; /* whole */
    } else {
      size_t from = (size_t)wr > off ? (size_t)wr - off : 0;
      c->sending = ipc_write_rest(&w->ch, &c->out, from, len, sent_cb) == 0;
      out = (size_t)wr > off; /* its fd is there: the worker may take it */
    }
    off += len;
    if (!out && !c->sending && fifo_take(&w->hp.unacked, c->seq) == c) {
      /* It never reached the worker: another one takes it (handoff_flush, from the caller). */
      w->hp.handed--;
      fifo_push(&w->m->pending, c);
    }
  }
}

static void unstage(struct master *m, struct worker *w) {
  for (struct worker **pp = &m->staged_workers; *pp != NULL; pp = &(*pp)->hp.next_staged)
    if (*pp == w) {
      *pp = w->hp.next_staged;
      break;
    }
  w->hp.on_staged_list = 0;
  w->hp.nstaged = 0;
}

void handoff_batch_begin(struct master *m) {
  m->batching = 1;
}

void handoff_batch_end(struct master *m) {
  struct worker *w;

  m->batching = 0;
  while ((w = m->staged_workers) != NULL) {
    m->staged_workers = w->hp.next_staged;
    w->hp.on_staged_list = 0;
    send_staged(w);
  }
  if (m->pending.len > 0)
    handoff_flush(m);
}

/* Lays out c's CONN in its own frame memory, to leave with w's batch. */
static void stage(struct worker *w, struct mconn *c, const unsigned char *p, uint32_t plen) {
  struct hpeer *h = &w->hp;

  h->staged_len[h->nstaged] = ipc_frame(&c->out, IPC_CONN, p, plen);
  h->staged[h->nstaged++] = c;
  c->sending = 1; /* not out yet: no ack or refusal can name it before it is */
  if (!h->on_staged_list) {
    h->on_staged_list = 1;
    h->next_staged = w->m->staged_workers;
    w->m->staged_workers = w;
  }
  if (h->nstaged == IPC_BATCH_MAX)
    send_staged(w);
}

static int deliver(struct worker *w, struct mconn *c) {
  unsigned char p[7 + IPC_PEER_MAX];
  int listener = gen_listener_index(w->gen, c->ls), rc;

  if (listener < 0)
    return UV_ENOENT;
  c->w = w;
  c->seq = ++w->hp.next_seq;
  c->acked = 0;
  c->refused = 0;
  ipc_put_u32(p, c->seq);
  ipc_put_u16(p + 4, (uint16_t)listener);
  p[6] = (c->handed ? IPC_CONN_HANDED : 0) | (c->npeer ? IPC_CONN_PEER : 0);
  memcpy(p + 7, c->peer, c->npeer);
  c->t_sent = uv_now(w->m->loop);
  if (w->m->batching && !c->has_tcp && c->nbytes == 0) {
    /* Unacknowledged first: a full batch is sent from stage(), and a send that fails must
     * find it there to hand it on. */
    fifo_push(&w->hp.unacked, c);
    w->hp.handed++;
    stage(w, c, p, 7 + (uint32_t)c->npeer);
    return 0;
  }
  send_staged(w); /* frames to a worker leave in the order of their sequence numbers */
  /* 0: it is out already; 1: it is on its way (sent_cb will say). */
  rc = c->has_tcp ? UV_EAGAIN
                  : ipc_send_fd_now(&w->ch, &c->out, IPC_CONN, p, 7 + (uint32_t)c->npeer, c->bytes,
                                    c->nbytes, c->fd, sent_cb);
  if (rc == UV_EAGAIN) {
    /* The channel is busy (or this connection has a handle already): libuv queues it. */
    uv_stream_t *s = mconn_stream(c);
    if (s == NULL)
      return UV_EBADF;
    if ((rc = ipc_send_out(&w->ch, &c->out, IPC_CONN, p, 7 + (uint32_t)c->npeer, c->bytes,
                           c->nbytes, s, sent_cb)) != 0)
      return rc;
    rc = 1;
  }
  if (rc < 0)
    return rc;
  c->sending = rc == 1;
  fifo_push(&w->hp.unacked, c);
  w->hp.handed++;
  return 0;
}

static struct worker *pick(struct master *m) {
  return m->cur->dispatch->pick ? m->cur->dispatch->pick(m) : handoff_pick_rr(m);
}

/* Places c now if a worker has room; 0, or -1 if it must wait (no room), or -2 (the worker
 * chosen failed: it is skipped for a while, another may take c). */
static int place(struct master *m, struct mconn *c) {
  struct worker *w = NULL;
  int rc;

  if (c->to > 0 && c->to <= m->cur->nslots && has_room(m, m->cur->by_slot[c->to - 1]))
    w = m->cur->by_slot[c->to - 1]; /* rebalancing names the worker */
  if (w == NULL)
    w = pick(m);
  if (w == NULL)
    return -1;
  rc = deliver(w, c);
  if (rc == UV_ENOENT) {
    /* The current generation has no such listener (removed by a reload): nobody serves it. */
    LBP_INFO("connection from %s dropped: the listener is no longer configured", c->ls->name);
    mconn_close(c);
    return 0;
  }
  if (rc != 0) {
    /* This worker cannot be sent to now (its channel failing): the others are tried, and
     * one failing worker never holds up the whole queue. */
    w->hp.skip_until = uv_now(m->loop) + NOFD_SKIP_MS;
    return -2;
  }
  return 0;
}

void handoff_give(struct master *m, struct mconn *c) {
  if (m->retired && upgrade_forward(m, c))
    return; /* handing over to a new master: everything goes there */
  if (m->stopping || m->cur == NULL) {
    mconn_close(c);
    return;
  }
  if (m->pending.len > 0 || place(m, c) != 0)
    fifo_push(&m->pending, c);
  if (m->pending.len > 0)
    handoff_flush(m);
}

static void pending_timer_cb(uv_timer_t *t) {
  handoff_flush(t->data);
}

void handoff_flush(struct master *m) {
  struct mconn *c;

  /* A failed place() takes its worker out for a while (has_room): the loop ends when no
   * worker is left with room. */
  while (m->cur != NULL && m->pending.len > 0 && handoff_has_room(m)) {
    int rc;
    c = fifo_pop(&m->pending);
    if ((rc = place(m, c)) != 0) {
      fifo_push_front(&m->pending, c);
      if (rc == -1)
        break;
    }
  }
  /* Connections still wait: room comes back with an acknowledgement, a refusal, a worker
   * gone or ready, but also silently (a worker's skip_until running out, a switch of
   * generation). While the queue holds them the master does not accept, so nothing else
   * would wake it: look again shortly, whatever happens. */
  if (m->pending.len > 0 && !m->stopping) {
    if (!uv_is_active((uv_handle_t *)&m->pending_timer))
      uv_timer_start(&m->pending_timer, pending_timer_cb, PENDING_RETRY_MS, 0);
  } else {
    uv_timer_stop(&m->pending_timer);
  }
  lsock_update_polling(m);
}

void handoff_acked(struct master *m, struct worker *w) {
  struct mconn *c;

  while ((c = w->hp.unacked.head) != NULL && (int32_t)(c->seq - w->hp.acked_seq) <= 0) {
    fifo_pop(&w->hp.unacked);
    c->acked = 1;
    if (!c->sending)
      mconn_close(c);
  }
  handoff_flush(m);
}

void handoff_refused(struct master *m, struct worker *w, uint32_t seq, int reason) {
  struct mconn *c = fifo_take(&w->hp.unacked, seq);

  if (reason == IPC_REFUSE_NOFD || reason == IPC_REFUSE_FULL)
    w->hp.skip_until = uv_now(m->loop) + NOFD_SKIP_MS;
  if (c == NULL)
    return;
  if (c->sending) {
    c->refused = 1; /* libuv still holds c->out: sent_cb hands it on */
    return;
  }
  if (m->stopping) {
    mconn_close(c);
    return;
  }
  fifo_push_front(&m->pending, c);
  handoff_flush(m);
}

void handoff_worker_gone(struct master *m, struct worker *w) {
  struct mconn *c;
  unsigned n = 0;

  unstage(m, w); /* staged frames never left: their connections are in unacked, below */

  while ((c = fifo_pop(&w->hp.unacked)) != NULL) {
    n++;
    if (m->stopping)
      mconn_close(c);
    else
      fifo_push(&m->pending, c);
  }
  if (n > 0 && !m->stopping)
    LBP_INFO("worker %u left %u connections unacknowledged: handing them to other workers",
             w->slot->id + 1, n);
  handoff_flush(m);
}

void handoff_close_pending(struct master *m) {
  struct mconn *c;

  while ((c = fifo_pop(&m->pending)) != NULL)
    mconn_close(c);
}

void handoff_free(struct master *m) {
  struct mconn *c;

  while ((c = m->free_mconns) != NULL) {
    m->free_mconns = c->next;
    free(c);
  }
}

/* ---- the strategies ---- */

static int no_worker_sockets(struct generation *g, unsigned slot, struct lsock **socks,
                             uint8_t *kinds, uint16_t *listeners, int max) {
  return 0; /* workers get connections, not sockets */
}

const struct dispatch_ops dispatch_handoff = {
    .name = "handoff",
    .master_accepts = 1,
    .handover = 1,
    .gen_init = dispatch_no_sockets,
    .gen_fini = dispatch_nothing,
    .worker_sockets = no_worker_sockets,
    .take = dispatch_handoff_take,
    .can_take = dispatch_handoff_can_take,
    .pick = handoff_pick_rr,
    .stop = dispatch_nothing,
};

const struct dispatch_ops dispatch_handoff_least = {
    .name = "handoff-least",
    .master_accepts = 1,
    .handover = 1,
    .gen_init = dispatch_no_sockets,
    .gen_fini = dispatch_nothing,
    .worker_sockets = no_worker_sockets,
    .take = dispatch_handoff_take,
    .can_take = dispatch_handoff_can_take,
    .pick = pick_least,
    .stop = dispatch_nothing,
};
