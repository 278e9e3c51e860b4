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
                                  "    health_check: {}\n    hash_key: uri\n"
                                  "  b:\n    keepalive: 7\n    balance: hash\n"
                                  "    hash_key: header:X-User\n    retry_on: [timeout]\n"
                                  "    retry_budget: 35%\n    panic: true\n"
                                  "    health_check:\n      type: http\n      host: b.example\n"
                                  "      expect_status: 204\n      jitter: 0\n"
                                  "    servers:\n      - address: 1.2.3.4:81\n        weight: 5\n"
                                  "      - address: 1.2.3.4:82\n        backup: true\n");
  char *one = dump_of(a), *two;
  struct lbp_config *b = parse_ok(one);

  two = dump_of(b);
  cr_expect_str_eq(one, two);
  cr_expect_eq(b->nwarnings, a->nwarnings, "the dump loads with the same warnings");
  cr_expect(strstr(one, "  max_exits: 4\n") != NULL, "%s", one);
  cr_expect(strstr(one, "shutdown_timeout: 30s\n") != NULL, "defaults are shown: %s", one);
  cr_expect(strstr(one, "- listen: \"*:8080\"\n") != NULL, "%s", one);
  cr_expect(strstr(one, "# error_log") == NULL && strstr(one, "error_log: \"stderr\"") != NULL,
            "%s", one);
  cr_expect(strstr(one, "        weight: 5\n") != NULL, "%s", one);
  cr_expect(strstr(one, "    hash_key: \"header:X-User\"\n") != NULL, "%s", one);
  cr_expect(strstr(one, "    retry_on: [timeout]\n") != NULL, "%s", one);
  cr_expect(strstr(one, "    retry_on: [connect_failure, reset]\n") != NULL, "%s", one);
  cr_expect(strstr(one, "      expect_status: \"204\"\n") != NULL, "%s", one);
  cr_expect(strstr(one, "    health_check:\n      type: tcp\n      path: \"/\"\n") != NULL, "%s",
            one);
  cr_expect(strstr(one, "    retry_budget: 35%\n") != NULL, "%s", one);
  cr_expect(strstr(one, "        backup: true\n") != NULL, "%s", one);
  free(one);
  free(two);
  cfg_free(a);
  cfg_free(b);
}

Test(schema, the_dump_marks_what_is_not_set) {
  struct lbp_config *cfg = parse_ok(ONE_UPSTREAM);
  char *text = dump_of(cfg);

  cr_expect(strstr(text, "    # health_check: (off)\n") != NULL, "%s", text);
  cr_expect(strstr(text, "    # hash_key: (not set)\n") != NULL, "%s", text);
  free(text);
  cfg_free(cfg);
}

/* ---- upstream balancing, health and retry keys ---- */

Test(schema, upstream_balancing_keys_have_their_documented_defaults) {
  struct lbp_config *cfg = parse_ok(ONE_UPSTREAM);
  const struct cfg_upstream *u = &cfg->upstreams[0];

  cr_expect_eq(u->balance, CFG_BALANCE_ROUND_ROBIN);
  cr_expect_eq(u->hash_key, CFG_HASH_KEY_NONE);
  cr_expect_null(u->hash_header);
  cr_expect_eq(u->panic, 0);
  cr_expect_eq(u->slow_start_ms, 0);
  cr_expect_eq(u->max_fails, 3);
  cr_expect_eq(u->fail_timeout_ms, 10000);
  cr_expect_eq(u->retries, 1);
  cr_expect_eq(u->retry_on, (1u << CFG_RETRY_CONNECT_FAILURE) | (1u << CFG_RETRY_RESET));
  cr_expect_eq(u->retry_budget_pct, 20);
  cr_expect_eq(u->resolve_interval_ms, 5000);
  cr_expect_eq(u->health_check.enabled, 0, "no health_check: no active checks");
  cr_expect_eq(u->servers[0].backup, 0);
  cr_expect_str_eq(cfg_balance_name(CFG_BALANCE_RANDOM2), "random2");
  cfg_free(cfg);
}

