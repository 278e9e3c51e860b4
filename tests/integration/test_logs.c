/* The logs of a real lbproxy: access log lines parse as the combined format (plus upstream
 * fields) and match the requests sent, our own 4xx/5xx and cut responses included; reopen on
 * SIGUSR1; error log lines that name the pool, server, client and status, llhttp's codes in
 * words, and repeated lines summarized. */
#include "itest.h"

#include <regex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The combined log format, then upstream, upstream status, upstream time, request time. */
static const char combined[] =
    "^([0-9.]+) - - \\[([0-9]{2}/[A-Z][a-z]{2}/[0-9]{4}:[0-9]{2}:[0-9]{2}:[0-9]{2} \\+0000)\\] "
    "\"([^\"]*)\" ([0-9]{3}) ([0-9]+) \"([^\"]*)\" \"([^\"]*)\" "
    "([^ ]+) ([0-9]{3}|-) ([0-9]+\\.[0-9]{3}|-) ([0-9]+\\.[0-9]{3})$";

enum {
  F_CLIENT = 1,
  F_TIME,
  F_REQUEST,
  F_STATUS,
  F_BYTES,
  F_REFERER,
  F_UA,
  F_UP,
  F_UPSTATUS,
  F_UPTIME,
  F_TIME_TAKEN,
  F_N
};

struct line {
  char f[F_N][512];
};

static char access_path[600];

static const char yaml[] = "access_log: %s\n"
                           "timeouts:\n  upstream_response: 1s\n"
                           "upstreams:\n"
                           "  app:\n    max_fails: 0\n    servers: [127.0.0.1:%u]\n"
                           "  dead:\n    max_fails: 0\n    retries: 0\n"
                           "    servers: [127.0.0.1:1]\n"
                           "routes:\n  - {path: /dead, upstream: dead}\n  - {upstream: app}\n";

static void start(const char *dispatch, int workers) {
  char top[1024], body[2048];

  memset(&T, 0, sizeof(T));
  cr_assert_eq(h_tmpdir(T.dir, sizeof(T.dir)), 0);
  cr_assert_eq(h_backend_start(&T.be[0], T.dir, "b1", NULL), 0);
  T.nbe = 1;
  snprintf(access_path, sizeof(access_path), "%s/access.log", T.dir);
  snprintf(body, sizeof(body), yaml, access_path, T.be[0].port);
  snprintf(top, sizeof(top), "listen: 127.0.0.1:0\nworkers: %d\ndispatch: %s\n", workers, dispatch);
  strncat(top, body, sizeof(top) - strlen(top) - 1);
  cr_assert_eq(h_proxy_start(&T.px, T.dir, top), 0, "lbproxy did not start");
  T.started = 1;
  T.workers = workers;
}

/* The lines of the access log once it has `n` (deadline: 10 s; lines are written within
 * 250 ms). Returns how many were parsed into out. */
static int read_lines(int n, struct line *out, int max) {
  int64_t deadline = h_now_ms() + 10000;
  regex_t re;
  regmatch_t m[F_N];
  char buf[8192];
  int got;

  cr_assert_eq(regcomp(&re, combined, REG_EXTENDED), 0);
  do {
    FILE *f = fopen(access_path, "r");
    got = 0;
    while (f != NULL && got < max && fgets(buf, sizeof(buf), f) != NULL) {
      buf[strcspn(buf, "\n")] = '\0';
      cr_assert_eq(regexec(&re, buf, F_N, m, 0), 0, "not the combined format: %s", buf);
      for (int i = 1; i < F_N; i++)
        snprintf(out[got].f[i], sizeof(out[got].f[i]), "%.*s", (int)(m[i].rm_eo - m[i].rm_so),
                 buf + m[i].rm_so);
      got++;
    }
    if (f != NULL)
      fclose(f);
    if (got >= n)
      break;
    usleep(50000);
  } while (h_now_ms() < deadline);
  regfree(&re);
  return got;
}

static const struct line *find(const struct line *v, int n, const char *request) {
  for (int i = 0; i < n; i++)
    if (strcmp(v[i].f[F_REQUEST], request) == 0)
      return &v[i];
  cr_assert_fail("no access log line for \"%s\"", request);
  return NULL;
}

/* Sends a raw request on a new connection and reads the answer's status (-1: none). */
static int raw(const char *req) {
  struct hc_resp r;
  int fd = hc_connect(T.px.port, NULL), rc;

  cr_assert_geq(fd, 0);
  cr_assert_eq(hc_send_all(fd, req, strlen(req)), 0);
  rc = hc_read_response(fd, &r, 0);
  close(fd);
  return rc == 0 ? r.status : -1;
}

