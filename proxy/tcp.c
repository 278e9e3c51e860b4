/* TCP mode: a client connection of a tcp listener relayed to a balanced server of its upstream. */

/*
 * 1. Select a server not tried yet (the pool's balancer) and connect to it (px_up_get RAW: a
 *    connection without HTTP).
 * 2. A connect that fails or times out releases the server as failed and tries the next; when
 *    none is left the client is closed.
 * 3. Connected: a tunnel (tunnel.c) relays both ways until both sides ended, a side failed, or
 *    nothing moved for tcp_idle. The client's bytes are not read before that: they wait in the
 *    kernel, so nothing needs buffering here.
 */
#include "tcp.h"

#include "log.h"
#include "tunnel.h"

#include <stdlib.h>
#include <string.h>

struct px_tcp {
  struct px_ctx *ctx;
  struct px_pool *pool;
  uv_stream_t *client;
  uv_buf_t initial;
  struct bal_tried tried;
  struct bal_pick pick;
  struct px_server *srv; /* while `pick` is held (until the connect succeeds or fails): its
                            server, referenced */
  unsigned attempts;
  uint64_t key;             /* the balancing key (the client's address) for a pool that hashes */
  struct px_up *up;         /* while connecting */
  struct px_tunnel *tunnel; /* once connected */
  px_tcp_done_cb done;
  void *arg;
  int stopped;
};

static void tcp_connect_next(struct px_tcp *t);

/* The attempt is over: the pick and the server go back. */
static void release(struct px_tcp *t, enum bal_outcome outcome, uint64_t now) {
  if (t->srv == NULL)
    return;
  px_pool_release(t->pool, &t->pick, t->srv, outcome, now);
  px_server_unref(t->srv);
  t->srv = NULL;
}

static void tunnel_done(void *arg, int reset) {
  struct px_tcp *t = arg;

  if (!t->stopped)
    t->done(t->arg, reset);
}

static void tcp_ready(struct px_up *u) {
  struct px_tcp *t = px_up_data(u);
  struct px_ctx *ctx = t->ctx;
  int rc;

  t->up = NULL;
  release(t, BAL_OK, uv_now(ctx->loop));
  rc = px_tunnel_start(ctx->loop, &ctx->bufs, t->client, u, &t->initial, NULL, ctx->set.tcp_idle_ms,
                       ctx->set.client_send_ms, tunnel_done, t, &t->tunnel);
  if (rc != 0) {
    t->tunnel = NULL;
    t->done(t->arg, 1);
  }
}

static void tcp_error(struct px_up *u, enum px_up_fail ft, int err) {
  struct px_tcp *t = px_up_data(u);
  const struct px_server *srv = px_up_server(u);

  t->up = NULL;
  LBP_WARN("upstream %s: %s: %s", srv->name, px_up_fail_name(ft), uv_strerror(err));
  release(t, BAL_FAILED, uv_now(t->ctx->loop));
  tcp_connect_next(t);
}

static const struct px_up_cbs tcp_up_cbs = {
    .on_ready = tcp_ready,
    .on_error = tcp_error,
};

/* A connection may only be retried on connect failures, as the upstream's retries and
 * retry_on allow (nothing was sent, so it is always safe). */
static int may_try(struct px_tcp *t) {
  struct bal_retry_facts f = {.failure = BAL_FAIL_CONNECT, .attempts = t->attempts};
  struct px_pool *p = t->pool;

  return t->attempts == 0 ||
         bal_retry_decide(&f, p->retries, p->retry_on, &p->budget, p->retry_budget_pct,
                          uv_now(t->ctx->loop)) == BAL_RETRY;
}

/* The connection holds its server (px_up_get): a server the pool drops meanwhile lives on
 * until the relay ends. */
static void tcp_connect_next(struct px_tcp *t) {
  uint64_t now = uv_now(t->ctx->loop);
  struct px_server *srv;
  struct px_up *u;
  int rc;

  for (;;) {
    if (!may_try(t) || px_pool_select(t->pool, &t->tried, t->key, now, &t->pick, &srv) != 0) {
      LBP_WARN("tcp: no server of upstream %s could be reached", t->pool->name);
      t->done(t->arg, 0);
      return;
    }
    if (t->attempts++ == 0)
      bal_budget_request(&t->pool->budget, now);
    px_server_ref(srv);
    t->srv = srv;
    rc = px_up_get(&t->ctx->up, srv, PX_UP_RAW, &tcp_up_cbs, t, &u);
    if (rc >= 0) {
      t->up = u;
      return;
    }
    LBP_WARN("upstream %s: connect failed: %s", srv->name, uv_strerror(rc));
    release(t, BAL_FAILED, now);
  }
}

int px_tcp_start(struct px_ctx *ctx, const struct px_listener *l, uv_stream_t *client,
                 const char *peer, const uv_buf_t *initial, px_tcp_done_cb done, void *arg,
                 struct px_tcp **out) {
  struct px_tcp *t = calloc(1, sizeof(*t));

  if (t == NULL)
    return UV_ENOMEM;
  t->ctx = ctx;
  t->pool = l->pool;
  t->client = client;
  t->initial = initial != NULL ? *initial : uv_buf_init(NULL, 0);
  t->done = done;
  t->arg = arg;
  bal_tried_clear(&t->tried);
  if (px_pool_uses_key(t->pool) && peer != NULL)
    t->key = px_pool_key(t->pool, peer, strlen(peer), NULL);
  *out = t;
  tcp_connect_next(t);
  return 0;
}

void px_tcp_stop(struct px_tcp *t) {
  t->stopped = 1;
  if (t->up != NULL) {
    px_up_close(t->up, 0);
    t->up = NULL;
  }
  release(t, BAL_CANCELLED, uv_now(t->ctx->loop));
  if (t->tunnel != NULL)
    px_tunnel_stop(t->tunnel);
}

void px_tcp_release(struct px_tcp *t) {
  if (t->tunnel != NULL)
    px_tunnel_release(t->tunnel);
  free(t);
}
