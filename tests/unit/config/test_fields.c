/* Tests for config/fields.c: the key tables, their types, bounds and defaults, and their errors. */
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

#include "cfg_test.h"

Test(fields, absent_keys_take_the_table_defaults) {
  struct lbp_config *cfg = parse_ok(ONE_UPSTREAM);

  cr_expect_str_eq(cfg->listen.host, "0.0.0.0");
  cr_expect_eq(cfg->listen.port, 8080);
  cr_expect_eq(cfg->workers_auto, 1);
  cr_expect_eq(cfg->dispatch, CFG_DISPATCH_HANDOFF);
  cr_expect_null(cfg->user);
  cr_expect_eq(cfg->stats_interval_ms, 0);
  cr_expect_eq(cfg->proxy_port_base, 0);
  cr_expect_eq(cfg->timeouts.connect_ms, 5000);
  cr_expect_eq(cfg->timeouts.client_header_ms, 10000);
  cr_expect_eq(cfg->timeouts.client_idle_ms, 60000);
  cr_expect_eq(cfg->timeouts.upstream_response_ms, 60000);
  cr_expect_eq(cfg->limits.max_header_bytes, 16384);
  cr_expect_eq(cfg->upstreams[0].keepalive, 32);
  cr_expect_eq(cfg->upstreams[0].servers[0].weight, 1);
  cfg_free(cfg);
}

Test(fields, a_partly_given_mapping_keeps_defaults_for_the_rest) {
  struct lbp_config *cfg = parse_ok(ONE_UPSTREAM "timeouts:\n  connect: 250ms\nlimits:\n");

  cr_expect_eq(cfg->timeouts.connect_ms, 250);
  cr_expect_eq(cfg->timeouts.client_header_ms, 10000);
  cr_expect_eq(cfg->limits.max_header_bytes, 16384);
  cfg_free(cfg);
}

Test(fields, servers_may_be_scalars_or_mappings_in_one_list) {
  struct lbp_config *cfg = parse_ok("upstreams:\n  app:\n    keepalive: 0\n    servers:\n"
                                    "      - 10.0.0.1:81\n"
                                    "      - address: 10.0.0.2:82\n"
                                    "        weight: 1000\n"
                                    "      - {address: 10.0.0.3:83}\n");
  struct cfg_upstream *u = &cfg->upstreams[0];

  cr_assert_eq(u->nservers, 3);
  cr_expect_eq(u->keepalive, 0);
  cr_expect_str_eq(u->servers[0].addr.host, "10.0.0.1");
  cr_expect_eq(u->servers[0].addr.port, 81);
  cr_expect_eq(u->servers[0].weight, 1);
  cr_expect_eq(u->servers[0].addr.line, 5);
  cr_expect_eq(u->servers[0].addr.col, 9);
  cr_expect_eq(u->servers[1].weight, 1000);
  cr_expect_eq(u->servers[1].addr.line, 6);
  cr_expect_eq(u->servers[1].addr.col, 18);
  cr_expect_eq(u->servers[2].weight, 1);
  cr_expect_eq(u->servers[2].addr.port, 83);
  cfg_free(cfg);
}

Test(fields, every_dispatch_name_maps_to_its_strategy_and_back) {
  static const struct {
    const char *name;
    enum cfg_dispatch d;
  } cases[] = {
      {"handoff", CFG_DISPATCH_HANDOFF},     {"handoff-least", CFG_DISPATCH_HANDOFF_LEAST},
      {"proxy", CFG_DISPATCH_PROXY},         {"shared", CFG_DISPATCH_SHARED},
      {"reuseport", CFG_DISPATCH_REUSEPORT},
  };

  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    char yaml[256];
    struct lbp_config *cfg;
    snprintf(yaml, sizeof(yaml), ONE_UPSTREAM "dispatch: %s\n", cases[i].name);
    cfg = parse_ok(yaml);
    cr_expect_eq(cfg->dispatch, cases[i].d, "%s", cases[i].name);
    cr_expect_str_eq(cfg_dispatch_name(cfg->dispatch), cases[i].name);
    cfg_free(cfg);
  }
}

Test(fields, workers_is_a_number_or_auto) {
  struct lbp_config *cfg = parse_ok(ONE_UPSTREAM "workers: 256\n");
  cr_expect_eq(cfg->workers, 256);
  cr_expect_eq(cfg->workers_auto, 0);
  cfg_free(cfg);

  cfg = parse_ok(ONE_UPSTREAM "workers: auto\n");
  cr_expect_eq(cfg->workers_auto, 1);
  cr_expect_geq(cfg->workers, 1);
  cr_expect_leq(cfg->workers, 256);
  cfg_free(cfg);
}

