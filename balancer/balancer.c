/* Pools: servers with stable ids and states, their tiers, and the selection every algorithm shares.
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const struct bal_ops *const algorithms[] = {&bal_round_robin, &bal_least_conn, &bal_random2,
                                                   &bal_hash};

const struct bal_ops *bal_find(const char *name) {
  for (size_t i = 0; i < sizeof(algorithms) / sizeof(algorithms[0]); i++)
    if (strcmp(algorithms[i]->name, name) == 0)
      return algorithms[i];
  return NULL;
}

/* ---- hashing ---- */

uint64_t bal__hash_bytes(const void *data, size_t len, uint64_t seed) {
  const unsigned char *b = data;
  uint64_t h = 0xcbf29ce484222325ull ^ seed;

  for (size_t i = 0; i < len; i++) {
    h ^= b[i];
    h *= 0x100000001b3ull;
  }
  return bal__mix64(h);
}

uint64_t bal_server_id(const char *upstream, const char *address) {
  /* The name's terminating NUL is hashed too, so ("ab", "c") and ("a", "bc") differ. */
  uint64_t h = bal__hash_bytes(upstream, strlen(upstream) + 1, 0x6c627078ull);
  h = bal__hash_bytes(address, strlen(address), h);
  return h != 0 ? h : 1;
}

uint64_t bal_hash_key(const void *data, size_t len) {
  uint64_t h = bal__hash_bytes(data, len, 0x6b6579ull);
  return h != BAL_NO_KEY ? h : 1;
}

/* ---- pool set-up ---- */

/* 0 servers is a valid pool: an upstream whose names resolved to nothing (yet). */
static int check_servers(const struct bal_server_conf *s, unsigned n) {
  if (n > BAL_MAX_SERVERS)
    return -EINVAL;
  for (unsigned i = 0; i < n; i++) {
    if (s[i].id == 0 || s[i].weight < 1 || s[i].weight > 1000)
      return -EINVAL;
    for (unsigned j = 0; j < i; j++)
      if (s[j].id == s[i].id)
        return -EINVAL;
  }
  return 0;
}

/* Recomputes every tier from the servers' shared states (see struct bal_tier_set). */
static void tiers_compute(struct bal_pool *p) {
  for (unsigned t = 0; t < BAL_TIERS; t++)
    p->tiers[t].n = 0;
  for (unsigned i = 0; i < p->n; i++) {
    const struct bal_server *v = &p->servers[i];
    if (v->admin != BAL_ADMIN_ENABLED)
      continue;
    if (v->health == BAL_HEALTH_UP) {
      struct bal_tier_set *t = &p->tiers[v->backup ? BAL_TIER_BACKUP : BAL_TIER_PRIMARY];
      t->members[t->n++] = (uint8_t)i;
    }
    if (p->conf.panic)
      p->tiers[BAL_TIER_PANIC].members[p->tiers[BAL_TIER_PANIC].n++] = (uint8_t)i;
  }
}

static int pool_update(struct bal_pool *p) {
  tiers_compute(p);
  return p->ops->update != NULL ? p->ops->update(p) : 0;
}

int bal_pool_init(struct bal_pool *p, const struct bal_ops *ops, const struct bal_conf *conf,
                  const struct bal_server_conf *servers, unsigned n,
                  _Atomic uint64_t *shared_counter) {
  size_t room = n > 0 ? n : 1; /* an empty pool still gets its arrays: never malloc(0) */
  struct timespec ts;
  int rc;

  memset(p, 0, sizeof(*p));
  if ((rc = check_servers(servers, n)) != 0)
    return rc;
  p->servers = calloc(room, sizeof(*p->servers));
  p->tiers[0].members = malloc(room * BAL_TIERS);
  if (p->servers == NULL || p->tiers[0].members == NULL) {
    rc = -ENOMEM;
    goto fail_alloc;
  }
  for (unsigned t = 1; t < BAL_TIERS; t++)
    p->tiers[t].members = p->tiers[0].members + (size_t)n * t;
  for (unsigned i = 0; i < n; i++) {
    struct bal_server *v = &p->servers[i];
    v->id = servers[i].id;
    v->weight = v->cfg_weight = (uint16_t)servers[i].weight;
    v->backup = servers[i].backup != 0;
    v->active = servers[i].shared != NULL ? servers[i].shared : &v->own_active;
  }
  p->n = n;
  p->ops = ops;
  p->conf = *conf;
  p->counter = shared_counter != NULL ? shared_counter : &p->own_counter;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  bal_pool_seed(p, (uint64_t)getpid() << 32 ^ (uint64_t)ts.tv_nsec ^ (n > 0 ? servers[0].id : 0));
  if (ops->init != NULL && (rc = ops->init(p)) != 0)
    goto fail_alloc;
  if ((rc = pool_update(p)) != 0)
    goto fail_update;
  return 0;

fail_update:
  if (ops->destroy != NULL)
    ops->destroy(p);
fail_alloc:
  free(p->servers);
  free(p->tiers[0].members);
  memset(p, 0, sizeof(*p));
  return rc;
}

