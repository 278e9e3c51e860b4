/* random2: the power of two random choices, weighted, on requests in flight across all workers. */

/*
 * Two servers are drawn at random in proportion to their weights (from the tier's weighted
 * schedule, sched.c), and the one with fewer requests in flight per weight wins, as in
 * least_conn; on a tie the first drawn, so with no overlapping requests the picks are a
 * weighted random choice, and under load the counts decide. Two choices take the load imbalance
 * from O(log n / log log n) to O(log log n) (Mitzenmacher) while each pick looks at two counters
 * instead of all of them, and workers drawing independently do not all rush to the one least loaded
 * server the way least_conn's full scan can between counter updates. The generator is per worker
 * (xorshift64*), seeded at init; bal_pool_seed makes tests repeatable.
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>

struct r2_state {
  struct bal__sched tiers[BAL_TIERS];
};

static uint64_t next_random(struct bal_pool *p) {
  uint64_t x = p->rng;

  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  p->rng = x;
  return x * 0x2545f4914f6cdd1dull;
}

static int r2_init(struct bal_pool *p) {
  p->priv = calloc(1, sizeof(struct r2_state));
  return p->priv != NULL ? 0 : -ENOMEM;
}

static int r2_update(struct bal_pool *p) {
  struct r2_state *st = p->priv;
  return bal__scheds_update(st->tiers, p);
}

/* active / weight of a is below b's. */
static int lighter(struct bal_pool *p, struct bal__sel *s, int a, int b) {
  uint64_t la = atomic_load_explicit(p->servers[a].active, memory_order_relaxed);
  uint64_t lb = atomic_load_explicit(p->servers[b].active, memory_order_relaxed);
  uint64_t wa = bal__eff_weight(p, (unsigned)a, bal__accept(p, s, (unsigned)a));
  uint64_t wb = bal__eff_weight(p, (unsigned)b, bal__accept(p, s, (unsigned)b));

  return la * wb < lb * wa;
}

static int r2_select(struct bal_pool *p, struct bal__sel *s) {
  struct r2_state *st = p->priv;
  const struct bal__sched *sc = &st->tiers[s->tier];
  int a, b = -1;

  if (sc->len == 0)
    return -1;
  if ((a = bal__sched_draw(p, s, sc, next_random(p))) < 0)
    return -1;
  /* The second choice must be another server; a tier with one acceptable server has none,
   * so a few tries only. */
  for (unsigned k = 0; k < 3 && (b < 0 || b == a); k++)
    b = bal__sched_draw(p, s, sc, next_random(p));
  if (b < 0 || b == a)
    return a;
  return lighter(p, s, b, a) ? b : a;
}

static void r2_destroy(struct bal_pool *p) {
  struct r2_state *st = p->priv;

  if (st != NULL)
    bal__scheds_free(st->tiers);
  free(st);
  p->priv = NULL;
}

const struct bal_ops bal_random2 = {
    .name = "random2",
    .flags = 0,
    .init = r2_init,
    .update = r2_update,
    .select = r2_select,
    .destroy = r2_destroy,
};
