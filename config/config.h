/* lbproxy configuration: the plain structs a YAML file is parsed into, and the loader's API. */
#ifndef LBP_CONFIG_H
#define LBP_CONFIG_H

#include <stddef.h>
#include <stdint.h>
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
  int line, col; /* 1-based position of the value in the file */
};

struct cfg_server {
  struct cfg_addr addr;
  unsigned weight; /* 1..1000, default 1 */
};

struct cfg_upstream {
  char *name;
  struct cfg_server *servers;
  size_t nservers;
  unsigned keepalive; /* idle upstream connections kept per server per worker, default 32 */
  int line, col;      /* position of the upstream's name */
};

/* A route sends requests whose Host matches `host` (exact, case-insensitive, port ignored;
 * "*.example.com" matches any subdomain) and whose path starts with `path` to an upstream.
 * A NULL host or path matches everything. The most specific route wins: host routes before
 * host-less ones, then the longest path prefix, then the first in the file. */
struct cfg_route {
  char *host;      /* NULL = any host */
  char *path;      /* NULL = any path ("/" behaves the same) */
  size_t upstream; /* index into lbp_config.upstreams */
  int line, col;   /* position of the route entry */
};

struct cfg_timeouts {
  uint64_t connect_ms;           /* upstream connect, default 5s */
  uint64_t client_header_ms;     /* whole request head must arrive within, default 10s -> 408 */
  uint64_t client_idle_ms;       /* keep-alive idle between requests, default 60s */
  uint64_t upstream_response_ms; /* waiting for (and between reads of) a response, default 60s */
};

struct cfg_limits {
  uint64_t max_header_bytes; /* request head size limit, default 16k -> 431 */
};

struct lbp_config {
  char *file;             /* the name errors are reported against */
  struct cfg_addr listen; /* default 0.0.0.0:8080 */
  unsigned workers;       /* resolved: "auto" becomes the CPU count */
  int workers_auto;       /* 1 when the file said "auto" (or nothing) */
  enum cfg_dispatch dispatch;
  char *user;                 /* NULL when unset */
  uint64_t stats_interval_ms; /* master logs a per-worker "stats" line this often; 0 = never */
  uint16_t proxy_port_base;   /* dispatch proxy: worker i's private port is base+i; 0 = ephemeral */
  struct cfg_timeouts timeouts;
  struct cfg_limits limits;
  struct cfg_upstream *upstreams;
  size_t nupstreams;
  struct cfg_route *routes;
  size_t nroutes;
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

/* Reads `path` and parses it as cfg_parse does. If `bytes_out` is not NULL it receives the
 * file's bytes (malloc'ed, NUL-terminated; *len_out its length) so the master can send the
 * exact bytes it validated to its workers. */
int cfg_load_file(const char *path, struct lbp_config **out, struct cfg_error *err,
                  char **bytes_out, size_t *len_out);

void cfg_free(struct lbp_config *cfg);

/* "250ms", "2s", "1m", "1h", or a bare number of seconds -> milliseconds. 0 or -EINVAL. */
int cfg_parse_duration(const char *s, uint64_t *ms);

/* "512", "16k", "1m", "1g" (binary multiples, case-insensitive) -> bytes. 0 or -EINVAL. */
int cfg_parse_size(const char *s, uint64_t *bytes);

/* "host:port", "[v6]:port" or "*:port" (any address) -> a->host, a->port (not resolved).
 * 0 or -EINVAL. */
int cfg_parse_hostport(const char *s, struct cfg_addr *a);

/* Resolves a->host/a->port into a->sa/a->salen (numeric first, then getaddrinfo; the first
 * IPv4 or IPv6 result). 0 or a negative UV_E* style code. */
int cfg_resolve(struct cfg_addr *a);

#endif
