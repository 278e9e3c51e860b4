/* Tests for config/config.c: whole files through cfg_parse / cfg_load_file, and message helpers. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <uv.h>

#include "cfg_test.h"
#include "config_internal.h"

static const char full[] = "# every key\n"
                           "listen: 127.0.0.1:8081\n"
                           "workers: 4\n"
                           "dispatch: handoff-least\n"
                           "user: nobody\n"
                           "stats_interval: 2s\n"
                           "proxy_port_base: 20000\n"
                           "timeouts:\n"
                           "  connect: 250ms\n"
                           "  client_header: 3s\n"
                           "  client_idle: 2m\n"
                           "  upstream_response: 1h\n"
                           "limits:\n"
                           "  max_header_bytes: 32k\n"
                           "upstreams:\n"
                           "  app:\n"
                           "    keepalive: 8\n"
                           "    servers:\n"
                           "      - 127.0.0.1:9001\n"
                           "      - address: 127.0.0.1:9002\n"
                           "        weight: 3\n"
                           "  static:\n"
                           "    servers: [\"[::1]:9003\"]\n"
                           "routes:\n"
                           "  - host: api.example.com\n"
                           "    path: /api/\n"
                           "    upstream: app\n"
                           "  - host: \"*.example.com\"\n"
                           "    upstream: static\n";

Test(config, a_file_with_every_key_fills_every_field) {
  struct lbp_config *cfg = parse_ok(full);
  struct cfg_upstream *app, *st;

  cr_expect_str_eq(cfg->file, "t.yaml");
  cr_expect_str_eq(cfg->listen.host, "127.0.0.1");
  cr_expect_eq(cfg->listen.port, 8081);
  cr_expect_eq(cfg->listen.line, 2);
  cr_expect_eq(cfg->listen.col, 9);
  cr_expect_eq(cfg->listen.sa.ss_family, AF_INET);
  cr_expect_eq(cfg->workers, 4);
  cr_expect_eq(cfg->workers_auto, 0);
  cr_expect_eq(cfg->dispatch, CFG_DISPATCH_HANDOFF_LEAST);
  cr_expect_str_eq(cfg->user, "nobody");
  cr_expect_eq(cfg->stats_interval_ms, 2000);
  cr_expect_eq(cfg->proxy_port_base, 20000);
  cr_expect_eq(cfg->timeouts.connect_ms, 250);
  cr_expect_eq(cfg->timeouts.client_header_ms, 3000);
  cr_expect_eq(cfg->timeouts.client_idle_ms, 120000);
  cr_expect_eq(cfg->timeouts.upstream_response_ms, 3600000);
  cr_expect_eq(cfg->limits.max_header_bytes, 32768);

  cr_assert_eq(cfg->nupstreams, 2);
  app = &cfg->upstreams[0];
  st = &cfg->upstreams[1];
  cr_expect_str_eq(app->name, "app");
  cr_expect_eq(app->line, 16);
  cr_expect_eq(app->col, 3);
  cr_expect_eq(app->keepalive, 8);
  cr_assert_eq(app->nservers, 2);
  cr_expect_str_eq(app->servers[0].addr.host, "127.0.0.1");
  cr_expect_eq(app->servers[0].addr.port, 9001);
  cr_expect_eq(app->servers[0].weight, 1);
  cr_expect_eq(app->servers[0].addr.line, 19);
  cr_expect_eq(app->servers[0].addr.col, 9);
  cr_expect_eq(app->servers[0].addr.sa.ss_family, AF_INET);
  cr_expect_eq(app->servers[1].addr.port, 9002);
  cr_expect_eq(app->servers[1].weight, 3);
  cr_expect_str_eq(st->name, "static");
  cr_expect_eq(st->keepalive, 32);
  cr_assert_eq(st->nservers, 1);
  cr_expect_str_eq(st->servers[0].addr.host, "::1");
  cr_expect_eq(st->servers[0].addr.sa.ss_family, AF_INET6);

  cr_assert_eq(cfg->nroutes, 2);
  cr_expect_str_eq(cfg->routes[0].host, "api.example.com");
  cr_expect_str_eq(cfg->routes[0].path, "/api/");
  cr_expect_eq(cfg->routes[0].upstream, 0);
  cr_expect_eq(cfg->routes[0].line, 25);
  cr_expect_eq(cfg->routes[0].col, 5);
  cr_expect_str_eq(cfg->routes[1].host, "*.example.com");
  cr_expect_null(cfg->routes[1].path);
  cr_expect_eq(cfg->routes[1].upstream, 1);
  cfg_free(cfg);
}

Test(config, the_shipped_default_config_loads_as_documented) {
  const char *path = LBP_SOURCE_DIR "/config/lbproxy.yaml";
  struct lbp_config *cfg;
  struct cfg_error err;

  cr_assert_eq(cfg_load_file(path, &cfg, &err, NULL, NULL), 0, "%s", err.msg);
  cr_expect_str_eq(cfg->listen.host, "127.0.0.1");
  cr_expect_eq(cfg->listen.port, 8080);
  cr_expect_eq(cfg->workers_auto, 1);
  cr_expect_eq(cfg->dispatch, CFG_DISPATCH_HANDOFF);
  cr_assert_eq(cfg->nupstreams, 1);
  cr_expect_str_eq(cfg->upstreams[0].name, "demo");
  cr_assert_eq(cfg->upstreams[0].nservers, 2);
  cr_expect_str_eq(cfg->upstreams[0].servers[0].addr.host, "127.0.0.1");
  cr_expect_eq(cfg->upstreams[0].servers[0].addr.port, 9001);
  cr_expect_eq(cfg->upstreams[0].servers[1].addr.port, 9002);
  cr_assert_eq(cfg->nroutes, 1);
  cr_expect_null(cfg->routes[0].host);
  cr_expect_null(cfg->routes[0].path);
  cr_expect_eq(cfg->routes[0].upstream, 0);
  cr_expect_str_eq(cfg->admin.listen, "127.0.0.1:9900");
  cr_expect_eq(cfg->admin.allow_public, 0);
  cr_expect_str_eq(cfg->access_log, "stdout");
  cfg_free(cfg);
}

/* Writes `bytes` to a new temporary file and returns its path (static buffer). */
static const char *temp_file(const void *bytes, size_t len) {
  static char path[] = "/tmp/lbp-cfg-test-XXXXXX";
  int fd;

  strcpy(path, "/tmp/lbp-cfg-test-XXXXXX");
  fd = mkstemp(path);
  cr_assert_geq(fd, 0);
  cr_assert_eq(write(fd, bytes, len), (ssize_t)len);
  close(fd);
  return path;
}

