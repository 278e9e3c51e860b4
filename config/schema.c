/* The config schema: one table per mapping (each key's type, bounds, default and place in the
 * structs), and the parsers of the keys that are lists or maps of entries. Adding a key is one
 * line in a table here; fields.c applies the tables, dump.c prints them back (lbproxy -T). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "fields.h"

static int parse_upstreams(struct cfg__ctx *, const struct field *, const struct cfg__node *,
                           void *, const char *);
static int parse_servers(struct cfg__ctx *, const struct field *, const struct cfg__node *, void *,
                         const char *);
static int parse_routes(struct cfg__ctx *, const struct field *, const struct cfg__node *, void *,
                        const char *);
static int parse_listener_routes(struct cfg__ctx *, const struct field *, const struct cfg__node *,
                                 void *, const char *);
static int parse_listeners(struct cfg__ctx *, const struct field *, const struct cfg__node *,
                           void *, const char *);
static int check_upstream_ref(struct cfg__ctx *, const struct field *, const struct cfg__node *,
                              void *, const char *);
static void dump_upstreams(FILE *, const struct lbp_config *, const void *, int, int *);
static void dump_servers(FILE *, const struct lbp_config *, const void *, int, int *);
static void dump_routes(FILE *, const struct lbp_config *, const void *, int, int *);
static void dump_route_upstream(FILE *, const struct lbp_config *, const void *, int, int *);
static void dump_listeners(FILE *, const struct lbp_config *, const void *, int, int *);
static void dump_listener_routes(FILE *, const struct lbp_config *, const void *, int, int *);
static void dump_listener_upstream(FILE *, const struct lbp_config *, const void *, int, int *);
static const char *check_nonempty(const char *s);
static const char *check_path(const char *s);
static const char *check_log_target(const char *s);
static const char *check_route_host(const char *s);
static const char *check_route_path(const char *s);
static const char *check_set_host(const char *s);

/* clang-format off */
static const struct field timeout_fields[] = {
#define TO(m) AT(struct cfg_timeouts, m)
  KEY("connect",           T_DURATION, TO(connect_ms),           1, HOUR, "5s"),
  KEY("client_header",     T_DURATION, TO(client_header_ms),     1, HOUR, "10s"),
  KEY("client_idle",       T_DURATION, TO(client_idle_ms),       1, HOUR, "60s"),
  KEY("upstream_response", T_DURATION, TO(upstream_response_ms), 1, HOUR, "60s"),
  KEY("client_send",       T_DURATION, TO(client_send_ms),       1, HOUR, "60s"),
  KEY("tunnel_idle",       T_DURATION, TO(tunnel_idle_ms),       1, 24 * HOUR, "1h"),
  KEY("tcp_idle",          T_DURATION, TO(tcp_idle_ms),          1, 24 * HOUR, "10m"),
  {0},
#undef TO
};

static const struct field limit_fields[] = {
#define LI(m) AT(struct cfg_limits, m)
  KEY("max_header_bytes", T_SIZE, LI(max_header_bytes), KIB, KIB * KIB,             "16k"),
  KEY("max_body_bytes",   T_SIZE, LI(max_body_bytes),   0,   KIB * KIB * KIB * KIB, "0"),
  KEY("max_connections",  T_UINT, LI(max_connections),  0,   1000000,               "0"),
  {0},
#undef LI
};

static const struct field server_fields[] = {
  KEY("address", T_HOSTPORT, AT(struct cfg_server, addr),   1, 65535, NULL, .flags = REQUIRED),
  KEY("weight",  T_UINT,     AT(struct cfg_server, weight), 1, 1000,  "1"),
  {0},
};

static const struct field upstream_fields[] = {
  KEY("keepalive", T_UINT,   AT(struct cfg_upstream, keepalive), 0, 10000, "32"),
  KEY("keepalive_timeout", T_DURATION, AT(struct cfg_upstream, keepalive_timeout_ms), 1, HOUR,
      "4s"),
  KEY("servers",   T_CUSTOM, NO_OFFSET,                          1, 256,   NULL, .flags = REQUIRED,
      .fn = parse_servers, .dump = dump_servers),
  {0},
};

