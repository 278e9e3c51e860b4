/* Tests for proxy/router.c: host and path matching, and which route wins. */
#include "config.h"
#include "router.h"

#include <criterion/criterion.h>
#include <string.h>

static struct cfg_route routes[8];
static struct lbp_config cfg;

static void add(const char *host, const char *path, size_t upstream) {
  struct cfg_route *r = &routes[cfg.nroutes++];
  memset(r, 0, sizeof(*r));
  r->host = (char *)host;
  r->path = (char *)path;
  r->upstream = upstream;
}

static int route(const char *host, const char *target) {
  return px_route(&cfg, host, host ? strlen(host) : 0, target, strlen(target));
}

static void setup(void) {
  memset(&cfg, 0, sizeof(cfg));
  cfg.routes = routes;
  add(NULL, NULL, 0);             /* 0: default */
  add(NULL, "/api/", 1);          /* 1 */
  add(NULL, "/api/v2/", 2);       /* 2 */
  add("example.com", NULL, 3);    /* 3 */
  add("example.com", "/api/", 4); /* 4 */
  add("*.example.com", NULL, 5);  /* 5 */
}

TestSuite(router, .init = setup);

Test(router, sends_unmatched_requests_to_the_catch_all_route) {
  cr_assert_eq(route("other.org", "/"), 0);
  cr_assert_eq(route(NULL, "/x"), 0);
}

Test(router, prefers_the_longest_path_prefix) {
  cr_assert_eq(route("other.org", "/api/users"), 1);
  cr_assert_eq(route("other.org", "/api/v2/users"), 2);
  cr_assert_eq(route("other.org", "/api"), 0, "/api is not under /api/");
}

Test(router, prefers_a_matching_host_over_any_path_without_host) {
  cr_assert_eq(route("example.com", "/api/v2/x"), 4);
  cr_assert_eq(route("example.com", "/other"), 3);
}

Test(router, ignores_case_port_trailing_dot_and_whitespace_in_host) {
  cr_assert_eq(route("EXAMPLE.com:8080", "/"), 3);
  cr_assert_eq(route(" example.com. ", "/"), 3);
}

Test(router, matches_wildcard_hosts_on_subdomains_only) {
  cr_assert_eq(route("a.example.com", "/"), 5);
  cr_assert_eq(route("a.b.example.com", "/"), 5);
  cr_assert_eq(route("badexample.com", "/"), 0);
}

Test(router, exact_host_beats_wildcard_host) {
  add("www.example.com", NULL, 6);
  cr_assert_eq(route("www.example.com", "/"), 6);
}

Test(router, routes_on_the_path_of_absolute_targets_and_ignores_queries) {
  cr_assert_eq(route("x", "http://example.com/api/v2/?q=/api/"), 2);
  cr_assert_eq(route("x", "/api/?a=b"), 1);
  cr_assert_eq(route("x", "/?q=/api/v2/"), 0);
}

Test(router, returns_minus_one_when_nothing_matches) {
  cfg.nroutes = 0;
  add(NULL, "/only/", 0);
  cr_assert_eq(route("x", "/"), -1);
}
