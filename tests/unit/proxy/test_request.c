/* Tests for the failure funnel of proxy/request.c (px_request_decide): retry, error page or cut,
 * by failure type, safety and budget. */
#include "request.h"

#include <criterion/criterion.h>

static enum px_next_do decide(struct px_next_in in, int *status) {
  return px_request_decide(&in, status);
}

/* A GET on a fresh connection with servers left, before anything was sent. */
static const struct px_next_in fresh_get = {
    .ft = PX_UP_CONNECT, .idempotent = 1, .replayable = 1, .tries_left = 1};

Test(funnel, a_refused_connect_goes_to_the_next_server) {
  int st;
  cr_assert_eq(decide(fresh_get, &st), PX_DO_RETRY_NEXT);
}

Test(funnel, a_refused_connect_of_the_last_server_is_a_502) {
  struct px_next_in in = fresh_get;
  int st;
  in.tries_left = 0;
  cr_assert_eq(decide(in, &st), PX_DO_ERROR);
  cr_assert_eq(st, 502);
}

Test(funnel, a_connect_timeout_goes_on_then_is_a_504) {
  struct px_next_in in = fresh_get;
  int st;
  in.ft = PX_UP_CONNECT_TIMEOUT;
  cr_assert_eq(decide(in, &st), PX_DO_RETRY_NEXT);
  in.tries_left = 0;
  cr_assert_eq(decide(in, &st), PX_DO_ERROR);
  cr_assert_eq(st, 504);
}

Test(funnel, a_connect_failure_retries_even_a_post) {
  struct px_next_in in = fresh_get;
  int st;
  in.idempotent = 0;
  cr_assert_eq(decide(in, &st), PX_DO_RETRY_NEXT);
}

Test(funnel, a_stale_pooled_connection_is_retried_once_fresh_on_the_same_server) {
  struct px_next_in in = fresh_get;
  int st;
  in.ft = PX_UP_CLOSED;
  in.sent_any = 1;
  in.reused = 1;
  cr_assert_eq(decide(in, &st), PX_DO_RETRY_FRESH);
  in.retried_fresh = 1;
  in.reused = 0;
  cr_assert_eq(decide(in, &st), PX_DO_RETRY_NEXT);
}

Test(funnel, a_post_that_reached_a_server_is_never_sent_again) {
  struct px_next_in in = fresh_get;
  int st;
  in.ft = PX_UP_CLOSED;
  in.sent_any = 1;
  in.idempotent = 0;
  in.reused = 1;
  cr_assert_eq(decide(in, &st), PX_DO_ERROR);
  cr_assert_eq(st, 502);
  in.ft = PX_UP_WRITE;
  cr_assert_eq(decide(in, &st), PX_DO_ERROR);
}

Test(funnel, a_request_whose_body_is_gone_is_never_sent_again) {
  struct px_next_in in = fresh_get;
  int st;
  in.ft = PX_UP_CLOSED;
  in.sent_any = 1;
  in.replayable = 0;
  in.reused = 1;
  cr_assert_eq(decide(in, &st), PX_DO_ERROR);
}

Test(funnel, a_timeout_is_a_504_without_retry) {
  struct px_next_in in = fresh_get;
  int st;
  in.ft = PX_UP_TIMEOUT;
  in.sent_any = 1;
  cr_assert_eq(decide(in, &st), PX_DO_ERROR);
  cr_assert_eq(st, 504);
}

Test(funnel, a_bad_response_is_a_502_without_retry) {
  struct px_next_in in = fresh_get;
  int st;
  in.ft = PX_UP_BAD_RESPONSE;
  in.sent_any = 1;
  cr_assert_eq(decide(in, &st), PX_DO_ERROR);
  cr_assert_eq(st, 502);
}

Test(funnel, once_response_bytes_reached_the_client_the_only_answer_is_a_cut) {
  for (int ft = 0; ft < PX_UP_NFAIL; ft++) {
    struct px_next_in in = fresh_get;
    int st;
    in.ft = (enum px_up_fail)ft;
    in.resp_started = 1;
    cr_assert_eq(decide(in, &st), PX_DO_CUT, "failure %d", ft);
  }
}
