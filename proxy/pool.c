/* Server selection for requests and TCP sessions: the pool's balancer, with a tried set. */
#include "px.h"

int px_pool_select(struct px_pool *pool, struct bal_tried *tried, uint64_t key, uint64_t now_ms,
                   struct bal_pick *pick) {
  return bal_select(&pool->bal, tried, key, now_ms, pick); /* negative errno: UV_E* */
}

void px_pool_release(struct px_pool *pool, const struct bal_pick *pick, enum bal_outcome outcome,
                     uint64_t now_ms) {
  bal_release(&pool->bal, pick, outcome, now_ms);
}

int px_pool_uses_key(const struct px_pool *pool) {
  return (pool->bal.ops->flags & BAL_USES_KEY) != 0;
}
