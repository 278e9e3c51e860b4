/* The per-worker data plane context: upstream pools, the buffer free list, the write helper. */
#include "px.h"

#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct px_buf *px_buf_get(struct px_ctx *ctx) {
  struct px_buf *b = ctx->free_bufs;

  if (b != NULL) {
    ctx->free_bufs = b->next;
    ctx->nfree--;
    return b;
  }
  return malloc(sizeof(*b) + ctx->bufsize);
}

void px_buf_put(struct px_ctx *ctx, struct px_buf *b) {
  if (b == NULL)
    return;
  if (ctx->nfree >= PX_BUF_FREE_MAX) {
    free(b);
    return;
  }
  b->next = ctx->free_bufs;
  ctx->free_bufs = b;
  ctx->nfree++;
}

int px_write(uv_stream_t *s, uv_write_t *req, uv_buf_t *bufs, unsigned n, uv_write_cb cb) {
  int r = uv_try_write(s, bufs, n);
  size_t done;
  unsigned i = 0;

  if (r == UV_EAGAIN)
    r = 0;
  else if (r < 0)
    return r;
  done = (size_t)r;
  while (i < n && done >= bufs[i].len) {
    done -= bufs[i].len;
    i++;
  }
  if (i == n)
    return 1;
  bufs[i].base += done;
  bufs[i].len -= done;
  r = uv_write(req, s, bufs + i, n - i, cb);
  return r < 0 ? r : 0;
}

static void pools_free(struct px_ctx *ctx) {
  for (size_t i = 0; i < ctx->npools; i++) {
    bal_pool_free(&ctx->pools[i].bal);
    free(ctx->pools[i].servers);
  }
  free(ctx->pools);
  ctx->pools = NULL;
  ctx->npools = 0;
}

/* A server's stable id: its upstream's name and its address as configured (balancer.h). */
static uint64_t server_id(const struct cfg_upstream *up, const struct cfg_addr *a) {
  char text[300];
  snprintf(text, sizeof(text), strchr(a->host, ':') != NULL ? "[%s]:%u" : "%s:%u", a->host,
           a->port);
  return bal_server_id(up->name, text);
}

static int pools_init(struct px_ctx *ctx, _Atomic uint64_t *rr_counters) {
  const struct lbp_config *cfg = ctx->cfg;

  ctx->pools = calloc(cfg->nupstreams, sizeof(*ctx->pools));
  if (ctx->pools == NULL)
    return UV_ENOMEM;
  ctx->npools = cfg->nupstreams;
  for (size_t i = 0; i < cfg->nupstreams; i++) {
    const struct cfg_upstream *up = &cfg->upstreams[i];
    struct px_pool *p = &ctx->pools[i];
    struct bal_server_conf sc[BAL_MAX_SERVERS];
    struct bal_conf bc = {.panic = up->panic,
                          .slow_start_ms = up->slow_start_ms,
                          .max_fails = up->max_fails,
                          .fail_timeout_ms = up->fail_timeout_ms};
    const struct bal_ops *ops = bal_find(cfg_balance_name(up->balance));
    int rc;

    if (up->nservers == 0 || up->nservers > BAL_MAX_SERVERS || ops == NULL)
      return UV_EINVAL;
    p->cfg = up;
    p->servers = calloc(up->nservers, sizeof(*p->servers));
    if (p->servers == NULL)
      return UV_ENOMEM;
    for (size_t k = 0; k < up->nservers; k++) {
      p->servers[k].cfg = &up->servers[k];
      p->servers[k].pool = p;
      p->servers[k].index = (unsigned)k;
      sc[k] = (struct bal_server_conf){.id = server_id(up, &up->servers[k].addr),
                                       .weight = up->servers[k].weight,
                                       .backup = up->servers[k].backup};
    }
    rc = bal_pool_init(&p->bal, ops, &bc, sc, (unsigned)up->nservers,
                       rr_counters ? &rr_counters[i] : NULL);
    if (rc != 0)
      return rc == -ENOMEM ? UV_ENOMEM : UV_EINVAL;
  }
  return 0;
}

int px_ctx_new(uv_loop_t *loop, const struct px_gen *gen, struct px_ctx **out) {
  struct px_ctx *ctx = calloc(1, sizeof(*ctx));
  const struct lbp_config *cfg = gen->cfg;
  _Atomic uint64_t *rr_counters = gen->rr_counters;
  int rc;

  if (ctx == NULL)
    return UV_ENOMEM;
  ctx->loop = loop;
  ctx->cfg = cfg;
  ctx->gen = *gen;
  if (cfg->debug_header)
    ctx->debug_len = (unsigned)snprintf(ctx->debug_hdr, sizeof(ctx->debug_hdr),
                                        "X-Lbproxy-Worker: slot=%u pid=%ld gen=%u\r\n",
                                        gen->slot + 1, (long)getpid(), gen->id);
  /* A request head must fit in one buffer, with room to spare for the line that overflows. */
  ctx->bufsize = PX_BUF_MIN;
  if (cfg->limits.max_header_bytes + 1024 > ctx->bufsize)
    ctx->bufsize = cfg->limits.max_header_bytes + 1024;
  rc = pools_init(ctx, rr_counters);
  if (rc != 0) {
    pools_free(ctx);
    free(ctx);
    return rc;
  }
  *out = ctx;
  return 0;
}

static void ctx_free(struct px_ctx *ctx) {
  void (*done)(void *) = ctx->done;
  void *arg = ctx->done_arg;

  while (ctx->free_bufs != NULL) {
    struct px_buf *b = ctx->free_bufs;
    ctx->free_bufs = b->next;
    free(b);
  }
  pools_free(ctx);
  cfg_free(ctx->gen.cfg); /* the context owns its generation's config */
  free(ctx);
  if (done != NULL)
    done(arg);
}

void px_ctx_handle_gone(struct px_ctx *ctx) {
  ctx->nhandles--;
  if (ctx->closing && ctx->nhandles == 0)
    ctx_free(ctx);
}

void px_ctx_close(struct px_ctx *ctx, void (*done)(void *arg), void *arg) {
  ctx->closing = 1;
  ctx->done = done;
  ctx->done_arg = arg;
  while (ctx->clients != NULL) {
    struct px_client *c = ctx->clients;
    px_client_close(c); /* unlinks c */
  }
  while (ctx->upstreams != NULL)
    px_upstream_close(ctx->upstreams); /* unlinks it */
  if (ctx->nhandles == 0)
    ctx_free(ctx);
}

void px_ctx_drain(struct px_ctx *ctx, px_handover_fn fn, void *arg) {
  struct px_client *c, *next;

  if (ctx->draining || ctx->closing)
    return;
  ctx->draining = 1;
  ctx->handover = fn;
  ctx->handover_arg = arg;
  for (c = ctx->clients; c != NULL; c = next) {
    next = c->next; /* px__client_drain may close c */
    px__client_drain(c);
  }
}

const struct px_counters *px_ctx_counters(const struct px_ctx *ctx) {
  return &ctx->counters;
}
