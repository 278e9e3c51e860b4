/* The load client (tests/support/load.c) against real lbproxy and lbp-backend: counts are exact. */
#include "itest.h"
#include "load.h"

#include <signal.h>
#include <string.h>
#include <sys/wait.h>

static char text[4096];

/* Every request is accounted for in exactly one outcome (the stats go to --verbose output). */
static void assert_accounted(const struct load_stats *s) {
  uint64_t n = s->ok + s->non2xx;

  cr_log_info("%s", load_format(s, text, sizeof(text)));
  for (int k = 0; k < LOAD_NKINDS; k++)
    n += s->kinds[k];
  cr_assert_eq(n, s->requests, "outcomes do not add up\n%s", load_format(s, text, sizeof(text)));
}

static void start_load(struct load *l, uint16_t port, int threads, int keepalive,
                       const char *path) {
  struct load_opts o = {.port = port,
                        .threads = threads,
                        .keepalive = keepalive,
                        .path = path,
                        .header = "X-Backend"};
  cr_assert_eq(load_start(l, &o), 0);
}

/* Lets a load go on until `ms` after its start (a load duration, not a synchronization). */
static void run_for(struct load *l, int64_t ms) {
  struct load_stats s;

  load_snapshot(l, &s);
  if (s.elapsed_ms < ms)
    load_wait(l, UINT64_MAX, (int)(ms - s.elapsed_ms)); /* returns at the deadline */
}

IT_EACH_STRATEGY(load, a_healthy_proxy_answers_every_request_of_both_client_kinds) {
  struct load ka, fresh;
  struct load_stats s[2];

  it_start(dispatch, 2, 2, NULL);
  start_load(&ka, T.px.port, 2, 1, "/");
  start_load(&fresh, T.px.port, 2, 0, "/");
  cr_expect(load_wait(&ka, 300, 60000), "keep-alive load made no progress");
  cr_expect(load_wait(&fresh, 150, 60000), "new-connection load made no progress");
  run_for(&ka, 1000); /* then about a second of load in all */
  cr_assert_eq(load_stop(&ka, &s[0]), 0);
  cr_assert_eq(load_stop(&fresh, &s[1]), 0);
  for (int i = 0; i < 2; i++) {
    assert_accounted(&s[i]);
    cr_expect_gt(s[i].ok, 0, "%s", load_format(&s[i], text, sizeof(text)));
    cr_expect_eq(load_failed(&s[i]), 0, "%s", load_format(&s[i], text, sizeof(text)));
    cr_expect_gt(load_value_count(&s[i], "b1"), 0, "%s", load_format(&s[i], text, sizeof(text)));
    cr_expect_gt(load_value_count(&s[i], "b2"), 0, "%s", load_format(&s[i], text, sizeof(text)));
    cr_expect_eq(s[i].values_missing, 0);
  }
  cr_expect_lt(s[0].connections, s[0].requests, "keep-alive connections were not reused");
  cr_expect_eq(s[1].connections, s[1].requests, "one connection per request");
  it_stop();
}

IT_TEST(load, answers_that_are_not_2xx_are_counted_by_status) {
  struct load l;
  struct load_opts o = {
      .threads = 2, .keepalive = 1, .path = "/status?code=503", .max_requests = 20};
  struct load_stats s;

  it_start("handoff", 2, 2, NULL);
  o.port = T.px.port;
  cr_assert_eq(load_start(&l, &o), 0);
  cr_expect(!load_wait(&l, 1, 60000), "every thread ends after 20 requests");
  cr_assert_eq(load_stop(&l, &s), 0);
  assert_accounted(&s);
  cr_expect_eq(s.requests, 40, "%s", load_format(&s, text, sizeof(text)));
  cr_expect_eq(s.non2xx, 40);
  cr_expect_eq(s.status[503], 40);
  cr_expect_eq(load_failed(&s), 40);
  it_stop();
}

