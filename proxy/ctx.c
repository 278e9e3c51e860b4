/* The per-worker data plane context: built from the config (the one place proxy/ reads it),
 * closed, drained; its pools, listeners, buffer pool and counters. */
#include "client.h"

#include "log.h"
#include "request.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- from the config ---- */

static void settings_from_config(struct px_settings *s, const struct lbp_config *cfg) {
  s->client_header_ms = cfg->timeouts.client_header_ms;
  s->client_idle_ms = cfg->timeouts.client_idle_ms;
  s->client_send_ms = cfg->timeouts.client_send_ms;
  s->tunnel_idle_ms = cfg->timeouts.tunnel_idle_ms;
  s->tcp_idle_ms = cfg->timeouts.tcp_idle_ms;
  s->max_header_bytes = cfg->limits.max_header_bytes;
  s->max_body_bytes = cfg->limits.max_body_bytes;
  s->max_connections = cfg->limits.max_connections;
  s->forwarded = (uint8_t)cfg->forwarded;
}

uint64_t px_server_ident(const struct cfg_upstream *up, size_t k, char *name, size_t cap) {
  const struct cfg_addr *a = &up->servers[k].addr;

  if (strchr(a->host, ':') != NULL)
    snprintf(name, cap, "[%.256s]:%u", a->host, a->port);
  else
    snprintf(name, cap, "%.256s:%u", a->host, a->port);
  return bal_server_id(up->name, name);
}

static void pools_free(struct px_pool *pools, size_t n) {
  for (size_t i = 0; i < n; i++) {
    bal_pool_free(&pools[i].bal);
    free(pools[i].servers);
    free(pools[i].sst);
    free(pools[i].own_sst);
    free(pools[i].own_mine);
  }
  free(pools);
}

/* Where each server's counters go: the generation's block for it, or one of the pool's own. */
static int pool_stats(struct px_pool *p, const struct px_gen *gen, size_t upstream,
                      const struct bal_server_conf *sc) {
  size_t own = p->nservers * sizeof(*p->own_sst); /* a multiple of its 64-byte alignment */

  p->sst = calloc(p->nservers, sizeof(*p->sst));
  p->own_sst = aligned_alloc(_Alignof(struct px_server_stats), own);
  p->own_mine = calloc(p->nservers, sizeof(*p->own_mine));
  if (p->sst == NULL || p->own_sst == NULL || p->own_mine == NULL)
    return UV_ENOMEM;
  memset(p->own_sst, 0, own);
  for (unsigned k = 0; k < p->nservers; k++) {
    if (gen->server_lookup == NULL ||
        gen->server_lookup(gen->lookup_arg, upstream, sc[k].id, &p->sst[k]) != 0) {
      p->sst[k].st = &p->own_sst[k];
      p->sst[k].mine = &p->own_mine[k];
    }
  }
  return 0;
}

/* One pool: its servers (keep-alive settings from the upstream), its balancer, its retries,
 * its counters. */
static int pool_init(struct px_pool *p, const struct px_gen *gen, size_t i) {
  const struct cfg_upstream *up = &gen->cfg->upstreams[i];
  struct bal_server_conf sc[BAL_MAX_SERVERS];
  struct bal_conf bc = {.panic = up->panic,
                        .slow_start_ms = up->slow_start_ms,
                        .max_fails = up->max_fails,
                        .fail_timeout_ms = up->fail_timeout_ms};
  const struct bal_ops *ops = bal_find(cfg_balance_name(up->balance));
  char name[300];
  int rc;

  if (up->nservers == 0 || up->nservers > BAL_MAX_SERVERS || ops == NULL)
    return UV_EINVAL;
  p->name = up->name;
  p->nservers = (unsigned)up->nservers;
  p->retries = up->retries;
  p->retry_on = up->retry_on;
  p->retry_budget_pct = up->retry_budget_pct;
  p->hash_key = up->hash_key;
  p->hash_header = up->hash_header;
  if ((p->servers = calloc(up->nservers, sizeof(*p->servers))) == NULL)
    return UV_ENOMEM;
  for (size_t k = 0; k < up->nservers; k++) {
    sc[k] = (struct bal_server_conf){.id = px_server_ident(up, k, name, sizeof(name)),
                                     .weight = up->servers[k].weight,
                                     .backup = up->servers[k].backup};
    px_server_init(&p->servers[k], (const struct sockaddr *)&up->servers[k].addr.sa, name,
                   up->keepalive, up->keepalive_timeout_ms);
  }
  if ((rc = pool_stats(p, gen, i, sc)) == 0) {
    /* The in-flight counts every worker sees (least_conn, random2), when the generation
     * provides them. */
    for (unsigned k = 0; k < p->nservers; k++)
      sc[k].shared = p->sst[k].st != &p->own_sst[k] ? &p->sst[k].st->active : NULL;
    rc = bal_pool_init(&p->bal, ops, &bc, sc, p->nservers,
                       gen->rr_counters ? &gen->rr_counters[i] : NULL);
  }
  if (rc != 0) {
    free(p->servers);
    free(p->sst);
    free(p->own_sst);
    free(p->own_mine);
    p->servers = NULL;
    p->sst = NULL;
    p->own_sst = NULL;
    p->own_mine = NULL;
  }
  return rc;
}

