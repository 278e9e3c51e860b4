/* Internals shared by the balancer's files: a selection in progress, who may be picked, hashing. */
#ifndef LBP_BALANCER_INTERNAL_H
#define LBP_BALANCER_INTERNAL_H

#include "balancer.h"

/* Random draws an algorithm makes from a tier before it falls back to a linear scan. With a
 * fraction q of the tier's weight acceptable, all of them miss with probability (1-q)^8. */
#define BAL__DRAWS 8

#define BAL__GOLDEN 0x9e3779b97f4a7c15ull

/* One call of bal_select, as the algorithms see it. */
struct bal__sel {
  struct bal_tried *tried;
  uint64_t key; /* bal_hash_key() of the request's key, or BAL_NO_KEY */
  uint64_t now;
  uint64_t pos;  /* the request's rotation position (bal__sel_pos) */
  int have_pos;  /* pos is set: taken by this call, or the first attempt's for a retry */
  unsigned tier; /* enum bal_tier being picked from */
};

/* A 64-bit finalizer (MurmurHash3's fmix64): every input bit flips each output bit with
 * probability about 1/2, so `mix(x) % n` is fair even for consecutive x. */
static inline uint64_t bal__mix64(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return x;
}

/* FNV-1a over `len` bytes starting from `seed`, then bal__mix64. */
uint64_t bal__hash_bytes(const void *data, size_t len, uint64_t seed);

/*
 * The share of its weight server i takes in this selection, 0 (not a candidate) to BAL_ONE.
 * Tiers are built from shared state, so this re-checks it too: a structure an update could not
 * rebuild (no memory) then still never yields a server that is down or disabled. Outside the
 * panic tier a server must be up and not failing in this worker; in every tier it must be
 * enabled and not tried by this request. A server in slow start takes part of its share.
 */
static inline uint32_t bal__accept(const struct bal_pool *p, const struct bal__sel *s, unsigned i) {
  const struct bal_server *v = &p->servers[i];
  uint64_t since;

  if (v->admin != BAL_ADMIN_ENABLED)
    return 0;
  if (s->tier != BAL_TIER_PANIC && (v->health != BAL_HEALTH_UP || v->fails.until_ms > s->now))
    return 0;
  if (s->tried->n > 0 && bal_tried_has(s->tried, v->id))
    return 0;
  if (p->conf.slow_start_ms == 0)
    return BAL_ONE;
  since = v->up_since_ms > v->fails.until_ms ? v->up_since_ms : v->fails.until_ms;
  return bal_slow_start_share(since, p->conf.slow_start_ms, s->now);
}

/* Server i's weight scaled by its share (slow start); at least 1. */
static inline uint64_t bal__eff_weight(const struct bal_pool *p, unsigned i, uint32_t share) {
  uint64_t w = (uint64_t)p->servers[i].weight * share / BAL_ONE;
  return w > 0 ? w : 1;
}

/* The request's rotation position: one fetch-add on the pool's counter at the request's first
 * attempt; a retry reuses the first attempt's, so retries do not move the shared rotation. */
static inline uint64_t bal__sel_pos(struct bal_pool *p, struct bal__sel *s) {
  if (!s->have_pos) {
    s->pos = atomic_fetch_add_explicit(p->counter, 1, memory_order_relaxed);
    s->have_pos = 1;
  }
  return s->pos;
}

/* The first acceptable member of tier s->tier in pool order, starting at start % n (the last
 * resort after random draws missed). -1 if none. */
int bal__scan(struct bal_pool *p, struct bal__sel *s, uint64_t start);

/* ---- the weighted schedule (sched.c), shared by round_robin, least_conn and random2 ---- */

/* One cycle of nginx's smooth weighted round-robin over a tier: server indexes, each present
 * weight/gcd times, heavy servers interleaved with the others. Read at a position it is the
 * round-robin order; read at a random position it is a weighted random draw. */
struct bal__sched {
  uint8_t *slot;
  uint32_t len; /* 0: the tier is empty */
};

/* Builds the schedules of every tier at once; on -ENOMEM the old ones are kept. */
int bal__scheds_update(struct bal__sched sc[BAL_TIERS], const struct bal_pool *p);
void bal__scheds_free(struct bal__sched sc[BAL_TIERS]);

/* A server of the schedule that bal__accept() takes: the slot at `pos` first, then up to
 * BAL__DRAWS - 1 slots at positions derived from `pos`, each kept with probability equal to
 * its share (so a skipped server's traffic spreads over the others by weight), then
 * bal__scan. -1 if the tier has no acceptable server. */
int bal__sched_draw(struct bal_pool *p, struct bal__sel *s, const struct bal__sched *sc,
                    uint64_t pos);

#endif
