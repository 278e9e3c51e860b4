/* The master's upstream servers: one record per server shared by generations, lists, pushes. */
#include "master.h"

#include "log.h"
#include "shm.h"
#include "srvwire.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- records ---- */

struct userver *servers_find(const struct master *m, const char *upstream, uint64_t id) {
  for (struct userver *u = m->servers; u != NULL; u = u->next)
    if (u->id == id && strcmp(u->upstream, upstream) == 0)
      return u;
  return NULL;
}

/* The remembered state of (upstream, id), taken out of the memo; NULL if none. */
static const struct server_memo *memo_take(struct master *m, const char *upstream, uint64_t id) {
  for (unsigned i = 0; m->memo != NULL && i < SERVER_MEMO; i++) {
    struct server_memo *e = &m->memo[i];
    if (e->id == id && strcmp(e->upstream, upstream) == 0) {
      e->id = 0; /* taken: the record holds it again */
      return e;
    }
  }
  return NULL;
}

/* A record of an address a host name gave is going: what was decided about it is kept. */
static void memo_put(struct master *m, const struct userver *u) {
  struct server_memo *e;

  if (u->host[0] == '\0' ||
      (u->st.admin == BAL_ADMIN_ENABLED && u->st.weight == 0 && u->st.health == BAL_HEALTH_UP))
    return; /* a literal server goes with its config line; nothing to keep for this one */
  if (m->memo == NULL && (m->memo = calloc(SERVER_MEMO, sizeof(*m->memo))) == NULL)
    return;
  e = &m->memo[m->memo_next++ % SERVER_MEMO];
  snprintf(e->upstream, sizeof(e->upstream), "%s", u->upstream);
  e->id = u->id;
  e->weight = u->st.weight;
  e->health = u->st.health;
  e->admin = u->st.admin;
}

/* The record of a server, created up and enabled if new (or as the memo remembers it);
 * referenced. NULL: out of memory. */
static struct userver *userver_ref(struct master *m, const char *upstream,
                                   const struct px_server_spec *spec, const char *host,
                                   uint16_t port) {
  struct userver *u = servers_find(m, upstream, spec->id);
  const struct server_memo *memo;

  if (u != NULL) {
    u->refs++;
    return u;
  }
  if ((u = calloc(1, sizeof(*u))) == NULL || (u->upstream = strdup(upstream)) == NULL) {
    free(u);
    return NULL;
  }
  u->m = m;
  u->id = spec->id;
  u->addr = spec->addr;
  snprintf(u->name, sizeof(u->name), "%s", spec->name);
  snprintf(u->host, sizeof(u->host), "%s", host != NULL ? host : "");
  u->port = port;
  u->refs = 1;
  u->st.id = spec->id;
  u->st.health = BAL_HEALTH_UP;
  u->st.admin = BAL_ADMIN_ENABLED;
  u->chk.health = BAL_HEALTH_UP;
  if ((memo = memo_take(m, upstream, spec->id)) != NULL) {
    u->st.weight = memo->weight;
    u->st.admin = memo->admin;
    u->st.health = u->chk.health = memo->health;
  }
  /* A server that appears while serving (a reload, a DNS change) ramps up (slow_start); those
   * there before the first generation served (its literal servers and its names' first
   * answers) are there from the start. */
  u->st.up_since_ms = m->cur != NULL && m->cur->t_current != 0 ? uv_now(m->loop) : 0;
  u->fresh = 1;
  u->last_change_ms = uv_now(m->loop);
  u->next = m->servers;
  m->servers = u;
  return u;
}

static void userver_unref(struct userver *u) {
  struct userver **pp = &u->m->servers;

  if (--u->refs > 0)
    return;
  while (*pp != NULL && *pp != u)
    pp = &(*pp)->next;
  if (*pp == u)
    *pp = u->next;
  memo_put(u->m, u);
  check_stop(u);
  free(u->upstream);
  free(u);
}

