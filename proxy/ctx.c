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

/* "host:port", or "[host]:port" for an IPv6 address. */
static void addr_name(const struct cfg_addr *a, char *out, size_t cap) {
  if (strchr(a->host, ':') != NULL)
    snprintf(out, cap, "[%.*s]:%u", (int)(cap - 10), a->host, a->port);
  else
    snprintf(out, cap, "%.*s:%u", (int)(cap - 8), a->host, a->port);
}

int px_server_spec_literal(const struct cfg_upstream *up, size_t k, struct px_server_spec *out) {
  const struct cfg_server *s = &up->servers[k];

  if (s->dns)
    return UV_EAGAIN; /* a host name: the master resolves it and sends its addresses */
  memset(out, 0, sizeof(*out));
  addr_name(&s->addr, out->name, sizeof(out->name));
  out->id = bal_server_id(up->name, out->name);
  memcpy(&out->addr, &s->addr.sa, sizeof(out->addr));
  out->weight = (uint16_t)s->weight;
  out->backup = (uint8_t)(s->backup != 0);
  return 0;
}

static void pools_free(struct px_pool *pools, size_t n) {
  for (size_t i = 0; i < n; i++)
    px_pool_free(&pools[i]);
  free(pools);
}

/* The specs of the upstream's servers written as IP addresses (names come later, from the
 * master, through px_ctx_set_servers); their count. */
static unsigned literal_specs(const struct cfg_upstream *up, struct px_server_spec *specs) {
  unsigned n = 0;

  for (size_t k = 0; k < up->nservers && n < BAL_MAX_SERVERS; k++)
    if (px_server_spec_literal(up, k, &specs[n]) == 0)
      n++;
  return n;
}

/* One pool: its balancer, its literal servers (keep-alive settings from the upstream), its
 * retries. */
static int pool_init(struct px_ctx *ctx, struct px_pool *p, const struct px_gen *gen, size_t i) {
  const struct cfg_upstream *up = &gen->cfg->upstreams[i];
  _Atomic uint64_t *counter = gen->rr_counters != NULL ? &gen->rr_counters[i] : NULL;
  struct px_server_spec specs[BAL_MAX_SERVERS];
  struct bal_conf bc = {.panic = up->panic,
                        .slow_start_ms = up->slow_start_ms,
                        .max_fails = up->max_fails,
                        .fail_timeout_ms = up->fail_timeout_ms};
  const struct bal_ops *ops = bal_find(cfg_balance_name(up->balance));
  int rc;

  if (up->nservers > BAL_MAX_SERVERS || ops == NULL)
    return UV_EINVAL;
  p->name = up->name;
  p->index = i;
  p->ctx = ctx;
  p->max_idle = up->keepalive;
  p->idle_ms = up->keepalive_timeout_ms;
  p->retries = up->retries;
  p->retry_on = up->retry_on;
  p->retry_budget_pct = up->retry_budget_pct;
  p->hash_key = up->hash_key;
  p->hash_header = up->hash_header;
  if ((rc = bal_pool_init(&p->bal, ops, &bc, NULL, 0, counter)) != 0)
    return rc;
  if ((rc = px_pool_set_servers(p, specs, literal_specs(up, specs))) != 0)
    px_pool_free(p);
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
    if ((rc = pool_init(ctx, &pools[i], gen, i)) != 0)
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

unsigned px_ctx_shed(struct px_ctx *ctx, unsigned permille, px_handover_fn fn, void *arg) {
  if (ctx->draining || ctx->closing || fn == NULL)
    return 0;
  /* Where shed connections go; a drain later sets its own (NULL for a graceful stop). */
  ctx->handover = fn;
  ctx->handover_arg = arg;
  return px__client_shed(ctx, permille > 1000 ? 1000 : permille);
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

/* ---- servers and their states, from the master ---- */

int px_ctx_set_servers(struct px_ctx *ctx, size_t upstream, const struct px_server_spec *servers,
                       unsigned n) {
  if (upstream >= ctx->npools)
    return UV_EINVAL;
  return px_pool_set_servers(&ctx->pools[upstream], servers, n);
}

void px_ctx_apply_states(struct px_ctx *ctx, const struct bal_server_state *states, size_t n) {
  uint64_t now = uv_now(ctx->loop);

  /* Ids hash their upstream's name: each record matches in one pool at most. */
  for (size_t i = 0; i < ctx->npools; i++)
    if (bal_pool_apply(&ctx->pools[i].bal, states, n, now) < 0)
      LBP_WARN("upstream %s: out of memory applying server states: selection is less even "
               "until the next change",
               ctx->pools[i].name);
}

void px_ctx_on_failing(struct px_ctx *ctx, px_failing_fn fn, void *arg) {
  ctx->failing_fn = fn;
  ctx->failing_arg = arg;
}
