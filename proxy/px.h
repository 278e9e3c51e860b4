/* The data plane's context as its files share it: settings, pools, listeners, counters. */
#ifndef LBP_PX_H
#define LBP_PX_H

#include "balancer.h"
#include "config.h"
#include "http_head.h"
#include "io.h"
#include "list.h"
#include "proxy.h"
#include "stats.h"
#include "upstream.h"

#include <llhttp.h>
#include <stdint.h>
#include <uv.h>

#define PX_BUF_MIN      (32 * 1024) /* buffer size unless max_header_bytes needs more */
#define PX_BUF_FREE_MAX 256         /* buffers kept on the free list at most */
#define PX_REQ_FREE_MAX 256         /* request structs kept on the free list at most */

/* Everything the data plane takes from the config, copied in one place (ctx.c). */
struct px_settings {
  uint64_t client_header_ms; /* a request head must arrive within this (408) */
  uint64_t client_idle_ms;   /* keep-alive idle; a stalled request body */
  uint64_t client_send_ms;   /* a response write waiting for the client to read */
  uint64_t tunnel_idle_ms;   /* an Upgrade tunnel with no byte either way */
  uint64_t tcp_idle_ms;      /* a TCP-mode connection with no byte either way */
  uint64_t max_header_bytes; /* 431 */
  uint64_t max_body_bytes;   /* 413; 0 = no limit */
  unsigned max_connections;  /* client connections per worker; 0 = no limit */
  uint8_t forwarded;         /* add an RFC 7239 Forwarded element */
};

/* One upstream in this worker: its servers, its balancer and its retry policy. The server set
 * changes at run time (px_pool_set_servers), so nothing outside pool.c keeps an index into it:
 * a request or TCP session that picked a server holds a reference to the px_server. */
struct px_pool {
  const char *name;
  size_t index;       /* its upstream's place in the config (shared memory is laid out so) */
  struct px_ctx *ctx; /* whose on_failing hears of servers this pool found failing */
  struct bal_pool bal;
  struct px_server **servers; /* servers[i] is bal.servers[i]; the pool holds a reference */
  unsigned max_idle;          /* keep-alive settings of its servers (keepalive, */
  uint64_t idle_ms;           /* keepalive_timeout) */
  struct bal_budget budget;   /* retries over a sliding window (retry_budget) */
  unsigned retries;           /* further attempts after a failure */
  unsigned retry_on;          /* 1 << enum bal_failure (config's enum cfg_retry_on, same order) */
  unsigned retry_budget_pct;
  enum cfg_hash_key hash_key; /* what a `hash` balancer hashes */
  const char *hash_header;    /* hash_key header:<Name>: the name */
};

/* A route as the data plane uses it. */
struct px_route {
  struct px_pool *pool;
  const char *set_host; /* the Host to send instead of the client's, or NULL */
  uint32_t set_host_len;
  uint32_t strip; /* path prefix bytes to drop (strip_prefix), 0 for none */
};

/* A listener: how its connections are served. */
struct px_listener {
  enum cfg_mode mode;
  const struct cfg_route *cfg_routes; /* http: matched by px_route_in */
  size_t nroutes;
  struct px_route *routes; /* http: same order as cfg_routes */
  struct px_pool *pool;    /* tcp */
};

struct px_ctx {
  uv_loop_t *loop;
  struct px_gen gen;      /* the generation served; its config is the context's */
  struct px_settings set; /* what the data plane takes from that config */
  char debug_hdr[80];     /* the X-Lbproxy-Worker line (debug_header: true) */
  unsigned debug_len;     /* 0: none */
  struct px_bufpool bufs; /* every buffer of this worker's data plane */
  struct px_upenv up;     /* every upstream connection */
  struct px_pool *pools;
  size_t npools;
  struct px_listener *listeners;
  size_t nlisteners;
  struct px_list clients; /* every client connection not yet freed */
  unsigned nclients;
  struct px_request *free_reqs;
  unsigned nfree_reqs;
  struct px_counters counters;
  struct px_stats *st; /* this worker's counters: gen.stats, or own_stats */
  struct px_stats own_stats;
  uint8_t closing;
  uint8_t draining;
  uint8_t full; /* active reached max_connections: room_cb runs when it drops */
  px_handover_fn handover;
  void *handover_arg;
  void (*room_cb)(void *arg);
  void *room_arg;
  px_request_log_fn log_fn;
  void *log_arg;
  px_failing_fn failing_fn; /* px_ctx_on_failing */
  void *failing_arg;
  void (*done)(void *arg);
  void *done_arg;
  void (*release)(struct px_ctx *ctx); /* ctx.c: frees the context once nothing is left */
};

/* A server of `pool` not in `tried`: 0 with *pick (for px_pool_release) and *srv set,
 * UV_EHOSTDOWN (none usable, or no server at all: 503) or UV_EALREADY (every usable one was
 * tried). *srv is the pool's: take a reference (px_server_ref) to use it past the current
 * callback, since px_pool_set_servers may drop it. `key` is the request's balancing key
 * (px_pool_uses_key) or BAL_NO_KEY. */
int px_pool_select(struct px_pool *pool, struct bal_tried *tried, uint64_t key, uint64_t now_ms,
                   struct bal_pick *pick, struct px_server **srv);
/* The attempt that `pick` started is over: BAL_OK, BAL_FAILED (the server could not serve it)
 * or BAL_CANCELLED (neither: the client went away). The one place the data plane releases a
 * pick: when the failure made the server failing here (max_fails within fail_timeout), the
 * context's on_failing hears it. A pick of a server that has left the pool is released too. */
void px_pool_release(struct px_pool *pool, const struct bal_pick *pick, struct px_server *srv,
                     enum bal_outcome outcome, uint64_t now_ms);
/* Replaces the pool's servers with `n` from the specs (0..BAL_MAX_SERVERS). A server whose id
 * stays keeps its px_server (and so its idle connections) and its balancer state; a server
 * that leaves is retired (px_server_retire: idle connections closed now, busy ones after their
 * exchange) and freed with its last reference. 0, UV_EINVAL (too many, an address that is not
 * IPv4/IPv6, a weight out of 1..1000, an id 0 or repeated) or UV_ENOMEM; on error the pool is
 * unchanged. */
int px_pool_set_servers(struct px_pool *pool, const struct px_server_spec *specs, unsigned n);
/* Drops every server and the balancer (the context is freed: no connection is left). */
void px_pool_free(struct px_pool *pool);
/* 1 if the pool's balancer hashes a key (compute it only then). */
int px_pool_uses_key(const struct px_pool *pool);
/* The balancing key of the pool's hash_key: the client's address (`peer`), the request target
 * or a header of the head `h` (NULL for a TCP connection); BAL_NO_KEY if there is none. */
uint64_t px_pool_key(const struct px_pool *pool, const char *peer, size_t peer_len,
                     const struct px_head *h);

/* A request ended: the worker's counters (ctx.c). */
void px__ctx_count_request(struct px_ctx *ctx, const struct px_request_log *l);

/* A client connection struct or an upstream connection was freed: free the context if it was
 * the last one and the context is closing. */
static inline void px__ctx_check_empty(struct px_ctx *ctx) {
  if (ctx->closing && ctx->nclients == 0 && ctx->up.nconns == 0 && ctx->release != NULL)
    ctx->release(ctx);
}

#endif
