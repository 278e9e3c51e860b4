/* Dispatch "handoff" and "handoff-least": the master passes each accepted fd to a worker. */

/*
 * Handoff with an acknowledgement window, after Node's RoundRobinHandle.
 *
 * The master accepts a connection and sends its fd to the next worker in turn (IPC_CONN with
 * a per-worker sequence number). It keeps its own copy until the worker acknowledges: the
 * worker's STATUS carries the highest sequence number it has taken. Until then the fd can be
 * handed to another worker if this one refuses it or dies, so no connection is lost or leaked.
 *
 * Node allows one un-acknowledged handle per worker, which costs a round trip per connection.
 * Here a worker may hold WINDOW of them: acks are coalesced per loop iteration, so under load
 * one STATUS frame acknowledges many connections. The window is large enough that a burst of
 * connects (hundreds at once) still goes round-robin instead of skipping a worker that is
 * slow to acknowledge; it costs the master one open fd per connection in flight. A worker whose
 * window is full is skipped; when every worker is full, the master stops accepting (libuv stops
 * polling a listener whose last connection was not uv_accept'ed) and the kernel's backlog holds the
 * rest.
 *
 * "handoff-least" differs only in the choice: the worker with the fewest connections, counting
 * the ones it reported open (STATUS) plus the ones handed but not yet acknowledged, which the
 * report cannot include yet. Ties go round-robin.
 */
#include "dispatch.h"

#include "log.h"

#include <stdlib.h>
#include <string.h>

#define WINDOW 256

static void fifo_push(struct mconn_fifo *f, struct mconn *c) {
  c->next = NULL;
  if (f->tail)
    f->tail->next = c;
  else
    f->head = c;
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
  struct mconn **pp = &f->head, *prev = NULL;

  while (*pp != NULL && (*pp)->seq != seq) {
    prev = *pp;
    pp = &(*pp)->next;
  }
  if (*pp == NULL)
    return NULL;
  struct mconn *c = *pp;
  *pp = c->next;
  if (f->tail == c)
    f->tail = prev;
  f->len--;
  c->next = NULL;
  return c;
}

static void mconn_close_cb(uv_handle_t *h) {
  struct mconn *c = h->data;
  struct master *m = c->m;

  c->next = m->free_mconns;
  m->free_mconns = c;
}

static void mconn_close(struct mconn *c) {
  uv_close((uv_handle_t *)&c->tcp, mconn_close_cb);
}

static struct mconn *mconn_get(struct master *m) {
  struct mconn *c = m->free_mconns;

  if (c != NULL)
    m->free_mconns = c->next;
  else if ((c = malloc(sizeof(*c))) == NULL)
    return NULL;
  memset(c, 0, sizeof(*c));
  c->m = m;
  uv_tcp_init(m->loop, &c->tcp);
  c->tcp.data = c;
  return c;
}

static int has_room(const struct slot *s) {
  return s->unacked.len < WINDOW;
}

/* The next worker with room, in turn. */
static struct slot *pick_rr(struct master *m) {
  return dispatch_next_slot(m, has_room);
}

/* The worker with room and the fewest connections; ties in turn from the round-robin point. */
static struct slot *pick_least(struct master *m) {
  struct slot *best = NULL;
  uint64_t best_load = 0;

  for (unsigned k = 0; k < m->nslots; k++) {
    struct slot *s = &m->slots[(m->rr + k) % m->nslots];
    uint64_t load = (uint64_t)s->active + s->unacked.len;
    if (!master_slot_serving(s) || !has_room(s))
      continue;
    if (best == NULL || load < best_load) {
      best = s;
      best_load = load;
    }
  }
  if (best != NULL)
    m->rr = (best->id + 1) % m->nslots;
  return best;
}

static struct slot *pick(struct master *m) {
  return m->dispatch == &dispatch_handoff_least ? pick_least(m) : pick_rr(m);
}

static int any_room(struct master *m) {
  for (unsigned i = 0; i < m->nslots; i++)
    if (master_slot_serving(&m->slots[i]) && has_room(&m->slots[i]))
      return 1;
  return 0;
}

static void drain(struct master *m);

