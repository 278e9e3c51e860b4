/* The config schema: one table per mapping (each key's type, bounds, default and place in the
 * structs), and the parsers of the keys that are lists or maps of entries. Adding a key is one
 * line in a table here; fields.c applies the tables, dump.c prints them back (lbproxy -T). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <ctype.h>
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
static int parse_hash_key(struct cfg__ctx *, const struct field *, const struct cfg__node *, void *,
                          const char *);
static int parse_retry_on(struct cfg__ctx *, const struct field *, const struct cfg__node *, void *,
                          const char *);
static int parse_health_check(struct cfg__ctx *, const struct field *, const struct cfg__node *,
                              void *, const char *);
static int parse_expect_status(struct cfg__ctx *, const struct field *, const struct cfg__node *,
                               void *, const char *);
static void dump_hash_key(FILE *, const struct lbp_config *, const void *, int, int *);
static void dump_retry_on(FILE *, const struct lbp_config *, const void *, int, int *);
static void dump_health_check(FILE *, const struct lbp_config *, const void *, int, int *);
static void dump_expect_status(FILE *, const struct lbp_config *, const void *, int, int *);
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
static const char *check_access_log(const char *s);
static const char *check_route_host(const char *s);
static const char *check_route_path(const char *s);
static const char *check_set_host(const char *s);
static const char *check_check_host(const char *s);
static const char *check_admin_listen(const char *s);
static const char *check_server_host(const char *s);

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
#undef LI
  {0},
};

static const struct field server_fields[] = {
  KEY("address", T_HOSTPORT, AT(struct cfg_server, addr),   1, 65535, NULL, .flags = REQUIRED,
      .check = check_server_host),
  KEY("weight",  T_UINT,     AT(struct cfg_server, weight), 1, 1000,  "1"),
  KEY("backup",  T_BOOL,     AT(struct cfg_server, backup), 0, 0,     "false"),
  {0},
};

static const char *const check_type_names[] = {"tcp", "http", NULL};

/* health_check: (the mapping; expect_status defaults to 200-399 in parse_health_check). */
static const struct field health_check_fields[] = {
#define HC(m) AT(struct cfg_health_check, m)
  KEY("type",          T_ENUM,     HC(type),        0,   0,    "tcp", .aux = check_type_names),
  KEY("path",          T_STRING,   HC(path),        0,   0,    "/",   .check = check_route_path),
  KEY("host",          T_STRING,   HC(host),        0,   0,    NULL,  .check = check_check_host),
  KEY("expect_status", T_CUSTOM,   NO_OFFSET,       0,   0,    NULL,
      .fn = parse_expect_status, .dump = dump_expect_status),
  KEY("interval",      T_DURATION, HC(interval_ms), 10,  HOUR, "2s"),
  KEY("timeout",       T_DURATION, HC(timeout_ms),  1,   HOUR, "1s"),
  KEY("rise",          T_UINT,     HC(rise),        1,   100,  "2"),
  KEY("fall",          T_UINT,     HC(fall),        1,   100,  "3"),
  KEY("jitter",        T_PERCENT,  HC(jitter_pct),  0,   50,   "10%"),
  {0},
#undef HC
};

