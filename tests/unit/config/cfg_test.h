/* Helpers shared by the config unit tests: parse a YAML string and expect success or one error. */
#ifndef LBP_CFG_TEST_H
#define LBP_CFG_TEST_H

#include <string.h>

#include <criterion/criterion.h>

#include "config.h"

/* The smallest valid config body: one upstream with one server. */
#define ONE_UPSTREAM "upstreams:\n  app:\n    servers: [127.0.0.1:9001]\n"

/* Parses `yaml` (named "t.yaml") and fails the test if it does not load. */
static inline struct lbp_config *parse_ok(const char *yaml) {
  struct lbp_config *cfg = NULL;
  struct cfg_error err;
  int rc = cfg_parse("t.yaml", yaml, strlen(yaml), &cfg, &err);

  cr_assert_eq(rc, 0, "expected the config to load, got: %s", err.msg);
  cr_assert_not_null(cfg);
  return cfg;
}

/* Parses `yaml` and checks that it fails with exactly the message `msg`. */
static inline void expect_error(const char *yaml, const char *msg) {
  struct lbp_config *cfg = (struct lbp_config *)1;
  struct cfg_error err;
  int rc = cfg_parse("t.yaml", yaml, strlen(yaml), &cfg, &err);

  cr_assert_lt(rc, 0, "expected an error for:\n%s", yaml);
  cr_assert_null(cfg, "a failed parse must leave *out NULL");
  cr_assert_str_eq(err.msg, msg);
}

/* As expect_error, for messages whose end comes from the system (resolver wording). */
static inline void expect_error_start(const char *yaml, const char *start) {
  struct lbp_config *cfg = (struct lbp_config *)1;
  struct cfg_error err;
  int rc = cfg_parse("t.yaml", yaml, strlen(yaml), &cfg, &err);

  cr_assert_lt(rc, 0, "expected an error for:\n%s", yaml);
  cr_assert_null(cfg, "a failed parse must leave *out NULL");
  cr_assert(strncmp(err.msg, start, strlen(start)) == 0, "got: %s\nwanted it to start with: %s",
            err.msg, start);
}

#endif