static int pools_init(struct px_ctx *ctx, const struct px_gen *gen) {
  const struct lbp_config *cfg = gen->cfg;
  struct px_pool *pools = calloc(cfg->nupstreams, sizeof(*pools));
  size_t i;
  int rc = 0;

  if (pools == NULL)
    return UV_ENOMEM;
  for (i = 0; i < cfg->nupstreams; i++)
    if ((rc = pool_init(&pools[i], gen, i)) != 0)
      goto fail_pool;
  ctx->pools = pools;
  ctx->npools = cfg->nupstreams;
  return 0;

fail_pool:
  pools_free(pools, i);
  return rc;
}

static void listeners_free(struct px_listener *ls, size_t n) {
  for (size_t i = 0; i < n; i++)
    free(ls[i].routes);
  free(ls);
}

static int listener_init(struct px_ctx *ctx, struct px_listener *l, const struct cfg_listener *cl) {
  l->mode = cl->mode;
  if (cl->mode == CFG_MODE_TCP) {
    l->pool = &ctx->pools[cl->upstream];
    return 0;
  }
  l->cfg_routes = cl->routes;
  l->nroutes = cl->nroutes;
  if (cl->nroutes == 0)
    return 0;
  if ((l->routes = calloc(cl->nroutes, sizeof(*l->routes))) == NULL)
    return UV_ENOMEM;
  for (size_t i = 0; i < cl->nroutes; i++) {
    const struct cfg_route *cr = &cl->routes[i];
    struct px_route *r = &l->routes[i];
    r->pool = &ctx->pools[cr->upstream];
    r->set_host = cr->set_host;
    r->set_host_len = cr->set_host ? (uint32_t)strlen(cr->set_host) : 0;
    r->strip = cr->strip_prefix && cr->path != NULL ? (uint32_t)strlen(cr->path) : 0;
  }
  return 0;
}

static int listeners_init(struct px_ctx *ctx, const struct lbp_config *cfg) {
  struct px_listener *ls = calloc(cfg->nlisteners ? cfg->nlisteners : 1, sizeof(*ls));
  size_t i;
  int rc = 0;

  if (ls == NULL)
    return UV_ENOMEM;
  for (i = 0; i < cfg->nlisteners; i++)
    if ((rc = listener_init(ctx, &ls[i], &cfg->listeners[i])) != 0)
      goto fail_listener;
  ctx->listeners = ls;
  ctx->nlisteners = cfg->nlisteners;
  return 0;

fail_listener:
  listeners_free(ls, i + 1);
  return rc;
}

/* ---- lifetime ---- */

static void ctx_free(struct px_ctx *ctx) {
  void (*done)(void *) = ctx->done;
  void *arg = ctx->done_arg;

  while (ctx->free_reqs != NULL) {
    struct px_request *r = ctx->free_reqs;
    ctx->free_reqs = r->next_free;
    free(r);
  }
  px_bufpool_clear(&ctx->bufs);
  listeners_free(ctx->listeners, ctx->nlisteners);
  pools_free(ctx->pools, ctx->npools);
  cfg_free(ctx->gen.cfg); /* the context owns its generation's config */
  free(ctx);
  if (done != NULL)
    done(arg);
}

static void up_gone(struct px_upenv *env) {
  px__ctx_check_empty(env->data);
}

