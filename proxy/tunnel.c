/* A client stream relayed to an upstream connection: Upgrade tunnels and TCP mode. */

/*
 * The relay borrows two streams it does not own, and its memory must outlive both streams'
 * pending requests (they complete, cancelled, only when a stream is closed) and its own timer.
 * The tunnel is that memory: it holds one reference for the client stream (the owner releases
 * it from its close callback), one for the upstream connection (released by its on_closed) and
 * one for the relay (released when its `done` ran), and frees itself when all are gone,
 * whichever goes last.
 */
#include "tunnel.h"

#include <stdlib.h>

struct px_tunnel {
  struct px_relay relay;
  struct px_up *up;
  px_tunnel_done_cb done;
  void *arg;
  int refs;
  int stopped;
  int up_gone; /* the upstream connection is freed (the context closed it first) */
};

static void tunnel_unref(struct px_tunnel *t) {
  if (--t->refs == 0)
    free(t);
}

static void up_closed(struct px_up *u) {
  struct px_tunnel *t = px_up_data(u);

  t->up_gone = 1;
  tunnel_unref(t);
}

static const struct px_up_cbs tunnel_up_cbs = {.on_closed = up_closed};

static void relay_done(struct px_relay *r, enum px_relay_end why, int side) {
  struct px_tunnel *t = r->data;
  /* Side 0 is the client, 1 the server. A failed or timed-out side makes the other one learn
   * it by a reset, as a direct peer would. */
  int reset_server = why == PX_RELAY_RESET && side == 0;
  int reset_client = (why == PX_RELAY_RESET && side == 1) || why == PX_RELAY_SEND_TIMEOUT;

  if (!t->up_gone)
    px_up_close(t->up, reset_server);
  if (!t->stopped)
    t->done(t->arg, reset_client);
  tunnel_unref(t);
}

int px_tunnel_start(uv_loop_t *loop, struct px_bufpool *pool, uv_stream_t *client, struct px_up *u,
                    const uv_buf_t *to_server, const uv_buf_t *to_client, uint64_t idle_ms,
                    uint64_t send_ms, px_tunnel_done_cb done, void *arg, struct px_tunnel **out) {
  struct px_tunnel *t = calloc(1, sizeof(*t));
  uv_buf_t pre[2] = {uv_buf_init(NULL, 0), uv_buf_init(NULL, 0)};
  uv_stream_t *server;

  if (t == NULL) {
    px_up_close(u, 1);
    return UV_ENOMEM;
  }
  if (to_client != NULL)
    pre[0] = *to_client;
  if (to_server != NULL)
    pre[1] = *to_server;
  server = px_up_takeover(u, NULL);
  px_up_set_user(u, &tunnel_up_cbs, t);
  t->up = u;
  t->done = done;
  t->arg = arg;
  t->refs = 3;
  t->relay.data = t;
  px_relay_init(&t->relay, pool, idle_ms, send_ms, -1, 0);
  *out = t;
  px_relay_start(&t->relay, loop, client, server, pre, relay_done);
  return 0;
}

void px_tunnel_stop(struct px_tunnel *t) {
  t->stopped = 1;
  px_relay_stop(&t->relay);
}

void px_tunnel_release(struct px_tunnel *t) {
  tunnel_unref(t);
}