Test(schema, every_upstream_balancing_key_is_read) {
  struct lbp_config *cfg = parse_ok("upstreams:\n  app:\n"
                                    "    balance: least_conn\n    panic: yes\n"
                                    "    slow_start: 30s\n    max_fails: 0\n"
                                    "    fail_timeout: 2s\n    retries: 3\n"
                                    "    retry_on: [connect_failure, http_503, http_504]\n"
                                    "    retry_budget: 5\n    resolve_interval: 1m\n"
                                    "    servers:\n      - localhost:80\n"
                                    "      - address: 127.0.0.1:81\n        backup: true\n");
  const struct cfg_upstream *u = &cfg->upstreams[0];

  cr_expect_eq(u->balance, CFG_BALANCE_LEAST_CONN);
  cr_expect_eq(u->panic, 1);
  cr_expect_eq(u->slow_start_ms, 30000);
  cr_expect_eq(u->max_fails, 0);
  cr_expect_eq(u->fail_timeout_ms, 2000);
  cr_expect_eq(u->retries, 3);
  cr_expect_eq(u->retry_on, (1u << CFG_RETRY_CONNECT_FAILURE) | (1u << CFG_RETRY_HTTP_503) |
                                (1u << CFG_RETRY_HTTP_504));
  cr_expect_eq(u->retry_budget_pct, 5, "a bare number is a percentage too");
  cr_expect_eq(u->resolve_interval_ms, 60000);
  cr_expect_eq(u->servers[0].backup, 0);
  cr_expect_eq(u->servers[1].backup, 1);
  cr_expect_eq(cfg->nwarnings, 0);
  cfg_free(cfg);
}

Test(schema, hash_key_is_client_ip_uri_or_a_header_name) {
  struct lbp_config *cfg =
      parse_ok("upstreams:\n  a:\n    balance: hash\n    hash_key: client_ip\n"
               "    servers: [1.2.3.4:80]\n"
               "  b:\n    balance: hash\n    hash_key: uri\n    servers: [1.2.3.4:80]\n"
               "  c:\n    balance: hash\n    hash_key: \"header:X-Session-Id\"\n"
               "    servers: [1.2.3.4:80]\n"
               "routes:\n  - {path: /a, upstream: a}\n  - {path: /b, upstream: b}\n"
               "  - upstream: c\n");

  cr_expect_eq(cfg->upstreams[0].hash_key, CFG_HASH_KEY_CLIENT_IP);
  cr_expect_eq(cfg->upstreams[1].hash_key, CFG_HASH_KEY_URI);
  cr_expect_eq(cfg->upstreams[2].hash_key, CFG_HASH_KEY_HEADER);
  cr_expect_str_eq(cfg->upstreams[2].hash_header, "X-Session-Id");
  cfg_free(cfg);
  expect_error("upstreams:\n  a:\n    balance: hash\n    hash_key: client-ip\n"
               "    servers: [1.2.3.4:80]\n",
               "t.yaml:4:15: upstreams.a.hash_key: unknown value 'client-ip' (expected "
               "client_ip, uri or header:<Name>); did you mean 'client_ip'?");
  expect_error("upstreams:\n  a:\n    balance: hash\n    hash_key: \"header:X User\"\n"
               "    servers: [1.2.3.4:80]\n",
               "t.yaml:4:15: upstreams.a.hash_key: 'X User' is not a header name (letters, "
               "digits and !#$%&'*+-.^_`|~)");
  expect_error("upstreams:\n  a:\n    balance: hash\n    hash_key: \"header:\"\n"
               "    servers: [1.2.3.4:80]\n",
               "t.yaml:4:15: upstreams.a.hash_key: '' is not a header name (letters, "
               "digits and !#$%&'*+-.^_`|~)");
  expect_error("upstreams:\n  a:\n    balance: rr\n    servers: [1.2.3.4:80]\n",
               "t.yaml:3:14: upstreams.a.balance: unknown value 'rr' (expected one of: "
               "round_robin, least_conn, random2, hash)");
}

Test(schema, retry_on_is_a_list_of_failure_kinds) {
  struct lbp_config *cfg = parse_ok("upstreams:\n  a:\n    retry_on: []\n    retries: 0\n"
                                    "    servers: [1.2.3.4:80]\n");
  cr_expect_eq(cfg->upstreams[0].retry_on, 0, "an empty list: never retry");
  cfg_free(cfg);
  expect_error("upstreams:\n  a:\n    retry_on: [connect_failure, resets]\n"
               "    servers: [1.2.3.4:80]\n",
               "t.yaml:3:33: upstreams.a.retry_on[1]: unknown value 'resets' (expected one of: "
               "connect_failure, reset, timeout, http_502, http_503, http_504); did you mean "
               "'reset'?");
  expect_error("upstreams:\n  a:\n    retry_on: reset\n    servers: [1.2.3.4:80]\n",
               "t.yaml:3:15: upstreams.a.retry_on: expected a sequence of failure kinds, got a "
               "string");
}

