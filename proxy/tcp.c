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

struct px_tcp {
  struct px_ctx *ctx;
  struct px_pool *pool;
  uv_stream_t *client;
  uv_buf_t initial;
  struct bal_tried tried;
  int server;
  struct px_up *up;         /* while connecting */
  struct px_tunnel *tunnel; /* once connected */
  px_tcp_done_cb done;
  void *arg;
  int stopped;
};

static void tcp_connect_next(struct px_tcp *t);

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
  px_pool_release(t->pool, t->server, 0);
  t->server = -1;
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
  px_pool_release(t->pool, t->server, 1);
  t->server = -1;
  tcp_connect_next(t);
}

static const struct px_up_cbs tcp_up_cbs = {
    .on_ready = tcp_ready,
    .on_error = tcp_error,
};

static void tcp_connect_next(struct px_tcp *t) {
  struct px_up *u;
  int rc;

  for (;;) {
    t->server = px_pool_select(t->pool, &t->tried);
    if (t->server < 0) {
      LBP_WARN("tcp: no server of upstream %s could be reached", t->pool->name);
      t->done(t->arg, 0);
      return;
    }
    bal_tried_add(&t->tried, (unsigned)t->server);
    rc = px_up_get(&t->ctx->up, &t->pool->servers[t->server], PX_UP_RAW, &tcp_up_cbs, t, &u);
    if (rc >= 0) {
      t->up = u;
      return;
    }
    LBP_WARN("upstream %s: connect failed: %s", t->pool->servers[t->server].name, uv_strerror(rc));
    px_pool_release(t->pool, t->server, 1);
  }
}

int px_tcp_start(struct px_ctx *ctx, const struct px_listener *l, uv_stream_t *client,
                 const uv_buf_t *initial, px_tcp_done_cb done, void *arg, struct px_tcp **out) {
  struct px_tcp *t = calloc(1, sizeof(*t));

  if (t == NULL)
    return UV_ENOMEM;
  t->ctx = ctx;
  t->pool = l->pool;
  t->client = client;
  t->initial = initial != NULL ? *initial : uv_buf_init(NULL, 0);
  t->server = -1;
  t->done = done;
  t->arg = arg;
  bal_tried_clear(&t->tried);
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
  if (t->server >= 0) {
    px_pool_release(t->pool, t->server, 0);
    t->server = -1;
  }
  if (t->tunnel != NULL)
    px_tunnel_stop(t->tunnel);
}

void px_tcp_release(struct px_tcp *t) {
  if (t->tunnel != NULL)
    px_tunnel_release(t->tunnel);
  free(t);
}
