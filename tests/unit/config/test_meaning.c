/* Tests for config/meaning.c: routes and the default route, workers, port room, resolution. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include <criterion/criterion.h>

#include "cfg_test.h"

Test(meaning, one_upstream_without_routes_gets_one_default_route_to_it) {
  struct lbp_config *cfg = parse_ok("workers: 1\nupstreams:\n  app:\n    servers: [1.2.3.4:80]\n");

  cr_assert_eq(cfg->nroutes, 1);
  cr_expect_null(cfg->routes[0].host);
  cr_expect_null(cfg->routes[0].path);
  cr_expect_eq(cfg->routes[0].upstream, 0);
  cr_expect_eq(cfg->routes[0].line, 3, "the default route points at its upstream's name");
  cr_expect_eq(cfg->routes[0].col, 3);
  cfg_free(cfg);
}

Test(meaning, an_empty_routes_list_counts_as_absent) {
  struct lbp_config *cfg = parse_ok(ONE_UPSTREAM "routes: []\n");
  cr_assert_eq(cfg->nroutes, 1);
  cr_expect_eq(cfg->routes[0].upstream, 0);
  cfg_free(cfg);

  cfg = parse_ok(ONE_UPSTREAM "routes:\n");
  cr_expect_eq(cfg->nroutes, 1);
  cfg_free(cfg);
}

Test(meaning, several_upstreams_without_routes_are_an_error_at_upstreams) {
  expect_error("workers: 1\nupstreams:\n  a:\n    servers: [1.2.3.4:80]\n"
               "  b:\n    servers: [1.2.3.4:81]\n",
               "t.yaml:2:1: upstreams: routes are required when there are several upstreams (2)");
}

Test(meaning, routes_point_at_upstreams_defined_after_them) {
  struct lbp_config *cfg = parse_ok("routes:\n"
                                    "  - host: api.example.com\n    path: /api/\n    upstream: b\n"
                                    "  - upstream: a\n"
                                    "upstreams:\n  a:\n    servers: [1.2.3.4:80]\n"
                                    "  b:\n    servers: [1.2.3.4:81]\n");

  cr_assert_eq(cfg->nroutes, 2);
  cr_expect_str_eq(cfg->routes[0].host, "api.example.com");
  cr_expect_str_eq(cfg->routes[0].path, "/api/");
  cr_expect_eq(cfg->routes[0].upstream, 1);
  cr_expect_eq(cfg->routes[0].line, 2);
  cr_expect_eq(cfg->routes[0].col, 5);
  cr_expect_null(cfg->routes[1].host);
  cr_expect_null(cfg->routes[1].path);
  cr_expect_eq(cfg->routes[1].upstream, 0);
  cr_expect_eq(cfg->routes[1].line, 5);
  cfg_free(cfg);
}

Test(meaning, a_route_to_a_missing_upstream_is_an_error_at_its_value) {
  expect_error(ONE_UPSTREAM "routes:\n  - path: /\n    upstream: ap\n",
               "t.yaml:6:15: routes[0].upstream: no upstream named 'ap'; did you mean 'app'?");
  expect_error(ONE_UPSTREAM "routes:\n  - upstream: app\n  - upstream: zzzzzz\n",
               "t.yaml:6:15: routes[1].upstream: no upstream named 'zzzzzz'");
}

Test(meaning, a_server_host_name_is_not_resolved_at_load) {
  /* The master resolves names at run time (a compose service may start after the proxy):
   * loading never fails on one, and never blocks on DNS. */
  struct lbp_config *cfg = parse_ok("upstreams:\n  app:\n    servers: [1.2.3.4:80, nohost.invalid:80]\n");

  cr_expect_eq(cfg->upstreams[0].servers[0].dns, 0);
  cr_expect_eq(cfg->upstreams[0].servers[0].addr.sa.ss_family, AF_INET);
  cr_expect_eq(cfg->upstreams[0].servers[1].dns, 1);
  cr_expect_eq(cfg->upstreams[0].servers[1].addr.sa.ss_family, AF_UNSPEC);
  cr_expect_str_eq(cfg->upstreams[0].servers[1].addr.host, "nohost.invalid");
  cr_expect_eq(cfg->upstreams[0].servers[1].addr.port, 80);
  cfg_free(cfg);
}

Test(meaning, an_unresolvable_listen_host_is_an_error_at_its_value) {
  expect_error_start(ONE_UPSTREAM "listen: nohost.invalid:80\n",
                     "t.yaml:4:9: listen: cannot resolve 'nohost.invalid': ");
}

Test(meaning, listen_and_servers_are_resolved_with_their_ports) {
  struct lbp_config *cfg = parse_ok("listen: \"[::1]:0\"\n"
                                    "upstreams:\n  app:\n    servers: [10.0.0.7:9001]\n");
  struct sockaddr_in6 *l = (struct sockaddr_in6 *)&cfg->listen.sa;
  struct sockaddr_in *s = (struct sockaddr_in *)&cfg->upstreams[0].servers[0].addr.sa;

  cr_assert_eq(l->sin6_family, AF_INET6);
  cr_expect_eq(cfg->listen.salen, sizeof(*l));
  cr_expect_eq(ntohs(l->sin6_port), 0);
  cr_assert_eq(s->sin_family, AF_INET);
  cr_expect_eq(ntohl(s->sin_addr.s_addr), 0x0a000007);
  cr_expect_eq(ntohs(s->sin_port), 9001);
  cfg_free(cfg);
}

