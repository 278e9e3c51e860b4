/* Internals shared by the config loader's steps: the YAML node tree, the error context, helpers. */
#ifndef LBP_CONFIG_INTERNAL_H
#define LBP_CONFIG_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

/* Errors are 0 or a negative UV_E* code, as everywhere in lbproxy (a failed system call's
 * -errno is one: libuv's codes are -errno on Unix). */

/* The loader runs in three steps, one file each:
 *   1. shape   (yaml_tree.c): libyaml events -> a tree of nodes, each with its 1-based line:col.
 *   2. fields  (fields.c):    the tree -> struct lbp_config, driven by one key table per mapping.
 *   3. meaning (meaning.c):   cross checks, defaults that depend on other keys, resolution.
 * config.c glues them together; units.c parses the value syntaxes (durations, sizes, host:port). */

/* Deeper nesting than this is refused by the shape step, which keeps every recursive walk of the
 * tree (freeing included) bounded whatever the input. The schema itself needs 5 levels. */
#define CFG__MAX_DEPTH 32

/* Key paths in messages ("upstreams.app.servers[1].weight") are cut to this many bytes. */
#define CFG__PATH_MAX 192

enum cfg__kind {
  CFG__SCALAR,
  CFG__MAP,
  CFG__SEQ,
};

/* One YAML node. A mapping's children are its values, in file order, each carrying its key; a
 * sequence's children are its items. Keys are always scalars (the shape step refuses others). */
struct cfg__node {
  enum cfg__kind kind;
  int line, col; /* 1-based position of the value */
  char *text;    /* scalar: its text, NUL-terminated (never contains a NUL); else NULL */
  int is_null;   /* scalar: a plain empty value, "~" or "null" */
  char *key;     /* when the node is a mapping value: its key; else NULL */
  int key_line, key_col;
  struct cfg__node *child, *last_child, *next;
  size_t nchildren;
};

/* The config spellings of enum cfg_dispatch, in its order, NULL-terminated. */
extern const char *const cfg__dispatch_names[];
/* ... and of enum cfg_balance. */
extern const char *const cfg__balance_names[];

/* Where errors go while a config is loaded. */
struct cfg__ctx {
  const char *file;
  struct cfg_error *err;
  unsigned flags; /* enum cfg_parse_flags */
};

/* Adds a warning "file:line:col: path: message" to cfg->warnings. 0 or UV_ENOMEM. */
int cfg__warn(struct cfg__ctx *ctx, struct lbp_config *cfg, int line, int col, const char *path,
              const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* Fills ctx->err with "file:line:col: path: message" (path omitted when NULL or empty) and
 * returns UV_EINVAL, so callers can write `return cfg__error(...)`. */
int cfg__error(struct cfg__ctx *ctx, int line, int col, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* Copies `s` into `buf` for a message: at most ~48 characters, "..." when cut, and any
 * non-printable byte shown as '?', so a message always stays on one line. Returns buf. */
const char *cfg__show(char *buf, size_t size, const char *s);

/* Step 1. Parses YAML into a tree. Returns 0 and *root (free with cfg__tree_free), or UV_EINVAL
 * with ctx->err filled: syntax errors, an empty file, aliases, too deep nesting, NUL bytes in
 * scalars, non-scalar keys, several documents, or a top level that is not a mapping. */
int cfg__tree_load(struct cfg__ctx *ctx, const char *bytes, size_t len, struct cfg__node **root);
void cfg__tree_free(struct cfg__node *n);

/* The value stored under `key` in mapping `map`, or NULL (also when `map` is NULL or no map). */
const struct cfg__node *cfg__map_get(const struct cfg__node *map, const char *key);

/* Returns "a mapping", "a sequence", "a string", or "nothing" (a null scalar), for messages. */
const char *cfg__kind_name(const struct cfg__node *n);

/* Step 2. Fills `cfg` (which must be zeroed) from the tree: every table default first, then
 * every key present. On error `cfg` may be partly filled; cfg_free releases it. */
int cfg__fields(struct cfg__ctx *ctx, const struct cfg__node *root, struct lbp_config *cfg);

/* Step 3. Cross checks and resolution on a config the fields step filled. */
int cfg__meaning(struct cfg__ctx *ctx, const struct cfg__node *root, struct lbp_config *cfg);

/* As cfg_parse_hostport; on failure *why says what is wrong ("missing port", ...). */
int cfg__parse_hostport(const char *s, struct cfg_addr *a, const char **why);

/* A plain decimal number with no sign, spaces or leading "0x": 0 or UV_EINVAL (overflow too). */
int cfg__parse_uint(const char *s, uint64_t *v);

/* Formats milliseconds / bytes the way a config would spell them ("1h", "250ms", "16k"). */
const char *cfg__fmt_duration(char *buf, size_t size, uint64_t ms);
const char *cfg__fmt_size(char *buf, size_t size, uint64_t bytes);

/* Edit distance between a and b, or a value above `limit` once it is certain to exceed it. */
size_t cfg__levenshtein(const char *a, const char *b, size_t limit);

/* The entry of NULL-terminated `names` closest to `s` when it is close enough to be a likely
 * typo (distance <= max(2, len/3)), else NULL. */
const char *cfg__closest(const char *s, const char *const *names);

#endif
