/* lbproxy configuration: the plain structs a YAML file is parsed into, and the loader's API. */
#ifndef LBP_CONFIG_H
#define LBP_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

/* How the master hands client connections to workers (see README, "Dispatch strategies"). */
enum cfg_dispatch {
  CFG_DISPATCH_HANDOFF = 0,   /* master accepts, passes the fd round-robin (default) */
  CFG_DISPATCH_HANDOFF_LEAST, /* master accepts, passes the fd to the least loaded worker */
  CFG_DISPATCH_PROXY,         /* master accepts, relays bytes to a worker's private port */
  CFG_DISPATCH_SHARED,        /* every worker accepts on the one listening socket */
  CFG_DISPATCH_REUSEPORT,     /* one SO_REUSEPORT socket per worker slot */
};

/* Returns the config spelling of a dispatch strategy ("handoff", ...). */
const char *cfg_dispatch_name(enum cfg_dispatch d);

/* A "host:port" or "[v6]:port" as written, plus where it was written. Resolved to one
 * socket address when the config is loaded (numeric hosts directly, names with getaddrinfo). */
struct cfg_addr {
  char host[256];
  uint16_t port;
  struct sockaddr_storage sa; /* the resolved address (port included) */
  socklen_t salen;
  uint8_t any;   /* "*:port": every address, IPv6 and IPv4 (sa is [::]; see cfg_resolve) */
  int line, col; /* 1-based position of the value in the file */
};

/* What a listener speaks. */
enum cfg_mode {
  CFG_MODE_HTTP = 0, /* HTTP/1.1 reverse proxy, routed by Host and path */
  CFG_MODE_TCP,      /* a plain byte relay to one upstream (L4) */
};

struct cfg_server {
  struct cfg_addr addr; /* an IP address: sa is set at load; a host name (dns): sa is empty */
  unsigned weight;      /* 1..1000, default 1 */
  int backup;           /* gets traffic only when no other server is usable; default false */
  int dns;              /* addr.host is a name: the master resolves it at run time, each
                           address it yields becomes a server (never resolved at load) */
};

/* How an upstream spreads requests over its servers (see README, "Balancing"). */
enum cfg_balance {
  CFG_BALANCE_ROUND_ROBIN = 0, /* smooth weighted round-robin, one rotation for all workers */
  CFG_BALANCE_LEAST_CONN,      /* fewest requests in flight (all workers) per weight */
  CFG_BALANCE_RANDOM2,         /* the better of two weighted random choices */
  CFG_BALANCE_HASH,            /* consistent hashing (Maglev) of hash_key */
};

/* Returns the config spelling of a balancing algorithm ("round_robin", ...), which is also
 * the name bal_find() knows it by. */
const char *cfg_balance_name(enum cfg_balance b);

/* What `balance: hash` hashes. */
enum cfg_hash_key {
  CFG_HASH_KEY_NONE = 0,  /* not set */
  CFG_HASH_KEY_CLIENT_IP, /* the client's address (from PROXY v2 when relayed) */
  CFG_HASH_KEY_URI,       /* the request target as received */
  CFG_HASH_KEY_HEADER,    /* the value of the header named by hash_header */
};

/* Failures a request may be retried after: retry_on holds 1 << each one listed. The order is
 * the balancer's enum bal_failure, so the bits mean the same there. */
enum cfg_retry_on {
  CFG_RETRY_CONNECT_FAILURE = 0, /* connect refused, failed or timed out */
  CFG_RETRY_RESET,               /* reset or closed before any response byte */
  CFG_RETRY_TIMEOUT,             /* no response byte within timeouts.upstream_response */
  CFG_RETRY_HTTP_502,            /* the server answered 502 / 503 / 504 */
  CFG_RETRY_HTTP_503,
  CFG_RETRY_HTTP_504,
};

enum cfg_check_type {
  CFG_CHECK_TCP = 0, /* a connect that succeeds within timeout */
  CFG_CHECK_HTTP,    /* GET path with Host, answered within timeout with a status in range */
};

/* Active health checks of an upstream's servers, run by the master (off unless configured). */
struct cfg_health_check {
  int enabled; /* health_check: was given */
  enum cfg_check_type type;
  char *path;                    /* http: request path, default "/" */
  char *host;                    /* http: Host header; NULL: the server's address */
  uint16_t status_lo, status_hi; /* http: expected status range, default 200-399 */
  uint64_t interval_ms;          /* between checks of one server, default 2s */
  uint64_t timeout_ms;           /* a check not done within this failed, default 1s */
  unsigned rise;                 /* passes in a row that bring a server up, default 2 */
  unsigned fall;                 /* failures in a row that take it down, default 3 */
  unsigned jitter_pct;           /* each delay varies by up to this % of interval, default 10 */
};

