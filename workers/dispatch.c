/* The strategy table and what every strategy shares: where the master's connections go. */
#include "dispatch.h"

const struct dispatch_ops *dispatch_find(enum cfg_dispatch d) {
  switch (d) {
  case CFG_DISPATCH_HANDOFF:
    return &dispatch_handoff;
  case CFG_DISPATCH_HANDOFF_LEAST:
    return &dispatch_handoff_least;
  case CFG_DISPATCH_PROXY:
    return &dispatch_proxy;
  case CFG_DISPATCH_SHARED:
    return &dispatch_shared;
  case CFG_DISPATCH_REUSEPORT:
    return &dispatch_reuseport;
  }
  return &dispatch_handoff;
}

void dispatch_take(struct master *m, struct mconn *c) {
  if (m->cur == NULL || m->stopping) {
    mconn_close(c);
    return;
  }
  m->cur->dispatch->take(m, m->cur, c);
}

int dispatch_can_take(struct master *m) {
  return m->cur != NULL && !m->stopping && m->cur->dispatch->can_take(m, m->cur);
}

int dispatch_no_sockets(struct generation *g) {
  return 0;
}

void dispatch_nothing(struct generation *g) {}

void dispatch_handoff_take(struct master *m, struct generation *g, struct mconn *c) {
  handoff_give(m, c);
}

int dispatch_handoff_can_take(struct master *m, struct generation *g) {
  return m->pending.len == 0 && handoff_has_room(m);
}
