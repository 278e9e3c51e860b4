/* Upstream pools in the data plane: server selection for requests and TCP sessions (the pool's
 * balancer, with a tried set, and the balancing key a hashing pool needs), the one release of
 * a pick, and the server set the master replaces at run time. */
#include "px.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* Adds n (+1 or -1) to this worker's share of a server's in-flight count (single writer). */
static void mine_add(_Atomic uint32_t *c, uint32_t n) {
  atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n, memory_order_relaxed);
}

int px_pool_select(struct px_pool *pool, struct bal_tried *tried, uint64_t key, uint64_t now_ms,
                   struct bal_pick *pick, struct px_server **srv) {
  int rc = bal_select(&pool->bal, tried, key, now_ms, pick); /* negative errno: UV_E* */

  if (rc == 0) {
    *srv = pool->servers[pick->idx]; /* a pick's index is of the pool's current version */
    atomic_fetch_add_explicit(&(*srv)->sst.st->requests, 1, memory_order_relaxed);
    mine_add((*srv)->sst.mine, 1);
  }
  return rc;
}

/* A failure of srv, for the admin page: when, and until when this worker skips it. */
static void count_failure(struct px_server *srv, uint64_t failing_until_ms) {
  struct px_server_stats *st = srv->sst.st;
  struct timespec ts;

  atomic_fetch_add_explicit(&st->errors, 1, memory_order_relaxed);
  clock_gettime(CLOCK_REALTIME_COARSE, &ts);
  atomic_store_explicit(&st->last_failure_ms,
                        (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000,
                        memory_order_relaxed);
  if (failing_until_ms != 0)
    atomic_store_explicit(&st->failing_until_ms, failing_until_ms, memory_order_relaxed);
}

void px_pool_release(struct px_pool *pool, const struct bal_pick *pick, struct px_server *srv,
                     enum bal_outcome outcome, uint64_t now_ms) {
  struct px_ctx *ctx = pool->ctx;
  struct bal_server_state st = {0};
  int failing = bal_release(&pool->bal, pick, outcome, now_ms);
  int i = failing == 1 ? bal_pool_find(&pool->bal, pick->id) : -1;

  mine_add(srv->sst.mine, (uint32_t)-1);
  if (i >= 0)
    bal_pool_state(&pool->bal, (unsigned)i, &st);
  if (outcome == BAL_FAILED)
    count_failure(srv, st.failing_until_ms);
  /* It became failing here: the master makes every other worker skip it too. */
  if (i >= 0 && ctx->failing_fn != NULL)
    ctx->failing_fn(ctx->failing_arg, &st);
}

/* ---- the server set ---- */

/* Where srv's counters go: the generation's block for it (shared by every worker, so that
 * least_conn and random2 see every worker's in-flight count), else its own. */
static void server_stats(struct px_pool *pool, struct px_server *srv, uint64_t id) {
  const struct px_gen *gen = &pool->ctx->gen;

  if (gen->server_lookup != NULL &&
      gen->server_lookup(gen->lookup_arg, pool->index, id, &srv->sst) == 0) {
    srv->shared = 1;
    return;
  }
  srv->sst.st = &srv->own;
  srv->sst.mine = &srv->own_mine;
}

/* The pool's current server with this id (taking a reference), else a new one from `spec`. */
static struct px_server *server_for(struct px_pool *pool, const struct px_server_spec *spec) {
  int i = bal_pool_find(&pool->bal, spec->id);
  struct px_server *srv;

  if (i >= 0) {
    px_server_ref(pool->servers[i]);
    return pool->servers[i];
  }
  srv = px_server_new((const struct sockaddr *)&spec->addr, spec->name, pool->max_idle,
                      pool->idle_ms);
  if (srv != NULL)
    server_stats(pool, srv, spec->id);
  return srv;
}

static int holds(struct px_server *const *v, unsigned n, const struct px_server *srv) {
  for (unsigned k = 0; k < n; k++)
    if (v[k] == srv)
      return 1;
  return 0;
}

static void servers_unref(struct px_server **v, unsigned n) {
  for (unsigned k = 0; k < n; k++)
    px_server_unref(v[k]);
  free(v);
}

int px_pool_set_servers(struct px_pool *pool, const struct px_server_spec *specs, unsigned n) {
  struct bal_server_conf sc[BAL_MAX_SERVERS];
  struct px_server **next, **old = pool->servers;
  unsigned k, nold = pool->bal.n;
  int rc;

  if (n > BAL_MAX_SERVERS)
    return UV_EINVAL;
  for (k = 0; k < n; k++) {
    int af = specs[k].addr.ss_family;
    if (af != AF_INET && af != AF_INET6)
      return UV_EINVAL;
  }
  /* Weights and ids are checked by the balancer's rebuild, before anything changes. */
  if ((next = calloc(n > 0 ? n : 1, sizeof(*next))) == NULL)
    return UV_ENOMEM;
  for (k = 0; k < n; k++) {
    if ((next[k] = server_for(pool, &specs[k])) == NULL) {
      servers_unref(next, k);
      return UV_ENOMEM;
    }
    sc[k] = (struct bal_server_conf){.id = specs[k].id,
                                     .weight = specs[k].weight,
                                     .backup = specs[k].backup,
                                     .shared = next[k]->shared ? &next[k]->sst.st->active : NULL};
  }
  if ((rc = bal_pool_rebuild(&pool->bal, n > 0 ? sc : NULL, n)) != 0) {
    servers_unref(next, n);
    return rc;
  }
  pool->servers = next;
  for (k = 0; k < nold; k++)
    if (!holds(next, n, old[k]))
      px_server_retire(old[k]);
  if (old != NULL)
    servers_unref(old, nold);
  return 0;
}

void px_pool_free(struct px_pool *pool) {
  if (pool->servers != NULL)
    servers_unref(pool->servers, pool->bal.n);
  pool->servers = NULL;
  bal_pool_free(&pool->bal);
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