static const struct field route_fields[] = {
  KEY("host",     T_STRING, AT(struct cfg_route, host), 0, 0, NULL, .check = check_route_host),
  KEY("path",     T_STRING, AT(struct cfg_route, path), 0, 0, NULL, .check = check_route_path),
  KEY("upstream", T_CUSTOM, NO_OFFSET,                  0, 0, NULL, .flags = REQUIRED,
      .fn = check_upstream_ref, .dump = dump_route_upstream),
  KEY("set_host", T_STRING, AT(struct cfg_route, set_host), 0, 0, NULL,
      .check = check_set_host),
  KEY("strip_prefix", T_BOOL, AT(struct cfg_route, strip_prefix), 0, 0, "false"),
  {0},
};

static const struct field restart_fields[] = {
#define RS(m) AT(struct cfg_restart, m)
  KEY("delay",       T_DURATION, RS(delay_ms),       1,   HOUR,      "100ms"),
  KEY("max_delay",   T_DURATION, RS(max_delay_ms),   1,   HOUR,      "15s"),
  KEY("reset_after", T_DURATION, RS(reset_after_ms), 1,   24 * HOUR, "30s"),
  KEY("max_exits",   T_UINT,     RS(max_exits),      1,   100000,    "10"),
  KEY("window",      T_DURATION, RS(window_ms),      1,   24 * HOUR, "1m"),
  {0},
#undef RS
};

static const char *const mode_names[] = {"http", "tcp", NULL};
static const char *const log_level_names[] = {"debug", "info", "warn", "error", NULL};

static const struct field listener_fields[] = {
#define LS(m) AT(struct cfg_listener, m)
  KEY("listen",   T_HOSTPORT, LS(addr), 0, 65535, NULL,   .flags = REQUIRED),
  KEY("mode",     T_ENUM,     LS(mode), 0, 0,     "http", .aux = mode_names),
  KEY("routes",   T_CUSTOM,   NO_OFFSET, 0, 4096, NULL,   .fn = parse_listener_routes,
      .dump = dump_listener_routes),
  KEY("upstream", T_CUSTOM,   NO_OFFSET, 0, 0,    NULL,   .fn = check_upstream_ref,
      .dump = dump_listener_upstream),
  {0},
#undef LS
};

const struct field cfg__top_fields[] = {
#define TOP(m) AT(struct lbp_config, m)
  KEY("listen",          T_HOSTPORT, TOP(listen),            0, 65535,     "0.0.0.0:8080",
      .flags = NO_DUMP),
  KEY("listeners",       T_CUSTOM,   NO_OFFSET,              1, 64,        NULL,
      .fn = parse_listeners, .dump = dump_listeners),
  KEY("workers",         T_WORKERS,  TOP(workers),           1, 256,       "auto"),
  KEY("dispatch",        T_ENUM,     TOP(dispatch),          0, 0,         "handoff",
      .aux = cfg__dispatch_names),
  KEY("user",            T_STRING,   TOP(user),              0, 0,         NULL,
      .check = check_nonempty),
  KEY("stats_interval",  T_DURATION, TOP(stats_interval_ms), 0, 24 * HOUR, "0"),
  KEY("proxy_port_base", T_UINT,     TOP(proxy_port_base),   0, 65535,     "0"),
  KEY("pid_file",        T_STRING,   TOP(pid_file),          0, 0,         NULL,
      .check = check_path),
  KEY("shutdown_timeout", T_DURATION, TOP(shutdown_timeout_ms), 0, 24 * HOUR, "30s"),
  KEY("error_log",       T_STRING,   TOP(error_log),         0, 0,         "stderr",
      .check = check_log_target),
  KEY("log_level",       T_ENUM,     TOP(log_level),         0, 0,         "info",
      .aux = log_level_names),
  KEY("debug_header",    T_BOOL,     TOP(debug_header),      0, 0,         "false"),
  KEY("forwarded",       T_BOOL,     TOP(forwarded),         0, 0,         "false"),
  KEY("restart",         T_TABLE,    TOP(restart),           0, 0,         NULL,
      .aux = restart_fields),
  KEY("timeouts",        T_TABLE,    TOP(timeouts),          0, 0,         NULL,
      .aux = timeout_fields),
  KEY("limits",          T_TABLE,    TOP(limits),            0, 0,         NULL,
      .aux = limit_fields),
  KEY("upstreams",       T_CUSTOM,   NO_OFFSET,              1, 1024,      NULL,
      .flags = REQUIRED, .fn = parse_upstreams, .dump = dump_upstreams),
  KEY("routes",          T_CUSTOM,   NO_OFFSET,              0, 4096,      NULL,
      .fn = parse_routes, .dump = dump_routes),
  {0},
#undef TOP
};
/* clang-format on */

