/* Request-level rebalancing of long-lived connections (dispatch handoff-least, `rebalance`). */

/*
 * Round-robin of connections is not balance of requests when connections live long and some
 * send far more requests than others (nodejs/node#39815). The master watches each worker's
 * share of the requests and moves busy keep-alive connections off a worker that keeps serving
 * more than its share, with the handover mechanism a drain uses.
 *
 * 1. Every TICK_MS the master reads each serving worker's ended-request counter from the
 *    generation's shared memory (no IPC) and takes the requests of the tick. Below
 *    MIN_TICK_REQS per worker the load is too light for balance to matter: nothing happens.
 * 2. The busiest worker is over when it served more than OVER_PCT % of the fair share (total /
 *    workers) in OVER_TICKS ticks in a row (one burst is not an imbalance). It is then asked,
 *    by SHED(u16 permille), to give away the share of its requests that brings it and the
 *    least busy worker closest to fair: min(busiest - fair, fair - least) / busiest.
 *    The least busy worker counts only if its loop is alive: its shared-memory beat
 *    (PX_BEAT_MS) is fresh. A stopped or wedged worker serves nothing, so it would look the
 *    least busy of all.
 * 3. The worker (proxy/ctx.c px_ctx_shed) marks its busiest connections up to that share and
 *    hands each back (IPC HANDOVER, with the bytes of its next request) when it is next
 *    between requests, within PX_SHED_MS; if the handover cannot be sent the connection stays
 *    and is served there. The master takes HANDOVERs from any serving worker it has asked
 *    (never refused: a refused handover would close the client's connection) and sends each
 *    to the least busy worker of that tick (if it has room, else the usual least-connections
 *    pick) as a handed connection: between requests, never a new one to the client.
 * 4. After asking, the master waits COOLDOWN_TICKS before judging again, so the moves show in
 *    the counts first; a worker does not shed a connection handed to it in the last
 *    PX_SHED_SETTLE_MS, so connections do not bounce. An ask that moved nothing (one
 *    connection carries the load and cannot be split) doubles the wait, up to BACKOFF_MAX
 *    ticks, so the master does not ask (and log) every second forever.
 */
#include "master.h"

#include "dispatch.h"
#include "ipc.h"
#include "log.h"
#include "proxy.h"
#include "shm.h"

#define TICK_MS        250
#define MIN_TICK_REQS  50 /* per worker per tick (200 requests/s each) */
#define OVER_PCT       120
#define OVER_TICKS     2
#define COOLDOWN_TICKS 4
#define BACKOFF_MAX    120 /* ticks: 30 s */
#define MIN_PERMILLE   20  /* a smaller move is noise */
#define BEAT_STALE_MS  (5 * PX_BEAT_MS)

static int enabled(const struct master *m) {
  const struct generation *g = m->cur;

  return g != NULL && !m->stopping && m->starting == NULL &&
         g->dispatch == &dispatch_handoff_least && g->cfg->rebalance && g->shm != NULL;
}

static void forget(struct master *m) {
  m->rb.seen_gen = 0;
  m->rb.target = 0;
}

static uint64_t rebalanced(const struct worker *w) {
  return px_stat_get(&lbp_shm_worker(w->gen->shm, w->slot->id)->c[PX_ST_REBALANCED]);
}

static void calm(struct generation *g) {
  for (unsigned i = 0; i < g->nslots; i++)
    if (g->by_slot[i] != NULL)
      g->by_slot[i]->rb_over = 0;
}