struct cfg_upstream {
  char *name;
  struct cfg_server *servers;
  size_t nservers;
  unsigned keepalive;            /* idle upstream connections kept per server per worker, 32 */
  uint64_t keepalive_timeout_ms; /* an idle pooled connection is closed after this; 4s */
  enum cfg_balance balance;      /* default round_robin */
  enum cfg_hash_key hash_key;    /* required with balance hash */
  char *hash_header;             /* hash_key header:<Name>: the name, else NULL */
  int panic;                     /* nothing usable: try every server anyway; default false */
  uint64_t slow_start_ms;        /* a server becoming usable ramps up over this; default 0 */
  unsigned max_fails;            /* failures within fail_timeout that skip a server; 3; 0 = off */
  uint64_t fail_timeout_ms;      /* the window, and how long a server is skipped; default 10s */
  unsigned retries;              /* further attempts after a failure, default 1 */
  unsigned retry_on;             /* 1 << enum cfg_retry_on; default connect_failure, reset */
  unsigned retry_budget_pct;     /* retries at most this % of requests (sliding 10s), 20 */
  uint64_t resolve_interval_ms;  /* the master re-resolves server names this often; 5s; 0 = never */
  struct cfg_health_check health_check;
  int line, col; /* position of the upstream's name */
};

/* The retry_on of an upstream that does not set it. */
#define CFG_RETRY_ON_DEFAULT ((1u << CFG_RETRY_CONNECT_FAILURE) | (1u << CFG_RETRY_RESET))

/* A route sends requests whose Host matches `host` (exact, case-insensitive, port ignored;
 * "*.example.com" matches any subdomain) and whose path starts with `path` to an upstream.
 * A NULL host or path matches everything. The most specific route wins: host routes before
 * host-less ones, then the longest path prefix, then the first in the file. */
struct cfg_route {
  char *host;       /* NULL = any host */
  char *path;       /* NULL = any path ("/" behaves the same) */
  size_t upstream;  /* index into lbp_config.upstreams */
  char *set_host;   /* the Host sent upstream instead of the client's, NULL = the client's */
  int strip_prefix; /* 1: `path` is removed from the target sent upstream */
  int line, col;    /* position of the route entry */
};

/* One listening address. The short form `listen:` is one HTTP listener over the top-level
 * routes; `listeners:` lists several, each HTTP (own routes, one upstream, or the top-level
 * routes) or TCP (one upstream). */
struct cfg_listener {
  struct cfg_addr addr;
  enum cfg_mode mode;
  struct cfg_route *routes; /* http: the routes serving it (own_routes ? its own : top-level) */
  size_t nroutes;
  int own_routes;
  size_t upstream; /* tcp: index into lbp_config.upstreams */
  int line, col;   /* position of the listener entry (of `listen:` for the short form) */
};

/* How the master restarts a worker that exited unexpectedly (see README, "Supervision"). */
struct cfg_restart {
  uint64_t delay_ms;       /* first restart delay, doubled after each exit; default 100ms */
  uint64_t max_delay_ms;   /* the doubling stops here; default 15s */
  uint64_t reset_after_ms; /* a worker up this long resets the delay; default 30s */
  unsigned max_exits;      /* more exits than this within `window` -> the slot is errored */
  uint64_t window_ms;      /* default 1m */
};

struct cfg_timeouts {
  uint64_t connect_ms;           /* upstream connect, default 5s */
  uint64_t client_header_ms;     /* whole request head must arrive within, default 10s -> 408 */
  uint64_t client_idle_ms;       /* keep-alive idle between requests, default 60s */
  uint64_t upstream_response_ms; /* waiting for (and between reads of) a response, default 60s */
  uint64_t client_send_ms;       /* a response write waiting for the client to read, default 60s */
  uint64_t tunnel_idle_ms;       /* an Upgrade tunnel with no byte either way, default 1h */
  uint64_t tcp_idle_ms;          /* a tcp listener's connection with no byte either way, 10m */
};

struct cfg_limits {
  uint64_t max_header_bytes; /* request head size limit, default 16k -> 431 */
  uint64_t max_body_bytes;   /* request body size limit, 0 (default) = none -> 413 */
  unsigned max_connections;  /* client connections per worker, 0 (default) = no limit */
};

/* The admin API (served by the master). */
struct cfg_admin {
  char *listen;     /* "host:port", or "off"; default 127.0.0.1:9900 */
  int allow_public; /* a listen address that is not loopback is refused unless set */
};

