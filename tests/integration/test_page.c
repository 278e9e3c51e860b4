/* The admin status page in a real browser: headless Chromium loads it from a running lbproxy, and
 * the DOM after its first refreshes shows one bar per worker and the servers with live numbers;
 * a screenshot is kept in the build directory (status-page.png). */
#include "itest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef LBP_BUILD_DIR
#define LBP_BUILD_DIR "."
#endif

static const char *chromium(void) {
  static const char *const paths[] = {"/usr/bin/chromium", "/usr/bin/chromium-browser",
                                      "/usr/bin/google-chrome"};
  for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
    if (access(paths[i], X_OK) == 0)
      return paths[i];
  return NULL;
}

/* Runs headless Chromium on the status page with `what` (--dump-dom, --screenshot=...); its
 * stdout goes to `out`. Waits for it (it is reaped by system()). */
static int browse(const char *bin, const char *what, const char *out) {
  char cmd[4096];

  snprintf(cmd, sizeof(cmd),
           "timeout 90 %s --headless --no-sandbox --disable-gpu --no-first-run "
           "--disable-background-networking --disable-component-update --disable-sync "
           "--disable-dev-shm-usage --user-data-dir=%s/chromium --window-size=1280,1400 "
           "--virtual-time-budget=5000 %s 'http://127.0.0.1:%u/?interval=500' > %s 2> %s.err",
           bin, T.dir, what, T.px.admin_port, out, out);
  return system(cmd);
}

static char *slurp(const char *path) {
  FILE *f = fopen(path, "r");
  char *buf;
  long n;

  cr_assert_not_null(f, "%s", path);
  fseek(f, 0, SEEK_END);
  n = ftell(f);
  rewind(f);
  buf = malloc((size_t)n + 1);
  cr_assert_not_null(buf);
  cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
  buf[n] = '\0';
  fclose(f);
  return buf;
}

static int count(const char *hay, const char *needle) {
  int n = 0;
  for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle))
    n++;
  return n;
}

/* The number in the cell of `metric` after `from` in the DOM. */
static long cell(const char *from, const char *metric) {
  char needle[128];
  const char *p;

  snprintf(needle, sizeof(needle), "data-metric=\"%s\">", metric);
  p = strstr(from, needle);
  cr_assert_not_null(p, "no cell %s", metric);
  return strtol(p + strlen(needle), NULL, 10);
}

IT_TEST(page, shows_a_bar_per_worker_and_the_servers_with_live_numbers_in_chromium) {
  const char *bin = chromium();
  char out[700], png[600], row[256], *dom, *stats, *script;
  int by_backend[2] = {0, 0}, status;
  struct hc_resp r;
  char v[64];

  if (bin == NULL)
    cr_skip_test("chromium is not installed (Debian package chromium; `make test` installs it)");
  it_start_yaml("handoff", 2, 2,
                "admin:\n  listen: 127.0.0.1:0\nupstreams:\n  app:\n"
                "    servers: [127.0.0.1:%1$u, 127.0.0.1:%2$u]\n");
  for (int i = 0; i < 24; i++) {
    cr_assert_eq(it_get("/", &r), 0);
    cr_assert_eq(hc_header(&r, "X-Backend", v, sizeof(v)), 0);
    by_backend[v[1] - '1']++;
  }
  /* Counted at the end of each request: wait until all are. */
  for (int64_t deadline = h_now_ms() + 10000;; usleep(20000)) {
    stats = it_admin_get("/stats", &status);
    cr_assert_eq(status, 200);
    int done = strstr(stats, "\"totals\":{\"workers\":2,\"accepted\":24,") != NULL &&
               strstr(stats, "\"requests\":24,") != NULL;
    free(stats);
    if (done)
      break;
    cr_assert_lt(h_now_ms(), deadline, "/stats never counted the 24 requests");
  }
  /* What the admin API changes shows on the page: b2 drained, b1 at weight 5. */
  snprintf(row, sizeof(row),
           "POST /upstreams/app/servers/127.0.0.1:%u/drain HTTP/1.1\r\nHost: a\r\n"
           "Content-Length: 0\r\n\r\n",
           T.be[1].port);
  cr_assert_eq(it_admin_raw(row, NULL, NULL, 0), 200);
  snprintf(row, sizeof(row),
           "POST /upstreams/app/servers/127.0.0.1:%u/weight HTTP/1.1\r\nHost: a\r\n"
           "Content-Length: 1\r\n\r\n5",
           T.be[0].port);
  cr_assert_eq(it_admin_raw(row, NULL, NULL, 0), 200);
  snprintf(out, sizeof(out), "%s/dom.html", T.dir);
  cr_assert_eq(browse(bin, "--dump-dom", out), 0, "chromium failed (see %s.err)", out);
  dom = slurp(out);
  if ((script = strstr(dom, "<script>")) != NULL)
    *script = '\0'; /* the rendered document, not the code that renders it */
  cr_assert_null(strstr(dom, "data-refreshes=\"0\""), "the page never refreshed:\n%s", dom);
  cr_assert_eq(count(dom, "class=\"bar\" data-worker="), 2, "one bar per worker:\n%s", dom);
  cr_assert_eq(count(dom, "style=\"width:50.0%\""), 2, "handoff splits 24 connections evenly");
  for (int b = 0; b < 2; b++) {
    const char *p;
    snprintf(row, sizeof(row),
             "<tr class=\"server\" data-upstream=\"app\" data-server=\"127.0.0.1:%u\">",
             T.be[b].port);
    cr_assert_not_null(p = strstr(dom, row), "no row for server b%d:\n%s", b + 1, dom);
    cr_assert_eq(cell(p, "requests"), by_backend[b], "server b%d shows %ld, took %d", b + 1,
                 cell(p, "requests"), by_backend[b]);
    cr_assert_not_null(strstr(p, "<td class=\"t up\">up</td>"));
    cr_assert_not_null(
        strstr(p, b == 1 ? "<td class=\"t\">draining</td>" : "<td class=\"t\">enabled</td>"),
        "server b%d's admin state is not shown:\n%.600s", b + 1, p);
    cr_assert_eq(cell(p, "weight"), b == 0 ? 5 : 1, "server b%d's weight", b + 1);
  }
  cr_assert_eq(cell(strstr(dom, "data-worker=\"1\" data-metric=\"requests\"") - 40, "requests") +
                   cell(strstr(dom, "data-worker=\"2\" data-metric=\"requests\"") - 40, "requests"),
               24);
  cr_assert_not_null(strstr(dom, "dispatch handoff"));
  cr_assert_not_null(strstr(dom, "<span class=\"ty\">ready</span>"), "recent events are shown");
  free(dom);
  snprintf(png, sizeof(png), "%s/status-page.png", LBP_BUILD_DIR);
  unlink(png);
  snprintf(out, sizeof(out), "--screenshot=%s", png);
  cr_assert_eq(browse(bin, out, "/dev/null"), 0, "chromium --screenshot failed");
  dom = slurp(png);
  cr_assert_eq(memcmp(dom, "\x89PNG", 4), 0, "%s is not a PNG", png);
  free(dom);
  fprintf(stderr, "status page screenshot: %s\n", png);
  it_stop();
}