const struct cfg_upstream *servers_upstream_conf(const struct master *m, const char *name) {
  const struct generation *order[2] = {m->starting, m->cur};

  for (size_t i = 0; i < 2; i++)
    if (order[i] != NULL)
      for (size_t k = 0; k < order[i]->cfg->nupstreams; k++)
        if (strcmp(order[i]->cfg->upstreams[k].name, name) == 0)
          return &order[i]->cfg->upstreams[k];
  for (const struct generation *g = m->gens; g != NULL; g = g->next)
    for (size_t k = 0; k < g->cfg->nupstreams; k++)
      if (strcmp(g->cfg->upstreams[k].name, name) == 0)
        return &g->cfg->upstreams[k];
  return NULL;
}

/* ---- a generation's lists ---- */

static struct dnsname *gen_name(const struct generation *g, const char *host) {
  for (unsigned i = 0; i < g->nnames; i++)
    if (strcmp(g->names[i]->host, host) == 0)
      return g->names[i];
  return NULL;
}

/* "ip:port" ("[v6]:port") of an address a host name yielded, with the server's port set. */
static void spec_from_address(const struct cfg_upstream *up, const struct sockaddr_storage *a,
                              uint16_t port, struct px_server_spec *s) {
  char ip[INET6_ADDRSTRLEN];

  memset(s, 0, sizeof(*s));
  s->addr = *a;
  if (a->ss_family == AF_INET6) {
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&s->addr;
    a6->sin6_port = htons(port);
    inet_ntop(AF_INET6, &a6->sin6_addr, ip, sizeof(ip));
    snprintf(s->name, sizeof(s->name), "[%s]:%u", ip, port);
  } else {
    struct sockaddr_in *a4 = (struct sockaddr_in *)&s->addr;
    a4->sin_port = htons(port);
    inet_ntop(AF_INET, &a4->sin_addr, ip, sizeof(ip));
    snprintf(s->name, sizeof(s->name), "%s:%u", ip, port);
  }
  s->id = bal_server_id(up->name, s->name);
}

struct list_builder {
  struct master *m;
  struct generation *g;
  size_t k; /* the upstream's index in g's config */
  int warned_full;
  const struct cfg_upstream *up;
  struct gserver *s;
  unsigned n;
  int full; /* BAL_MAX_SERVERS reached: the rest were left out */
};

static int list_add(struct list_builder *b, const struct px_server_spec *spec,
                    const struct cfg_server *cs) {
  struct userver *u;

  for (unsigned i = 0; i < b->n; i++)
    if (b->s[i].u->id == spec->id)
      return 0; /* the same address twice (a name and a literal, two names): one server */
  if (b->n == BAL_MAX_SERVERS) {
    b->full = 1;
    return 0;
  }
  u = userver_ref(b->m, b->up->name, spec, cs->dns ? cs->addr.host : NULL, cs->addr.port);
  if (u == NULL)
    return UV_ENOMEM;
  /* Its counters' block, before any worker hears of it (a literal server has its own since
   * the generation was laid out). None left: its workers count it privately, out of /stats. */
  if (lbp_shm_server_claim(b->g->shm, (unsigned)b->k, spec->id) < 0 && !b->warned_full) {
    LBP_WARN("upstream %s: no counter block left for %s: not in the statistics", b->up->name,
             spec->name);
    b->warned_full = 1;
  }
  b->s[b->n++] =
      (struct gserver){.u = u, .weight = (uint16_t)cs->weight, .backup = cs->backup != 0};
  return 0;
}

static void list_release(struct gen_upstream *gu) {
  for (unsigned i = 0; i < gu->n; i++)
    userver_unref(gu->s[i].u);
  free(gu->s);
  gu->s = NULL;
  gu->n = 0;
}

/* Builds upstream k's list of generation g from its config and the names' last answers. */
static int list_build(struct generation *g, size_t k, struct gen_upstream *out) {
  const struct cfg_upstream *up = &g->cfg->upstreams[k];
  struct list_builder b = {.m = g->m, .g = g, .k = k, .up = up};
  struct px_server_spec spec;
  int rc = 0;

  memset(out, 0, sizeof(*out));
  if ((b.s = calloc(BAL_MAX_SERVERS, sizeof(*b.s))) == NULL)
    return UV_ENOMEM;
  for (size_t j = 0; j < up->nservers && rc == 0; j++) {
    const struct cfg_server *cs = &up->servers[j];
    const struct dnsname *d;
    if (!cs->dns) {
      if (px_server_spec_literal(up, j, &spec) == 0)
        rc = list_add(&b, &spec, cs);
      continue;
    }
    out->has_names = 1;
    if ((d = gen_name(g, cs->addr.host)) == NULL)
      continue;
    for (unsigned a = 0; a < d->naddrs && rc == 0; a++) {
      spec_from_address(up, &d->addrs[a], cs->addr.port, &spec);
      rc = list_add(&b, &spec, cs);
    }
  }
  out->s = b.s;
  out->n = b.n;
  if (rc != 0) {
    list_release(out);
    return rc;
  }
  if (b.full)
    LBP_WARN("upstream %s: more than %d servers: the rest are left out", up->name, BAL_MAX_SERVERS);
  return 0;
}

