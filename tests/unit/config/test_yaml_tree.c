/* Tests for config/yaml_tree.c: the shape step (YAML -> nodes with 1-based line:col). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <uv.h>

#include "config_internal.h"

static struct cfg_error err;
static struct cfg__ctx ctx = {"t.yaml", &err, 0};

static struct cfg__node *load_ok(const char *yaml) {
  struct cfg__node *root = NULL;
  int rc = cfg__tree_load(&ctx, yaml, strlen(yaml), &root);
  cr_assert_eq(rc, 0, "expected the YAML to load, got: %s", err.msg);
  cr_assert_not_null(root);
  return root;
}

static void load_error(const char *yaml, size_t len, const char *msg) {
  struct cfg__node *root = (struct cfg__node *)1;
  int rc = cfg__tree_load(&ctx, yaml, len, &root);
  cr_assert_eq(rc, UV_EINVAL);
  cr_assert_null(root);
  cr_assert_str_eq(err.msg, msg);
}

#define LOAD_ERROR(yaml, msg) load_error(yaml, strlen(yaml), msg)

Test(yaml_tree, keys_and_values_carry_their_1_based_line_and_column) {
  struct cfg__node *root = load_ok("a: 1\nbb:\n  c:   x\n");
  const struct cfg__node *a = cfg__map_get(root, "a"), *bb = cfg__map_get(root, "bb");
  const struct cfg__node *c = cfg__map_get(bb, "c");

  cr_assert_eq(root->kind, CFG__MAP);
  cr_expect_eq(root->nchildren, 2);
  cr_expect_eq(a->key_line, 1);
  cr_expect_eq(a->key_col, 1);
  cr_expect_eq(a->line, 1);
  cr_expect_eq(a->col, 4);
  cr_expect_str_eq(a->text, "1");
  cr_assert_eq(bb->kind, CFG__MAP);
  cr_expect_eq(c->key_line, 3);
  cr_expect_eq(c->key_col, 3);
  cr_expect_eq(c->line, 3);
  cr_expect_eq(c->col, 8);
  cr_expect_str_eq(c->text, "x");
  cfg__tree_free(root);
}

Test(yaml_tree, sequence_items_keep_file_order_and_positions) {
  struct cfg__node *root = load_ok("s:\n  - one\n  - [two, three]\n  - {k: v}\n");
  const struct cfg__node *s = cfg__map_get(root, "s"), *it = s->child;

  cr_assert_eq(s->kind, CFG__SEQ);
  cr_assert_eq(s->nchildren, 3);
  cr_expect_str_eq(it->text, "one");
  cr_expect_eq(it->line, 2);
  cr_expect_eq(it->col, 5);
  it = it->next;
  cr_expect_eq(it->kind, CFG__SEQ);
  cr_expect_eq(it->nchildren, 2);
  cr_expect_str_eq(it->child->next->text, "three");
  cr_expect_eq(it->child->next->col, 11);
  it = it->next;
  cr_expect_eq(it->kind, CFG__MAP);
  cr_expect_str_eq(cfg__map_get(it, "k")->text, "v");
  cfg__tree_free(root);
}

Test(yaml_tree, plain_empty_tilde_and_null_are_null_but_quoted_ones_are_strings) {
  struct cfg__node *root = load_ok("a:\nb: ~\nc: null\nd: \"null\"\ne: ''\nf: NULL\n");

  cr_expect(cfg__map_get(root, "a")->is_null);
  cr_expect(cfg__map_get(root, "b")->is_null);
  cr_expect(cfg__map_get(root, "c")->is_null);
  cr_expect_not(cfg__map_get(root, "d")->is_null);
  cr_expect_not(cfg__map_get(root, "e")->is_null);
  cr_expect(cfg__map_get(root, "f")->is_null);
  cr_expect_str_eq(cfg__kind_name(cfg__map_get(root, "a")), "nothing");
  cr_expect_str_eq(cfg__kind_name(cfg__map_get(root, "e")), "a string");
  cfg__tree_free(root);
}

Test(yaml_tree, map_get_finds_nothing_in_a_non_mapping) {
  struct cfg__node *root = load_ok("a: [1]\n");

  cr_expect_null(cfg__map_get(root, "b"));
  cr_expect_null(cfg__map_get(cfg__map_get(root, "a"), "x"));
  cr_expect_null(cfg__map_get(NULL, "x"));
  cfg__tree_free(root);
}

Test(yaml_tree, syntax_errors_name_the_problem_and_where) {
  LOAD_ERROR("a: [1, 2\nb: 3\n", "t.yaml:2:2: YAML syntax error: did not find expected ',' or ']'");
  LOAD_ERROR("a: b: c\n", "t.yaml:1:5: YAML syntax error: mapping values are not allowed in this "
                          "context");
}

Test(yaml_tree, invalid_utf8_is_a_syntax_error_at_the_offending_byte) {
  /* libyaml reports the byte that broke the sequence: here the second one, column 5. */
  LOAD_ERROR("a: 1\nb: \xc3\x28\n", "t.yaml:2:5: YAML syntax error: invalid trailing UTF-8 octet");
  LOAD_ERROR("a: \xff\n", "t.yaml:1:4: YAML syntax error: invalid leading UTF-8 octet");
}

