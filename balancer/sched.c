/* The weighted schedule: one cycle of smooth weighted round-robin per tier, and draws from it. */

/*
 * nginx's smooth weighted round-robin spreads a server of weight 5 among the others instead of
 * sending it five requests in a row: each step adds every weight to its server's current value,
 * picks the largest (the first on a tie), and takes the total off the winner. One cycle (the
 * sum of the weights after dividing by their gcd) is computed once per tier, identically in
 * every worker, so a position counter shared by all workers walks one rotation for the whole
 * proxy (round_robin), and a random position is a weighted random choice (random2).
 *
 * Building costs O(cycle length x servers). The cycle is capped at BAL__SCHED_MAX slots: past
 * that, weights are scaled down in proportion (never below 1). Only pools with hundreds of
 * servers and weights in the hundreds reach it.
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define BAL__SCHED_MAX 65536u

static uint64_t gcd(uint64_t a, uint64_t b) {
  while (b != 0) {
    uint64_t t = a % b;
    a = b;
    b = t;
  }
  return a;
}

/* The tier's weights reduced by their gcd (and scaled down past the cap) into w; their sum. */
static uint64_t reduced_weights(const struct bal_pool *p, const struct bal_tier_set *t,
                                uint64_t *w) {
  uint64_t g = 0, total = 0;

  for (unsigned k = 0; k < t->n; k++) {
    w[k] = p->servers[t->members[k]].weight;
    total += w[k];
  }
  if (total > BAL__SCHED_MAX) {
    uint64_t raw = total;
    for (unsigned k = 0; k < t->n; k++) {
      w[k] = w[k] * BAL__SCHED_MAX / raw;
      w[k] = w[k] > 0 ? w[k] : 1;
    }
  }
  for (unsigned k = 0; k < t->n; k++)
    g = gcd(g, w[k]);
  total = 0;
  for (unsigned k = 0; k < t->n; k++) {
    w[k] /= g;
    total += w[k];
  }
  return total;
}

/* One SWRR cycle of tier t into *out (slot NULL and len 0 for an empty tier). */
static int sched_build(struct bal__sched *out, const struct bal_pool *p,
                       const struct bal_tier_set *t) {
  uint64_t w[BAL_MAX_SERVERS], total;
  int64_t cur[BAL_MAX_SERVERS];

  out->slot = NULL;
  out->len = 0;
  if (t->n == 0)
    return 0;
  total = reduced_weights(p, t, w);
  if ((out->slot = malloc(total)) == NULL)
    return -ENOMEM;
  memset(cur, 0, sizeof(cur));
  for (uint64_t step = 0; step < total; step++) {
    unsigned best = 0;
    for (unsigned k = 0; k < t->n; k++) {
      cur[k] += (int64_t)w[k];
      if (cur[k] > cur[best])
        best = k;
    }
    cur[best] -= (int64_t)total;
    out->slot[step] = t->members[best];
  }
  out->len = (uint32_t)total;
  return 0;
}

void bal__scheds_free(struct bal__sched sc[BAL_TIERS]) {
  for (unsigned t = 0; t < BAL_TIERS; t++) {
    free(sc[t].slot);
    sc[t].slot = NULL;
    sc[t].len = 0;
  }
}

int bal__scheds_update(struct bal__sched sc[BAL_TIERS], const struct bal_pool *p) {
  struct bal__sched next[BAL_TIERS];
  int rc = 0;

  memset(next, 0, sizeof(next));
  for (unsigned t = 0; t < BAL_TIERS && rc == 0; t++)
    rc = sched_build(&next[t], p, &p->tiers[t]);
  if (rc != 0) {
    bal__scheds_free(next);
    return rc;
  }
  bal__scheds_free(sc);
  memcpy(sc, next, sizeof(next));
  return 0;
}

int bal__sched_draw(struct bal_pool *p, struct bal__sel *s, const struct bal__sched *sc,
                    uint64_t pos) {
  for (unsigned k = 0; k < BAL__DRAWS; k++) {
    uint64_t r = k == 0 ? pos : bal__mix64(pos + k * BAL__GOLDEN);
    unsigned i = sc->slot[r % sc->len];
    uint32_t share = bal__accept(p, s, i);

    /* A server in slow start keeps a draw with probability share/BAL_ONE: its traffic is its
     * weight times its share, the rest spreads over the others by their weights. */
    if (share == BAL_ONE || (share > 0 && (bal__mix64(r ^ BAL__GOLDEN) % BAL_ONE) < share))
      return (int)i;
  }
  return bal__scan(p, s, pos);
}
