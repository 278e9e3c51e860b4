/* The worker's data plane: serves client connections (HTTP or TCP listeners) and proxies them to
 * upstream pools. The only header of proxy/ that workers/ includes (with relay.h). */
#ifndef LBP_PROXY_H
#define LBP_PROXY_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

struct lbp_config;
struct cfg_upstream;
struct bal_server_state;
struct px_ctx;
struct px_stats;
struct px_server_slot;

/* Counters a worker reports to the master. */
struct px_counters {
  uint64_t accepted; /* client connections taken */
  uint32_t active;   /* client connections open now */
  uint64_t requests; /* requests forwarded */
};

/* Flags of struct px_accept. */
enum px_client_flags {
  PX_CLIENT_PROXY_PROTOCOL = 1 << 0, /* a PROXY protocol v2 header precedes the bytes */
  PX_CLIENT_FD_SHARED = 1 << 1,      /* another process may hold the socket too (handoff) */
  PX_CLIENT_HANDED = 1 << 2,         /* handed over between requests: idle, not a new client */
};

/* Finds the counters of server `id` of upstream `upstream` (config order): fills *out and
 * returns 0, or returns a negative error (the server is then counted in this worker only). */
typedef int (*px_server_lookup_fn)(void *arg, size_t upstream, uint64_t id,
                                   struct px_server_slot *out);

/* The generation a data plane serves. The context owns `cfg` from px_ctx_new on (it is freed
 * with the context); the shared memory behind `rr_counters`, `stats` and what `server_lookup`
 * finds is the caller's and must outlive the context. */
struct px_gen {
  uint32_t id;
  unsigned slot;                     /* for logs and the debug header */
  struct lbp_config *cfg;            /* taken */
  _Atomic uint64_t *rr_counters;     /* one shared round-robin position per upstream, or NULL */
  struct px_stats *stats;            /* this worker's counters (stats.h), or NULL: kept privately */
  px_server_lookup_fn server_lookup; /* per-server counters (stats.h), or NULL: privately */
  void *lookup_arg;
  uint8_t secret[16]; /* what the master's PROXY headers carry (private ports) */
};

/* How a connection reached this worker. */
struct px_accept {
  unsigned listener;           /* index into cfg->listeners */
  unsigned flags;              /* enum px_client_flags */
  const char *initial;         /* request bytes another worker already read (handover), or NULL */
  size_t initial_len;          /* served exactly as if they had just been read from the socket */
  const struct sockaddr *peer; /* the client's address if the caller knows it, else NULL (then
                                  the socket is asked: one getpeername) */
};

/* Creates the data plane for one worker. 0 or a negative UV error (then gen->cfg is still the
 * caller's). ctx.c is the one place proxy/ reads the config. */
int px_ctx_new(uv_loop_t *loop, const struct px_gen *gen, struct px_ctx **out);

/* Closes every connection (client, upstream, tunnel) at once and frees the context once all
 * their handles are closed; `done` (may be NULL) runs then, from the loop. */
void px_ctx_close(struct px_ctx *ctx, void (*done)(void *arg), void *arg);

/* Accepting is two steps so one path serves every way a socket arrives (a listening socket,
 * or an fd over IPC): px_client_new gives an initialized uv_tcp_t to uv_accept into, then
 * px_client_start serves it, or px_client_discard frees it if the accept failed. NULL if the
 * context is closing, draining for a stop (fn == NULL), full (limits.max_connections: refuse
 * or shed the connection), or out of memory. */
uv_tcp_t *px_client_new(struct px_ctx *ctx);
void px_client_start(uv_tcp_t *tcp, const struct px_accept *a);
void px_client_discard(uv_tcp_t *tcp);

/* Drain (reload, graceful stop): accept nothing new; requests in flight finish; a client
 * connection that is between requests (idle keep-alive, or with only a partial next head read)
 * now, or as soon as its current response is complete, is given to `fn` with the bytes of the
 * next request read so far; fn sends it elsewhere (IPC HANDOVER) and later calls
 * px_client_handed_over(tcp) once the fd has left (closes the handle without FIN/shutdown and
 * frees the client). fn returns 0 if it took the connection, <0 if not (then the client is
 * closed as after a Connection: close response). fn == NULL (graceful stop) or a connection that
 * cannot be handed over (PROXY-protocol private ports, Upgrade tunnels, tcp listeners): its
 * current/next response carries Connection: close and the connection ends after it; tunnels and
 * tcp relays run on until px_ctx_close. */
typedef int (*px_handover_fn)(void *arg, uv_tcp_t *tcp, unsigned listener, const char *bytes,
                              size_t len);
void px_ctx_drain(struct px_ctx *ctx, px_handover_fn fn, void *arg);
void px_client_handed_over(uv_tcp_t *tcp);

/* Rebalancing (the master asks: workers/rebalance.c): gives about `permille`/1000 of this
 * worker's requests away as whole keep-alive connections. The connections that ended the most
 * requests since the last call are taken first, skipping any that alone would overshoot by
 * half, until their requests reach that share; each goes to `fn` (as in a drain, with the bytes
 * of its next request read so far) when it is next between requests: at once if idle, else
 * when its current response is complete. Connections that cannot be handed over (private
 * ports, tunnels, tcp listeners), that are already marked, or that were handed here less
 * than PX_SHED_SETTLE_MS ago (a connection the last shed moved must not bounce) are never
 * taken. If `fn` refuses one, it stays and is served here. A marked connection still busy
 * PX_SHED_MS later stays (the master takes shed connections only for a while). Request counts start
 * again from 0. Returns how many connections were marked; nothing during a drain. */