static void sent_cb(struct ipc_out *out, int status) {
  struct mconn *c = (struct mconn *)((char *)out - offsetof(struct mconn, out));

  c->sending = 0;
  if (c->acked) {
    mconn_close(c);
  } else if (c->refused) {
    /* Its write request is free again only now: hand it on. */
    c->refused = 0;
    struct master *m = c->m;
    if (m->stopping) {
      mconn_close(c);
    } else {
      fifo_push(&m->pending, c);
      drain(m);
    }
  }
  /* status < 0: the channel broke; the connection is still in the slot's FIFO and is handed
   * to another worker when the channel has closed (slot_down). */
}

static int deliver(struct slot *s, struct mconn *c) {
  unsigned char seq[4];
  int rc;

  c->slot = s;
  c->seq = ++s->next_seq;
  c->acked = 0;
  c->refused = 0;
  ipc_put_u32(seq, c->seq);
  rc = ipc_send_small(&s->ch, &c->out, IPC_CONN, seq, 4, (uv_stream_t *)&c->tcp, sent_cb);
  if (rc != 0)
    return rc;
  c->sending = 1;
  fifo_push(&s->unacked, c);
  s->handed++;
  return 0;
}

static void dispatch_one(struct master *m, struct mconn *c) {
  struct slot *s = pick(m);
  if (s == NULL || deliver(s, c) != 0)
    fifo_push(&m->pending, c);
}

static int handoff_can_take(struct master *m) {
  return m->pending.len == 0 && any_room(m);
}

static void handoff_take(struct master *m) {
  struct mconn *c = mconn_get(m);

  if (c == NULL) {
    m->accept_paused = 1; /* retried when a connection is acknowledged */
    return;
  }
  if (uv_accept((uv_stream_t *)&m->listener, (uv_stream_t *)&c->tcp) != 0) {
    mconn_close(c);
    return;
  }
  dispatch_one(m, c);
}

/* Hands queued connections to workers with room, then resumes accepting if it was paused. */
static void drain(struct master *m) {
  while (m->pending.len > 0 && any_room(m))
    dispatch_one(m, fifo_pop(&m->pending));
  dispatch_accept_resume(m);
}

static int handoff_start(struct master *m) {
  return dispatch_accept_start(m);
}

static int handoff_slot_listeners(struct master *m, struct slot *s, uv_tcp_t **socks,
                                  uint8_t *kinds, int max) {
  return 0; /* workers get connections, not sockets */
}

static void handoff_slot_free(struct master *m, struct slot *s) {
  struct mconn *c;

  while ((c = s->unacked.head) != NULL && (int32_t)(c->seq - s->acked_seq) <= 0) {
    fifo_pop(&s->unacked);
    c->acked = 1;
    if (!c->sending)
      mconn_close(c);
  }
  drain(m);
}

static void handoff_slot_down(struct master *m, struct slot *s) {
  struct mconn *c;
  unsigned n = 0;

  while ((c = fifo_pop(&s->unacked)) != NULL) {
    n++;
    if (m->stopping)
      mconn_close(c);
    else
      fifo_push(&m->pending, c);
  }
  if (n > 0 && !m->stopping)
    LBP_INFO("worker %u left %u connections unacknowledged: handing them to other workers",
             s->id + 1, n);
  drain(m);
}

static void handoff_refused(struct master *m, struct slot *s, uint32_t seq) {
  struct mconn *c = fifo_take(&s->unacked, seq);

  if (c == NULL)
    return;
  if (c->sending) {
    c->refused = 1; /* libuv still holds c->out: sent_cb hands it on */
    return;
  }
  if (m->stopping)
    mconn_close(c);
  else
    fifo_push(&m->pending, c);
  drain(m);
}

static void handoff_stop(struct master *m) {
  struct mconn *c;

  while ((c = fifo_pop(&m->pending)) != NULL)
    mconn_close(c);
}

const struct dispatch_ops dispatch_handoff = {
    .name = "handoff",
    .start = handoff_start,
    .can_take = handoff_can_take,
    .take = handoff_take,
    .slot_listeners = handoff_slot_listeners,
    .slot_free = handoff_slot_free,
    .slot_down = handoff_slot_down,
    .refused = handoff_refused,
    .stop = handoff_stop,
};

const struct dispatch_ops dispatch_handoff_least = {
    .name = "handoff-least",
    .start = handoff_start,
    .can_take = handoff_can_take,
    .take = handoff_take,
    .slot_listeners = handoff_slot_listeners,
    .slot_free = handoff_slot_free,
    .slot_down = handoff_slot_down,
    .refused = handoff_refused,
    .stop = handoff_stop,
};
