/* The admin listener: a small, strict HTTP/1.1 server in the master's loop, dispatching by a
 * table of routes (/stats, /metrics, /events, the status page; admin actions may add theirs). */
#ifndef LBP_ADMIN_H
#define LBP_ADMIN_H

#include "abuf.h"

#include <stddef.h>

struct master;
struct lbp_config;

#define ADMIN_MAX_ARGS 8

/* A request, as a handler sees it. Strings are NUL-terminated and valid during the call. */
struct admin_req {
  struct master *m;
  const char *method; /* "GET", "HEAD", "POST", ... */
  const char *path;   /* "/servers/app/127.0.0.1:9001/drain" (percent-decoded segments) */
  const char *query;  /* what followed '?', or "" */
  const char *args[ADMIN_MAX_ARGS]; /* the segments the route's '*'s matched, percent-decoded */
  unsigned nargs;
  const char *body; /* POST: the body (at most ADMIN_BODY_MAX bytes), else "" */
  size_t body_len;
};

/* What a handler fills in. status defaults to 200 and type to JSON. */
struct admin_resp {
  int status;
  const char *type;    /* Content-Type */
  const char *headers; /* extra header lines, each ending in CRLF, or NULL */
  struct abuf body;
};

typedef void (*admin_handler_fn)(const struct admin_req *req, struct admin_resp *resp);

/* One route: a method ("GET" also answers HEAD) and a path pattern of '/'-separated segments,
 * where "*" matches any one non-empty segment ("/servers/ * / * /drain" without the spaces).
 * A table ends with an entry whose method is NULL. */
struct admin_route {
  const char *method;
  const char *pattern;
  admin_handler_fn fn;
};

/* The read-only routes (admin_routes.c): /, /stats, /metrics, /events. */
extern const struct admin_route admin_read_routes[];
/* The upstream routes (admin_servers.c): /upstreams, and a server's drain, disable, enable,
 * weight. */
extern const struct admin_route admin_server_routes[];

/* An error answer: `status` and a one-line text/plain reason. */
void admin_error(struct admin_resp *resp, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Serves the admin API as `cfg` says (admin.listen): binds when it is new or changed, closes
 * when it is off. A bind that fails is logged and the API stays off (the proxy serves on); in
 * the new master of a binary upgrade, whose predecessor holds the port until it leaves, it is
 * retried every second. */
void admin_apply(struct master *m, const struct lbp_config *cfg);
/* Closes the listener and every admin connection (the master is stopping). */
void admin_stop(struct master *m);
/* "HOST:PORT" when listening, "off" when disabled, "unbound" while a bind is being retried. */
const char *admin_address(const struct master *m);

#endif
