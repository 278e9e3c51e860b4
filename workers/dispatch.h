/* The interface of a dispatch strategy: how the connections of a generation reach its workers. */
#ifndef LBP_DISPATCH_H
#define LBP_DISPATCH_H

#include "master.h"

/*
 * A strategy is a const table. Its state is per generation (g->dpriv, made by gen_init and
 * freed by gen_fini), so two generations with different strategies run side by side during a
 * reload. The shared mechanics live once, outside the strategies: the listening sockets and
 * the master's accept path (lsock.c), the fd handoff engine (handoff.c), the relay (proxy/).
 */
struct dispatch_ops {
  const char *name;
  /* The master accepts on the generation's public sockets (else its workers do). */
  uint8_t master_accepts;
  /* Workers get connections as fds, so a draining one can hand idle ones back. */
  uint8_t handover;
  /* Makes the strategy's sockets for g (reuseport members, private ports) into g->dpriv.
   * 0 or a negative UV error; gen_fini is called either way. */
  int (*gen_init)(struct generation *g);
  void (*gen_fini)(struct generation *g);
  /* The listening sockets a worker of g in `slot` accepts on: fills socks/kinds/listeners
   * (at most max), returns how many. */
  int (*worker_sockets)(struct generation *g, unsigned slot, struct lsock **socks, uint8_t *kinds,
                        uint16_t *listeners, int max);
  /* A connection the master holds for g: give it to a worker or relay it. Takes c. */
  void (*take)(struct master *m, struct generation *g, struct mconn *c);
  /* Can take() place a connection now? */
  int (*can_take)(struct master *m, struct generation *g);
  /* Which serving worker of the current generation gets the next fd (handoff engine). */
  struct worker *(*pick)(struct master *m);
  /* Fast stop: close whatever the strategy holds open for g (relays). */
  void (*stop)(struct generation *g);
};

extern const struct dispatch_ops dispatch_handoff;
extern const struct dispatch_ops dispatch_handoff_least;
extern const struct dispatch_ops dispatch_proxy;
extern const struct dispatch_ops dispatch_shared;
extern const struct dispatch_ops dispatch_reuseport;

/* The strategy for a config value. */
const struct dispatch_ops *dispatch_find(enum cfg_dispatch d);

/* The current generation's take / can_take (false when there is none). */
void dispatch_take(struct master *m, struct mconn *c);
int dispatch_can_take(struct master *m);

/* Strategy building blocks. */
int dispatch_no_sockets(struct generation *g);
void dispatch_nothing(struct generation *g);
void dispatch_handoff_take(struct master *m, struct generation *g, struct mconn *c);
int dispatch_handoff_can_take(struct master *m, struct generation *g);

#endif