/* Upstream names show up in logs, metrics labels and the admin page: keep them plain. */
static const char *check_upstream_name(const char *s) {
  if (s[0] == '\0')
    return "an upstream name cannot be empty";
  for (; *s != '\0'; s++) {
    char c = *s;
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
          c == '_' || c == '.'))
      return "upstream names may only use letters, digits, '-', '_' and '.'";
  }
  return NULL;
}

/* upstreams: a mapping of name -> upstream. */
static int parse_upstreams(struct cfg__ctx *ctx, const struct field *f, const struct cfg__node *n,
                           void *base, const char *path) {
  struct lbp_config *cfg = base;
  char cpath[CFG__PATH_MAX];
  const char *why;
  int rc;

  if ((rc = cfg__check_entries(ctx, f, n, CFG__MAP, "upstream names to upstreams", path)) != 0 ||
      (rc = cfg__check_duplicates(ctx, n, path)) != 0)
    return rc;
  if ((cfg->upstreams = calloc(n->nchildren, sizeof(*cfg->upstreams))) == NULL)
    return UV_ENOMEM;
  for (const struct cfg__node *c = n->child; c != NULL; c = c->next) {
    struct cfg_upstream *u = &cfg->upstreams[cfg->nupstreams++];
    cfg__join_key(cpath, path, c->key);
    if ((why = check_upstream_name(c->key)) != NULL)
      return cfg__error(ctx, c->key_line, c->key_col, cpath, "%s", why);
    if ((u->name = strdup(c->key)) == NULL)
      return UV_ENOMEM;
    u->line = c->key_line;
    u->col = c->key_col;
    if ((rc = cfg__fill_map(ctx, upstream_fields, c, u, cpath)) != 0)
      return rc;
  }
  return 0;
}

/* servers: a sequence whose items are "host:port" (weight 1) or a mapping. */
static int parse_servers(struct cfg__ctx *ctx, const struct field *f, const struct cfg__node *n,
                         void *base, const char *path) {
  struct cfg_upstream *u = base;
  char cpath[CFG__PATH_MAX];
  int rc;

  if ((rc = cfg__check_entries(ctx, f, n, CFG__SEQ, "servers", path)) != 0)
    return rc;
  if ((u->servers = calloc(n->nchildren, sizeof(*u->servers))) == NULL)
    return UV_ENOMEM;
  for (const struct cfg__node *c = n->child; c != NULL; c = c->next) {
    struct cfg_server *s = &u->servers[u->nservers];
    cfg__join_index(cpath, path, u->nservers++);
    if (c->kind == CFG__SEQ)
      return cfg__wrong_type(ctx, c, cpath, "host:port or a mapping");
    if (c->kind == CFG__SCALAR && !c->is_null) {
      if ((rc = cfg__apply_defaults(ctx, server_fields, s)) == 0)
        rc = cfg__set_value(ctx, cfg__find_field(server_fields, "address"), c, s, cpath);
    } else {
      rc = cfg__fill_map(ctx, server_fields, c, s, cpath);
    }
    if (rc != 0)
      return rc;
  }
  return 0;
}