IT_EACH_STRATEGY(access_log, lines_parse_as_combined_and_match_every_request_answered) {
  char big[20000], up[64];
  struct line v[16];
  const struct line *l;
  int n;

  start(dispatch, 2);
  cr_assert_eq(raw("GET /?a=1 HTTP/1.1\r\nHost: t\r\nReferer: http://r/\"q\"\r\n"
                   "User-Agent: test-agent/1.0\r\n\r\n"),
               200);
  cr_assert_eq(raw("GARBAGE\r\n\r\n"), 400);
  snprintf(big, sizeof(big), "GET /big HTTP/1.1\r\nHost: t\r\nX-Big: %018000d\r\n\r\n", 0);
  cr_assert_eq(raw(big), 431);
  cr_assert_eq(raw("GET /dead HTTP/1.1\r\nHost: t\r\n\r\n"), 502);
  cr_assert_eq(raw("GET /delay?ms=3000 HTTP/1.1\r\nHost: t\r\n\r\n"), 504);
  cr_assert_eq(raw("GET /cut?n=100000&at=1000 HTTP/1.1\r\nHost: t\r\n\r\n"), -1, "cut");
  n = read_lines(6, v, 16);
  cr_assert_eq(n, 6, "%d lines, sent 6 requests", n);
  snprintf(up, sizeof(up), "127.0.0.1:%u", T.be[0].port);

  l = find(v, n, "GET /?a=1 HTTP/1.1");
  cr_assert_str_eq(l->f[F_CLIENT], "127.0.0.1");
  cr_assert_str_eq(l->f[F_STATUS], "200");
  cr_assert_str_eq(l->f[F_REFERER], "http://r/\\x22q\\x22", "quotes escaped");
  cr_assert_str_eq(l->f[F_UA], "test-agent/1.0");
  cr_assert_str_eq(l->f[F_UP], up);
  cr_assert_str_eq(l->f[F_UPSTATUS], "200");
  cr_assert_str_neq(l->f[F_UPTIME], "-");
  cr_assert_gt(atoi(l->f[F_BYTES]), 0);

  l = find(v, n, "GARBAGE");
  cr_assert_str_eq(l->f[F_STATUS], "400");
  cr_assert_str_eq(l->f[F_UP], "-");
  cr_assert_str_eq(l->f[F_UPSTATUS], "-");

  l = find(v, n, "GET /big HTTP/1.1");
  cr_assert_str_eq(l->f[F_STATUS], "431");

  l = find(v, n, "GET /dead HTTP/1.1");
  cr_assert_str_eq(l->f[F_STATUS], "502");
  cr_assert_str_eq(l->f[F_UP], "127.0.0.1:1");
  cr_assert_str_eq(l->f[F_UPSTATUS], "-");

  l = find(v, n, "GET /delay?ms=3000 HTTP/1.1");
  cr_assert_str_eq(l->f[F_STATUS], "504");
  cr_assert_str_eq(l->f[F_UP], up);
  cr_assert_geq(atof(l->f[F_TIME_TAKEN]), 0.9, "the request took the 1 s timeout");

  l = find(v, n, "GET /cut?n=100000&at=1000 HTTP/1.1");
  cr_assert_str_eq(l->f[F_STATUS], "200", "the status that was sent");
  cr_assert_str_eq(l->f[F_UPSTATUS], "200");
  cr_assert_lt(atoi(l->f[F_BYTES]), 100000, "fewer bytes than announced");
  it_stop();
}

IT_TEST(access_log, is_reopened_on_sigusr1) {
  char moved[700], needle[64];
  struct line v[8];
  long from;

  start("handoff", 2);
  for (int i = 0; i < 3; i++)
    cr_assert_eq(raw("GET /?before HTTP/1.1\r\nHost: t\r\n\r\n"), 200);
  cr_assert_eq(read_lines(3, v, 8), 3);
  snprintf(moved, sizeof(moved), "%s.1", access_path);
  cr_assert_eq(rename(access_path, moved), 0);
  from = it_log_size();
  cr_assert_eq(kill(T.px.proc.pid, SIGUSR1), 0);
  for (int w = 1; w <= 2; w++) {
    snprintf(needle, sizeof(needle), "worker %d info: access log reopened", w);
    cr_assert_gt(it_wait_log(needle, from, 10000), 0, "worker %d did not reopen", w);
  }
  for (int i = 0; i < 4; i++)
    cr_assert_eq(raw("GET /?after HTTP/1.1\r\nHost: t\r\n\r\n"), 200);
  cr_assert_eq(read_lines(4, v, 8), 4, "the new file has the new lines");
  for (int i = 0; i < 4; i++)
    cr_assert_str_eq(v[i].f[F_REQUEST], "GET /?after HTTP/1.1");
  cr_assert_eq(h_count_lines(moved, "GET /?before"), 3);
  cr_assert_eq(h_count_lines(moved, "GET /?after"), 0, "a worker wrote to the old file");
  it_stop();
}

IT_TEST(error_log, failures_name_pool_server_client_and_status_and_repeats_are_summarized) {
  start("handoff", 1);
  for (int i = 0; i < 30; i++)
    cr_assert_eq(raw("GET /dead HTTP/1.1\r\nHost: t\r\n\r\n"), 502);
  cr_assert_eq(raw("XYZZY / HTTP/1.1\r\nHost: t\r\n\r\n"), 400);
  cr_assert_eq(raw("GET /raw?kind=status2 HTTP/1.1\r\nHost: t\r\n\r\n"), 502);
  cr_assert_gt(it_wait_log("worker 1 info: client 127.0.0.1: 400 sent: not an HTTP method "
                           "(HPE_INVALID_METHOD)",
                           0, 10000),
               0);
  cr_assert_gt(it_wait_log("(pool app): bad response: ", 0, 10000), 0);
  it_stop(); /* a worker writes what it held back when it leaves */
  cr_assert_eq(h_count_lines(T.px.proc.log, "worker 1 warn: upstream 127.0.0.1:1 (pool dead): "
                                            "connect failed: connection refused; "
                                            "client 127.0.0.1: 502 sent"),
               2, "one line, then its summary");
  cr_assert_eq(h_count_lines(T.px.proc.log, "client 127.0.0.1: 502 sent (repeated 29 times)"), 1);
}
