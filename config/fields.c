/* Step 2 of loading a config, its fields: one table per mapping says each key's type, bounds,
 * default and place in the structs; a single walker applies the tables to the YAML tree. */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_internal.h"

enum type {
  T_DURATION, /* "250ms", "5s" -> uint64 milliseconds; min/max in milliseconds */
  T_SIZE,     /* "16k" -> uint64 bytes; min/max in bytes */
  T_UINT,     /* a plain number, stored in `width` bytes; min/max its bounds */
  T_STRING,   /* char *, malloc'ed; `check` may refuse some values */
  T_ENUM,     /* one of the NULL-terminated `names` in aux, stored as its index (an int enum) */
  T_HOSTPORT, /* struct cfg_addr, not resolved yet; min/max bound the port */
  T_WORKERS,  /* "auto" (stored as 0 until the meaning step) or min..max */
  T_TABLE,    /* a nested mapping described by the table in aux */
  T_CUSTOM,   /* anything else: `fn` parses the node; min/max bound its number of entries */
};

#define REQUIRED 1u

struct field;
typedef int (*custom_fn)(struct cfg__ctx *ctx, const struct field *f, const struct cfg__node *n,
                         void *base, const char *path);

/* One key of one mapping. Defaults are spelled as in a config file and go through the same
 * parser as the file's values, so a default can never be out of its own bounds unnoticed. */
struct field {
  const char *name;
  enum type type;
  size_t offset, width; /* where the value goes in the struct the table describes */
  uint64_t min, max;
  const char *def; /* NULL: no default (zero, or NULL for strings) */
  unsigned flags;
  const void *aux;
  custom_fn fn;
  const char *(*check)(const char *s); /* T_STRING: NULL if fine, else why not */
};

/* One table row: name, type, where (AT or NO_OFFSET), min, max, default, then optional
 * designated extras (.flags, .aux, .fn, .check). */
#define KEY(n, t, at, lo, hi, d, ...)                                                              \
  { .name = (n), .type = (t), at, .min = (lo), .max = (hi), .def = (d), __VA_ARGS__ }
#define AT(s, m)  offsetof(s, m), sizeof(((s *)0)->m)
#define SEC       1000ull
#define HOUR      (3600 * SEC)
#define KIB       1024ull
#define NO_OFFSET 0, 0

static int parse_upstreams(struct cfg__ctx *, const struct field *, const struct cfg__node *,
                           void *, const char *);
static int parse_servers(struct cfg__ctx *, const struct field *, const struct cfg__node *, void *,
                         const char *);
static int parse_routes(struct cfg__ctx *, const struct field *, const struct cfg__node *, void *,
                        const char *);
static int check_upstream_ref(struct cfg__ctx *, const struct field *, const struct cfg__node *,
                              void *, const char *);
static const char *check_nonempty(const char *s);
static const char *check_route_host(const char *s);
static const char *check_route_path(const char *s);

/* clang-format off */
static const struct field timeout_fields[] = {
#define TO(m) AT(struct cfg_timeouts, m)
  KEY("connect",           T_DURATION, TO(connect_ms),           1, HOUR, "5s"),
  KEY("client_header",     T_DURATION, TO(client_header_ms),     1, HOUR, "10s"),
  KEY("client_idle",       T_DURATION, TO(client_idle_ms),       1, HOUR, "60s"),
  KEY("upstream_response", T_DURATION, TO(upstream_response_ms), 1, HOUR, "60s"),
  {0},
#undef TO
};

static const struct field limit_fields[] = {
  KEY("max_header_bytes", T_SIZE, AT(struct cfg_limits, max_header_bytes), KIB, KIB * KIB, "16k"),
  {0},
};

static const struct field server_fields[] = {
  KEY("address", T_HOSTPORT, AT(struct cfg_server, addr),   1, 65535, NULL, .flags = REQUIRED),
  KEY("weight",  T_UINT,     AT(struct cfg_server, weight), 1, 1000,  "1"),
  {0},
};