Test(yaml_tree, an_empty_or_comment_only_or_null_document_is_an_empty_config) {
  load_error(NULL, 0, "t.yaml:1:1: empty config");
  LOAD_ERROR("", "t.yaml:1:1: empty config");
  LOAD_ERROR("\n\n# only a comment\n", "t.yaml:1:1: empty config");
  LOAD_ERROR("---\n", "t.yaml:2:1: empty config");
  LOAD_ERROR("~\n", "t.yaml:1:1: empty config");
}

Test(yaml_tree, the_top_level_must_be_a_mapping) {
  LOAD_ERROR("- a\n- b\n", "t.yaml:1:1: the config must be a mapping of keys (like 'listen: "
                           "...'), got a sequence");
  LOAD_ERROR("hello\n", "t.yaml:1:1: the config must be a mapping of keys (like 'listen: ...'), "
                        "got a string");
}

Test(yaml_tree, aliases_are_refused_so_they_cannot_multiply_the_input) {
  LOAD_ERROR("a: &x [1, 2]\nb: *x\n",
             "t.yaml:2:4: YAML aliases (*name) are not supported (quote a value that starts with "
             "'*', like \"*:80\")");
}

Test(yaml_tree, a_second_document_is_refused) {
  LOAD_ERROR("a: 1\n---\nb: 2\n", "t.yaml:2:1: only one YAML document is allowed");
}

Test(yaml_tree, keys_must_be_scalars) {
  LOAD_ERROR("? [a, b]\n: 1\n", "t.yaml:1:3: mapping keys must be strings, got a sequence");
  LOAD_ERROR("{a: 1}: 2\n", "t.yaml:1:1: mapping keys must be strings, got a mapping");
}

Test(yaml_tree, nul_characters_in_strings_are_refused) {
  LOAD_ERROR("a: \"x\\0y\"\n", "t.yaml:1:4: NUL characters are not allowed in strings");
  LOAD_ERROR("\"\\0\": 1\n", "t.yaml:1:1: NUL characters are not allowed in strings");
}

/* "[[[...]]]" nested `depth` times under a key. */
static char *nested(int depth) {
  char *s = malloc((size_t)depth * 2 + 8);
  int n = sprintf(s, "a: ");
  for (int i = 0; i < depth; i++)
    s[n++] = '[';
  for (int i = 0; i < depth; i++)
    s[n++] = ']';
  strcpy(s + n, "\n");
  return s;
}

Test(yaml_tree, nesting_is_bounded) {
  char *ok = nested(CFG__MAX_DEPTH - 1), *deep = nested(CFG__MAX_DEPTH), *huge = nested(100000);
  struct cfg__node *root = load_ok(ok);
  char msg[128];

  cfg__tree_free(root);
  snprintf(msg, sizeof(msg), "t.yaml:1:%d: nesting deeper than %d levels", 4 + CFG__MAX_DEPTH - 1,
           CFG__MAX_DEPTH);
  LOAD_ERROR(deep, msg);
  LOAD_ERROR(huge, msg);
  free(ok);
  free(deep);
  free(huge);
}

Test(yaml_tree, a_pending_key_is_freed_when_its_value_fails) {
  /* The key "k" is held while its value is parsed; a syntax error there must not leak it (ASan). */
  struct cfg__node *root;
  cr_expect_eq(cfg__tree_load(&ctx, "a:\n  k: [1,\n", 12, &root), UV_EINVAL);
  cr_expect_eq(cfg__tree_load(&ctx, "a:\n  k: *x\n", 11, &root), UV_EINVAL);
}

Test(yaml_tree, every_prefix_of_a_config_loads_or_fails_cleanly) {
  /* Truncation at every byte: under ASan this catches leaks and overreads on error paths. */
  const char *yaml = "listen: \"[::1]:80\"\nupstreams:\n  app:\n    servers:\n"
                     "      - {address: 127.0.0.1:1, weight: 2}\n      - 'x:1'\n"
                     "routes: [{host: '*.a.b', upstream: app}]\n";
  size_t len = strlen(yaml);

  for (size_t i = 0; i <= len; i++) {
    struct cfg__node *root = NULL;
    char *copy = malloc(i + 1);
    memcpy(copy, yaml, i);
    copy[i] = '\0';
    if (cfg__tree_load(&ctx, copy, i, &root) == 0)
      cfg__tree_free(root);
    free(copy);
  }
}

Test(yaml_tree, an_unquoted_star_value_says_to_quote_it) {
  LOAD_ERROR("listen: *:80\n", "t.yaml:1:9: a value starting with '*' must be quoted (\"*:80\", "
                               "\"*.example.com\"): unquoted, YAML reads it as an alias");
  LOAD_ERROR("routes:\n  - host: *.example.com\n",
             "t.yaml:2:11: a value starting with '*' must be quoted (\"*:80\", "
             "\"*.example.com\"): unquoted, YAML reads it as an alias");
}
