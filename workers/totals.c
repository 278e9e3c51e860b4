/* The master's totals: every live generation's counters read from its shared memory, plus what
 * the generations already gone left behind (kept per slot and per server id). */

/*
 * Why totals never go backwards (docs/ARCHITECTURE.md, "Counters"):
 *
 * 1. A slot's block belongs to the slot within its generation, not to a process: a worker
 *    restarted in the slot goes on counting where its predecessor stopped.
 * 2. A reload starts a generation with fresh shared memory while the old one drains; both are
 *    live and both are read, so nothing is lost while they overlap.
 * 3. When a generation goes (its last worker gone, gen_destroy), totals_fold adds its final
 *    counters into the master's base, per slot index and per server id. Every output is base
 *    plus the live generations, so a counter can only grow. Gauges (in-flight, open
 *    connections) are read from live generations only.
 */
#include "totals.h"

#include "balancer.h"
#include "master.h"
#include "proxy.h"
#include "shm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct base_server {
  uint64_t id;
  char upstream[128], address[128];
  uint64_t requests, errors, last_failure_ms;
};

struct totals {
  struct totals_slot *slots;
  unsigned nslots;
  struct base_server *servers;
  unsigned nservers, cap;
};

static uint64_t load64(const _Atomic uint64_t *p) {
  return atomic_load_explicit(p, memory_order_relaxed);
}

/* ---- slots ---- */

static void slot_add(struct totals_slot *to, const struct totals_slot *from, int gauges) {
  for (unsigned i = 0; i < PX_ST_COUNT; i++)
    to->c[i] += from->c[i];
  for (unsigned h = 0; h < 2; h++) {
    for (unsigned b = 0; b < PX_HIST_BUCKETS; b++)
      to->hist[h][b] += from->hist[h][b];
    to->hist_sum_us[h] += from->hist_sum_us[h];
  }
  if (gauges)
    to->active += from->active;
}

static void slot_read(struct totals_slot *to, const struct px_stats *st) {
  const struct px_hist *hs[2] = {&st->request_time, &st->upstream_time};

  memset(to, 0, sizeof(*to));
  for (unsigned i = 0; i < PX_ST_COUNT; i++)
    to->c[i] = load64(&st->c[i]);
  for (unsigned h = 0; h < 2; h++) {
    for (unsigned b = 0; b < PX_HIST_BUCKETS; b++)
      to->hist[h][b] = load64(&hs[h]->bucket[b]);
    to->hist_sum_us[h] = load64(&hs[h]->sum_us);
  }
  to->active = load64(&st->active);
}

/* A live process serves slot i of g (its gauge means something). */
static int slot_alive(const struct generation *g, unsigned i) {
  const struct worker *w = i < g->nslots ? g->by_slot[i] : NULL;
  return w != NULL && w->proc_open && !w->exited;
}

/* ---- servers ---- */

/* The servers of a snapshot, with an index by id (open addressing, ids are never 0). */
struct srvset {
  struct totals_server *v;
  unsigned n, cap;
  unsigned *idx; /* position + 1, or 0 */
  unsigned icap; /* a power of two, at least twice cap */
};

static int srvset_grow(struct srvset *s) {
  unsigned cap = s->cap ? s->cap * 2 : 64, icap = cap * 2;
  struct totals_server *v = realloc(s->v, cap * sizeof(*v));
  unsigned *idx = calloc(icap, sizeof(*idx));

  if (v == NULL || idx == NULL) {
    if (v != NULL)
      s->v = v;
    free(idx);
    return UV_ENOMEM;
  }
  s->v = v;
  s->cap = cap;
  free(s->idx);
  s->idx = idx;
  s->icap = icap;
  for (unsigned i = 0; i < s->n; i++) {
    unsigned h = (unsigned)(s->v[i].id * 0x9e3779b97f4a7c15ull >> 32) & (icap - 1);
    while (idx[h] != 0)
      h = (h + 1) & (icap - 1);
    idx[h] = i + 1;
  }
  return 0;
}