static const struct field upstream_fields[] = {
  KEY("keepalive", T_UINT,   AT(struct cfg_upstream, keepalive), 0, 10000, "32"),
  KEY("servers",   T_CUSTOM, NO_OFFSET,                          1, 256,   NULL, .flags = REQUIRED,
      .fn = parse_servers),
  {0},
};

static const struct field route_fields[] = {
  KEY("host",     T_STRING, AT(struct cfg_route, host), 0, 0, NULL, .check = check_route_host),
  KEY("path",     T_STRING, AT(struct cfg_route, path), 0, 0, NULL, .check = check_route_path),
  KEY("upstream", T_CUSTOM, NO_OFFSET,                  0, 0, NULL, .flags = REQUIRED,
      .fn = check_upstream_ref),
  {0},
};

static const struct field top_fields[] = {
#define TOP(m) AT(struct lbp_config, m)
  KEY("listen",          T_HOSTPORT, TOP(listen),            0, 65535,     "0.0.0.0:8080"),
  KEY("workers",         T_WORKERS,  TOP(workers),           1, 256,       "auto"),
  KEY("dispatch",        T_ENUM,     TOP(dispatch),          0, 0,         "handoff",
      .aux = cfg__dispatch_names),
  KEY("user",            T_STRING,   TOP(user),              0, 0,         NULL,
      .check = check_nonempty),
  KEY("stats_interval",  T_DURATION, TOP(stats_interval_ms), 0, 24 * HOUR, "0"),
  KEY("proxy_port_base", T_UINT,     TOP(proxy_port_base),   0, 65535,     "0"),
  KEY("timeouts",        T_TABLE,    TOP(timeouts),          0, 0,         NULL,
      .aux = timeout_fields),
  KEY("limits",          T_TABLE,    TOP(limits),            0, 0,         NULL,
      .aux = limit_fields),
  KEY("upstreams",       T_CUSTOM,   NO_OFFSET,              1, 1024,      NULL,
      .flags = REQUIRED, .fn = parse_upstreams),
  KEY("routes",          T_CUSTOM,   NO_OFFSET,              0, 4096,      NULL,
      .fn = parse_routes),
  {0},
#undef TOP
};
/* clang-format on */

static int fill_map(struct cfg__ctx *ctx, const struct field *table, const struct cfg__node *map,
                    void *base, const char *path);

/* "path.key" (or "key" at the top level), shown safely and cut to CFG__PATH_MAX. */
static void join_key(char *out, const char *path, const char *key) {
  char shown[64];
  snprintf(out, CFG__PATH_MAX, "%s%s%s", path, path[0] != '\0' ? "." : "",
           cfg__show(shown, sizeof(shown), key));
}

static void join_index(char *out, const char *path, size_t i) {
  snprintf(out, CFG__PATH_MAX, "%s[%zu]", path, i);
}

static const struct field *find_field(const struct field *table, const char *name) {
  for (; table->name != NULL; table++)
    if (strcmp(table->name, name) == 0)
      return table;
  return NULL;
}

static void store_uint(void *p, size_t width, uint64_t v) {
  uint8_t v8 = (uint8_t)v;
  uint16_t v16 = (uint16_t)v;
  uint32_t v32 = (uint32_t)v;

  switch (width) {
  case 1:
    memcpy(p, &v8, 1);
    break;
  case 2:
    memcpy(p, &v16, 2);
    break;
  case 4:
    memcpy(p, &v32, 4);
    break;
  default:
    assert(width == 8);
    memcpy(p, &v, 8);
  }
}

/* What a value of this type looks like, for "expected ..." messages. */
static const char *type_help(enum type t) {
  switch (t) {
  case T_DURATION:
    return "a duration (like 250ms, 2s, 1m or 1h)";
  case T_SIZE:
    return "a size (like 512, 16k, 1m or 1g)";
  case T_UINT:
    return "a whole number";
  case T_WORKERS:
    return "'auto' or a whole number";
  case T_HOSTPORT:
    return "host:port";
  case T_TABLE:
    return "a mapping";
  default:
    return "a string";
  }
}