Test(meaning, the_default_listen_address_is_any_port_8080) {
  struct lbp_config *cfg = parse_ok(ONE_UPSTREAM);
  struct sockaddr_in *l = (struct sockaddr_in *)&cfg->listen.sa;

  cr_assert_eq(l->sin_family, AF_INET);
  cr_expect_eq(l->sin_addr.s_addr, htonl(INADDR_ANY));
  cr_expect_eq(ntohs(l->sin_port), 8080);
  cr_expect_eq(cfg->listen.line, 0, "a default has no position in the file");
  cfg_free(cfg);
}

Test(meaning, auto_workers_become_a_cpu_count_within_bounds) {
  struct lbp_config *cfg = parse_ok(ONE_UPSTREAM);

  cr_expect_eq(cfg->workers_auto, 1);
  cr_expect_geq(cfg->workers, 1);
  cr_expect_leq(cfg->workers, 256);
  cfg_free(cfg);
}

Test(meaning, proxy_port_base_must_leave_a_port_for_every_worker) {
  struct lbp_config *cfg = parse_ok(ONE_UPSTREAM "workers: 2\nproxy_port_base: 65534\n");
  cr_expect_eq(cfg->proxy_port_base, 65534);
  cfg_free(cfg);

  expect_error(ONE_UPSTREAM "workers: 2\nproxy_port_base: 65535\n",
               "t.yaml:5:18: proxy_port_base: 65535 leaves no room for 2 workers x 1 listeners "
               "(base + workers x listeners - 1 must be <= 65535)");
  /* One private port per worker and listener: 3 x 2 from 65531 would wrap. */
  expect_error("workers: 3\nproxy_port_base: 65531\nlisteners:\n  - listen: 127.0.0.1:1\n"
               "  - listen: 127.0.0.1:2\n" ONE_UPSTREAM,
               "t.yaml:2:18: proxy_port_base: 65531 leaves no room for 3 workers x 2 listeners "
               "(base + workers x listeners - 1 must be <= 65535)");
}

/* ---- upstreams: cross-key rules of balancing, retries and health checks ---- */

static int has_warning(const struct lbp_config *cfg, const char *text) {
  for (size_t i = 0; i < cfg->nwarnings; i++)
    if (strcmp(cfg->warnings[i], text) == 0)
      return 1;
  return 0;
}

Test(meaning, balance_hash_needs_a_hash_key) {
  expect_error("upstreams:\n  a:\n    balance: hash\n    servers: [1.2.3.4:80]\n",
               "t.yaml:3:14: upstreams.a.balance: hash needs hash_key (client_ip, uri or "
               "header:<Name>)");
}

Test(meaning, one_address_twice_in_an_upstream_is_an_error_at_the_second) {
  expect_error("upstreams:\n  a:\n    servers:\n      - 1.2.3.4:80\n      - 1.2.3.5:80\n"
               "      - address: 1.2.3.4:80\n        weight: 2\n",
               "t.yaml:6:18: upstreams.a.servers[2]: the same address as servers[0] (give that "
               "one a weight instead)");
  struct lbp_config *cfg = parse_ok("upstreams:\n  a:\n    servers: [1.2.3.4:80]\n"
                                    "  b:\n    servers: [1.2.3.4:80]\n"
                                    "routes:\n  - {path: /a, upstream: a}\n  - upstream: b\n");
  cr_expect_eq(cfg->nwarnings, 0, "the same address in two upstreams is two servers");
  cfg_free(cfg);
}

Test(meaning, a_health_check_timeout_must_be_shorter_than_its_interval) {
  expect_error("upstreams:\n  a:\n    health_check:\n      interval: 1s\n"
               "    servers: [1.2.3.4:80]\n",
               "t.yaml:4:17: upstreams.a.health_check: timeout (1s) must be shorter than "
               "interval (1s)");
  expect_error("upstreams:\n  a:\n    health_check:\n      timeout: 3s\n"
               "    servers: [1.2.3.4:80]\n",
               "t.yaml:4:16: upstreams.a.health_check: timeout (3s) must be shorter than "
               "interval (2s)");
}

Test(meaning, balancing_keys_that_cannot_take_effect_give_warnings) {
  struct lbp_config *cfg = parse_ok("upstreams:\n"
                                    "  a:\n    hash_key: uri\n    resolve_interval: 1s\n"
                                    "    servers: [1.2.3.4:80]\n"
                                    "  b:\n    balance: hash\n    hash_key: uri\n"
                                    "    slow_start: 10s\n    retry_on: []\n"
                                    "    servers:\n      - address: 1.2.3.4:81\n"
                                    "        backup: true\n"
                                    "  c:\n    health_check:\n      path: /x\n"
                                    "    servers: [localhost:80]\n    resolve_interval: 1s\n"
                                    "routes:\n  - {path: /a, upstream: a}\n"
                                    "  - {path: /b, upstream: b}\n  - upstream: c\n");

  cr_expect(has_warning(cfg, "t.yaml:3:5: upstreams.a.hash_key: has no effect unless balance "
                             "is hash (balance is round_robin)"));
  cr_expect(has_warning(cfg, "t.yaml:4:5: upstreams.a.resolve_interval: has no effect: every "
                             "server is an IP address"));
  cr_expect(has_warning(cfg, "t.yaml:9:5: upstreams.b.slow_start: has no effect with balance "
                             "hash (a ramping weight would move keys)"));
  cr_expect(has_warning(cfg, "t.yaml:10:5: upstreams.b.retry_on: is empty: retries has no "
                             "effect"));
  cr_expect(has_warning(cfg, "t.yaml:11:5: upstreams.b.servers: every server is a backup, so "
                             "the backups take all the traffic"));
  cr_expect(has_warning(cfg, "t.yaml:16:7: upstreams.c.health_check.path: has no effect with "
                             "type tcp"));
  cr_expect_eq(cfg->nwarnings, 6);
  cfg_free(cfg);
}
