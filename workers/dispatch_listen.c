/* Dispatch "shared" and "reuseport": workers accept themselves on sockets the master owns. */

/*
 * shared: every public socket goes to every worker (Node's SharedHandle); each worker polls it
 * and the kernel decides who wins each accept, which is known to be uneven.
 *
 * reuseport: one SO_REUSEPORT socket per slot and listener on the same address (nginx's
 * `reuseport`); the kernel spreads connections by a hash of the 4-tuple. Slot 0 uses the
 * public socket itself, the others members of its group (lsock_member), made when a generation
 * needs them and kept across reloads that keep them. A socket whose worker is not serving
 * (starting, restarting, crash-looping) is accepted on by the master meanwhile, which hands
 * the connections to the workers that are (lsock.c): the kernel's hash cannot send anyone to
 * a dead end.
 *
 * Either way the master hands what it holds (handed-back connections, a retired socket's
 * backlog) round-robin through the handoff engine.
 */
#include "dispatch.h"

#include <stdlib.h>

static int shared_sockets(struct generation *g, unsigned slot, struct lsock **socks, uint8_t *kinds,
                          uint16_t *listeners, int max) {
  int n = 0;

  for (size_t i = 0; i < g->cfg->nlisteners && n < max; i++, n++) {
    socks[n] = g->listeners[i];
    kinds[n] = IPC_LISTEN_PUBLIC;
    listeners[n] = (uint16_t)i;
  }
  return n;
}

/* reuseport: g->dpriv is an array [slot][listener] of members (slot 0's entries are NULL). */
static struct lsock **members(struct generation *g) {
  return g->dpriv;
}

static int reuseport_init(struct generation *g) {
  size_t nl = g->cfg->nlisteners;
  int rc;

  if ((g->dpriv = calloc((size_t)g->nslots * nl, sizeof(struct lsock *))) == NULL)
    return UV_ENOMEM;
  for (unsigned s = 1; s < g->nslots; s++)
    for (size_t i = 0; i < nl; i++)
      if ((rc = lsock_member(g->m, g->listeners[i], s, &members(g)[s * nl + i])) != 0)
        return rc;
  return 0;
}

static void reuseport_fini(struct generation *g) {
  size_t nl = g->cfg->nlisteners;

  if (g->dpriv == NULL)
    return;
  for (unsigned s = 1; s < g->nslots; s++)
    for (size_t i = 0; i < nl; i++)
      if (members(g)[s * nl + i] != NULL)
        lsock_unref(members(g)[s * nl + i]);
  free(g->dpriv);
  g->dpriv = NULL;
}

static int reuseport_sockets(struct generation *g, unsigned slot, struct lsock **socks,
                             uint8_t *kinds, uint16_t *listeners, int max) {
  size_t nl = g->cfg->nlisteners;
  int n = 0;

  for (size_t i = 0; i < nl && n < max; i++, n++) {
    socks[n] = slot == 0 ? g->listeners[i] : members(g)[slot * nl + i];
    kinds[n] = IPC_LISTEN_PUBLIC;
    listeners[n] = (uint16_t)i;
  }
  return n;
}

const struct dispatch_ops dispatch_shared = {
    .name = "shared",
    .handover = 1,
    .gen_init = dispatch_no_sockets,
    .gen_fini = dispatch_nothing,
    .worker_sockets = shared_sockets,
    .take = dispatch_handoff_take,
    .can_take = dispatch_handoff_can_take,
    .pick = handoff_pick_rr,
    .stop = dispatch_nothing,
};

const struct dispatch_ops dispatch_reuseport = {
    .name = "reuseport",
    .handover = 1,
    .gen_init = reuseport_init,
    .gen_fini = reuseport_fini,
    .worker_sockets = reuseport_sockets,
    .take = dispatch_handoff_take,
    .can_take = dispatch_handoff_can_take,
    .pick = handoff_pick_rr,
    .stop = dispatch_nothing,
};