Test(fields, quoted_values_count_like_plain_ones) {
  struct lbp_config *cfg = parse_ok(ONE_UPSTREAM "workers: '3'\nlisten: \"*:0\"\n");
  cr_expect_eq(cfg->workers, 3);
  cr_expect_str_eq(cfg->listen.host, "*");
  cr_expect_eq(cfg->listen.port, 0);
  cfg_free(cfg);
}

Test(fields, an_unknown_top_level_key_suggests_the_closest_one) {
  expect_error(ONE_UPSTREAM "lisen: 1.2.3.4:80\n",
               "t.yaml:4:1: lisen: unknown key 'lisen'; did you mean 'listen'?");
  expect_error(ONE_UPSTREAM "timout:\n  connect: 1s\n",
               "t.yaml:4:1: timout: unknown key 'timout'; did you mean 'timeouts'?");
}

Test(fields, an_unknown_nested_key_names_its_mapping_and_suggests) {
  expect_error(ONE_UPSTREAM "timeouts:\n  connect: 1s\n  conect: 2s\n",
               "t.yaml:6:3: timeouts.conect: unknown key 'conect' in 'timeouts'; did you mean "
               "'connect'?");
  expect_error("upstreams:\n  app:\n    server: [1.2.3.4:80]\n",
               "t.yaml:3:5: upstreams.app.server: unknown key 'server' in 'upstreams.app'; did "
               "you mean 'servers'?");
  expect_error("upstreams:\n  app:\n    servers:\n      - address: 1.2.3.4:80\n        wieght: 2\n",
               "t.yaml:5:9: upstreams.app.servers[0].wieght: unknown key 'wieght' in "
               "'upstreams.app.servers[0]'; did you mean 'weight'?");
}

Test(fields, an_unknown_key_far_from_any_lists_the_known_keys) {
  expect_error(ONE_UPSTREAM "limits:\n  zzz: 1\n",
               "t.yaml:5:3: limits.zzz: unknown key 'zzz' in 'limits' (known keys: "
               "max_header_bytes max_body_bytes max_connections)");
}

Test(fields, a_sequence_where_a_scalar_is_expected_is_a_wrong_type) {
  expect_error(ONE_UPSTREAM "listen: [1.2.3.4:80]\n",
               "t.yaml:4:9: listen: expected host:port, got a sequence");
  expect_error(ONE_UPSTREAM "timeouts:\n  connect: {a: 1}\n",
               "t.yaml:5:12: timeouts.connect: expected a duration (like 250ms, 2s, 1m or 1h), got "
               "a mapping");
}

Test(fields, a_scalar_where_a_mapping_or_sequence_is_expected_is_a_wrong_type) {
  expect_error(ONE_UPSTREAM "timeouts: 5s\n", "t.yaml:4:11: timeouts: expected a mapping, got a "
                                              "string");
  expect_error("upstreams: [a]\n",
               "t.yaml:1:12: upstreams: expected a mapping of upstream names to upstreams, got a "
               "sequence");
  expect_error("upstreams:\n  app:\n    servers: 1.2.3.4:80\n",
               "t.yaml:3:14: upstreams.app.servers: expected a sequence of servers, got a string");
  expect_error("upstreams:\n  app:\n    servers: [[1.2.3.4:80]]\n",
               "t.yaml:3:15: upstreams.app.servers[0]: expected host:port or a mapping, got a "
               "sequence");
}

Test(fields, an_empty_value_is_reported_at_its_key) {
  expect_error(ONE_UPSTREAM "listen:\nworkers: 2\n",
               "t.yaml:4:1: listen: expected host:port, got nothing");
  expect_error("upstreams:\nworkers: 2\n",
               "t.yaml:1:1: upstreams: expected a mapping of upstream names to upstreams, got "
               "nothing");
}

Test(fields, a_bad_duration_is_refused_at_its_value) {
  expect_error(ONE_UPSTREAM "timeouts:\n  client_idle: 5 s\n",
               "t.yaml:5:16: timeouts.client_idle: '5 s' is not a duration (like 250ms, 2s, 1m or "
               "1h)");
  expect_error(ONE_UPSTREAM "stats_interval: -1s\n",
               "t.yaml:4:17: stats_interval: '-1s' is not a duration (like 250ms, 2s, 1m or 1h)");
}

Test(fields, a_bad_size_is_refused_at_its_value) {
  expect_error(ONE_UPSTREAM "limits:\n  max_header_bytes: 16q\n",
               "t.yaml:5:21: limits.max_header_bytes: '16q' is not a size (a number of bytes, or "
               "with k, m or g: 16k, 1m)");
}

