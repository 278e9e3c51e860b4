/* The worker's HTTP data plane: serves client connections and proxies them to upstream pools. */
#ifndef LBP_PROXY_H
#define LBP_PROXY_H

#include <stdatomic.h>
#include <stdint.h>
#include <uv.h>

struct lbp_config;
struct px_ctx;

/* Counters a worker reports to the master. */
struct px_counters {
  uint64_t accepted; /* client connections taken */
  uint32_t active;   /* client connections open now */
  uint64_t requests; /* requests forwarded */
};

/* Flags for px_client_start. */
enum px_client_flags {
  PX_CLIENT_PROXY_PROTOCOL = 1 << 0, /* a PROXY protocol v2 header precedes the HTTP bytes */
  PX_CLIENT_FD_SHARED = 1 << 1,      /* another process may hold the socket too (handoff) */
};

/* Creates the data plane for one worker from a validated config (borrowed: it must outlive
 * the context). `rr_counters` (may be NULL) is an array of one shared round-robin counter per
 * upstream, so that all workers share one rotation. 0 or a negative UV error. */
int px_ctx_new(uv_loop_t *loop, const struct lbp_config *cfg, _Atomic uint64_t *rr_counters,
               struct px_ctx **out);

/* Closes every connection (client and upstream) at once and frees the context once all their
 * handles are closed; `done` (may be NULL) runs then, from the loop. */
void px_ctx_close(struct px_ctx *ctx, void (*done)(void *arg), void *arg);

/* Accepting is two steps so one path serves every way a socket arrives (a listening socket,
 * or an fd over IPC): px_client_new gives an initialized uv_tcp_t to uv_accept into, then
 * px_client_start serves it, or px_client_discard frees it if the accept failed. NULL if the
 * context is closing or out of memory. */
uv_tcp_t *px_client_new(struct px_ctx *ctx);
void px_client_start(uv_tcp_t *tcp, unsigned flags);
void px_client_discard(uv_tcp_t *tcp);

const struct px_counters *px_ctx_counters(const struct px_ctx *ctx);

#endif
