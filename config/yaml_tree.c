/* Step 1 of loading a config, its shape: libyaml events -> a tree of nodes with line:col. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>
#include <uv.h>

#include "config_internal.h"

/* The event API is used rather than yaml_parser_load so that aliases are never expanded (a few
 * hundred bytes of nested aliases can otherwise stand for gigabytes: "billion laughs"), and so
 * that nesting is bounded here, before anything recurses over the tree. */

struct frame {
  struct cfg__node *node; /* the open mapping or sequence */
  char *key;              /* mapping: the key waiting for its value, or NULL */
  int key_line, key_col;
};

struct builder {
  struct cfg__ctx *ctx;
  struct cfg__node *root;
  struct frame stack[CFG__MAX_DEPTH];
  int depth;
  int documents;
};

/* libyaml marks are 0-based size_t; ours are 1-based ints. */
static int pos(size_t zero_based) {
  return zero_based >= INT_MAX ? INT_MAX : (int)zero_based + 1;
}

void cfg__tree_free(struct cfg__node *n) {
  while (n != NULL) {
    struct cfg__node *next = n->next;
    cfg__tree_free(n->child); /* depth is bounded by CFG__MAX_DEPTH */
    free(n->text);
    free(n->key);
    free(n);
    n = next;
  }
}

const struct cfg__node *cfg__map_get(const struct cfg__node *map, const char *key) {
  if (map == NULL || map->kind != CFG__MAP)
    return NULL;
  for (const struct cfg__node *c = map->child; c != NULL; c = c->next)
    if (strcmp(c->key, key) == 0)
      return c;
  return NULL;
}

const char *cfg__kind_name(const struct cfg__node *n) {
  switch (n->kind) {
  case CFG__MAP:
    return "a mapping";
  case CFG__SEQ:
    return "a sequence";
  default:
    return n->is_null ? "nothing" : "a string";
  }
}

static int is_null_scalar(const yaml_event_t *ev) {
  const char *v = (const char *)ev->data.scalar.value;
  size_t len = ev->data.scalar.length;

  if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
    return 0;
  return len == 0 || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 || strcmp(v, "Null") == 0 ||
         strcmp(v, "NULL") == 0;
}

static struct cfg__node *new_node(enum cfg__kind kind, const yaml_mark_t *mark) {
  struct cfg__node *n = calloc(1, sizeof(*n));
  if (n == NULL)
    return NULL;
  n->kind = kind;
  n->line = pos(mark->line);
  n->col = pos(mark->column);
  return n;
}

static void append(struct cfg__node *parent, struct cfg__node *n) {
  if (parent->last_child == NULL)
    parent->child = n;
  else
    parent->last_child->next = n;
  parent->last_child = n;
  parent->nchildren++;
}

/* Places a new node: the root, a sequence item, a mapping key or a mapping value. Takes `n` in
 * every case (a key's node is consumed into the frame, and `n` is freed on error). */
static int attach(struct builder *b, struct cfg__node *n) {
  struct frame *f;

  if (b->depth == 0) {
    b->root = n;
    return 0;
  }
  f = &b->stack[b->depth - 1];
  if (f->node->kind == CFG__SEQ) {
    append(f->node, n);
    return 0;
  }
  if (f->key != NULL) {
    n->key = f->key;
    n->key_line = f->key_line;
    n->key_col = f->key_col;
    f->key = NULL;
    append(f->node, n);
    return 0;
  }
  if (n->kind != CFG__SCALAR) {
    int rc = cfg__error(b->ctx, n->line, n->col, NULL, "mapping keys must be strings, got %s",
                        cfg__kind_name(n));
    cfg__tree_free(n);
    return rc;
  }
  f->key = n->text;
  f->key_line = n->line;
  f->key_col = n->col;
  n->text = NULL;
  cfg__tree_free(n);
  return 0;
}

static int on_scalar(struct builder *b, const yaml_event_t *ev) {
  struct cfg__node *n;
  size_t len = ev->data.scalar.length;

  if (memchr(ev->data.scalar.value, '\0', len) != NULL)
    return cfg__error(b->ctx, pos(ev->start_mark.line), pos(ev->start_mark.column), NULL,
                      "NUL characters are not allowed in strings");
  n = new_node(CFG__SCALAR, &ev->start_mark);
  if (n == NULL || (n->text = malloc(len + 1)) == NULL) {
    free(n);
    return UV_ENOMEM;
  }
  memcpy(n->text, ev->data.scalar.value, len);
  n->text[len] = '\0';
  n->is_null = is_null_scalar(ev);
  return attach(b, n);
}

