/* round_robin: smooth weighted round-robin (nginx's) on one rotation shared by all workers. */

/*
 * nginx runs its smooth weighted round-robin per process, which gives each worker its own
 * rotation: with N workers the same server can be picked N times in a row from the outside.
 * Here the cycle is computed once per tier (sched.c), identically in every worker, and a
 * position counter in the master's shared memory says where the next request lands: a pick
 * is one fetch-add, with no lock and no IPC.
 *
 * Who is out of the rotation, and how their traffic moves:
 *   1. Down, draining or disabled servers (states every worker shares): the tiers change and
 *      the cycle is rebuilt without them, so the others keep the exact smooth order of their
 *      own weights ({a:5, b:1, c:1} with c down is the cycle of {a:5, b:1}).
 *   2. Servers failing in this worker, or in slow start, or tried by this request: the cycle
 *      stays the one all workers share; a slot landing on such a server is drawn again at a
 *      pseudo-random slot derived from the position, so their traffic spreads over the others
 *      in proportion to weight, rather than all going to the next server in the cycle.
 *   3. A retry draws from its request's own position: it does not take a new one, so the
 *      request after it still starts where the rotation says (with a dead server in a pool of
 *      two, retries used to shift the rotation so that every request first met the dead one).
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>

struct rr_state {
  struct bal__sched tiers[BAL_TIERS];
};

static int rr_init(struct bal_pool *p) {
  p->priv = calloc(1, sizeof(struct rr_state));
  return p->priv != NULL ? 0 : -ENOMEM;
}

static int rr_update(struct bal_pool *p) {
  struct rr_state *st = p->priv;
  return bal__scheds_update(st->tiers, p);
}

static int rr_select(struct bal_pool *p, struct bal__sel *s) {
  struct rr_state *st = p->priv;
  const struct bal__sched *sc = &st->tiers[s->tier];

  if (sc->len == 0)
    return -1;
  return bal__sched_draw(p, s, sc, bal__sel_pos(p, s));
}

static void rr_destroy(struct bal_pool *p) {
  struct rr_state *st = p->priv;

  if (st != NULL)
    bal__scheds_free(st->tiers);
  free(st);
  p->priv = NULL;
}

const struct bal_ops bal_round_robin = {
    .name = "round_robin",
    .flags = 0,
    .init = rr_init,
    .update = rr_update,
    .select = rr_select,
    .destroy = rr_destroy,
};