static const char *fmt_bound(char *buf, size_t size, enum type t, uint64_t v) {
  if (t == T_DURATION)
    return cfg__fmt_duration(buf, size, v);
  if (t == T_SIZE)
    return cfg__fmt_size(buf, size, v);
  snprintf(buf, size, "%llu", (unsigned long long)v);
  return buf;
}

/* T_DURATION, T_SIZE, T_UINT and T_WORKERS: a number with bounds. */
static int set_number(struct cfg__ctx *ctx, const struct field *f, const char *text, int line,
                      int col, void *base, const char *path) {
  char shown[64], lo[32], hi[32];
  uint64_t v;
  int rc;

  if (f->type == T_WORKERS && strcmp(text, "auto") == 0) {
    store_uint((char *)base + f->offset, f->width, 0);
    return 0;
  }
  if (f->type == T_DURATION)
    rc = cfg_parse_duration(text, &v);
  else if (f->type == T_SIZE)
    rc = cfg_parse_size(text, &v);
  else
    rc = cfg__parse_uint(text, &v);
  if (rc != 0)
    return cfg__error(ctx, line, col, path, "'%s' is not %s", cfg__show(shown, sizeof(shown), text),
                      type_help(f->type));
  if (v < f->min || v > f->max)
    return cfg__error(
        ctx, line, col, path, "%s is out of range (%s..%s)", cfg__show(shown, sizeof(shown), text),
        fmt_bound(lo, sizeof(lo), f->type, f->min), fmt_bound(hi, sizeof(hi), f->type, f->max));
  store_uint((char *)base + f->offset, f->width, v);
  return 0;
}

static int set_enum(struct cfg__ctx *ctx, const struct field *f, const char *text, int line,
                    int col, void *base, const char *path) {
  const char *const *names = f->aux;
  char shown[64], list[160] = "", hint[96] = "";
  const char *close;

  for (size_t i = 0; names[i] != NULL; i++) {
    if (strcmp(names[i], text) == 0) {
      store_uint((char *)base + f->offset, f->width, i);
      return 0;
    }
  }
  for (size_t i = 0; names[i] != NULL; i++)
    snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", i > 0 ? ", " : "", names[i]);
  if ((close = cfg__closest(text, names)) != NULL)
    snprintf(hint, sizeof(hint), "; did you mean '%s'?", close);
  return cfg__error(ctx, line, col, path, "unknown value '%s' (expected one of: %s)%s",
                    cfg__show(shown, sizeof(shown), text), list, hint);
}

static int set_hostport(struct cfg__ctx *ctx, const struct field *f, const char *text, int line,
                        int col, void *base, const char *path) {
  struct cfg_addr a;
  const char *why;
  char shown[64];

  memset(&a, 0, sizeof(a));
  if (cfg__parse_hostport(text, &a, &why) != 0)
    return cfg__error(ctx, line, col, path, "bad address '%s': %s",
                      cfg__show(shown, sizeof(shown), text), why);
  if (a.port < f->min || a.port > f->max)
    return cfg__error(ctx, line, col, path, "port %u is out of range (%llu..%llu)", a.port,
                      (unsigned long long)f->min, (unsigned long long)f->max);
  a.line = line;
  a.col = col;
  memcpy((char *)base + f->offset, &a, sizeof(a));
  return 0;
}

static int set_string(struct cfg__ctx *ctx, const struct field *f, const char *text, int line,
                      int col, void *base, const char *path) {
  char **slot = (char **)((char *)base + f->offset);
  const char *why = f->check != NULL ? f->check(text) : NULL;
  char *copy;

  if (why != NULL)
    return cfg__error(ctx, line, col, path, "%s", why);
  if ((copy = strdup(text)) == NULL)
    return -ENOMEM;
  free(*slot);
  *slot = copy;
  return 0;
}

