/* Tests for the keys of config/schema.c and meaning.c added for listeners, operation and -T. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "cfg_test.h"

Test(schema, the_short_form_listen_is_one_http_listener_over_the_top_level_routes) {
  struct lbp_config *cfg = parse_ok("listen: 127.0.0.1:81\n" ONE_UPSTREAM);

  cr_assert_eq(cfg->nlisteners, 1);
  cr_expect_eq(cfg->listeners[0].mode, CFG_MODE_HTTP);
  cr_expect_eq(cfg->listeners[0].addr.port, 81);
  cr_expect_eq(cfg->listeners[0].routes, cfg->routes);
  cr_expect_eq(cfg->listeners[0].nroutes, 1);
  cr_expect_eq(cfg->listeners[0].line, 1);
  cfg_free(cfg);
}

Test(schema, listeners_may_be_http_with_own_routes_http_to_one_upstream_or_tcp) {
  struct lbp_config *cfg = parse_ok("listeners:\n"
                                    "  - listen: 127.0.0.1:80\n"
                                    "    routes:\n      - path: /api/\n        upstream: b\n"
                                    "  - listen: 127.0.0.1:81\n    upstream: a\n"
                                    "  - listen: 127.0.0.1:82\n    mode: tcp\n    upstream: b\n"
                                    "upstreams:\n  a:\n    servers: [1.2.3.4:80]\n"
                                    "  b:\n    servers: [1.2.3.4:81]\n");

  cr_assert_eq(cfg->nlisteners, 3);
  cr_expect_eq(cfg->listeners[0].nroutes, 1);
  cr_expect_str_eq(cfg->listeners[0].routes[0].path, "/api/");
  cr_expect_eq(cfg->listeners[0].routes[0].upstream, 1);
  cr_expect_eq(cfg->listeners[1].mode, CFG_MODE_HTTP);
  cr_expect_eq(cfg->listeners[1].nroutes, 1, "upstream: on an http listener is one catch-all");
  cr_expect_eq(cfg->listeners[1].routes[0].upstream, 0);
  cr_expect_eq(cfg->listeners[2].mode, CFG_MODE_TCP);
  cr_expect_eq(cfg->listeners[2].upstream, 1);
  cr_expect_eq(cfg->nroutes, 0, "no listener uses top-level routes: none are needed");
  cr_expect_eq(cfg->nwarnings, 0);
  cfg_free(cfg);
}

Test(schema, listener_mistakes_are_errors_at_their_place) {
  expect_error("listen: 127.0.0.1:80\nlisteners:\n  - listen: 127.0.0.1:81\n" ONE_UPSTREAM,
               "t.yaml:1:1: listen: give either listen (one HTTP listener) or listeners, not both");
  expect_error("listeners:\n  - listen: 127.0.0.1:81\n    mode: tcp\n" ONE_UPSTREAM,
               "t.yaml:2:5: listeners[0]: a tcp listener needs 'upstream'");
  expect_error("listeners:\n  - listen: 127.0.0.1:81\n    mode: udp\n" ONE_UPSTREAM,
               "t.yaml:3:11: listeners[0].mode: unknown value 'udp' (expected one of: http, tcp); "
               "did you mean 'tcp'?");
  expect_error("listeners:\n  - listen: 127.0.0.1:81\n    upstream: ap\n" ONE_UPSTREAM,
               "t.yaml:3:15: listeners[0].upstream: no upstream named 'ap'; did you mean 'app'?");
  expect_error("listeners:\n  - listen: 127.0.0.1:81\n  - listen: 127.0.0.1:81\n" ONE_UPSTREAM,
               "t.yaml:3:13: listeners: listeners[1] has the same address as listeners[0]");
  expect_error(
      "listeners:\n  - listen: 127.0.0.1:81\n    upstream: app\n    routes: []\n" ONE_UPSTREAM,
      "t.yaml:4:5: listeners[0]: give either routes or upstream, not both");
  expect_error("listeners:\n  - mode: tcp\n" ONE_UPSTREAM,
               "t.yaml:2:5: listeners[0]: missing required key 'listen'");
}

Test(schema, a_user_that_does_not_exist_is_an_error_at_its_value) {
  expect_error(ONE_UPSTREAM "user: nosuchuser\n", "t.yaml:4:7: user: no such user 'nosuchuser'");
}

Test(schema, an_existing_user_is_looked_up_at_load) {
  struct lbp_config *cfg = parse_ok(ONE_UPSTREAM "user: root\n");
  cr_expect(cfg->has_user_ids);
  cr_expect_eq(cfg->uid, 0);
  cr_expect_eq(cfg->gid, 0);
  cfg_free(cfg);
}

Test(schema, no_resolve_skips_the_user_lookup_and_name_resolution) {
  const char *yaml = "upstreams:\n  app:\n    servers: [no-such-host.invalid:80]\n"
                     "user: nosuchuser\n";
  struct lbp_config *cfg = NULL;
  struct cfg_error err;

  cr_assert_eq(cfg_parse_ex("t.yaml", yaml, strlen(yaml), CFG_NO_RESOLVE, &cfg, &err), 0, "%s",
               err.msg);
  cr_expect_eq(cfg->has_user_ids, 0);
  cr_expect_eq(cfg->upstreams[0].servers[0].addr.sa.ss_family, 0, "left unresolved");
  cfg_free(cfg);
}

Test(schema, operation_keys_have_their_documented_defaults) {
  struct lbp_config *cfg = parse_ok(ONE_UPSTREAM);

  cr_expect_null(cfg->pid_file);
  cr_expect_eq(cfg->shutdown_timeout_ms, 30000);
  cr_expect_str_eq(cfg->error_log, "stderr");
  cr_expect_eq(cfg->log_level, CFG_LOG_INFO);
  cr_expect_eq(cfg->debug_header, 0);
  cr_expect_eq(cfg->restart.delay_ms, 100);
  cr_expect_eq(cfg->restart.max_delay_ms, 15000);
  cr_expect_eq(cfg->restart.reset_after_ms, 30000);
  cr_expect_eq(cfg->restart.max_exits, 10);
  cr_expect_eq(cfg->restart.window_ms, 60000);
  cfg_free(cfg);
}

Test(schema, booleans_take_yaml_spellings_and_nothing_else) {
  struct lbp_config *cfg = parse_ok(ONE_UPSTREAM "debug_header: yes\n");
  cr_expect_eq(cfg->debug_header, 1);
  cfg_free(cfg);
  expect_error(ONE_UPSTREAM "debug_header: 1\n",
               "t.yaml:4:15: debug_header: '1' is not true or false");
}

static int has_warning(const struct lbp_config *cfg, const char *text) {
  for (size_t i = 0; i < cfg->nwarnings; i++)
    if (strcmp(cfg->warnings[i], text) == 0)
      return 1;
  return 0;
}

Test(schema, valid_but_surely_wrong_configs_give_warnings_with_their_place) {
  struct lbp_config *cfg = parse_ok("dispatch: handoff\nproxy_port_base: 9000\n"
                                    "routes:\n  - upstream: a\n  - path: /\n    upstream: b\n"
                                    "  - host: x.example\n    path: /p\n    upstream: a\n"
                                    "  - host: x.example\n    path: /p\n    upstream: b\n"
                                    "upstreams:\n  a:\n    servers: [1.2.3.4:80]\n"
                                    "  b:\n    servers: [1.2.3.4:81]\n"
                                    "  c:\n    servers: [1.2.3.4:82]\n");

  cr_expect(has_warning(cfg, "t.yaml:2:18: proxy_port_base: has no effect unless dispatch is "
                             "proxy (dispatch is handoff)"));
  cr_expect(has_warning(cfg, "t.yaml:5:5: routes[1]: a second catch-all route; routes[0] "
                             "already takes every request, so this one never matches"));
  cr_expect(has_warning(cfg, "t.yaml:10:5: routes[3]: the same host and path as routes[2], "
                             "which wins: this one never matches"));
  cr_expect(has_warning(cfg, "t.yaml:18:3: upstreams.c: no route or listener sends anything to "
                             "this upstream"));
  cr_expect_eq(cfg->nwarnings, 4);
  cfg_free(cfg);
}

/* The dump of a config loads to a config that dumps the same. */
static char *dump_of(const struct lbp_config *cfg) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);

  cr_assert_not_null(f);
  cfg_dump(cfg, f);
  fclose(f);
  return buf;
}

