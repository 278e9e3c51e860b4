/* Server selection for requests and TCP sessions: the pool's balancer, with a tried set, and
 * the balancing key a hashing pool needs. */
#include "px.h"

#include <string.h>
#include <strings.h>
#include <time.h>

/* The index of the server a pick went to; -1 if it is gone (a rebuild since). */
static int pick_index(const struct px_pool *pool, const struct bal_pick *pick) {
  int idx = pick->version == pool->bal.version ? pick->idx : bal_pool_find(&pool->bal, pick->id);
  return idx >= 0 && (unsigned)idx < pool->nservers ? idx : -1;
}

/* Adds n (+1 or -1) to this worker's share of a server's in-flight count (single writer). */
static void mine_add(_Atomic uint32_t *c, uint32_t n) {
  atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n, memory_order_relaxed);
}

int px_pool_select(struct px_pool *pool, struct bal_tried *tried, uint64_t key, uint64_t now_ms,
                   struct bal_pick *pick) {
  int rc = bal_select(&pool->bal, tried, key, now_ms, pick); /* negative errno: UV_E* */
  int idx;

  if (rc == 0 && (idx = pick_index(pool, pick)) >= 0) {
    atomic_fetch_add_explicit(&pool->sst[idx].st->requests, 1, memory_order_relaxed);
    mine_add(pool->sst[idx].mine, 1);
  }
  return rc;
}

/* A failure of server idx, for the admin page: when, and until when this worker skips it. */
static void count_failure(struct px_pool *pool, int idx, int failing) {
  struct px_server_stats *st = pool->sst[idx].st;
  struct timespec ts;

  atomic_fetch_add_explicit(&st->errors, 1, memory_order_relaxed);
  clock_gettime(CLOCK_REALTIME_COARSE, &ts);
  atomic_store_explicit(&st->last_failure_ms,
                        (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000,
                        memory_order_relaxed);
  if (failing)
    atomic_store_explicit(&st->failing_until_ms, pool->bal.servers[idx].fails.until_ms,
                          memory_order_relaxed);
}

void px_pool_release(struct px_pool *pool, const struct bal_pick *pick, enum bal_outcome outcome,
                     uint64_t now_ms) {
  int idx = pick_index(pool, pick);
  int failing = bal_release(&pool->bal, pick, outcome, now_ms);

  if (idx < 0)
    return;
  mine_add(pool->sst[idx].mine, (uint32_t)-1);
  if (outcome == BAL_FAILED)
    count_failure(pool, idx, failing);
}

int px_pool_uses_key(const struct px_pool *pool) {
  return (pool->bal.ops->flags & BAL_USES_KEY) != 0;
}

/* The value of the first header line named `name` in a request head, trimmed and hashed;
 * BAL_NO_KEY when there is none. The head passed the strict checks: lines end with CRLF. */
static uint64_t header_key(const struct px_head *h, const char *name) {
  const char *p = h->base + h->start, *end = h->base + h->end, *eol;
  size_t nlen = strlen(name);

  eol = memchr(p, '\n', (size_t)(end - p)); /* the request line */
  for (p = eol != NULL ? eol + 1 : end; p < end; p = eol + 1) {
    const char *v, *ve;
    if ((eol = memchr(p, '\n', (size_t)(end - p))) == NULL)
      break;
    if ((size_t)(eol - p) <= nlen || p[nlen] != ':' || strncasecmp(p, name, nlen) != 0)
      continue;
    v = p + nlen + 1;
    for (ve = eol; ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'); ve--)
      ;
    while (v < ve && (*v == ' ' || *v == '\t'))
      v++;
    return bal_hash_key(v, (size_t)(ve - v));
  }
  return BAL_NO_KEY;
}

uint64_t px_pool_key(const struct px_pool *pool, const char *peer, size_t peer_len,
                     const struct px_head *h) {
  switch (pool->hash_key) {
  case CFG_HASH_KEY_CLIENT_IP:
    return peer_len > 0 ? bal_hash_key(peer, peer_len) : BAL_NO_KEY;
  case CFG_HASH_KEY_URI:
    return h != NULL ? bal_hash_key(h->base + h->url.off, h->url.len) : BAL_NO_KEY;
  case CFG_HASH_KEY_HEADER:
    return h != NULL && pool->hash_header != NULL ? header_key(h, pool->hash_header) : BAL_NO_KEY;
  default:
    return BAL_NO_KEY;
  }
}