/* A sequence of route mappings into (*out, *nout); linked to upstreams by the meaning step. */
static int parse_route_list(struct cfg__ctx *ctx, const struct field *f, const struct cfg__node *n,
                            const char *path, struct cfg_route **out, size_t *nout) {
  char cpath[CFG__PATH_MAX];
  int rc;

  if (n->kind == CFG__SCALAR && n->is_null)
    return 0;
  if ((rc = cfg__check_entries(ctx, f, n, CFG__SEQ, "routes", path)) != 0)
    return rc;
  if (n->nchildren == 0)
    return 0;
  if ((*out = calloc(n->nchildren, sizeof(**out))) == NULL)
    return UV_ENOMEM;
  for (const struct cfg__node *c = n->child; c != NULL; c = c->next) {
    struct cfg_route *r = &(*out)[*nout];
    cfg__join_index(cpath, path, (*nout)++);
    r->line = c->line;
    r->col = c->col;
    if ((rc = cfg__fill_map(ctx, route_fields, c, r, cpath)) != 0)
      return rc;
  }
  return 0;
}

/* routes: the top-level route list. */
static int parse_routes(struct cfg__ctx *ctx, const struct field *f, const struct cfg__node *n,
                        void *base, const char *path) {
  struct lbp_config *cfg = base;
  return parse_route_list(ctx, f, n, path, &cfg->routes, &cfg->nroutes);
}

/* listeners[i].routes: a listener's own routes. */
static int parse_listener_routes(struct cfg__ctx *ctx, const struct field *f,
                                 const struct cfg__node *n, void *base, const char *path) {
  struct cfg_listener *l = base;
  int rc = parse_route_list(ctx, f, n, path, &l->routes, &l->nroutes);
  l->own_routes = l->routes != NULL;
  return rc;
}

/* listeners: a sequence of listener mappings. */
static int parse_listeners(struct cfg__ctx *ctx, const struct field *f, const struct cfg__node *n,
                           void *base, const char *path) {
  struct lbp_config *cfg = base;
  char cpath[CFG__PATH_MAX];
  int rc;

  if ((rc = cfg__check_entries(ctx, f, n, CFG__SEQ, "listeners", path)) != 0)
    return rc;
  if ((cfg->listeners = calloc(n->nchildren, sizeof(*cfg->listeners))) == NULL)
    return UV_ENOMEM;
  for (const struct cfg__node *c = n->child; c != NULL; c = c->next) {
    struct cfg_listener *l = &cfg->listeners[cfg->nlisteners];
    cfg__join_index(cpath, path, cfg->nlisteners++);
    l->line = c->line;
    l->col = c->col;
    if ((rc = cfg__fill_map(ctx, listener_fields, c, l, cpath)) != 0)
      return rc;
  }
  return 0;
}

/* A route's upstream name is only checked for being a name here; the meaning step turns it into
 * an index once every upstream is known (they may come after the routes in the file). */
static int check_upstream_ref(struct cfg__ctx *ctx, const struct field *f,
                              const struct cfg__node *n, void *base, const char *path) {
  if (n->kind != CFG__SCALAR || n->is_null)
    return cfg__wrong_type(ctx, n, path, "an upstream name");
  if (n->text[0] == '\0')
    return cfg__error(ctx, n->line, n->col, path, "an upstream name cannot be empty");
  return 0;
}

static const char *check_nonempty(const char *s) {
  return s[0] == '\0' ? "cannot be empty" : NULL;
}

static const char *check_path(const char *s) {
  return s[0] == '\0' ? "a file path cannot be empty" : NULL;
}

static const char *check_log_target(const char *s) {
  return s[0] == '\0' ? "expected 'stderr' or a file path" : NULL;
}

/* A Host to match: a name ("api.example.com") or a wildcard for its subdomains ("*.example.com").
 * The request's port is ignored when matching, so none may be given here. */