Test(config, load_file_returns_the_exact_bytes_it_validated) {
  const char *path = temp_file(full, sizeof(full) - 1);
  struct lbp_config *cfg;
  struct cfg_error err;
  char *bytes;
  size_t len;

  cr_assert_eq(cfg_load_file(path, &cfg, &err, &bytes, &len), 0, "%s", err.msg);
  cr_expect_eq(len, sizeof(full) - 1);
  cr_expect_eq(memcmp(bytes, full, len), 0);
  cr_expect_eq(bytes[len], '\0');
  cr_expect_str_eq(cfg->file, path);
  cr_expect_eq(cfg->workers, 4);
  free(bytes);
  cfg_free(cfg);
  unlink(path);
}

Test(config, load_file_reads_files_larger_than_its_first_buffer) {
  size_t len = 100000;
  char *big = malloc(len);
  const char *path;
  struct lbp_config *cfg;
  struct cfg_error err;
  char *bytes;
  size_t got;

  memset(big, '#', len);
  memcpy(big, ONE_UPSTREAM, strlen(ONE_UPSTREAM));
  big[len - 1] = '\n';
  path = temp_file(big, len);
  cr_assert_eq(cfg_load_file(path, &cfg, &err, &bytes, &got), 0, "%s", err.msg);
  cr_expect_eq(got, len);
  cr_expect_eq(memcmp(bytes, big, len), 0);
  free(bytes);
  free(big);
  cfg_free(cfg);
  unlink(path);
}

Test(config, load_file_errors_name_the_file_and_give_no_bytes) {
  const char *path = temp_file("workers: 2\n", 11);
  struct lbp_config *cfg = (struct lbp_config *)1;
  struct cfg_error err;
  char *bytes = (char *)1;
  size_t len = 1;
  char want[128];

  cr_expect_eq(cfg_load_file(path, &cfg, &err, &bytes, &len), UV_EINVAL);
  cr_expect_null(cfg);
  cr_expect_null(bytes);
  cr_expect_eq(len, 0);
  snprintf(want, sizeof(want), "%s:1:1: missing required key 'upstreams'", path);
  cr_expect_str_eq(err.msg, want);
  unlink(path);

  cr_expect_eq(cfg_load_file("/nonexistent/lbproxy.yaml", &cfg, &err, NULL, NULL), UV_ENOENT);
  cr_expect_str_eq(err.msg, "/nonexistent/lbproxy.yaml: cannot open: no such file or directory");
  cr_expect_eq(cfg_load_file("/", &cfg, &err, NULL, NULL), -EISDIR);
  cr_expect_str_eq(err.msg, "/: cannot read: illegal operation on a directory");
}

