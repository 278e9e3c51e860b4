/* A client stream relayed to an upstream connection: Upgrade tunnels and TCP mode. */
#ifndef LBP_TUNNEL_H
#define LBP_TUNNEL_H

#include "relay.h"
#include "upstream.h"

struct px_tunnel;

/* The tunnel ended: the owner closes the client stream, with a reset when `reset` (the server
 * side failed, or the client must learn it was cut). The tunnel closes the upstream itself. */
typedef void (*px_tunnel_done_cb)(void *arg, int reset);

/* Takes the upstream connection u over (px_up_takeover; it may be taken already) and relays
 * between `client` (borrowed from the owner) and it: to_server (may be NULL) is written to the
 * server first (bytes the client sent already), to_client to the client (bytes the server sent
 * after its 101); both stay the caller's until `done`. idle_ms and send_ms are the relay's
 * deadlines. `done` runs once, from the loop. The owner calls px_tunnel_release once the client
 * stream is closed (its close callback ran), and the tunnel is freed when its upstream
 * connection is closed too. 0, or UV_ENOMEM (then u is closed and the owner closes the
 * client as after `done`). */
int px_tunnel_start(uv_loop_t *loop, struct px_bufpool *pool, uv_stream_t *client, struct px_up *u,
                    const uv_buf_t *to_server, const uv_buf_t *to_client, uint64_t idle_ms,
                    uint64_t send_ms, px_tunnel_done_cb done, void *arg, struct px_tunnel **out);

/* Stops relaying at once (the owner is closing): `done` will not run; the owner may close the
 * client stream right away, then calls px_tunnel_release as usual. */
void px_tunnel_stop(struct px_tunnel *t);

/* The owner's client stream is closed: its reference goes. */
void px_tunnel_release(struct px_tunnel *t);

#endif