/* The entry for id, created with these names if new; NULL when out of memory. */
static struct totals_server *srvset_get(struct srvset *s, uint64_t id, const char *up,
                                        const char *addr) {
  unsigned h;
  struct totals_server *e;

  if (s->n == s->cap && srvset_grow(s) != 0)
    return NULL;
  for (h = (unsigned)(id * 0x9e3779b97f4a7c15ull >> 32) & (s->icap - 1); s->idx[h] != 0;
       h = (h + 1) & (s->icap - 1))
    if (s->v[s->idx[h] - 1].id == id)
      return &s->v[s->idx[h] - 1];
  e = &s->v[s->n++];
  s->idx[h] = s->n;
  memset(e, 0, sizeof(*e));
  e->id = id;
  snprintf(e->upstream, sizeof(e->upstream), "%s", up);
  snprintf(e->address, sizeof(e->address), "%.127s", addr);
  return e;
}

/* The name of server `id` of upstream `up`: the master's record's ("host:port" or the address
 * a host name resolved to), else its id (a block outlives the server's last generation). */
static const struct userver *block_name(const struct master *m, const char *up, uint64_t id,
                                        char *out, size_t cap) {
  const struct userver *us = servers_find(m, up, id);

  if (us != NULL)
    snprintf(out, cap, "%s", us->name);
  else
    snprintf(out, cap, "id:%016llx", (unsigned long long)id);
  return us;
}

/* Adds g's server blocks; `newest`: its health and admin states win. */
static int servers_add(struct srvset *s, const struct generation *g, uint64_t now, int newest) {
  char name[64];

  for (unsigned u = 0; u < lbp_shm_nupstreams(g->shm); u++) {
    const char *upname = g->cfg->upstreams[u].name;
    unsigned n;
    struct px_server_stats *b = lbp_shm_servers(g->shm, u, &n);
    for (unsigned k = 0; k < n; k++) {
      uint64_t id = load64(&b[k].id), lf;
      struct totals_server *e;
      if (id == 0)
        continue;
      const struct userver *us = block_name(g->m, upname, id, name, sizeof(name));
      if ((e = srvset_get(s, id, upname, name)) == NULL)
        return UV_ENOMEM;
      e->requests += load64(&b[k].requests);
      e->errors += load64(&b[k].errors);
      lf = load64(&b[k].last_failure_ms);
      e->last_failure_ms = lf > e->last_failure_ms ? lf : e->last_failure_ms;
      e->active += atomic_load_explicit(&b[k].active, memory_order_relaxed);
      e->failing |= load64(&b[k].failing_until_ms) > now;
      if (us != NULL && (newest || !e->live)) {
        e->health = us->st.health;
        e->admin = us->st.admin;
        e->weight = us->st.weight;
        for (unsigned i = 0; i < g->ups[u].n && e->weight == 0; i++)
          if (g->ups[u].s[i].u == us)
            e->weight = g->ups[u].s[i].weight;
        e->failing |= us->st.failing_until_ms > now;
      }
      e->live = 1;
    }
  }
  return 0;
}

static int servers_add_base(struct srvset *s, const struct totals *t) {
  for (unsigned i = 0; t != NULL && i < t->nservers; i++) {
    const struct base_server *b = &t->servers[i];
    struct totals_server *e = srvset_get(s, b->id, b->upstream, b->address);
    if (e == NULL)
      return UV_ENOMEM;
    e->requests += b->requests;
    e->errors += b->errors;
    e->last_failure_ms =
        b->last_failure_ms > e->last_failure_ms ? b->last_failure_ms : e->last_failure_ms;
  }
  return 0;
}

/* ---- the snapshot ---- */

static int snap_slots(struct master *m, struct totals_snap *out) {
  const struct totals *t = m->totals;
  unsigned n = t != NULL ? t->nslots : 0;
  struct totals_slot one;

  for (const struct generation *g = m->gens; g != NULL; g = g->next)
    if (g->shm != NULL && lbp_shm_nslots(g->shm) > n)
      n = lbp_shm_nslots(g->shm);
  if (n > 0 && (out->slots = calloc(n, sizeof(*out->slots))) == NULL)
    return UV_ENOMEM;
  out->nslots = n;
  for (unsigned i = 0; t != NULL && i < t->nslots; i++)
    slot_add(&out->slots[i], &t->slots[i], 0);
  for (const struct generation *g = m->gens; g != NULL; g = g->next) {
    for (unsigned i = 0; g->shm != NULL && i < lbp_shm_nslots(g->shm); i++) {
      slot_read(&one, lbp_shm_worker(g->shm, i));
      slot_add(&out->slots[i], &one, slot_alive(g, i));
    }
  }
  for (unsigned i = 0; i < n; i++)
    slot_add(&out->total, &out->slots[i], 1);
  return 0;
}