static int list_same(const struct gen_upstream *a, const struct gen_upstream *b) {
  if (a->n != b->n)
    return 0;
  for (unsigned i = 0; i < a->n; i++)
    if (a->s[i].u != b->s[i].u || a->s[i].weight != b->s[i].weight ||
        a->s[i].backup != b->s[i].backup)
      return 0;
  return 1;
}

static int ref_names(struct generation *g) {
  const struct lbp_config *cfg = g->cfg;
  size_t cap = 0;

  for (size_t k = 0; k < cfg->nupstreams; k++)
    cap += cfg->upstreams[k].nservers;
  if (cap == 0 || (g->names = calloc(cap, sizeof(*g->names))) == NULL)
    return cap == 0 ? 0 : UV_ENOMEM;
  for (size_t k = 0; k < cfg->nupstreams; k++)
    for (size_t j = 0; j < cfg->upstreams[k].nservers; j++) {
      const struct cfg_server *cs = &cfg->upstreams[k].servers[j];
      struct dnsname *d;
      if (!cs->dns || gen_name(g, cs->addr.host) != NULL)
        continue;
      if ((d = dns_ref(g->m, cs->addr.host)) == NULL)
        return UV_ENOMEM;
      g->names[g->nnames++] = d;
    }
  return 0;
}

int servers_gen_init(struct generation *g) {
  int rc;

  if ((g->ups = calloc(g->cfg->nupstreams + 1, sizeof(*g->ups))) == NULL)
    return UV_ENOMEM;
  if ((rc = ref_names(g)) != 0)
    return rc; /* servers_gen_free releases what was taken */
  for (size_t k = 0; k < g->cfg->nupstreams; k++)
    if ((rc = list_build(g, k, &g->ups[k])) != 0)
      return rc;
  return 0;
}

void servers_gen_free(struct generation *g) {
  if (g->ups != NULL)
    for (size_t k = 0; k < g->cfg->nupstreams; k++)
      list_release(&g->ups[k]);
  free(g->ups);
  g->ups = NULL;
  for (unsigned i = 0; i < g->nnames; i++)
    dns_unref(g->names[i]);
  free(g->names);
  g->names = NULL;
  g->nnames = 0;
}

int servers_settled(const struct generation *g) {
  for (unsigned i = 0; i < g->nnames; i++)
    if (!g->names[i]->answered)
      return 0;
  return 1;
}

/* ---- pushing to workers ---- */

/* Workers that hear about servers: their config was sent, and they are not being stopped. */
static int listening(const struct worker *w) {
  return w->ch_open && !w->exited &&
         (w->state == W_ONLINE || w->state == W_READY || w->state == W_DRAINING);
}

static void send_list(struct worker *w, size_t k) {
  const struct gen_upstream *gu = &w->gen->ups[k];
  unsigned char *p = malloc(SRVWIRE_SERVERS_MAX), *q = p + 4;
  struct px_server_spec spec;

  if (p == NULL) {
    LBP_ERROR("out of memory for a server list: stopping worker %u", w->slot->id + 1);
    uv_process_kill(&w->proc, SIGKILL);
    return;
  }
  ipc_put_u16(p, (uint16_t)k);
  ipc_put_u16(p + 2, (uint16_t)gu->n);
  for (unsigned i = 0; i < gu->n; i++) {
    const struct userver *u = gu->s[i].u;
    memset(&spec, 0, sizeof(spec));
    spec.id = u->id;
    spec.addr = u->addr;
    memcpy(spec.name, u->name, sizeof(spec.name));
    spec.weight = gu->s[i].weight;
    spec.backup = gu->s[i].backup;
    q += srvwire_put_spec(q, &spec);
  }
  ipc_send(&w->ch, IPC_SERVERS, p, (uint32_t)(q - p));
  free(p);
}