/* Log levels, in the order of enum lbp_log_level (workers/log.h). */
enum cfg_log_level { CFG_LOG_DEBUG = 0, CFG_LOG_INFO, CFG_LOG_WARN, CFG_LOG_ERROR };

struct lbp_config {
  char *file;             /* the name errors are reported against */
  struct cfg_addr listen; /* the short form (default 0.0.0.0:8080); listeners[] is what counts */
  unsigned workers;       /* resolved: "auto" becomes the CPU count */
  int workers_auto;       /* 1 when the file said "auto" (or nothing) */
  enum cfg_dispatch dispatch;
  char *user;   /* NULL when unset */
  uint32_t uid; /* user's ids, looked up at load (not with CFG_NO_RESOLVE) */
  uint32_t gid;
  int has_user_ids;
  uint64_t stats_interval_ms; /* master logs a per-worker "stats" line this often; 0 = never */
  uint16_t proxy_port_base;   /* dispatch proxy: worker i's private port is base+i; 0 = ephemeral */
  int rebalance;  /* dispatch handoff-least: move keep-alive connections off a worker that serves
                     more than its share of requests (workers/rebalance.c), default yes */
  char *pid_file; /* NULL: none */
  uint64_t shutdown_timeout_ms; /* graceful stop / drain deadline, default 30s */
  char *error_log;              /* "stderr" (default) or a file path */
  char *access_log;             /* "off" (default), "stdout" or a file path */
  enum cfg_log_level log_level; /* default info */
  int debug_header;             /* add X-Lbproxy-Worker to responses (tests, debugging) */
  int forwarded;                /* add an RFC 7239 Forwarded element to requests, default no */
  struct cfg_restart restart;
  struct cfg_admin admin;
  struct cfg_timeouts timeouts;
  struct cfg_limits limits;
  struct cfg_listener *listeners; /* at least one */
  size_t nlisteners;
  struct cfg_upstream *upstreams;
  size_t nupstreams;
  struct cfg_route *routes; /* the top-level routes */
  size_t nroutes;
  char **warnings; /* valid but surely wrong ("file:line:col: what"), for -t and the log */
  size_t nwarnings;
};

/* Every error names file:line:col, the key, and what is wrong, in one line. */
struct cfg_error {
  char msg[768];
};

/* Parses `len` bytes of YAML named `name` (used in error messages) into a new config.
 * Returns 0 and sets *out (caller frees with cfg_free), or a negative errno-style code and
 * fills err->msg ("name:line:col: ..."). Runs all three steps: shape (YAML), fields (the key
 * table), meaning (cross checks, address resolution). */
int cfg_parse(const char *name, const char *bytes, size_t len, struct lbp_config **out,
              struct cfg_error *err);

/* Flags for cfg_parse_ex. */
enum cfg_parse_flags {
  /* Resolve nothing: no getaddrinfo, no user lookup (a worker parsing bytes the master already
   * validated and resolved; the master sends it the addresses). */
  CFG_NO_RESOLVE = 1 << 0,
};

/* cfg_parse with flags. */
int cfg_parse_ex(const char *name, const char *bytes, size_t len, unsigned flags,
                 struct lbp_config **out, struct cfg_error *err);

/* Reads `path` and parses it as cfg_parse does. If `bytes_out` is not NULL it receives the
 * file's bytes (malloc'ed, NUL-terminated; *len_out its length) so the master can send the
 * exact bytes it validated to its workers. */
int cfg_load_file(const char *path, struct lbp_config **out, struct cfg_error *err,
                  char **bytes_out, size_t *len_out);

void cfg_free(struct lbp_config *cfg);

/* "250ms", "2s", "1m", "1h", or a bare number of seconds -> milliseconds. 0 or UV_EINVAL. */
int cfg_parse_duration(const char *s, uint64_t *ms);

/* "512", "16k", "1m", "1g" (binary multiples, case-insensitive) -> bytes. 0 or UV_EINVAL. */
int cfg_parse_size(const char *s, uint64_t *bytes);

/* "host:port", "[v6]:port" or "*:port" (any address) -> a->host, a->port (not resolved).
 * 0 or UV_EINVAL. */
int cfg_parse_hostport(const char *s, struct cfg_addr *a);

/* Resolves a->host/a->port into a->sa/a->salen (numeric first, then getaddrinfo; the first
 * IPv4 or IPv6 result). "*" (or an empty host) is [::] with a->any set: the socket layer binds
 * it dual-stack, or 0.0.0.0 where the system has no IPv6. 0 or a negative UV_E* style code. */
int cfg_resolve(struct cfg_addr *a);

/* Writes the effective config (every key, defaults filled in) as YAML (lbproxy -T). */
void cfg_dump(const struct lbp_config *cfg, FILE *f);

#endif
