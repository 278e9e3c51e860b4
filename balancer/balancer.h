/* Load-balancing algorithms behind one const vtable; a pool is one upstream's servers. */
#ifndef LBP_BALANCER_H
#define LBP_BALANCER_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define BAL_MAX_SERVERS 256

/* Servers already tried for the current request, so a retry skips them. */
struct bal_tried {
  uint64_t bits[BAL_MAX_SERVERS / 64];
};

static inline void bal_tried_clear(struct bal_tried *t) {
  for (size_t i = 0; i < BAL_MAX_SERVERS / 64; i++)
    t->bits[i] = 0;
}
static inline void bal_tried_add(struct bal_tried *t, unsigned i) {
  t->bits[i / 64] |= (uint64_t)1 << (i % 64);
}
static inline int bal_tried_has(const struct bal_tried *t, unsigned i) {
  return (t->bits[i / 64] >> (i % 64)) & 1;
}

struct bal_server {
  unsigned weight; /* >= 1 */
  unsigned active; /* requests in flight on this server (this process) */
  uint8_t down;    /* 1 = not selectable (health checks, admin) */
};

struct bal_pool;

/* One algorithm. Every function gets the pool; `priv` is the algorithm's own state. */
struct bal_ops {
  const char *name;
  /* Builds the algorithm's state from the servers' weights. 0 or UV_ENOMEM. */
  int (*init)(struct bal_pool *p);
  /* Returns the index of a server that is not down and not in `tried`, or -1 if none is. */
  int (*select)(struct bal_pool *p, const struct bal_tried *tried);
  /* The request that selected `idx` is over (failed = it could not be served there). */
  void (*release)(struct bal_pool *p, unsigned idx, int failed);
  /* Weights or down flags changed: rebuild what depends on them. 0 or UV_ENOMEM. */
  int (*update)(struct bal_pool *p);
  void (*destroy)(struct bal_pool *p);
};

struct bal_pool {
  const struct bal_ops *ops;
  struct bal_server *servers;
  unsigned n;
  /* Position counter. Points into memory shared by all workers when the master provides it
   * (so round-robin is global across processes), else at `own_counter`. */
  _Atomic uint64_t *counter;
  _Atomic uint64_t own_counter;
  void *priv;
};

extern const struct bal_ops bal_roundrobin;

/* Finds an algorithm by config name ("roundrobin"); NULL if unknown. */
const struct bal_ops *bal_find(const char *name);

/* Sets up a pool of n servers with the given weights (copied) using `ops`; `shared_counter`
 * may be NULL. 0, UV_EINVAL (n == 0 or > BAL_MAX_SERVERS, weight 0) or UV_ENOMEM. */
int bal_pool_init(struct bal_pool *p, const struct bal_ops *ops, unsigned n,
                  const unsigned *weights, _Atomic uint64_t *shared_counter);
void bal_pool_free(struct bal_pool *p);

static inline int bal_select(struct bal_pool *p, const struct bal_tried *tried) {
  int i = p->ops->select(p, tried);
  if (i >= 0)
    p->servers[i].active++;
  return i;
}

static inline void bal_release(struct bal_pool *p, unsigned idx, int failed) {
  if (p->servers[idx].active > 0)
    p->servers[idx].active--;
  if (p->ops->release)
    p->ops->release(p, idx, failed);
}

#endif