void servers_send_worker(struct worker *w) {
  struct generation *g = w->gen;
  unsigned char *p, *q;
  size_t n = 0;

  for (size_t k = 0; k < g->cfg->nupstreams; k++)
    if (g->ups[k].has_names)
      send_list(w, k);
  for (size_t k = 0; k < g->cfg->nupstreams; k++)
    n += g->ups[k].n;
  if (n == 0 || (p = q = malloc(n * SRVWIRE_STATE_LEN)) == NULL)
    return; /* without states a worker starts with every server up: still serving */
  for (size_t k = 0; k < g->cfg->nupstreams; k++)
    for (unsigned i = 0; i < g->ups[k].n; i++, q += SRVWIRE_STATE_LEN)
      srvwire_put_state(q, &g->ups[k].s[i].u->st);
  ipc_send(&w->ch, IPC_STATES, p, (uint32_t)(q - p));
  free(p);
}

void servers_state_changed(struct userver *u, const char *why) {
  struct master *m = u->m;
  unsigned char rec[SRVWIRE_STATE_LEN];

  u->last_change_ms = uv_now(m->loop);
  if (why != NULL)
    event_add(m, EV_SERVER, 0, (long)getpid(), m->cur != NULL ? m->cur->id : 0,
              "upstream %s server %s: %s", u->upstream, u->name, why);
  srvwire_put_state(rec, &u->st);
  for (struct worker *w = m->workers; w != NULL; w = w->next)
    if (listening(w))
      ipc_send(&w->ch, IPC_STATES, rec, sizeof(rec));
}

void servers_name_changed(struct master *m, struct dnsname *d) {
  for (struct generation *g = m->gens; g != NULL; g = g->next) {
    if (gen_name(g, d->host) == NULL)
      continue;
    for (size_t k = 0; k < g->cfg->nupstreams; k++) {
      struct gen_upstream fresh;
      if (!g->ups[k].has_names || list_build(g, k, &fresh) != 0)
        continue; /* out of memory: the old list stays */
      if (list_same(&fresh, &g->ups[k])) {
        list_release(&fresh);
        continue;
      }
      list_release(&g->ups[k]);
      g->ups[k] = fresh;
      for (struct worker *w = m->workers; w != NULL; w = w->next)
        if (w->gen == g && listening(w))
          send_list(w, k);
    }
  }
  /* The new addresses' states (their slow-start origin, a remembered drain) follow their
   * SERVERS: a worker applies states by id, to servers it has. */
  for (struct userver *u = m->servers; u != NULL; u = u->next)
    if (u->fresh) {
      u->fresh = 0;
      servers_state_changed(u, NULL);
    }
  servers_sync(m);
}

/* ---- passive failures ---- */

void servers_on_failing(struct worker *w, const char *payload, uint32_t len) {
  struct master *m = w->m;
  struct bal_server_state st;
  char why[160];

  if (len != SRVWIRE_STATE_LEN)
    return;
  srvwire_get_state(payload, &st);
  for (struct userver *u = m->servers; u != NULL; u = u->next) {
    uint64_t now = uv_now(m->loop);
    if (u->id != st.id)
      continue;
    u->passive_fails++;
    /* Two workers seeing the same failures report about the same time: one push is enough. */
    if (st.failing_until_ms <= u->st.failing_until_ms + 100 || st.failing_until_ms <= now)
      return;
    u->st.failing_until_ms = st.failing_until_ms;
    snprintf(why, sizeof(why), "failing (worker %u saw max_fails failures): skipped for %llu ms",
             w->slot->id + 1, (unsigned long long)(st.failing_until_ms - now));
    servers_state_changed(u, why);
    return;
  }
}

/* ---- generations changed ---- */

void servers_sync(struct master *m) {
  for (struct userver *u = m->servers; u != NULL; u = u->next)
    check_sync(u);
  dns_sync(m);
}

void servers_close_all(struct master *m) {
  for (struct userver *u = m->servers; u != NULL; u = u->next)
    check_stop(u);
  for (struct dnsname *d = m->names; d != NULL; d = d->next)
    d->closing = 1;
  dns_sync(m);
}