/* upstreams.NAME (retry_on defaults to connect_failure, reset in parse_upstreams). */
static const struct field upstream_fields[] = {
#define UP(m) AT(struct cfg_upstream, m)
  KEY("keepalive",        T_UINT,     UP(keepalive),           0, 10000,     "32"),
  KEY("keepalive_timeout", T_DURATION, UP(keepalive_timeout_ms), 1, HOUR,     "4s"),
  KEY("balance",          T_ENUM,     UP(balance),             0, 0,         "round_robin",
      .aux = cfg__balance_names),
  KEY("hash_key",         T_CUSTOM,   NO_OFFSET,               0, 0,         NULL,
      .fn = parse_hash_key, .dump = dump_hash_key),
  KEY("panic",            T_BOOL,     UP(panic),               0, 0,         "false"),
  KEY("slow_start",       T_DURATION, UP(slow_start_ms),       0, HOUR,      "0"),
  KEY("max_fails",        T_UINT,     UP(max_fails),           0, 1000,      "3"),
  KEY("fail_timeout",     T_DURATION, UP(fail_timeout_ms),     1, HOUR,      "10s"),
  KEY("retries",          T_UINT,     UP(retries),             0, 10,        "1"),
  KEY("retry_on",         T_CUSTOM,   NO_OFFSET,               0, 6,         NULL,
      .fn = parse_retry_on, .dump = dump_retry_on),
  KEY("retry_budget",     T_PERCENT,  UP(retry_budget_pct),    0, 100,       "20%"),
  KEY("resolve_interval", T_DURATION, UP(resolve_interval_ms), 0, 24 * HOUR, "5s"),
  KEY("health_check",     T_CUSTOM,   NO_OFFSET,               0, 0,         NULL,
      .fn = parse_health_check, .dump = dump_health_check),
  KEY("servers",          T_CUSTOM,   NO_OFFSET,               1, 256,       NULL,
      .flags = REQUIRED, .fn = parse_servers, .dump = dump_servers),
  {0},
#undef UP
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
  KEY("max_exits",   T_UINT,     RS(max_exits),      1,   100,       "10"),
  KEY("window",      T_DURATION, RS(window_ms),      1,   24 * HOUR, "1m"),
  {0},
#undef RS
};

static const struct field admin_fields[] = {
#define AD(m) AT(struct cfg_admin, m)
  KEY("listen",       T_STRING, AD(listen),       0, 0, "127.0.0.1:9900",
      .check = check_admin_listen),
  KEY("allow_public", T_BOOL,   AD(allow_public), 0, 0, "false"),
  {0},
#undef AD
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
  KEY("rebalance",       T_BOOL,     TOP(rebalance),         0, 0,         "true"),
  KEY("pid_file",        T_STRING,   TOP(pid_file),          0, 0,         NULL,
      .check = check_path),
  KEY("shutdown_timeout", T_DURATION, TOP(shutdown_timeout_ms), 0, 24 * HOUR, "30s"),
  KEY("error_log",       T_STRING,   TOP(error_log),         0, 0,         "stderr",
      .check = check_log_target),
  KEY("access_log",      T_STRING,   TOP(access_log),        0, 0,         "off",
      .check = check_access_log),
  KEY("log_level",       T_ENUM,     TOP(log_level),         0, 0,         "info",
      .aux = log_level_names),
  KEY("debug_header",    T_BOOL,     TOP(debug_header),      0, 0,         "false"),
  KEY("forwarded",       T_BOOL,     TOP(forwarded),         0, 0,         "false"),
  KEY("restart",         T_TABLE,    TOP(restart),           0, 0,         NULL,
      .aux = restart_fields),
  KEY("admin",           T_TABLE,    TOP(admin),             0, 0,         NULL,
      .aux = admin_fields),
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
    u->retry_on = CFG_RETRY_ON_DEFAULT; /* a list: the table cannot hold its default */
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

/* An HTTP token (RFC 9110 5.6.2): what a header field name is made of. */
static int is_token(const char *s) {
  if (*s == '\0')
    return 0;
  for (; *s != '\0'; s++) {
    unsigned char c = (unsigned char)*s;
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
          strchr("!#$%&'*+-.^_`|~", c) != NULL))
      return 0;
  }
  return 1;
}

/* hash_key: client_ip, uri, or header:<Name>. */
static int parse_hash_key(struct cfg__ctx *ctx, const struct field *f, const struct cfg__node *n,
                          void *base, const char *path) {
  static const char *const plain[] = {"client_ip", "uri", NULL};
  struct cfg_upstream *u = base;
  char shown[64], hint[96] = "";
  const char *close;

  if (n->kind != CFG__SCALAR || n->is_null)
    return cfg__wrong_type(ctx, n, path, "client_ip, uri or header:<Name>");
  if (strcmp(n->text, "client_ip") == 0 || strcmp(n->text, "uri") == 0) {
    u->hash_key = n->text[0] == 'c' ? CFG_HASH_KEY_CLIENT_IP : CFG_HASH_KEY_URI;
    return 0;
  }
  if (strncmp(n->text, "header:", 7) == 0) {
    if (!is_token(n->text + 7))
      return cfg__error(ctx, n->line, n->col, path,
                        "'%s' is not a header name (letters, digits and !#$%%&'*+-.^_`|~)",
                        cfg__show(shown, sizeof(shown), n->text + 7));
    free(u->hash_header);
    if ((u->hash_header = strdup(n->text + 7)) == NULL)
      return UV_ENOMEM;
    u->hash_key = CFG_HASH_KEY_HEADER;
    return 0;
  }
  if ((close = cfg__closest(n->text, plain)) != NULL)
    snprintf(hint, sizeof(hint), "; did you mean '%s'?", close);
  return cfg__error(ctx, n->line, n->col, path,
                    "unknown value '%s' (expected client_ip, uri or header:<Name>)%s",
                    cfg__show(shown, sizeof(shown), n->text), hint);
}