Test(schema, percentages_take_a_percent_sign_and_bounds) {
  expect_error("upstreams:\n  a:\n    retry_budget: 101%\n    servers: [1.2.3.4:80]\n",
               "t.yaml:3:19: upstreams.a.retry_budget: 101% is out of range (0%..100%)");
  expect_error("upstreams:\n  a:\n    retry_budget: \"%\"\n    servers: [1.2.3.4:80]\n",
               "t.yaml:3:19: upstreams.a.retry_budget: '%' is not a percentage (like 20%)");
  expect_error("upstreams:\n  a:\n    retry_budget: 20%%\n    servers: [1.2.3.4:80]\n",
               "t.yaml:3:19: upstreams.a.retry_budget: '20%%' is not a percentage (like 20%)");
  expect_error("upstreams:\n  a:\n    retries: 11\n    servers: [1.2.3.4:80]\n",
               "t.yaml:3:14: upstreams.a.retries: 11 is out of range (0..10)");
}

Test(schema, health_check_turns_checks_on_with_its_defaults) {
  struct lbp_config *cfg = parse_ok("upstreams:\n  a:\n    health_check:\n"
                                    "    servers: [1.2.3.4:80]\n"
                                    "  b:\n    health_check:\n      type: http\n"
                                    "      path: /healthz\n      host: b.internal:8080\n"
                                    "      expect_status: 200-204\n      interval: 5s\n"
                                    "      timeout: 500ms\n      rise: 1\n      fall: 5\n"
                                    "      jitter: 25%\n    servers: [1.2.3.4:81]\n"
                                    "routes:\n  - {path: /a, upstream: a}\n  - upstream: b\n");
  const struct cfg_health_check *a = &cfg->upstreams[0].health_check;
  const struct cfg_health_check *b = &cfg->upstreams[1].health_check;

  cr_expect_eq(a->enabled, 1);
  cr_expect_eq(a->type, CFG_CHECK_TCP);
  cr_expect_str_eq(a->path, "/");
  cr_expect_null(a->host);
  cr_expect(a->status_lo == 200 && a->status_hi == 399);
  cr_expect(a->interval_ms == 2000 && a->timeout_ms == 1000);
  cr_expect(a->rise == 2 && a->fall == 3 && a->jitter_pct == 10);
  cr_expect_eq(b->type, CFG_CHECK_HTTP);
  cr_expect_str_eq(b->path, "/healthz");
  cr_expect_str_eq(b->host, "b.internal:8080");
  cr_expect(b->status_lo == 200 && b->status_hi == 204);
  cr_expect(b->interval_ms == 5000 && b->timeout_ms == 500);
  cr_expect(b->rise == 1 && b->fall == 5 && b->jitter_pct == 25);
  cfg_free(cfg);
}

Test(schema, health_check_values_are_checked_at_their_place) {
  expect_error("upstreams:\n  a:\n    health_check:\n      expect_status: 200-99\n"
               "    servers: [1.2.3.4:80]\n",
               "t.yaml:4:22: upstreams.a.health_check.expect_status: '200-99' is not a status or "
               "a range of statuses like 200-399 (100..599)");
  expect_error("upstreams:\n  a:\n    health_check:\n      expect_status: 2xx\n"
               "    servers: [1.2.3.4:80]\n",
               "t.yaml:4:22: upstreams.a.health_check.expect_status: '2xx' is not a status or "
               "a range of statuses like 200-399 (100..599)");
  expect_error("upstreams:\n  a:\n    health_check:\n      type: udp\n"
               "    servers: [1.2.3.4:80]\n",
               "t.yaml:4:13: upstreams.a.health_check.type: unknown value 'udp' (expected one "
               "of: tcp, http); did you mean 'tcp'?");
  expect_error("upstreams:\n  a:\n    health_check:\n      jitter: 60%\n"
               "    servers: [1.2.3.4:80]\n",
               "t.yaml:4:15: upstreams.a.health_check.jitter: 60% is out of range (0%..50%)");
  expect_error("upstreams:\n  a:\n    health_check:\n      path: healthz\n"
               "    servers: [1.2.3.4:80]\n",
               "t.yaml:4:13: upstreams.a.health_check.path: a route path must start with '/'");
  expect_error("upstreams:\n  a:\n    health_check:\n      host: \"a b\"\n"
               "    servers: [1.2.3.4:80]\n",
               "t.yaml:4:13: upstreams.a.health_check.host: a Host value has no spaces, control "
               "characters or '/'");
  expect_error("upstreams:\n  a:\n    health_check:\n      intervall: 1s\n"
               "    servers: [1.2.3.4:80]\n",
               "t.yaml:4:7: upstreams.a.health_check.intervall: unknown key 'intervall' in "
               "'upstreams.a.health_check'; did you mean 'interval'?");
}
