/* TCP mode: a client connection of a tcp listener relayed to a balanced server of its upstream. */
#ifndef LBP_TCP_H
#define LBP_TCP_H

#include "px.h"

struct px_tcp;

/* The session ended: the owner closes the client stream (with a reset when `reset`). */
typedef void (*px_tcp_done_cb)(void *arg, int reset);

/* Picks a server of listener l's upstream (`peer`, the client's address, is the key of a pool
 * hashing client_ip) and connects (a refused or timed-out connect tries another server, as the
 * upstream's retries, retry_on and budget allow), then relays both ways with tcp_idle as the
 * idle deadline and client_send as the send deadline. `initial` (may be NULL) are client bytes
 * already read, sent first; they must stay valid until `done` or px_tcp_stop. `done` runs once
 * (also when no server could be reached; then possibly before px_tcp_start returns). The owner
 * calls px_tcp_release once the client stream is closed. 0, or UV_ENOMEM (nothing started). */
int px_tcp_start(struct px_ctx *ctx, const struct px_listener *l, uv_stream_t *client,
                 const char *peer, const uv_buf_t *initial, px_tcp_done_cb done, void *arg,
                 struct px_tcp **out);

/* The owner is closing: stop at once; `done` will not run; px_tcp_release follows as usual. */
void px_tcp_stop(struct px_tcp *t);

/* The owner's client stream is closed. */
void px_tcp_release(struct px_tcp *t);

#endif