/* Any scalar type, from its text. Defaults come through here too, with line = col = 0. */
static int set_scalar(struct cfg__ctx *ctx, const struct field *f, const char *text, int line,
                      int col, void *base, const char *path) {
  switch (f->type) {
  case T_ENUM:
    return set_enum(ctx, f, text, line, col, base, path);
  case T_HOSTPORT:
    return set_hostport(ctx, f, text, line, col, base, path);
  case T_STRING:
    return set_string(ctx, f, text, line, col, base, path);
  default:
    return set_number(ctx, f, text, line, col, base, path);
  }
}

/* Sets every default of `table` (nested tables included) in `base`. */
static int apply_defaults(struct cfg__ctx *ctx, const struct field *table, void *base) {
  int rc;

  for (const struct field *f = table; f->name != NULL; f++) {
    if (f->type == T_TABLE)
      rc = apply_defaults(ctx, f->aux, (char *)base + f->offset);
    else if (f->def != NULL)
      rc = set_scalar(ctx, f, f->def, 0, 0, base, f->name);
    else
      rc = 0;
    assert(rc == 0 || rc == -ENOMEM); /* a default that does not parse is a bug in a table */
    if (rc != 0)
      return rc;
  }
  return 0;
}

/* "expected <what>, got <kind of n>". libyaml places a missing value where the next token starts,
 * often the next line's key, so an empty value is reported at its own key instead. */
static int wrong_type(struct cfg__ctx *ctx, const struct cfg__node *n, const char *path,
                      const char *what) {
  int use_key = n->kind == CFG__SCALAR && n->is_null && n->key != NULL;

  return cfg__error(ctx, use_key ? n->key_line : n->line, use_key ? n->key_col : n->col, path,
                    "expected %s, got %s", what, cfg__kind_name(n));
}

static int set_value(struct cfg__ctx *ctx, const struct field *f, const struct cfg__node *n,
                     void *base, const char *path) {
  if (f->type == T_CUSTOM)
    return f->fn(ctx, f, n, base, path);
  if (f->type == T_TABLE)
    return fill_map(ctx, f->aux, n, (char *)base + f->offset, path);
  if (n->kind != CFG__SCALAR || n->is_null)
    return wrong_type(ctx, n, path, type_help(f->type));
  return set_scalar(ctx, f, n->text, n->line, n->col, base, path);
}

static int cmp_key_then_pos(const void *pa, const void *pb) {
  const struct cfg__node *a = *(const struct cfg__node *const *)pa;
  const struct cfg__node *b = *(const struct cfg__node *const *)pb;
  int c = strcmp(a->key, b->key);

  if (c != 0)
    return c;
  if (a->key_line != b->key_line)
    return a->key_line < b->key_line ? -1 : 1;
  return a->key_col < b->key_col ? -1 : a->key_col > b->key_col;
}

static int before(const struct cfg__node *a, const struct cfg__node *b) {
  return a->key_line < b->key_line || (a->key_line == b->key_line && a->key_col < b->key_col);
}

/* Refuses a key written twice in one mapping, pointing at the second one (the earliest such in
 * the file). Sorting keeps this O(n log n) on maps of any size. */
static int check_duplicates(struct cfg__ctx *ctx, const struct cfg__node *map, const char *path) {
  const struct cfg__node **v, *dup = NULL, *first = NULL;
  size_t i = 0;
  char cpath[CFG__PATH_MAX], shown[64];

  if (map->nchildren < 2)
    return 0;
  if ((v = malloc(map->nchildren * sizeof(*v))) == NULL)
    return -ENOMEM;
  for (const struct cfg__node *c = map->child; c != NULL; c = c->next)
    v[i++] = c;
  qsort(v, map->nchildren, sizeof(*v), cmp_key_then_pos);
  for (i = 1; i < map->nchildren; i++) {
    if (strcmp(v[i - 1]->key, v[i]->key) == 0 && (i < 2 || strcmp(v[i - 2]->key, v[i]->key)) &&
        (dup == NULL || before(v[i], dup))) {
      dup = v[i];
      first = v[i - 1];
    }
  }
  free(v);
  if (dup == NULL)
    return 0;
  join_key(cpath, path, dup->key);
  return cfg__error(ctx, dup->key_line, dup->key_col, cpath,
                    "duplicate key '%s' (first set at %d:%d)",
                    cfg__show(shown, sizeof(shown), dup->key), first->key_line, first->key_col);
}