Test(fields, numbers_out_of_their_table_bounds_are_refused_with_the_bounds) {
  expect_error(ONE_UPSTREAM "workers: 0\n", "t.yaml:4:10: workers: 0 is out of range (1..256)");
  expect_error(ONE_UPSTREAM "workers: 257\n", "t.yaml:4:10: workers: 257 is out of range (1..256)");
  expect_error(ONE_UPSTREAM "timeouts:\n  connect: 0ms\n",
               "t.yaml:5:12: timeouts.connect: 0ms is out of range (1ms..1h)");
  expect_error(ONE_UPSTREAM "timeouts:\n  upstream_response: 61m\n",
               "t.yaml:5:22: timeouts.upstream_response: 61m is out of range (1ms..1h)");
  expect_error(ONE_UPSTREAM "limits:\n  max_header_bytes: 1023\n",
               "t.yaml:5:21: limits.max_header_bytes: 1023 is out of range (1k..1m)");
  expect_error(ONE_UPSTREAM "proxy_port_base: 65536\n",
               "t.yaml:4:18: proxy_port_base: 65536 is out of range (0..65535)");
  expect_error("upstreams:\n  app:\n    keepalive: 10001\n    servers: [1.2.3.4:80]\n",
               "t.yaml:3:16: upstreams.app.keepalive: 10001 is out of range (0..10000)");
  expect_error("upstreams:\n  app:\n    servers:\n      - address: 1.2.3.4:80\n        weight: 0\n",
               "t.yaml:5:17: upstreams.app.servers[0].weight: 0 is out of range (1..1000)");
}

Test(fields, bounds_themselves_are_accepted) {
  struct lbp_config *cfg = parse_ok(ONE_UPSTREAM "timeouts:\n  connect: 1ms\n  client_idle: 1h\n"
                                                 "limits:\n  max_header_bytes: 1m\n"
                                                 "stats_interval: 24h\nworkers: 1\n");
  cr_expect_eq(cfg->timeouts.connect_ms, 1);
  cr_expect_eq(cfg->timeouts.client_idle_ms, 3600000);
  cr_expect_eq(cfg->limits.max_header_bytes, 1048576);
  cr_expect_eq(cfg->stats_interval_ms, 24 * 3600000);
  cr_expect_eq(cfg->workers, 1);
  cfg_free(cfg);
}

Test(fields, a_number_that_is_not_one_is_refused) {
  expect_error(ONE_UPSTREAM "workers: many\n",
               "t.yaml:4:10: workers: 'many' is not 'auto' or a whole number");
  expect_error(ONE_UPSTREAM "proxy_port_base: 0x10\n",
               "t.yaml:4:18: proxy_port_base: '0x10' is not a whole number");
}

Test(fields, a_bad_dispatch_name_lists_the_names_and_suggests_one) {
  expect_error(ONE_UPSTREAM "dispatch: handof\n",
               "t.yaml:4:11: dispatch: unknown value 'handof' (expected one of: handoff, "
               "handoff-least, proxy, shared, reuseport); did you mean 'handoff'?");
  expect_error(ONE_UPSTREAM "dispatch: round-robin\n",
               "t.yaml:4:11: dispatch: unknown value 'round-robin' (expected one of: handoff, "
               "handoff-least, proxy, shared, reuseport)");
}

Test(fields, bad_addresses_say_what_is_wrong) {
  expect_error(ONE_UPSTREAM "listen: 127.0.0.1\n",
               "t.yaml:4:9: listen: bad address '127.0.0.1': missing port (expected host:port)");
  expect_error(ONE_UPSTREAM "listen: 127.0.0.1:65536\n",
               "t.yaml:4:9: listen: bad address '127.0.0.1:65536': port must be a number from 0 "
               "to 65535");
  expect_error(ONE_UPSTREAM "listen: ::1:80\n",
               "t.yaml:4:9: listen: bad address '::1:80': bad host (IPv6 addresses go in "
               "brackets: [::1]:80)");
  expect_error("upstreams:\n  app:\n    servers: [1.2.3.4:0]\n",
               "t.yaml:3:15: upstreams.app.servers[0]: port 0 is out of range (1..65535)");
  /* Found by fuzz_config: a server without a host was taken for a name to resolve. */
  expect_error("upstreams:\n  app:\n    servers:\n      -    :80\n",
               "t.yaml:4:12: upstreams.app.servers[0]: bad address ':80': a server needs a host "
               "(an IP address or a name) before the port");
  expect_error("upstreams:\n  app:\n    servers: [web:80, \"x..y:1\"]\n",
               "t.yaml:3:23: upstreams.app.servers[1]: bad address 'x..y:1': a host name has no "
               "empty label (two dots, or a dot first)");
  expect_error("upstreams:\n  app:\n    servers: [\"we%b:80\"]\n",
               "t.yaml:3:15: upstreams.app.servers[0]: bad address 'we%b:80': a host name has "
               "only letters, digits, '-', '_' and dots");
}