/* The retry_on spellings, in the order of enum cfg_retry_on. */
static const char *const retry_on_names[] = {"connect_failure", "reset",    "timeout", "http_502",
                                             "http_503",        "http_504", NULL};

/* retry_on: a sequence of failure kinds (possibly empty: never retry). */
static int parse_retry_on(struct cfg__ctx *ctx, const struct field *f, const struct cfg__node *n,
                          void *base, const char *path) {
  const struct field item = {
      .name = f->name, .type = T_ENUM, .width = sizeof(int), .aux = retry_on_names};
  struct cfg_upstream *u = base;
  char ipath[CFG__PATH_MAX];
  size_t k = 0;
  int rc, v;

  if ((rc = cfg__check_entries(ctx, f, n, CFG__SEQ, "failure kinds", path)) != 0)
    return rc;
  u->retry_on = 0;
  for (const struct cfg__node *c = n->child; c != NULL; c = c->next) {
    cfg__join_index(ipath, path, k++);
    if ((rc = cfg__set_value(ctx, &item, c, &v, ipath)) != 0)
      return rc;
    u->retry_on |= 1u << v;
  }
  return 0;
}

/* health_check: a mapping (an empty one means every default); its presence turns checks on. */
static int parse_health_check(struct cfg__ctx *ctx, const struct field *f,
                              const struct cfg__node *n, void *base, const char *path) {
  struct cfg_health_check *hc = &((struct cfg_upstream *)base)->health_check;

  hc->enabled = 1;
  hc->status_lo = 200;
  hc->status_hi = 399;
  return cfg__fill_map(ctx, health_check_fields, n, hc, path);
}