static int unknown_key(struct cfg__ctx *ctx, const struct field *table, const struct cfg__node *c,
                       const char *path) {
  const char *names[32], *close;
  char cpath[CFG__PATH_MAX], shown[64], where[CFG__PATH_MAX + 8] = "", hint[256];
  size_t n = 0;

  for (const struct field *f = table; f->name != NULL && n < 31; f++)
    names[n++] = f->name;
  names[n] = NULL;
  if (path[0] != '\0')
    snprintf(where, sizeof(where), " in '%s'", path);
  if ((close = cfg__closest(c->key, names)) != NULL) {
    snprintf(hint, sizeof(hint), "; did you mean '%s'?", close);
  } else {
    snprintf(hint, sizeof(hint), " (known keys:");
    for (size_t i = 0; i < n; i++)
      snprintf(hint + strlen(hint), sizeof(hint) - strlen(hint), " %s", names[i]);
    snprintf(hint + strlen(hint), sizeof(hint) - strlen(hint), ")");
  }
  join_key(cpath, path, c->key);
  return cfg__error(ctx, c->key_line, c->key_col, cpath, "unknown key '%s'%s%s",
                    cfg__show(shown, sizeof(shown), c->key), where, hint);
}

/* Fills `base` from mapping `map` as `table` says: defaults, then each key in file order. A null
 * value (a key with nothing after it) is an empty mapping. */
static int fill_map(struct cfg__ctx *ctx, const struct field *table, const struct cfg__node *map,
                    void *base, const char *path) {
  const struct cfg__node *empty = NULL;
  char cpath[CFG__PATH_MAX];
  int rc;

  if ((rc = apply_defaults(ctx, table, base)) != 0)
    return rc;
  if (map->kind == CFG__SCALAR && map->is_null)
    empty = map;
  else if (map->kind != CFG__MAP)
    return wrong_type(ctx, map, path, "a mapping");
  else if ((rc = check_duplicates(ctx, map, path)) != 0)
    return rc;
  for (const struct cfg__node *c = empty == NULL ? map->child : NULL; c != NULL; c = c->next) {
    const struct field *f = find_field(table, c->key);
    if (f == NULL)
      return unknown_key(ctx, table, c, path);
    join_key(cpath, path, c->key);
    if ((rc = set_value(ctx, f, c, base, cpath)) != 0)
      return rc;
  }
  for (const struct field *f = table; f->name != NULL; f++) {
    if ((f->flags & REQUIRED) && cfg__map_get(map, f->name) == NULL) {
      /* An empty value has no position of its own worth showing: point at its key. */
      int line = empty != NULL && empty->key != NULL ? empty->key_line : map->line;
      int col = empty != NULL && empty->key != NULL ? empty->key_col : map->col;
      return cfg__error(ctx, line, col, path, "missing required key '%s'", f->name);
    }
  }
  return 0;
}