int totals_snapshot(struct master *m, struct totals_snap *out) {
  struct srvset s = {0};
  uint64_t now = uv_now(m->loop);
  int rc;

  memset(out, 0, sizeof(*out));
  if ((rc = snap_slots(m, out)) != 0)
    return rc;
  /* The current generation first, so the servers come in its config order. */
  rc = m->cur != NULL && m->cur->shm != NULL ? servers_add(&s, m->cur, now, 1) : 0;
  for (const struct generation *g = m->gens; rc == 0 && g != NULL; g = g->next)
    if (g != m->cur && g->shm != NULL)
      rc = servers_add(&s, g, now, m->cur == NULL);
  if (rc == 0)
    rc = servers_add_base(&s, m->totals);
  free(s.idx);
  out->servers = s.v;
  out->nservers = s.n;
  if (rc != 0)
    totals_snap_free(out);
  return rc;
}

void totals_snap_free(struct totals_snap *s) {
  free(s->slots);
  free(s->servers);
  memset(s, 0, sizeof(*s));
}

/* ---- retiring a generation ---- */

static struct totals *base_of(struct master *m) {
  if (m->totals == NULL)
    m->totals = calloc(1, sizeof(*m->totals));
  return m->totals;
}

static struct base_server *base_server(struct totals *t, uint64_t id) {
  for (unsigned i = 0; i < t->nservers; i++)
    if (t->servers[i].id == id)
      return &t->servers[i];
  if (t->nservers == t->cap) {
    unsigned cap = t->cap ? t->cap * 2 : 16;
    struct base_server *v = realloc(t->servers, cap * sizeof(*v));
    if (v == NULL)
      return NULL;
    t->servers = v;
    t->cap = cap;
  }
  memset(&t->servers[t->nservers], 0, sizeof(t->servers[0]));
  t->servers[t->nservers].id = id;
  return &t->servers[t->nservers++];
}

static void fold_slots(struct totals *t, const struct generation *g) {
  unsigned n = lbp_shm_nslots(g->shm);
  struct totals_slot one;

  if (n > t->nslots) {
    struct totals_slot *v = realloc(t->slots, n * sizeof(*v));
    if (v == NULL)
      return; /* out of memory: these counts are lost, nothing else */
    memset(v + t->nslots, 0, (n - t->nslots) * sizeof(*v));
    t->slots = v;
    t->nslots = n;
  }
  for (unsigned i = 0; i < n; i++) {
    slot_read(&one, lbp_shm_worker(g->shm, i));
    slot_add(&t->slots[i], &one, 0);
  }
}

void totals_fold(struct master *m, const struct generation *g) {
  struct totals *t;
  char name[64];

  if (g->shm == NULL || (t = base_of(m)) == NULL)
    return;
  fold_slots(t, g);
  for (unsigned u = 0; u < lbp_shm_nupstreams(g->shm); u++) {
    unsigned n;
    struct px_server_stats *b = lbp_shm_servers(g->shm, u, &n);
    for (unsigned k = 0; k < n; k++) {
      uint64_t id = load64(&b[k].id), lf = load64(&b[k].last_failure_ms);
      struct base_server *e;
      if (id == 0 || (e = base_server(t, id)) == NULL)
        continue;
      if (block_name(m, g->cfg->upstreams[u].name, id, name, sizeof(name)) != NULL ||
          e->address[0] == '\0')
        snprintf(e->address, sizeof(e->address), "%s", name);
      snprintf(e->upstream, sizeof(e->upstream), "%s", g->cfg->upstreams[u].name);
      e->requests += load64(&b[k].requests);
      e->errors += load64(&b[k].errors);
      e->last_failure_ms = lf > e->last_failure_ms ? lf : e->last_failure_ms;
    }
  }
}

void totals_worker_gone(struct master *m, const struct worker *w) {
  const struct generation *g = w->gen;

  if (g->shm == NULL)
    return;
  for (const struct worker *o = m->workers; o != NULL; o = o->next)
    if (o != w && o->gen == g && o->slot == w->slot && !o->exited)
      return; /* its replacement writes the slot's shares now */
  lbp_shm_slot_lost(g->shm, w->slot->id);
}

void totals_free(struct master *m) {
  if (m->totals == NULL)
    return;
  free(m->totals->slots);
  free(m->totals->servers);
  free(m->totals);
  m->totals = NULL;
}