Test(config, an_empty_file_is_an_error) {
  expect_error("", "t.yaml:1:1: empty config");
  expect_error("# nothing here\n", "t.yaml:1:1: empty config");
}

Test(config, a_yaml_syntax_error_is_reported_with_its_position) {
  expect_error(ONE_UPSTREAM "workers: [1\n",
               "t.yaml:5:1: YAML syntax error: did not find expected ',' or ']'");
  expect_error("listen: \"127.0.0.1:80\nworkers: 1\n",
               "t.yaml:3:1: YAML syntax error: found unexpected end of stream");
}

Test(config, errors_leave_no_config_and_work_without_an_error_struct) {
  struct lbp_config *cfg = (struct lbp_config *)1;

  cr_expect_eq(cfg_parse("x", "workers: [", 10, &cfg, NULL), UV_EINVAL);
  cr_expect_null(cfg);
  cr_expect_eq(cfg_parse(NULL, "upstreams: 1", 12, &cfg, NULL), UV_EINVAL);
}

Test(config, a_nameless_config_is_reported_as_config) {
  struct lbp_config *cfg;
  struct cfg_error err;

  cr_expect_eq(cfg_parse(NULL, "", 0, &cfg, &err), UV_EINVAL);
  cr_expect_str_eq(err.msg, "<config>:1:1: empty config");
}

Test(config, every_prefix_of_a_full_file_parses_or_fails_cleanly) {
  /* Under ASan this checks that no error path, in any step, leaks or reads out of bounds. */
  for (size_t i = 0; i <= sizeof(full) - 1; i++) {
    struct lbp_config *cfg = NULL;
    struct cfg_error err;
    char *copy = malloc(i + 1);
    memcpy(copy, full, i);
    copy[i] = '\0';
    if (cfg_parse("t.yaml", copy, i, &cfg, &err) == 0)
      cfg_free(cfg);
    else
      cr_expect(strncmp(err.msg, "t.yaml:", 7) == 0, "every error names the file: %s", err.msg);
    free(copy);
  }
}

Test(config, free_accepts_null) {
  cfg_free(NULL);
}

Test(config, dispatch_names_round_trip) {
  cr_expect_str_eq(cfg_dispatch_name(CFG_DISPATCH_HANDOFF), "handoff");
  cr_expect_str_eq(cfg_dispatch_name(CFG_DISPATCH_HANDOFF_LEAST), "handoff-least");
  cr_expect_str_eq(cfg_dispatch_name(CFG_DISPATCH_PROXY), "proxy");
  cr_expect_str_eq(cfg_dispatch_name(CFG_DISPATCH_SHARED), "shared");
  cr_expect_str_eq(cfg_dispatch_name(CFG_DISPATCH_REUSEPORT), "reuseport");
  cr_expect_str_eq(cfg_dispatch_name((enum cfg_dispatch)99), "unknown");
}

Test(config, levenshtein_counts_edits_and_stops_past_its_limit) {
  cr_expect_eq(cfg__levenshtein("kitten", "sitting", 10), 3);
  cr_expect_eq(cfg__levenshtein("", "abc", 10), 3);
  cr_expect_eq(cfg__levenshtein("same", "same", 10), 0);
  cr_expect_gt(cfg__levenshtein("abcdefgh", "zzzzzzzz", 2), 2);
  cr_expect_gt(cfg__levenshtein("a", "abcdefgh", 2), 2);
}

Test(config, closest_suggests_only_likely_typos) {
  const char *names[] = {"listen", "workers", "upstream_response", NULL};

  cr_expect_str_eq(cfg__closest("lisen", names), "listen");
  cr_expect_str_eq(cfg__closest("worker", names), "workers");
  cr_expect_str_eq(cfg__closest("upstream_respnose", names), "upstream_response");
  cr_expect_null(cfg__closest("zzz", names));
  cr_expect_null(cfg__closest("", names));
}

Test(config, show_keeps_messages_short_and_printable) {
  char buf[64];

  cr_expect_str_eq(cfg__show(buf, sizeof(buf), "plain"), "plain");
  cr_expect_str_eq(cfg__show(buf, sizeof(buf), "a\tb\n\x7f"), "a?b??");
  cr_expect_str_eq(cfg__show(buf, 8, "abcdefghij"), "abcd...");
}