/* A sequence or mapping of entries for a T_CUSTOM field, with a count within f->min..f->max. */
static int check_entries(struct cfg__ctx *ctx, const struct field *f, const struct cfg__node *n,
                         enum cfg__kind kind, const char *what, const char *path) {
  char expected[96];

  if (n->kind != kind) {
    snprintf(expected, sizeof(expected), "%s of %s", kind == CFG__MAP ? "a mapping" : "a sequence",
             what);
    return wrong_type(ctx, n, path, expected);
  }
  if (n->nchildren < f->min)
    return cfg__error(ctx, n->line, n->col, path, "at least %llu %s required",
                      (unsigned long long)f->min, f->min == 1 ? "entry is" : "entries are");
  if (n->nchildren > f->max)
    return cfg__error(ctx, n->line, n->col, path, "at most %llu entries are allowed",
                      (unsigned long long)f->max);
  return 0;
}

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

  if ((rc = check_entries(ctx, f, n, CFG__MAP, "upstream names to upstreams", path)) != 0 ||
      (rc = check_duplicates(ctx, n, path)) != 0)
    return rc;
  if ((cfg->upstreams = calloc(n->nchildren, sizeof(*cfg->upstreams))) == NULL)
    return -ENOMEM;
  for (const struct cfg__node *c = n->child; c != NULL; c = c->next) {
    struct cfg_upstream *u = &cfg->upstreams[cfg->nupstreams++];
    join_key(cpath, path, c->key);
    if ((why = check_upstream_name(c->key)) != NULL)
      return cfg__error(ctx, c->key_line, c->key_col, cpath, "%s", why);
    if ((u->name = strdup(c->key)) == NULL)
      return -ENOMEM;
    u->line = c->key_line;
    u->col = c->key_col;
    if ((rc = fill_map(ctx, upstream_fields, c, u, cpath)) != 0)
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

  if ((rc = check_entries(ctx, f, n, CFG__SEQ, "servers", path)) != 0)
    return rc;
  if ((u->servers = calloc(n->nchildren, sizeof(*u->servers))) == NULL)
    return -ENOMEM;
  for (const struct cfg__node *c = n->child; c != NULL; c = c->next) {
    struct cfg_server *s = &u->servers[u->nservers];
    join_index(cpath, path, u->nservers++);
    if (c->kind == CFG__SEQ)
      return wrong_type(ctx, c, cpath, "host:port or a mapping");
    if (c->kind == CFG__SCALAR && !c->is_null) {
      if ((rc = apply_defaults(ctx, server_fields, s)) == 0)
        rc = set_value(ctx, find_field(server_fields, "address"), c, s, cpath);
    } else {
      rc = fill_map(ctx, server_fields, c, s, cpath);
    }
    if (rc != 0)
      return rc;
  }
  return 0;
}

/* routes: a sequence of mappings; linked to their upstreams by the meaning step. */
static int parse_routes(struct cfg__ctx *ctx, const struct field *f, const struct cfg__node *n,
                        void *base, const char *path) {
  struct lbp_config *cfg = base;
  char cpath[CFG__PATH_MAX];
  int rc;

  if (n->kind == CFG__SCALAR && n->is_null)
    return 0;
  if ((rc = check_entries(ctx, f, n, CFG__SEQ, "routes", path)) != 0)
    return rc;
  if (n->nchildren == 0)
    return 0;
  if ((cfg->routes = calloc(n->nchildren, sizeof(*cfg->routes))) == NULL)
    return -ENOMEM;
  for (const struct cfg__node *c = n->child; c != NULL; c = c->next) {
    struct cfg_route *r = &cfg->routes[cfg->nroutes];
    join_index(cpath, path, cfg->nroutes++);
    r->line = c->line;
    r->col = c->col;
    if ((rc = fill_map(ctx, route_fields, c, r, cpath)) != 0)
      return rc;
  }
  return 0;
}

/* A route's upstream name is only checked for being a name here; the meaning step turns it into
 * an index once every upstream is known (they may come after the routes in the file). */
static int check_upstream_ref(struct cfg__ctx *ctx, const struct field *f,
                              const struct cfg__node *n, void *base, const char *path) {
  if (n->kind != CFG__SCALAR || n->is_null)
    return wrong_type(ctx, n, path, "an upstream name");
  if (n->text[0] == '\0')
    return cfg__error(ctx, n->line, n->col, path, "an upstream name cannot be empty");
  return 0;
}

static const char *check_nonempty(const char *s) {
  return s[0] == '\0' ? "cannot be empty" : NULL;
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

int cfg__fields(struct cfg__ctx *ctx, const struct cfg__node *root, struct lbp_config *cfg) {
  return fill_map(ctx, top_fields, root, cfg, "");
}
