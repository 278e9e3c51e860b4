/* Server selection for requests and TCP sessions: the pool's balancer, with a tried set. */
#include "px.h"

int px_pool_select(struct px_pool *pool, struct bal_tried *tried) {
  return bal_select(&pool->bal, tried);
}

void px_pool_release(struct px_pool *pool, int idx, int failed) {
  if (idx >= 0)
    bal_release(&pool->bal, (unsigned)idx, failed);
}