IT_TEST(load, connections_refused_once_the_proxy_is_gone_are_counted) {
  struct load l;
  struct load_stats s;
  int status;

  it_start("handoff", 2, 2, NULL);
  start_load(&l, T.px.port, 2, 0, "/");
  cr_expect(load_wait(&l, 50, 60000), "no progress before the stop");
  status = h_proxy_stop(&T.px);
  T.started = 0;
  cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "lbproxy wait status %#x", status);
  cr_expect(load_wait_kind(&l, LOAD_REFUSED, 5, 30000), "no refused connection counted");
  cr_assert_eq(load_stop(&l, &s), 0);
  assert_accounted(&s);
  cr_expect_geq(s.ok, 50, "%s", load_format(&s, text, sizeof(text)));
  cr_expect_geq(s.kinds[LOAD_REFUSED], 5, "%s", load_format(&s, text, sizeof(text)));
  cr_expect_geq(load_failed(&s), s.kinds[LOAD_REFUSED]);
  cr_expect_gt(s.nerrors, 0);
  it_stop();
}

IT_TEST(load, a_close_before_any_response_byte_is_a_reset_on_a_fresh_connection) {
  struct load l;
  struct load_opts o = {.threads = 1, .keepalive = 0, .path = "/drop", .max_requests = 10};
  struct load_stats s;

  it_start("handoff", 1, 1, NULL);
  o.port = T.be[0].port; /* the backend itself closes without answering */
  cr_assert_eq(load_start(&l, &o), 0);
  load_wait(&l, 1, 60000);
  cr_assert_eq(load_stop(&l, &s), 0);
  assert_accounted(&s);
  cr_expect_eq(s.requests, 10);
  cr_expect_eq(s.kinds[LOAD_RESET_FRESH], 10, "%s", load_format(&s, text, sizeof(text)));
  cr_expect_eq(s.ok, 0);
  it_stop();
}

IT_TEST(load, a_server_gone_under_keep_alive_gives_resets_on_reused_connections) {
  struct load l;
  struct load_stats s;

  it_start("handoff", 1, 2, NULL);
  start_load(&l, T.be[1].port, 2, 1, "/"); /* straight at backend b2 */
  cr_expect(load_wait(&l, 50, 60000), "no progress before the stop");
  h_backend_stop(&T.be[1]);
  cr_expect(load_wait_kind(&l, LOAD_REFUSED, 1, 30000), "no refused connection counted");
  cr_assert_eq(load_stop(&l, &s), 0);
  assert_accounted(&s);
  /* Each thread's kept connection died with the server: its next request there failed before
   * any byte (or, if the server died mid-answer, after some). */
  cr_expect_geq(s.kinds[LOAD_RESET_REUSED] + s.kinds[LOAD_TRUNCATED], 1, "%s",
                load_format(&s, text, sizeof(text)));
  cr_expect_eq(load_value_count(&s, "b2"), s.ok);
  cr_assert_eq(s.nvalues, 1);
  cr_expect_leq(s.values[0].first_ms, s.values[0].last_ms);
  it_stop();
}

IT_TEST(load, a_server_that_never_answers_gives_timeouts_and_the_stop_stays_bounded) {
  struct load l;
  struct load_opts o = {.threads = 2, .keepalive = 1, .path = "/hang", .io_timeout_ms = 300};
  struct load_stats s;
  int64_t t0;

  it_start("handoff", 1, 1, NULL);
  o.port = T.be[0].port;
  cr_assert_eq(load_start(&l, &o), 0);
  cr_expect(load_wait_kind(&l, LOAD_TIMEOUT, 2, 30000), "no timeout counted");
  t0 = h_now_ms();
  cr_assert_eq(load_stop(&l, &s), 0);
  cr_expect_lt(h_now_ms() - t0, 300 + 1000 + 500, "load_stop took too long");
  assert_accounted(&s);
  cr_expect_geq(s.kinds[LOAD_TIMEOUT], 2, "%s", load_format(&s, text, sizeof(text)));
  cr_expect_eq(s.ok, 0);
  it_stop();
}

IT_TEST(load, a_paced_keep_alive_client_uses_one_connection) {
  struct load l;
  struct load_opts o = {.threads = 1, .keepalive = 1, .pace_us = 20000, .max_requests = 5};
  struct load_stats s;

  it_start("handoff", 2, 2, NULL);
  o.port = T.px.port;
  cr_assert_eq(load_start(&l, &o), 0);
  cr_expect(load_wait(&l, 5, 60000));
  cr_assert_eq(load_stop(&l, &s), 0);
  assert_accounted(&s);
  cr_expect_eq(s.ok, 5, "%s", load_format(&s, text, sizeof(text)));
  cr_expect_eq(s.connections, 1);
  cr_expect_geq(s.elapsed_ms, 4 * 20, "pace not kept");
  it_stop();
}