Test(schema, the_dump_is_every_key_and_loads_back_to_the_same_config) {
  struct lbp_config *a = parse_ok("listeners:\n"
                                  "  - listen: \"*:8080\"\n"
                                  "    routes:\n      - host: \"*.example.com\"\n"
                                  "        path: /x\n        upstream: b\n"
                                  "  - listen: 127.0.0.1:81\n    mode: tcp\n    upstream: b\n"
                                  "routes:\n  - upstream: a\n"
                                  "workers: 3\nuser: root\npid_file: /tmp/x.pid\n"
                                  "restart:\n  max_exits: 4\n"
                                  "upstreams:\n  a:\n    servers: [1.2.3.4:80]\n"
                                  "  b:\n    keepalive: 7\n"
                                  "    servers:\n      - address: 1.2.3.4:81\n        weight: 5\n");
  char *one = dump_of(a), *two;
  struct lbp_config *b = parse_ok(one);

  two = dump_of(b);
  cr_expect_str_eq(one, two);
  cr_expect(strstr(one, "  max_exits: 4\n") != NULL, "%s", one);
  cr_expect(strstr(one, "shutdown_timeout: 30s\n") != NULL, "defaults are shown: %s", one);
  cr_expect(strstr(one, "- listen: \"*:8080\"\n") != NULL, "%s", one);
  cr_expect(strstr(one, "# error_log") == NULL && strstr(one, "error_log: \"stderr\"") != NULL,
            "%s", one);
  cr_expect(strstr(one, "        weight: 5\n") != NULL, "%s", one);
  free(one);
  free(two);
  cfg_free(a);
  cfg_free(b);
}
