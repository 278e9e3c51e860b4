/* Tests for the failure funnel's decision (proxy/next.c, px_request_decide): retry on another
 * server (the upstream's retry policy), a fresh connection after a stale pooled one, an error
 * page, a cut, or the server's own answer passed on. */
#include "request.h"

#include <criterion/criterion.h>

#define ON(f) (1u << (f))
static const unsigned default_retry_on = ON(BAL_FAIL_CONNECT) | ON(BAL_FAIL_RESET);

static struct bal_budget budget;

static enum px_next_do decide(struct px_next_in in, int *status) {
  return px_request_decide(&in, status);
}

/* A GET's first attempt, before anything was sent, with the default policy: retries 1,
 * retry_on [connect_failure, reset], a budget of 20 %. */
static struct px_next_in first(int ft) {
  struct px_next_in in = {.ft = ft,
                          .idempotent = 1,
                          .replayable = 1,
                          .attempts = 1,
                          .retries = 1,
                          .retry_on = default_retry_on,
                          .budget_pct = 20,
                          .budget = &budget,
                          .now_ms = 1000};
  return in;
}

static void setup(void) {
  memset(&budget, 0, sizeof(budget));
}

TestSuite(funnel, .init = setup);

Test(funnel, a_refused_connect_goes_to_another_server) {
  int st;
  cr_assert_eq(decide(first(PX_UP_CONNECT), &st), PX_DO_RETRY_NEXT);
}

Test(funnel, a_refused_connect_is_a_502_once_the_retries_are_spent) {
  struct px_next_in in = first(PX_UP_CONNECT);
  int st;
  in.attempts = 2;
  cr_assert_eq(decide(in, &st), PX_DO_ERROR);
  cr_assert_eq(st, 502);
}

Test(funnel, a_connect_timeout_goes_on_then_is_a_504) {
  struct px_next_in in = first(PX_UP_CONNECT_TIMEOUT);
  int st;
  cr_assert_eq(decide(in, &st), PX_DO_RETRY_NEXT);
  in.attempts = 2;
  cr_assert_eq(decide(in, &st), PX_DO_ERROR);
  cr_assert_eq(st, 504);
}

Test(funnel, a_connect_failure_retries_even_a_post) {
  struct px_next_in in = first(PX_UP_CONNECT);
  int st;
  in.idempotent = 0;
  cr_assert_eq(decide(in, &st), PX_DO_RETRY_NEXT);
}

Test(funnel, a_stale_pooled_connection_is_retried_once_fresh_on_the_same_server) {
  struct px_next_in in = first(PX_UP_CLOSED);
  int st;
  in.sent_any = 1;
  in.reused = 1;
  cr_assert_eq(decide(in, &st), PX_DO_RETRY_FRESH);
  in.retried_fresh = 1;
  in.reused = 0;
  cr_assert_eq(decide(in, &st), PX_DO_RETRY_NEXT);
}

Test(funnel, a_post_that_reached_a_server_is_never_sent_again) {
  struct px_next_in in = first(PX_UP_CLOSED);
  int st;
  in.sent_any = 1;
  in.idempotent = 0;
  in.reused = 1;
  cr_assert_eq(decide(in, &st), PX_DO_ERROR);
  cr_assert_eq(st, 502);
  in.ft = PX_UP_WRITE;
  cr_assert_eq(decide(in, &st), PX_DO_ERROR);
}

Test(funnel, a_request_whose_body_is_gone_is_never_sent_again) {
  struct px_next_in in = first(PX_UP_CLOSED);
  int st;
  in.sent_any = 1;
  in.replayable = 0;
  in.reused = 1;
  cr_assert_eq(decide(in, &st), PX_DO_ERROR);
}

Test(funnel, a_timeout_is_a_504_retried_only_when_retry_on_says_timeout) {
  struct px_next_in in = first(PX_UP_TIMEOUT);
  int st;
  in.sent_any = 1;
  cr_assert_eq(decide(in, &st), PX_DO_ERROR);
  cr_assert_eq(st, 504);
  in.retry_on |= ON(BAL_FAIL_TIMEOUT);
  cr_assert_eq(decide(in, &st), PX_DO_RETRY_NEXT);
}

Test(funnel, a_bad_response_is_a_502_without_retry) {
  struct px_next_in in = first(PX_UP_BAD_RESPONSE);
  int st;
  in.sent_any = 1;
  in.retry_on = ~0u;
  cr_assert_eq(decide(in, &st), PX_DO_ERROR);
  cr_assert_eq(st, 502);
}

Test(funnel, a_503_is_retried_when_retry_on_names_it_else_passed_on) {
  struct px_next_in in = first(PX_NEXT_HTTP_5XX);
  int st;
  in.http_status = 503;
  in.sent_any = 1;
  cr_assert_eq(decide(in, &st), PX_DO_PASS);
  in.retry_on |= ON(BAL_FAIL_HTTP_503);
  cr_assert_eq(decide(in, &st), PX_DO_RETRY_NEXT);
  in.idempotent = 0; /* a POST the server saw: its answer stands */
  cr_assert_eq(decide(in, &st), PX_DO_PASS);
}

Test(funnel, retries_stop_when_the_budget_is_spent) {
  struct px_next_in in = first(PX_UP_CONNECT);
  int st, retried = 0;
  in.budget_pct = 0; /* only the minimum per window */
  for (int i = 0; i < 100; i++)
    retried += decide(in, &st) == PX_DO_RETRY_NEXT;
  cr_assert_eq(retried, BAL_BUDGET_MIN_RETRIES);
  cr_assert_eq(decide(in, &st), PX_DO_ERROR);
}

Test(funnel, once_response_bytes_reached_the_client_the_only_answer_is_a_cut) {
  for (int ft = 0; ft <= PX_NEXT_HTTP_5XX; ft++) {
    struct px_next_in in = first(ft);
    int st;
    in.http_status = 502;
    in.resp_started = 1;
    in.retry_on = ~0u;
    cr_assert_eq(decide(in, &st), PX_DO_CUT, "failure %d", ft);
  }
}