Test(fields, a_duplicate_key_is_reported_at_the_second_one) {
  expect_error(ONE_UPSTREAM "workers: 2\nworkers: 3\n",
               "t.yaml:5:1: workers: duplicate key 'workers' (first set at 4:1)");
  expect_error(ONE_UPSTREAM "timeouts:\n  connect: 1s\n  client_idle: 1s\n  connect: 2s\n",
               "t.yaml:7:3: timeouts.connect: duplicate key 'connect' (first set at 5:3)");
}

Test(fields, of_several_duplicates_the_earliest_repeat_is_reported) {
  expect_error(ONE_UPSTREAM "user: a\nworkers: 1\nworkers: 2\nuser: b\nworkers: 3\n",
               "t.yaml:6:1: workers: duplicate key 'workers' (first set at 5:1)");
}

Test(fields, upstream_names_are_unique) {
  expect_error("upstreams:\n  app:\n    servers: [1.2.3.4:80]\n  app:\n    servers: [1.2.3.4:81]\n",
               "t.yaml:4:3: upstreams.app: duplicate key 'app' (first set at 2:3)");
}

Test(fields, required_keys_must_be_present) {
  expect_error("workers: 2\n", "t.yaml:1:1: missing required key 'upstreams'");
  expect_error("upstreams:\n  app:\n    keepalive: 1\n",
               "t.yaml:3:5: upstreams.app: missing required key 'servers'");
  expect_error("upstreams:\n  app:\n", "t.yaml:2:3: upstreams.app: missing required key 'servers'");
  expect_error("upstreams:\n  app:\n    servers:\n      - weight: 2\n",
               "t.yaml:4:9: upstreams.app.servers[0]: missing required key 'address'");
  expect_error(ONE_UPSTREAM "routes:\n  - host: a.com\n",
               "t.yaml:5:5: routes[0]: missing required key 'upstream'");
}

Test(fields, entry_counts_respect_the_table_bounds) {
  expect_error("upstreams: {}\n", "t.yaml:1:12: upstreams: at least 1 entry is required");
  expect_error("upstreams:\n  app:\n    servers: []\n",
               "t.yaml:3:14: upstreams.app.servers: at least 1 entry is required");
}

Test(fields, more_than_256_servers_are_refused) {
  char yaml[8192];
  int n = snprintf(yaml, sizeof(yaml), "upstreams:\n  app:\n    servers: [");

  for (int i = 0; i < 257; i++)
    n += snprintf(yaml + n, sizeof(yaml) - (size_t)n, "%s10.0.%d.%d:80", i ? ", " : "", i / 256,
                  i % 256);
  snprintf(yaml + n, sizeof(yaml) - (size_t)n, "]\n");
  expect_error(yaml, "t.yaml:3:14: upstreams.app.servers: at most 256 entries are allowed");
}

Test(fields, upstream_names_are_plain_words) {
  expect_error("upstreams:\n  \"a b\":\n    servers: [1.2.3.4:80]\n",
               "t.yaml:2:3: upstreams.a b: upstream names may only use letters, digits, '-', '_' "
               "and '.'");
  expect_error("upstreams:\n  \"\":\n    servers: [1.2.3.4:80]\n",
               "t.yaml:2:3: upstreams.: an upstream name cannot be empty");
}

Test(fields, route_hosts_and_paths_are_checked) {
  expect_error(ONE_UPSTREAM "routes:\n  - path: api\n    upstream: app\n",
               "t.yaml:5:11: routes[0].path: a route path must start with '/'");
  expect_error(ONE_UPSTREAM "routes:\n  - host: a.com:80\n    upstream: app\n",
               "t.yaml:5:11: routes[0].host: a route host is a name like 'api.example.com' or "
               "'*.example.com', without port");
  expect_error(ONE_UPSTREAM "routes:\n  - host: \"*.\"\n    upstream: app\n",
               "t.yaml:5:11: routes[0].host: a route host cannot be empty");
  expect_error(ONE_UPSTREAM "routes:\n  - upstream: [app]\n",
               "t.yaml:5:15: routes[0].upstream: expected an upstream name, got a sequence");
}

Test(fields, user_is_a_non_empty_string) {
  struct lbp_config *cfg = parse_ok(ONE_UPSTREAM "user: nobody\n");
  cr_expect_str_eq(cfg->user, "nobody");
  cfg_free(cfg);
  expect_error(ONE_UPSTREAM "user: ''\n", "t.yaml:4:7: user: cannot be empty");
}

Test(fields, messages_show_odd_values_safely_on_one_line) {
  expect_error(ONE_UPSTREAM "workers: \"a\\nb\"\n",
               "t.yaml:4:10: workers: 'a?b' is not 'auto' or a whole number");
  expect_error(ONE_UPSTREAM
               "workers: "
               "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n",
               "t.yaml:4:10: workers: 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...' is "
               "not 'auto' or a whole number");
}
