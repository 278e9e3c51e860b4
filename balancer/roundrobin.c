/* Smooth weighted round-robin (nginx's algorithm) as a precomputed schedule on a shared counter. */

/*
 * nginx's smooth weighted round-robin spreads a server of weight 5 among others instead of
 * sending it five requests in a row. Run per process, it also gives each worker its own
 * rotation, so with N workers the same server is picked N times in a row from the outside.
 * We want one rotation for the whole proxy. So the SWRR sequence for one full cycle (the sum
 * of the weights after dividing by their gcd) is computed once, identically in every worker,
 * and a position counter that all workers share (an atomic in the master's shared memory)
 * says where the next request lands: each pick is a fetch-add, with no lock and no IPC.
 * Down or already-tried servers are skipped by walking the schedule forward.
 */
#include "balancer.h"

#include <errno.h>
#include <stdlib.h>
#include <uv.h>

struct rr_state {
  uint16_t *sched; /* server index at each position of one cycle */
  size_t len;
};

static unsigned gcd(unsigned a, unsigned b) {
  while (b) {
    unsigned t = a % b;
    a = b;
    b = t;
  }
  return a;
}

/* Builds one cycle of nginx's SWRR: each step adds every weight to its server's current value,
 * picks the largest, and subtracts the total from the winner. */
static int rr_build(struct bal_pool *p) {
  struct rr_state *st = p->priv;
  unsigned g = 0;
  size_t total = 0;
  long *cur;

  for (unsigned i = 0; i < p->n; i++)
    g = gcd(g, p->servers[i].weight);
  for (unsigned i = 0; i < p->n; i++)
    total += p->servers[i].weight / g;
  cur = calloc(p->n, sizeof(*cur));
  uint16_t *sched = malloc(total * sizeof(*sched));
  if (cur == NULL || sched == NULL) {
    free(cur);
    free(sched);
    return UV_ENOMEM;
  }
  for (size_t k = 0; k < total; k++) {
    unsigned best = 0;
    for (unsigned i = 0; i < p->n; i++) {
      cur[i] += (long)(p->servers[i].weight / g);
      if (cur[i] > cur[best])
        best = i;
    }
    cur[best] -= (long)total;
    sched[k] = (uint16_t)best;
  }
  free(cur);
  free(st->sched);
  st->sched = sched;
  st->len = total;
  return 0;
}

static int rr_init(struct bal_pool *p) {
  struct rr_state *st = calloc(1, sizeof(*st));
  int rc;

  if (st == NULL)
    return UV_ENOMEM;
  p->priv = st;
  rc = rr_build(p);
  if (rc != 0) {
    free(st);
    p->priv = NULL;
  }
  return rc;
}

static int rr_select(struct bal_pool *p, const struct bal_tried *tried) {
  struct rr_state *st = p->priv;
  uint64_t pos = atomic_fetch_add_explicit(p->counter, 1, memory_order_relaxed);

  /* Walk at most one cycle from our position: it visits every server at least once. */
  for (size_t k = 0; k < st->len; k++) {
    unsigned i = st->sched[(pos + k) % st->len];
    if (!p->servers[i].down && (tried == NULL || !bal_tried_has(tried, i)))
      return (int)i;
  }
  return -1;
}

static int rr_update(struct bal_pool *p) {
  return rr_build(p);
}

static void rr_destroy(struct bal_pool *p) {
  struct rr_state *st = p->priv;
  if (st != NULL) {
    free(st->sched);
    free(st);
  }
  p->priv = NULL;
}

const struct bal_ops bal_roundrobin = {
    .name = "roundrobin",
    .init = rr_init,
    .select = rr_select,
    .release = NULL,
    .update = rr_update,
    .destroy = rr_destroy,
};