/* The X-Lbproxy-Worker line of debug_header: true. */
static void debug_line(struct px_ctx *ctx, const struct px_gen *gen) {
  int n = snprintf(ctx->debug_hdr, sizeof(ctx->debug_hdr),
                   "X-Lbproxy-Worker: slot=%u pid=%ld gen=%u\r\n", gen->slot + 1, (long)getpid(),
                   gen->id);
  ctx->debug_len = n > 0 && (size_t)n < sizeof(ctx->debug_hdr) ? (unsigned)n : 0;
}

int px_ctx_new(uv_loop_t *loop, const struct px_gen *gen, struct px_ctx **out) {
  struct px_ctx *ctx = calloc(1, sizeof(*ctx));
  const struct lbp_config *cfg = gen->cfg;
  size_t bufsize = PX_BUF_MIN;
  int rc;

  if (ctx == NULL)
    return UV_ENOMEM;
  ctx->loop = loop;
  ctx->gen = *gen;
  ctx->st = gen->stats != NULL ? gen->stats : &ctx->own_stats;
  atomic_store_explicit(&ctx->st->active, 0, memory_order_relaxed); /* a new process: none yet */
  settings_from_config(&ctx->set, cfg);
  if (cfg->debug_header)
    debug_line(ctx, gen);
  /* A request head must fit in one buffer, with room to spare for the line that overflows. */
  if (cfg->limits.max_header_bytes + 1024 > bufsize)
    bufsize = cfg->limits.max_header_bytes + 1024;
  px_bufpool_init(&ctx->bufs, bufsize, PX_BUF_FREE_MAX);
  px_upenv_init(&ctx->up, loop, &ctx->bufs, cfg->timeouts.connect_ms,
                cfg->timeouts.upstream_response_ms);
  ctx->up.gone = up_gone;
  ctx->up.data = ctx;
  px_list_init(&ctx->clients);
  ctx->release = ctx_free;
  if ((rc = pools_init(ctx, gen)) != 0)
    goto fail_pools;
  if ((rc = listeners_init(ctx, cfg)) != 0)
    goto fail_listeners;
  *out = ctx;
  return 0;

fail_listeners:
  pools_free(ctx->pools, ctx->npools);
fail_pools:
  free(ctx);
  return rc;
}

void px_ctx_close(struct px_ctx *ctx, void (*done)(void *arg), void *arg) {
  ctx->closing = 1;
  ctx->done = done;
  ctx->done_arg = arg;
  /* Clients first: a tunnel gives its streams back before any of them closes. */
  px__client_close_all(ctx);
  px_upenv_close_all(&ctx->up);
  px__ctx_check_empty(ctx);
}

void px_ctx_drain(struct px_ctx *ctx, px_handover_fn fn, void *arg) {
  if (ctx->draining || ctx->closing)
    return;
  ctx->draining = 1;
  ctx->handover = fn;
  ctx->handover_arg = arg;
  px__client_drain_all(ctx);
}

int px_ctx_full(const struct px_ctx *ctx) {
  return ctx->full;
}

void px_ctx_on_room(struct px_ctx *ctx, void (*room)(void *arg), void *arg) {
  ctx->room_cb = room;
  ctx->room_arg = arg;
}

void px_ctx_on_request(struct px_ctx *ctx, px_request_log_fn fn, void *arg) {
  ctx->log_fn = fn;
  ctx->log_arg = arg;
}

const struct px_counters *px_ctx_counters(const struct px_ctx *ctx) {
  return &ctx->counters;
}

void px__ctx_count_request(struct px_ctx *ctx, const struct px_request_log *l) {
  struct px_stats *st = ctx->st;
  int status = l->status != 0 ? l->status : 499; /* no answer: the client left first */
  unsigned cls = status >= 100 && status < 600 ? (unsigned)status / 100 - 1 : 4;

  px_stat_add(&st->c[PX_ST_REQUESTS], 1);
  px_stat_add(&st->c[PX_ST_STATUS_1XX + cls], 1);
  px_stat_add(&st->c[PX_ST_BYTES_IN], l->bytes_in);
  px_stat_add(&st->c[PX_ST_BYTES_OUT], l->bytes_out);
  px_hist_add(&st->request_time, l->time_us);
  if (l->upstream_status != 0)
    px_hist_add(&st->upstream_time, l->upstream_time_us);
}
