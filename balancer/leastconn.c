/* least_conn: the server with the fewest requests in flight, across all workers, per weight. */

/*
 * Each server's in-flight count lives in memory shared by every worker (bal_server_conf.shared),
 * so a worker sees the load the others put on a server, not only its own. The pick minimises
 * active / weight (slow start scales the weight), compared as active_a * w_b < active_b * w_a.
 * Ties go by weighted round-robin, as in nginx: the scan starts with the server the tier's
 * smooth weighted schedule (sched.c) names at the request's position in the pool's shared
 * rotation, and only a strictly lighter server displaces it. So when requests do not overlap
 * (every count 0) the order is exactly round_robin's, weights included, and under load the
 * counts decide. O(servers) per pick, like nginx's least_conn.
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>

struct lc_state {
  struct bal__sched tiers[BAL_TIERS];
};

static int lc_init(struct bal_pool *p) {
  p->priv = calloc(1, sizeof(struct lc_state));
  return p->priv != NULL ? 0 : -ENOMEM;
}

static int lc_update(struct bal_pool *p) {
  struct lc_state *st = p->priv;
  return bal__scheds_update(st->tiers, p);
}

/* Is server i (with share) strictly lighter than the best so far? Updates the best if so. */
static void consider(struct bal_pool *p, unsigned i, uint32_t share, int *best, uint64_t *best_load,
                     uint64_t *best_w) {
  uint64_t load = atomic_load_explicit(p->servers[i].active, memory_order_relaxed);
  uint64_t w = bal__eff_weight(p, i, share);

  if (*best < 0 || load * *best_w < *best_load * w) {
    *best = (int)i;
    *best_load = load;
    *best_w = w;
  }
}

static int lc_select(struct bal_pool *p, struct bal__sel *s) {
  struct lc_state *st = p->priv;
  const struct bal__sched *sc = &st->tiers[s->tier];
  const struct bal_tier_set *t = &p->tiers[s->tier];
  uint64_t best_load = 0, best_w = 1;
  int first, best = -1;
  uint32_t share;

  if (sc->len == 0)
    return -1;
  first = sc->slot[bal__sel_pos(p, s) % sc->len];
  if ((share = bal__accept(p, s, (unsigned)first)) > 0)
    consider(p, (unsigned)first, share, &best, &best_load, &best_w);
  for (unsigned k = 0; k < t->n; k++) {
    unsigned i = t->members[k];
    if ((int)i != first && (share = bal__accept(p, s, i)) > 0)
      consider(p, i, share, &best, &best_load, &best_w);
  }
  return best;
}

static void lc_destroy(struct bal_pool *p) {
  struct lc_state *st = p->priv;

  if (st != NULL)
    bal__scheds_free(st->tiers);
  free(st);
  p->priv = NULL;
}

const struct bal_ops bal_least_conn = {
    .name = "least_conn",
    .flags = 0,
    .init = lc_init,
    .update = lc_update,
    .select = lc_select,
    .destroy = lc_destroy,
};
