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
  PX_CLIENT_HANDED = 1 << 2,         /* handed over between requests: idle, not a new client */
};

/* The generation a data plane serves. The context owns `cfg` from px_ctx_new on (it is freed
 * with the context); the shared memory behind `rr_counters` is the caller's and must outlive
 * the context. */
struct px_gen {
  uint32_t id;
  unsigned slot;                 /* for logs and the debug header */
  struct lbp_config *cfg;        /* taken */
  _Atomic uint64_t *rr_counters; /* one shared round-robin position per upstream, or NULL */
  uint8_t secret[16];            /* what the master's PROXY headers carry (private ports) */
};

/* How a connection reached this worker. */
struct px_accept {
  unsigned listener;   /* index into cfg->listeners */
  unsigned flags;      /* enum px_client_flags */
  const char *initial; /* request bytes another worker already read (handover), or NULL */
  size_t initial_len;  /* served exactly as if they had just been read from the socket */
};

/* Creates the data plane for one worker. 0 or a negative UV error (then gen->cfg is still the
 * caller's). */
int px_ctx_new(uv_loop_t *loop, const struct px_gen *gen, struct px_ctx **out);

/* Closes every connection (client and upstream) at once and frees the context once all their
 * handles are closed; `done` (may be NULL) runs then, from the loop. */
void px_ctx_close(struct px_ctx *ctx, void (*done)(void *arg), void *arg);

/* Accepting is two steps so one path serves every way a socket arrives (a listening socket,
 * or an fd over IPC): px_client_new gives an initialized uv_tcp_t to uv_accept into, then
 * px_client_start serves it, or px_client_discard frees it if the accept failed. NULL if the
 * context is closing, draining or out of memory. */
uv_tcp_t *px_client_new(struct px_ctx *ctx);
void px_client_start(uv_tcp_t *tcp, const struct px_accept *a);
void px_client_discard(uv_tcp_t *tcp);

/* Gives a connection that is between requests elsewhere: `bytes` (valid during the call) are
 * what was read of its next request. Returns 0 if it took the connection (then it calls
 * px_client_handed_over once the fd has left), <0 if not. */
typedef int (*px_handover_fn)(void *arg, uv_tcp_t *tcp, unsigned listener, const char *bytes,
                              size_t len);

/* Drain (reload, graceful stop): accept nothing new; requests in flight finish; a client
 * connection that is between requests (idle keep-alive, or with only part of its next head
 * read) now, or as soon as its current response is complete, is given to `fn`. With fn == NULL
 * (graceful stop) idle connections are closed and responses in flight carry Connection: close.
 * A connection that cannot be handed over (a private port's, from the master's relay) gets
 * Connection: close on its current or next response and ends after it. */
void px_ctx_drain(struct px_ctx *ctx, px_handover_fn fn, void *arg);

/* The fd of a handed-over connection has left: closes our handle (no FIN: the connection lives
 * on elsewhere) and frees the client. */
void px_client_handed_over(uv_tcp_t *tcp);

const struct px_counters *px_ctx_counters(const struct px_ctx *ctx);

#endif