static void tick(uv_timer_t *t) {
  struct master *m = t->data;
  struct generation *g = m->cur;
  struct worker *hi = NULL, *lo = NULL;
  uint64_t total = 0, fair, move, now = uv_now(m->loop);
  unsigned n = 0, permille, fresh = 0;

  if (!enabled(m)) {
    forget(m);
    return;
  }
  if (m->rb.seen_gen != g->id) { /* a new generation: counts start again */
    m->rb.seen_gen = g->id;
    m->rb.cooldown = 0;
    m->rb.backoff = COOLDOWN_TICKS;
    for (unsigned i = 0; i < g->nslots; i++)
      if (g->by_slot[i] != NULL)
        g->by_slot[i]->rb_known = 0;
  }
  for (unsigned i = 0; i < g->nslots; i++) {
    struct worker *w = g->by_slot[i];
    uint64_t reqs;
    if (w == NULL || !worker_serving(w))
      continue;
    reqs = px_stat_get(&lbp_shm_worker(g->shm, i)->c[PX_ST_REQUESTS]);
    w->rb_tick = w->rb_known && reqs >= w->rb_last ? reqs - w->rb_last : 0;
    if (!w->rb_known)
      fresh = 1; /* its first reading: no tick to compare yet */
    w->rb_known = 1;
    w->rb_last = reqs;
    total += w->rb_tick;
    n++;
    if (hi == NULL || w->rb_tick > hi->rb_tick)
      hi = w;
    if (now - px_stat_get(&lbp_shm_worker(g->shm, i)->beat_ms) <= BEAT_STALE_MS &&
        (lo == NULL || w->rb_tick < lo->rb_tick))
      lo = w;
  }
  if (m->rb.cooldown > 0) {
    m->rb.cooldown--;
    return;
  }
  if (n < 2 || fresh || total < (uint64_t)MIN_TICK_REQS * n || lo == NULL || lo == hi) {
    calm(g);
    return;
  }
  fair = total / n;
  if (hi->rb_tick * 100 <= fair * OVER_PCT) {
    calm(g);
    return;
  }
  {
    uint8_t over = hi->rb_over;
    calm(g);
    hi->rb_over = (uint8_t)(over + 1);
  }
  if (hi->rb_over < OVER_TICKS)
    return;
  hi->rb_over = 0;
  /* Asked before and nothing moved since: wait longer each time. */
  if (hi->rb_asked != 0 && rebalanced(hi) == hi->rb_moved_at_ask)
    m->rb.backoff = m->rb.backoff * 2 > BACKOFF_MAX ? BACKOFF_MAX : m->rb.backoff * 2;
  else
    m->rb.backoff = COOLDOWN_TICKS;
  move = hi->rb_tick - fair < fair - lo->rb_tick ? hi->rb_tick - fair : fair - lo->rb_tick;
  permille = (unsigned)(move * 1000 / hi->rb_tick);
  if (permille < MIN_PERMILLE)
    return;
  {
    unsigned char p[2];
    ipc_put_u16(p, (uint16_t)permille);
    if (ipc_send(&hi->ch, IPC_SHED, p, 2) != 0)
      return;
  }
  hi->rb_asked = now;
  hi->rb_moved_at_ask = rebalanced(hi);
  m->rb.target = lo->slot->id + 1;
  m->rb.cooldown = m->rb.backoff;
  m->rb.asked++;
  event_add(m, EV_REBALANCE, (int)hi->slot->id + 1, (long)hi->pid, g->id,
            "served %u%% of the last %u ms's %llu requests (fair %u%%): gives about %u.%u%% of "
            "its requests to worker %u",
            (unsigned)(hi->rb_tick * 100 / total), TICK_MS, (unsigned long long)total, 100 / n,
            permille / 10, permille % 10, lo->slot->id + 1);
}

void rebalance_init(struct master *m) {
  uv_timer_init(m->loop, &m->rb.timer);
  m->rb.timer.data = m;
  uv_timer_start(&m->rb.timer, tick, TICK_MS, TICK_MS);
  uv_unref((uv_handle_t *)&m->rb.timer);
}

uv_handle_t *rebalance_handle(struct master *m) {
  return (uv_handle_t *)&m->rb.timer;
}

int rebalance_takes_from(struct master *m, const struct worker *w) {
  return w->rb_asked != 0 && worker_serving(w);
}

unsigned rebalance_target(struct master *m, const struct worker *from) {
  if (!enabled(m) || m->rb.target == 0 || m->rb.target == from->slot->id + 1)
    return 0;
  m->rb.moved++;
  return m->rb.target;
}