/* expect_status: one status ("200") or a range ("200-399"), within 100..599. */
static int parse_expect_status(struct cfg__ctx *ctx, const struct field *f,
                               const struct cfg__node *n, void *base, const char *path) {
  struct cfg_health_check *hc = base;
  char lo_text[16] = "", shown[64];
  const char *dash;
  uint64_t lo = 0, hi = 0;
  int bad;

  if (n->kind != CFG__SCALAR || n->is_null)
    return cfg__wrong_type(ctx, n, path, "a status or a range like 200-399");
  dash = strchr(n->text, '-');
  if (dash == NULL) {
    bad = cfg__parse_uint(n->text, &lo) != 0;
    hi = lo;
  } else {
    bad = (size_t)(dash - n->text) >= sizeof(lo_text);
    if (!bad)
      memcpy(lo_text, n->text, (size_t)(dash - n->text));
    bad = bad || cfg__parse_uint(lo_text, &lo) != 0 || cfg__parse_uint(dash + 1, &hi) != 0;
  }
  if (bad || lo < 100 || hi > 599 || lo > hi)
    return cfg__error(ctx, n->line, n->col, path,
                      "'%s' is not a status or a range of statuses like 200-399 (100..599)",
                      cfg__show(shown, sizeof(shown), n->text));
  hc->status_lo = (uint16_t)lo;
  hc->status_hi = (uint16_t)hi;
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

static const char *check_access_log(const char *s) {
  return s[0] == '\0' ? "expected 'off', 'stdout' or a file path" : NULL;
}

/* "off", or host:port (resolved and checked against allow_public when loaded). */
static const char *check_admin_listen(const char *s) {
  struct cfg_addr a;

  if (strcmp(s, "off") == 0)
    return NULL;
  memset(&a, 0, sizeof(a));
  return cfg_parse_hostport(s, &a) != 0 ? "expected host:port (like 127.0.0.1:9900) or off" : NULL;
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

/* The Host a health check sends: a name, maybe with a port; one line, no path. */
static const char *check_check_host(const char *s) {
  if (s[0] == '\0')
    return "a Host value cannot be empty";
  for (; *s != '\0'; s++)
    if ((unsigned char)*s <= ' ' || *s == 0x7f || *s == '/')
      return "a Host value has no spaces, control characters or '/'";
  return NULL;
}

/* A server's host: an IP address, or a DNS name the master will resolve (letters, digits, '-',
 * '_' in dot-separated labels of 1..63 bytes, 253 at most): never empty, never anything a
 * resolver would be handed blindly. */
static const char *check_server_host(const char *s) {
  size_t label = 0, n = strlen(s);

  if (n == 0)
    return "a server needs a host (an IP address or a name) before the port";
  if (strchr(s, ':') != NULL)
    return NULL; /* an IPv6 address in brackets: checked by the address parser */
  if (n > 253)
    return "a host name is at most 253 bytes";
  for (; *s != '\0'; s++) {
    if (*s == '.') {
      if (label == 0)
        return "a host name has no empty label (two dots, or a dot first)";
      label = 0;
    } else if (isalnum((unsigned char)*s) || *s == '-' || *s == '_') {
      if (++label > 63)
        return "a label of a host name is at most 63 bytes";
    } else {
      return "a host name has only letters, digits, '-', '_' and dots";
    }
  }
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

/* Not set: a comment, where one can stand (not as the first key of a sequence item). */
static void dump_unset(FILE *out, int indent, const int *first, const char *name,
                       const char *what) {
  if (!*first)
    fprintf(out, "%*s# %s: %s\n", indent, "", name, what);
}

static void dump_hash_key(FILE *out, const struct lbp_config *cfg, const void *base, int indent,
                          int *first) {
  const struct cfg_upstream *u = base;
  char text[300];

  if (u->hash_key == CFG_HASH_KEY_NONE) {
    dump_unset(out, indent, first, "hash_key", "(not set)");
    return;
  }
  if (u->hash_key == CFG_HASH_KEY_HEADER)
    snprintf(text, sizeof(text), "header:%s", u->hash_header);
  else
    snprintf(text, sizeof(text), "%s", u->hash_key == CFG_HASH_KEY_URI ? "uri" : "client_ip");
  cfg__dump_key(out, indent, first, "hash_key");
  fputc(' ', out);
  cfg__dump_string(out, text);
  fputc('\n', out);
}

static void dump_retry_on(FILE *out, const struct lbp_config *cfg, const void *base, int indent,
                          int *first) {
  const struct cfg_upstream *u = base;
  const char *sep = "";

  cfg__dump_key(out, indent, first, "retry_on");
  fputs(" [", out);
  for (unsigned k = 0; retry_on_names[k] != NULL; k++)
    if (u->retry_on & (1u << k)) {
      fprintf(out, "%s%s", sep, retry_on_names[k]);
      sep = ", ";
    }
  fputs("]\n", out);
}

static void dump_health_check(FILE *out, const struct lbp_config *cfg, const void *base, int indent,
                              int *first) {
  const struct cfg_upstream *u = base;

  if (!u->health_check.enabled) {
    dump_unset(out, indent, first, "health_check", "(off)");
    return;
  }
  cfg__dump_key(out, indent, first, "health_check");
  fputc('\n', out);
  cfg__dump_table(out, cfg, health_check_fields, &u->health_check, indent + 2, 0);
}

static void dump_expect_status(FILE *out, const struct lbp_config *cfg, const void *base,
                               int indent, int *first) {
  const struct cfg_health_check *hc = base;
  char text[16];

  if (hc->status_lo == hc->status_hi)
    snprintf(text, sizeof(text), "%u", hc->status_lo);
  else
    snprintf(text, sizeof(text), "%u-%u", hc->status_lo, hc->status_hi);
  cfg__dump_key(out, indent, first, "expect_status");
  fputc(' ', out);
  cfg__dump_string(out, text);
  fputc('\n', out);
}
