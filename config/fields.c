/* Step 2 of loading a config, its fields: a single walker applies the key tables (schema.c) to
 * the YAML tree, checking each value's type and bounds and filling in defaults. */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "fields.h"

/* "path.key" (or "key" at the top level), shown safely and cut to CFG__PATH_MAX. */
void cfg__join_key(char *out, const char *path, const char *key) {
  char shown[64];
  snprintf(out, CFG__PATH_MAX, "%s%s%s", path, path[0] != '\0' ? "." : "",
           cfg__show(shown, sizeof(shown), key));
}

void cfg__join_index(char *out, const char *path, size_t i) {
  snprintf(out, CFG__PATH_MAX, "%s[%zu]", path, i);
}

const struct field *cfg__find_field(const struct field *table, const char *name) {
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
static const char *type_help(enum cfg__type t) {
  switch (t) {
  case T_DURATION:
    return "a duration (like 250ms, 2s, 1m or 1h)";
  case T_SIZE:
    return "a size (a number of bytes, or with k, m or g: 16k, 1m)";
  case T_BOOL:
    return "true or false";
  case T_UINT:
    return "a whole number";
  case T_PERCENT:
    return "a percentage (like 20%)";
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

static const char *fmt_bound(char *buf, size_t size, enum cfg__type t, uint64_t v) {
  if (t == T_DURATION)
    return cfg__fmt_duration(buf, size, v);
  if (t == T_SIZE)
    return cfg__fmt_size(buf, size, v);
  snprintf(buf, size, "%llu%s", (unsigned long long)v, t == T_PERCENT ? "%" : "");
  return buf;
}

/* "20%" or "20" -> 20. 0 or UV_EINVAL. */
static int parse_percent(const char *text, uint64_t *v) {
  char digits[32];
  size_t len = strlen(text);

  if (len > 0 && text[len - 1] == '%')
    len--;
  if (len == 0 || len >= sizeof(digits))
    return UV_EINVAL;
  memcpy(digits, text, len);
  digits[len] = '\0';
  return cfg__parse_uint(digits, v);
}

/* T_DURATION, T_SIZE, T_UINT, T_PERCENT and T_WORKERS: a number with bounds. */
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
  else if (f->type == T_PERCENT)
    rc = parse_percent(text, &v);
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
  if (f->check != NULL && (why = f->check(a.host)) != NULL)
    return cfg__error(ctx, line, col, path, "bad address '%s': %s",
                      cfg__show(shown, sizeof(shown), text), why);
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
    return UV_ENOMEM;
  free(*slot);
  *slot = copy;
  return 0;
}

static int set_bool(struct cfg__ctx *ctx, const struct field *f, const char *text, int line,
                    int col, void *base, const char *path) {
  static const char *const yes[] = {"true", "yes", "on", NULL}, *const no[] = {"false", "no", "off",
                                                                               NULL};
  char shown[64];

  for (int i = 0; yes[i] != NULL; i++) {
    if (strcmp(text, yes[i]) == 0) {
      store_uint((char *)base + f->offset, f->width, 1);
      return 0;
    }
    if (strcmp(text, no[i]) == 0) {
      store_uint((char *)base + f->offset, f->width, 0);
      return 0;
    }
  }
  return cfg__error(ctx, line, col, path, "'%s' is not true or false",
                    cfg__show(shown, sizeof(shown), text));
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
  case T_BOOL:
    return set_bool(ctx, f, text, line, col, base, path);
  default:
    return set_number(ctx, f, text, line, col, base, path);
  }
}

/* Sets every default of `table` (nested tables included) in `base`. */
int cfg__apply_defaults(struct cfg__ctx *ctx, const struct field *table, void *base) {
  int rc;

  for (const struct field *f = table; f->name != NULL; f++) {
    if (f->type == T_TABLE)
      rc = cfg__apply_defaults(ctx, f->aux, (char *)base + f->offset);
    else if (f->def != NULL)
      rc = set_scalar(ctx, f, f->def, 0, 0, base, f->name);
    else
      rc = 0;
    assert(rc == 0 || rc == UV_ENOMEM); /* a default that does not parse is a bug in a table */
    if (rc != 0)
      return rc;
  }
  return 0;
}

/* "expected <what>, got <kind of n>". libyaml places a missing value where the next token starts,
 * often the next line's key, so an empty value is reported at its own key instead. */
int cfg__wrong_type(struct cfg__ctx *ctx, const struct cfg__node *n, const char *path,
                    const char *what) {
  int use_key = n->kind == CFG__SCALAR && n->is_null && n->key != NULL;

  return cfg__error(ctx, use_key ? n->key_line : n->line, use_key ? n->key_col : n->col, path,
                    "expected %s, got %s", what, cfg__kind_name(n));
}

int cfg__set_value(struct cfg__ctx *ctx, const struct field *f, const struct cfg__node *n,
                   void *base, const char *path) {
  if (f->type == T_CUSTOM)
    return f->fn(ctx, f, n, base, path);
  if (f->type == T_TABLE)
    return cfg__fill_map(ctx, f->aux, n, (char *)base + f->offset, path);
  if (n->kind != CFG__SCALAR || n->is_null)
    return cfg__wrong_type(ctx, n, path, type_help(f->type));
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
int cfg__check_duplicates(struct cfg__ctx *ctx, const struct cfg__node *map, const char *path) {
  const struct cfg__node **v, *dup = NULL, *first = NULL;
  size_t i = 0;
  char cpath[CFG__PATH_MAX], shown[64];

  if (map->nchildren < 2)
    return 0;
  if ((v = malloc(map->nchildren * sizeof(*v))) == NULL)
    return UV_ENOMEM;
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
  cfg__join_key(cpath, path, dup->key);
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
  cfg__join_key(cpath, path, c->key);
  return cfg__error(ctx, c->key_line, c->key_col, cpath, "unknown key '%s'%s%s",
                    cfg__show(shown, sizeof(shown), c->key), where, hint);
}

/* Fills `base` from mapping `map` as `table` says: defaults, then each key in file order. A null
 * value (a key with nothing after it) is an empty mapping. */
int cfg__fill_map(struct cfg__ctx *ctx, const struct field *table, const struct cfg__node *map,
                  void *base, const char *path) {
  const struct cfg__node *empty = NULL;
  char cpath[CFG__PATH_MAX];
  int rc;

  if ((rc = cfg__apply_defaults(ctx, table, base)) != 0)
    return rc;
  if (map->kind == CFG__SCALAR && map->is_null)
    empty = map;
  else if (map->kind != CFG__MAP)
    return cfg__wrong_type(ctx, map, path, "a mapping");
  else if ((rc = cfg__check_duplicates(ctx, map, path)) != 0)
    return rc;
  for (const struct cfg__node *c = empty == NULL ? map->child : NULL; c != NULL; c = c->next) {
    const struct field *f = cfg__find_field(table, c->key);
    if (f == NULL)
      return unknown_key(ctx, table, c, path);
    cfg__join_key(cpath, path, c->key);
    if ((rc = cfg__set_value(ctx, f, c, base, cpath)) != 0)
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
int cfg__check_entries(struct cfg__ctx *ctx, const struct field *f, const struct cfg__node *n,
                       enum cfg__kind kind, const char *what, const char *path) {
  char expected[96];

  if (n->kind != kind) {
    snprintf(expected, sizeof(expected), "%s of %s", kind == CFG__MAP ? "a mapping" : "a sequence",
             what);
    return cfg__wrong_type(ctx, n, path, expected);
  }
  if (n->nchildren < f->min)
    return cfg__error(ctx, n->line, n->col, path, "at least %llu %s required",
                      (unsigned long long)f->min, f->min == 1 ? "entry is" : "entries are");
  if (n->nchildren > f->max)
    return cfg__error(ctx, n->line, n->col, path, "at most %llu entries are allowed",
                      (unsigned long long)f->max);
  return 0;
}

int cfg__fields(struct cfg__ctx *ctx, const struct cfg__node *root, struct lbp_config *cfg) {
  return cfg__fill_map(ctx, cfg__top_fields, root, cfg, "");
}
