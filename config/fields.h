/* The config's key tables: what a field is, the walker that applies tables to YAML, the schema. */
#ifndef LBP_CONFIG_FIELDS_H
#define LBP_CONFIG_FIELDS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "config_internal.h"

enum cfg__type {
  T_DURATION, /* "250ms", "5s" -> uint64 milliseconds; min/max in milliseconds */
  T_SIZE,     /* "16k" -> uint64 bytes; min/max in bytes */
  T_UINT,     /* a plain number, stored in `width` bytes; min/max its bounds */
  T_PERCENT,  /* "20%" (or a bare 20) -> a whole number of percent; min/max its bounds */
  T_STRING,   /* char *, malloc'ed; `check` may refuse some values */
  T_ENUM,     /* one of the NULL-terminated `names` in aux, stored as its index (an int enum) */
  T_HOSTPORT, /* struct cfg_addr, not resolved yet; min/max bound the port */
  T_WORKERS,  /* "auto" (stored as 0 until the meaning step) or min..max */
  T_BOOL,     /* true/false (also yes/no, on/off) -> int 1/0 */
  T_TABLE,    /* a nested mapping described by the table in aux */
  T_CUSTOM,   /* anything else: `fn` parses the node; min/max bound its number of entries */
};

#define REQUIRED 1u /* the key must be present */
#define NO_DUMP  2u /* cfg_dump leaves it out (another key says the same) */

struct field;
typedef int (*custom_fn)(struct cfg__ctx *ctx, const struct field *f, const struct cfg__node *n,
                         void *base, const char *path);

/* One key of one mapping. Defaults are spelled as in a config file and go through the same
 * parser as the file's values, so a default can never be out of its own bounds unnoticed. */
struct field {
  const char *name;
  enum cfg__type type;
  size_t offset, width; /* where the value goes in the struct the table describes */
  uint64_t min, max;
  const char *def; /* NULL: no default (zero, or NULL for strings) */
  unsigned flags;
  const void *aux;
  custom_fn fn;
  const char *(*check)(const char *s); /* T_STRING (T_HOSTPORT: its host): NULL if fine, else
                                          why not */
  /* T_CUSTOM: writes the value back as YAML for cfg_dump (`base` as for fn). */
  void (*dump)(FILE *out, const struct lbp_config *cfg, const void *base, int indent, int *first);
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

/* The schema (schema.c): the top-level table; every other table hangs from it. */
extern const struct field cfg__top_fields[];

/* The walker (fields.c). */

/* Fills `base` from mapping `map` as `table` says: defaults, then each key in file order. A null
 * value (a key with nothing after it) is an empty mapping. 0 or UV_EINVAL/UV_ENOMEM. */
int cfg__fill_map(struct cfg__ctx *ctx, const struct field *table, const struct cfg__node *map,
                  void *base, const char *path);
/* Sets every default of `table` (nested tables included) in `base`. */
int cfg__apply_defaults(struct cfg__ctx *ctx, const struct field *table, void *base);
/* Applies one field's value node `n` to `base`. */
int cfg__set_value(struct cfg__ctx *ctx, const struct field *f, const struct cfg__node *n,
                   void *base, const char *path);
/* "expected <what>, got <kind of n>" at n (or at its key for an empty value). */
int cfg__wrong_type(struct cfg__ctx *ctx, const struct cfg__node *n, const char *path,
                    const char *what);
/* A sequence or mapping of entries for a T_CUSTOM field, with a count within f->min..f->max. */
int cfg__check_entries(struct cfg__ctx *ctx, const struct field *f, const struct cfg__node *n,
                       enum cfg__kind kind, const char *what, const char *path);
/* Refuses a key written twice in one mapping. */
int cfg__check_duplicates(struct cfg__ctx *ctx, const struct cfg__node *map, const char *path);
/* "path.key" / "path[i]" for messages, cut to CFG__PATH_MAX. */
void cfg__join_key(char *out, const char *path, const char *key);
void cfg__join_index(char *out, const char *path, size_t i);
const struct field *cfg__find_field(const struct field *table, const char *name);

/* The dumper (dump.c). Writes every field of `table` at `base` as YAML, `indent` spaces deep;
 * `seq_item`: the first key starts a sequence item ("- "). */
void cfg__dump_table(FILE *out, const struct lbp_config *cfg, const struct field *table,
                     const void *base, int indent, int seq_item);
/* Writes "key:" at `indent`, as a sequence item's first key ("- key:") when *first (cleared). */
void cfg__dump_key(FILE *out, int indent, int *first, const char *name);
/* A string as a double-quoted YAML scalar. */
void cfg__dump_string(FILE *out, const char *s);

#endif