void bal_pool_free(struct bal_pool *p) {
  if (p->ops != NULL && p->ops->destroy != NULL)
    p->ops->destroy(p);
  free(p->servers);
  free(p->tiers[0].members);
  memset(p, 0, sizeof(*p));
}

void bal_pool_seed(struct bal_pool *p, uint64_t seed) {
  p->rng = bal__mix64(seed) | 1; /* xorshift must not start at 0 */
}

int bal_pool_find(const struct bal_pool *p, uint64_t id) {
  for (unsigned i = 0; i < p->n; i++)
    if (p->servers[i].id == id)
      return (int)i;
  return -ENOENT;
}

/* Everything a server carries across a rebuild, from `old` into `v` (same id). */
static void carry_state(struct bal_server *v, const struct bal_server *old) {
  v->health = old->health;
  v->admin = old->admin;
  if (old->weight_set) {
    v->weight = old->weight;
    v->weight_set = 1;
  }
  v->up_since_ms = old->up_since_ms;
  v->fails = old->fails;
  v->selected = old->selected;
  v->failed = old->failed;
  v->inflight = old->inflight;
  atomic_store_explicit(&v->own_active,
                        atomic_load_explicit(&old->own_active, memory_order_relaxed),
                        memory_order_relaxed);
}

int bal_pool_rebuild(struct bal_pool *p, const struct bal_server_conf *servers, unsigned n) {
  _Atomic uint64_t *shared = p->counter != &p->own_counter ? p->counter : NULL;
  struct bal_pool np;
  int rc;

  if ((rc = bal_pool_init(&np, p->ops, &p->conf, servers, n, shared)) != 0)
    return rc;
  for (unsigned i = 0; i < np.n; i++) {
    int j = bal_pool_find(p, np.servers[i].id);
    if (j >= 0)
      carry_state(&np.servers[i], &p->servers[j]);
  }
  if ((rc = pool_update(&np)) != 0) {
    bal_pool_free(&np);
    return rc;
  }
  np.version = p->version + 1;
  np.rng = p->rng;
  atomic_store_explicit(&np.own_counter,
                        atomic_load_explicit(&p->own_counter, memory_order_relaxed),
                        memory_order_relaxed);
  bal_pool_free(p);
  memcpy(p, &np, sizeof(np)); /* the pool points into itself only through `counter`: */
  if (shared == NULL)
    p->counter = &p->own_counter;
  return 0;
}

/* ---- states ---- */

static int usable_shared(const struct bal_server *v) {
  return v->health == BAL_HEALTH_UP && v->admin == BAL_ADMIN_ENABLED;
}

/* Applies one record to server v; 1 if the tiers must be recomputed. */
static int apply_one(struct bal_server *v, const struct bal_server_state *st, uint64_t now_ms) {
  int was = usable_shared(v), changed;
  uint8_t health = st->health == BAL_HEALTH_UP ? BAL_HEALTH_UP : BAL_HEALTH_DOWN;
  uint8_t admin = st->admin <= BAL_ADMIN_DISABLED ? st->admin : BAL_ADMIN_DISABLED;
  uint16_t weight = st->weight == 0 ? v->cfg_weight : st->weight > 1000 ? 1000 : st->weight;

  changed = v->health != health || v->admin != admin || v->weight != weight;
  if (v->health == BAL_HEALTH_DOWN && health == BAL_HEALTH_UP)
    memset(&v->fails, 0, sizeof(v->fails)); /* the checks say it is back: a fresh start */
  v->health = health;
  v->admin = admin;
  v->weight = weight;
  v->weight_set = st->weight != 0;
  if (st->up_since_ms != 0)
    v->up_since_ms = st->up_since_ms;
  else if (!was && usable_shared(v))
    v->up_since_ms = now_ms;
  if (st->failing_until_ms > v->fails.until_ms)
    v->fails.until_ms = st->failing_until_ms;
  return changed;
}

int bal_pool_apply(struct bal_pool *p, const struct bal_server_state *states, size_t n,
                   uint64_t now_ms) {
  int matched = 0, changed = 0, rc;

  for (size_t k = 0; k < n; k++) {
    /* The master sends a pool's records in pool order: try the same index first. */
    int i = k < p->n && p->servers[k].id == states[k].id ? (int)k : bal_pool_find(p, states[k].id);
    if (i < 0)
      continue;
    changed |= apply_one(&p->servers[i], &states[k], now_ms);
    matched++;
  }
  if (changed && (rc = pool_update(p)) != 0)
    return rc;
  return matched;
}