static int on_collection_start(struct builder *b, const yaml_event_t *ev, enum cfg__kind kind) {
  struct cfg__node *n;
  int rc;

  if (b->depth == CFG__MAX_DEPTH)
    return cfg__error(b->ctx, pos(ev->start_mark.line), pos(ev->start_mark.column), NULL,
                      "nesting deeper than %d levels", CFG__MAX_DEPTH);
  n = new_node(kind, &ev->start_mark);
  if (n == NULL)
    return UV_ENOMEM;
  if ((rc = attach(b, n)) != 0)
    return rc;
  b->stack[b->depth].node = n;
  b->stack[b->depth].key = NULL;
  b->depth++;
  return 0;
}

static int on_event(struct builder *b, const yaml_event_t *ev) {
  int line = pos(ev->start_mark.line), col = pos(ev->start_mark.column);

  switch (ev->type) {
  case YAML_DOCUMENT_START_EVENT:
    if (b->documents++ > 0)
      return cfg__error(b->ctx, line, col, NULL, "only one YAML document is allowed");
    return 0;
  case YAML_ALIAS_EVENT:
    return cfg__error(b->ctx, line, col, NULL,
                      "YAML aliases (*name) are not supported (quote a value that starts with "
                      "'*', like \"*:80\")");
  case YAML_SCALAR_EVENT:
    return on_scalar(b, ev);
  case YAML_SEQUENCE_START_EVENT:
    return on_collection_start(b, ev, CFG__SEQ);
  case YAML_MAPPING_START_EVENT:
    return on_collection_start(b, ev, CFG__MAP);
  case YAML_SEQUENCE_END_EVENT:
  case YAML_MAPPING_END_EVENT:
    b->depth--; /* libyaml only emits balanced events, and a value for every key */
    free(b->stack[b->depth].key);
    b->stack[b->depth].key = NULL;
    return 0;
  default:
    return 0;
  }
}

/* Reader errors (bad UTF-8, control characters) carry a byte offset rather than a mark. */
static void offset_to_pos(const char *bytes, size_t len, size_t off, int *line, int *col) {
  size_t l = 0, c = 0;

  for (size_t i = 0; i < off && i < len; i++) {
    if (bytes[i] == '\n')
      l++, c = 0;
    else
      c++;
  }
  *line = pos(l);
  *col = pos(c);
}

static int syntax_error(struct builder *b, const yaml_parser_t *p, const char *bytes, size_t len) {
  int line, col;

  if (p->error == YAML_MEMORY_ERROR)
    return UV_ENOMEM;
  if (p->error == YAML_READER_ERROR) {
    offset_to_pos(bytes, len, p->problem_offset, &line, &col);
  } else {
    line = pos(p->problem_mark.line);
    col = pos(p->problem_mark.column);
  }
  /* A value starting with '*' is a YAML alias to YAML: "*:80" and "*.example.com" must be quoted,
   * and libyaml's own words for it do not say so. */
  if (p->context != NULL && strstr(p->context, "alias") != NULL)
    return cfg__error(b->ctx, pos(p->context_mark.line), pos(p->context_mark.column), NULL,
                      "a value starting with '*' must be quoted (\"*:80\", \"*.example.com\"): "
                      "unquoted, YAML reads it as an alias");
  return cfg__error(b->ctx, line, col, NULL, "YAML syntax error: %s",
                    p->problem != NULL ? p->problem : "unknown problem");
}

/* Checks what the whole document must be: a mapping of keys. */
static int check_root(struct builder *b) {
  const struct cfg__node *r = b->root;

  if (r == NULL || (r->kind == CFG__SCALAR && r->is_null))
    return cfg__error(b->ctx, r != NULL ? r->line : 1, r != NULL ? r->col : 1, NULL,
                      "empty config");
  if (r->kind != CFG__MAP)
    return cfg__error(b->ctx, r->line, r->col, NULL,
                      "the config must be a mapping of keys (like 'listen: ...'), got %s",
                      cfg__kind_name(r));
  return 0;
}

int cfg__tree_load(struct cfg__ctx *ctx, const char *bytes, size_t len, struct cfg__node **root) {
  struct builder b;
  yaml_parser_t parser;
  yaml_event_t ev;
  int rc = 0, done = 0;

  memset(&b, 0, sizeof(b));
  b.ctx = ctx;
  *root = NULL;
  if (!yaml_parser_initialize(&parser))
    return UV_ENOMEM;
  yaml_parser_set_input_string(&parser, (const unsigned char *)(bytes != NULL ? bytes : ""), len);
  while (rc == 0 && !done) {
    if (!yaml_parser_parse(&parser, &ev)) {
      rc = syntax_error(&b, &parser, bytes, len);
      break;
    }
    rc = on_event(&b, &ev);
    done = ev.type == YAML_STREAM_END_EVENT;
    yaml_event_delete(&ev);
  }
  yaml_parser_delete(&parser);
  for (int i = 0; i < b.depth; i++)
    free(b.stack[i].key);
  if (rc == 0)
    rc = check_root(&b);
  if (rc != 0) {
    cfg__tree_free(b.root);
    return rc;
  }
  *root = b.root;
  return 0;
}