#define PX_SHED_MS        3000
#define PX_SHED_SETTLE_MS 5000 /* a connection handed here is not shed again for this long */
unsigned px_ctx_shed(struct px_ctx *ctx, unsigned permille, px_handover_fn fn, void *arg);

/* Connection limit (limits.max_connections): 1 when this worker has as many client connections
 * as it may; the worker then stops taking more (pauses listeners, refuses fds). `room` (NULL to
 * unset) runs once each time the count drops below the limit after having reached it. */
int px_ctx_full(const struct px_ctx *ctx);
void px_ctx_on_room(struct px_ctx *ctx, void (*room)(void *arg), void *arg);

/* A finished request, as the access log sees it. Strings are valid during the callback. */
struct px_request_log {
  unsigned listener;
  const char *client; /* the client's address */
  const char *method; /* "GET"; NULL if the head never parsed */
  const char *target; /* the request target as received (not NUL-terminated) */
  size_t target_len;
  int status;                /* sent to the client: the upstream's, ours (4xx/5xx), 0 if none */
  int upstream_status;       /* the server's final status, 0 if none */
  const char *upstream;      /* the last server tried ("host:port"), NULL if none */
  unsigned tries;            /* servers tried */
  uint64_t bytes_in;         /* request bytes read from the client (head and body) */
  uint64_t bytes_out;        /* response bytes written to the client */
  uint64_t start_ms;         /* loop time of the request's first byte */
  uint64_t upstream_ms;      /* loop time the server's response head came, 0 if none */
  uint64_t end_ms;           /* loop time the request ended */
  uint64_t time_us;          /* the request's first byte to its end (monotonic clock) */
  uint64_t upstream_time_us; /* the last attempt's start to its response head (upstream_status) */
  const char *head;          /* the request's bytes from its first one (for headers), or NULL */
  size_t head_len;           /* the whole head when it parsed, else what was read of it */
  uint8_t http_minor;        /* HTTP/1.<minor>, when method is set */
  uint8_t complete;          /* the response reached the client whole */
};

/* Called once for every request when it ends, from the one place requests end (request.c). */
typedef void (*px_request_log_fn)(void *arg, const struct px_request_log *log);
void px_ctx_on_request(struct px_ctx *ctx, px_request_log_fn fn, void *arg);

const struct px_counters *px_ctx_counters(const struct px_ctx *ctx);

/* ---- servers and their states (the master's, pushed over IPC) ---- */

/* One server of an upstream as the master knows it: a server written as an IP address in the
 * config, or one address a host name resolved to. */
struct px_server_spec {
  uint64_t id;                  /* bal_server_id(upstream name, name) */
  struct sockaddr_storage addr; /* where to connect (port included) */
  char name[64];                /* "host:port" as configured, or "ip:port" for a name's address:
                                   logs, the access log's upstream, the debug header */
  uint16_t weight;              /* 1..1000 */
  uint8_t backup;
};

/* The spec of server k of upstream `up` when it is written as an IP address: 0, or UV_EAGAIN
 * when it is a host name (only the master resolves names). The one place a server's id and
 * name are made from the config (master and data plane both call it): name "host:port" (IPv6
 * "[v6]:port"), id bal_server_id(up->name, name), addr the configured one. */
int px_server_spec_literal(const struct cfg_upstream *up, size_t k, struct px_server_spec *out);

/* Replaces the servers of upstream `upstream` (index into cfg->upstreams) with `n` servers
 * (0..BAL_MAX_SERVERS; 0: every request answered 503, a tcp client closed). Servers whose id
 * stays keep their balancer state and idle connections (and their address: the id hashes
 * it); requests, tunnels and tcp relays on a server that left finish normally (its idle
 * connections are closed at once, busy ones when done, never pooled). The specs are copied.
 * 0, UV_EINVAL (upstream out of range, n too big, an address not IPv4/IPv6, a weight not
 * 1..1000, an id 0 or repeated) or UV_ENOMEM; on error the old servers stay. px_ctx_new
 * starts each pool with its literal servers (px_server_spec_literal). */
int px_ctx_set_servers(struct px_ctx *ctx, size_t upstream, const struct px_server_spec *servers,
                       unsigned n);

/* Applies the master's server states (health, admin state, weight, failing) to every pool;
 * records for ids no pool has are ignored. */
void px_ctx_apply_states(struct px_ctx *ctx, const struct bal_server_state *states, size_t n);

/* Called when passive health (max_fails within fail_timeout) made a server failing in this
 * worker: `st` is its state record (failing_until_ms set), for the master to broadcast. It
 * runs synchronously while a request or tcp session ends its attempt, once each time the
 * server becomes failing; it must not close the context (send the record, nothing more). */
typedef void (*px_failing_fn)(void *arg, const struct bal_server_state *st);
void px_ctx_on_failing(struct px_ctx *ctx, px_failing_fn fn, void *arg);

#endif