static const char *check_route_host(const char *s) {
  const char *name = strncmp(s, "*.", 2) == 0 ? s + 2 : s;

  if (name[0] == '\0')
    return "a route host cannot be empty";
  for (const char *p = name; *p != '\0'; p++) {
    unsigned char c = (unsigned char)*p;
    if (c <= ' ' || c >= 0x7f || c == '*' || c == '/' || c == ':')
      return "a route host is a name like 'api.example.com' or '*.example.com', without port";
  }
  return NULL;
}

static const char *check_route_path(const char *s) {
  return s[0] != '/' ? "a route path must start with '/'" : NULL;
}

/* A Host value goes into a request head as it is: no control bytes, spaces or line breaks. */
static const char *check_set_host(const char *s) {
  if (s[0] == '\0')
    return "a host cannot be empty";
  for (; *s != '\0'; s++)
    if ((unsigned char)*s <= ' ' || (unsigned char)*s >= 0x7f)
      return "a host is a name or address with an optional :port, without spaces";
  return NULL;
}

/* ---- writing the lists back (cfg_dump) ---- */

static void dump_upstreams(FILE *out, const struct lbp_config *cfg, const void *base, int indent,
                           int *first) {
  cfg__dump_key(out, indent, first, "upstreams");
  fputc('\n', out);
  for (size_t i = 0; i < cfg->nupstreams; i++) {
    fprintf(out, "%*s%s:\n", indent + 2, "", cfg->upstreams[i].name);
    cfg__dump_table(out, cfg, upstream_fields, &cfg->upstreams[i], indent + 4, 0);
  }
}

static void dump_servers(FILE *out, const struct lbp_config *cfg, const void *base, int indent,
                         int *first) {
  const struct cfg_upstream *u = base;

  cfg__dump_key(out, indent, first, "servers");
  fputc('\n', out);
  for (size_t i = 0; i < u->nservers; i++)
    cfg__dump_table(out, cfg, server_fields, &u->servers[i], indent + 4, 1);
}

static void dump_route_list(FILE *out, const struct lbp_config *cfg, const struct cfg_route *r,
                            size_t n, int indent, int *first) {
  cfg__dump_key(out, indent, first, "routes");
  fputs(n == 0 ? " []\n" : "\n", out);
  for (size_t i = 0; i < n; i++)
    cfg__dump_table(out, cfg, route_fields, &r[i], indent + 4, 1);
}

static void dump_routes(FILE *out, const struct lbp_config *cfg, const void *base, int indent,
                        int *first) {
  dump_route_list(out, cfg, cfg->routes, cfg->nroutes, indent, first);
}

static void dump_route_upstream(FILE *out, const struct lbp_config *cfg, const void *base,
                                int indent, int *first) {
  const struct cfg_route *r = base;
  cfg__dump_key(out, indent, first, "upstream");
  fprintf(out, " %s\n", cfg->upstreams[r->upstream].name);
}

static void dump_listeners(FILE *out, const struct lbp_config *cfg, const void *base, int indent,
                           int *first) {
  cfg__dump_key(out, indent, first, "listeners");
  fputc('\n', out);
  for (size_t i = 0; i < cfg->nlisteners; i++)
    cfg__dump_table(out, cfg, listener_fields, &cfg->listeners[i], indent + 4, 1);
}

/* A listener without routes of its own uses the top-level ones: nothing to write. */
static void dump_listener_routes(FILE *out, const struct lbp_config *cfg, const void *base,
                                 int indent, int *first) {
  const struct cfg_listener *l = base;
  if (l->mode == CFG_MODE_HTTP && l->own_routes)
    dump_route_list(out, cfg, l->routes, l->nroutes, indent, first);
}

static void dump_listener_upstream(FILE *out, const struct lbp_config *cfg, const void *base,
                                   int indent, int *first) {
  const struct cfg_listener *l = base;
  if (l->mode == CFG_MODE_TCP) {
    cfg__dump_key(out, indent, first, "upstream");
    fprintf(out, " %s\n", cfg->upstreams[l->upstream].name);
  }
}