void bal_pool_state(const struct bal_pool *p, unsigned idx, struct bal_server_state *out) {
  const struct bal_server *v = &p->servers[idx];

  memset(out, 0, sizeof(*out));
  out->id = v->id;
  out->up_since_ms = v->up_since_ms;
  out->failing_until_ms = v->fails.until_ms;
  out->weight = v->weight_set ? v->weight : 0;
  out->health = v->health;
  out->admin = v->admin;
}

/* ---- selection ---- */

int bal__scan(struct bal_pool *p, struct bal__sel *s, uint64_t start) {
  const struct bal_tier_set *t = &p->tiers[s->tier];

  for (unsigned k = 0; k < t->n; k++) {
    unsigned i = t->members[(start + k) % t->n];
    if (bal__accept(p, s, i) > 0)
      return (int)i;
  }
  return -1;
}

/* Counts the servers of tier `tier` that would be acceptable were they not tried; *only is
 * the last one. */
static unsigned count_untried(struct bal_pool *p, const struct bal__sel *s, unsigned tier,
                              int *only) {
  struct bal_tried none = {.n = 0};
  struct bal__sel any = *s;
  unsigned count = 0;

  any.tried = &none;
  any.tier = tier;
  for (unsigned k = 0; k < p->tiers[tier].n; k++) {
    unsigned i = p->tiers[tier].members[k];
    if (bal__accept(p, &any, i) > 0) {
      count++;
      *only = (int)i;
    }
  }
  return count;
}

/* No tier gave a server. Why: usable servers all tried (-EALREADY, or the only one again when
 * the caller allows it), or none usable (panic, else -EHOSTDOWN). */
static int select_fallback(struct bal_pool *p, struct bal__sel *s) {
  int only = -1, i;
  unsigned usable =
      count_untried(p, s, BAL_TIER_PRIMARY, &only) + count_untried(p, s, BAL_TIER_BACKUP, &only);

  if (usable > 0)
    return usable == 1 && s->tried->allow_repeat ? only : -EALREADY;
  if (!p->conf.panic || p->tiers[BAL_TIER_PANIC].n == 0)
    return -EHOSTDOWN;
  s->tier = BAL_TIER_PANIC;
  if ((i = p->ops->select(p, s)) >= 0)
    return i;
  usable = count_untried(p, s, BAL_TIER_PANIC, &only);
  return usable == 1 && s->tried->allow_repeat ? only : -EALREADY;
}

int bal_select(struct bal_pool *p, struct bal_tried *tried, uint64_t key, uint64_t now_ms,
               struct bal_pick *out) {
  struct bal__sel s = {
      .tried = tried, .key = key, .now = now_ms, .pos = tried->pos, .have_pos = tried->n > 0};
  struct bal_server *v;
  int i = -1;

  if (tried->n >= BAL_MAX_TRIES)
    return -EALREADY;
  for (unsigned t = BAL_TIER_PRIMARY; t <= BAL_TIER_BACKUP && i < 0; t++) {
    s.tier = t;
    if (p->tiers[t].n > 0)
      i = p->ops->select(p, &s);
  }
  if (i < 0 && (i = select_fallback(p, &s)) < 0)
    return i;
  v = &p->servers[i];
  if (tried->n == 0)
    tried->pos = s.pos;
  tried->ids[tried->n++] = v->id;
  atomic_fetch_add_explicit(v->active, 1, memory_order_relaxed);
  v->inflight++;
  v->selected++;
  out->id = v->id;
  out->shared = v->active != &v->own_active ? v->active : NULL;
  out->version = p->version;
  out->idx = i;
  return 0;
}

/* Decrements a counter that is above zero (a release without its select must not wrap it). */
static void counter_down(_Atomic uint32_t *c) {
  uint32_t v = atomic_load_explicit(c, memory_order_relaxed);

  while (v > 0 && !atomic_compare_exchange_weak_explicit(c, &v, v - 1, memory_order_relaxed,
                                                         memory_order_relaxed))
    ;
}

int bal_release(struct bal_pool *p, const struct bal_pick *pick, enum bal_outcome outcome,
                uint64_t now_ms) {
  int i = pick->version == p->version ? pick->idx : bal_pool_find(p, pick->id);
  struct bal_server *v;

  if (i < 0 || (unsigned)i >= p->n || p->servers[i].id != pick->id) {
    /* The server left the pool (rebuild); its shared counter still counts this request. */
    if (pick->shared != NULL)
      counter_down(pick->shared);
    return 0;
  }
  v = &p->servers[i];
  counter_down(v->active);
  if (v->inflight > 0)
    v->inflight--;
  if (outcome == BAL_OK) {
    bal_fails_success(&v->fails);
    return 0;
  }
  if (outcome != BAL_FAILED)
    return 0;
  v->failed++;
  return bal_fails_record(&v->fails, p->conf.max_fails, p->conf.fail_timeout_ms, now_ms);
}
