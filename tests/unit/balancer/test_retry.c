/* Tests for balancer/retry.c: the retry budget's sliding window and the retry decision. */
#include "bal_test.h"

Test(retry, the_budget_allows_a_percentage_of_the_window_requests) {
  struct bal_budget b = {0};
  int allowed = 0;

  for (int i = 0; i < 1000; i++)
    bal_budget_request(&b, T0 + (uint64_t)i);
  while (bal_budget_retry(&b, 20, T0 + 1000))
    allowed++;
  cr_assert_eq(allowed, 200);
}

Test(retry, a_quiet_upstream_still_gets_the_minimum_retries) {
  struct bal_budget b = {0};
  int allowed = 0;

  bal_budget_request(&b, T0);
  while (bal_budget_retry(&b, 20, T0))
    allowed++;
  cr_assert_eq(allowed, BAL_BUDGET_MIN_RETRIES, "20 %% of 1 would be none");
}

Test(retry, old_requests_and_retries_leave_the_window_slot_by_slot) {
  struct bal_budget b = {0};
  const uint64_t slot = BAL_BUDGET_WINDOW_MS / BAL_BUDGET_SLOTS, t = T0 - T0 % slot;
  int allowed = 0;

  for (int i = 0; i < 100; i++)
    bal_budget_request(&b, t); /* 100 requests in the first slot */
  for (int i = 0; i < 100; i++)
    bal_budget_request(&b, t + 5 * slot); /* 100 in the sixth */
  while (bal_budget_retry(&b, 10, t + 5 * slot))
    allowed++;
  cr_assert_eq(allowed, 20);
  /* At the start of slot 10 the first slot left the window: 100 requests, 20 retries. */
  cr_assert_eq(bal_budget_retry(&b, 10, t + 10 * slot - 1), 0);
  cr_assert_eq(bal_budget_retry(&b, 20, t + 10 * slot), 0, "20 retries in, 20 allowed");
  cr_assert_eq(bal_budget_retry(&b, 30, t + 10 * slot), 1);
  /* Once the sixth slot left too, only the minimum remains (with slot 10's retry in it). */
  allowed = 0;
  while (bal_budget_retry(&b, 30, t + 15 * slot))
    allowed++;
  cr_assert_eq(allowed, BAL_BUDGET_MIN_RETRIES - 1);
  /* A long pause clears everything. */
  for (int i = 0; i < 1000; i++)
    bal_budget_request(&b, t + 1000 * slot);
  allowed = 0;
  while (bal_budget_retry(&b, 5, t + 1000 * slot))
    allowed++;
  cr_assert_eq(allowed, 50);
}

static struct bal_retry_facts facts(enum bal_failure failure, unsigned attempts) {
  return (struct bal_retry_facts){.failure = failure, .attempts = attempts, .idempotent = 1};
}

#define ON(f) (1u << (f))

Test(retry, the_decision_follows_retry_on_and_retries) {
  struct bal_budget b = {0};
  unsigned on = ON(BAL_FAIL_CONNECT) | ON(BAL_FAIL_RESET);
  struct bal_retry_facts f = facts(BAL_FAIL_CONNECT, 1);

  cr_assert_eq(bal_retry_decide(&f, 1, on, &b, 20, T0), BAL_RETRY);
  f.attempts = 2;
  cr_assert_eq(bal_retry_decide(&f, 1, on, &b, 20, T0), BAL_RETRY_EXHAUSTED);
  cr_assert_eq(bal_retry_decide(&f, 2, on, &b, 20, T0), BAL_RETRY);
  f = facts(BAL_FAIL_TIMEOUT, 1);
  cr_assert_eq(bal_retry_decide(&f, 1, on, &b, 20, T0), BAL_RETRY_NOT_ON);
  f = facts(BAL_FAIL_HTTP_503, 1);
  cr_assert_eq(bal_retry_decide(&f, 1, on | ON(BAL_FAIL_HTTP_503), &b, 20, T0), BAL_RETRY);
  cr_assert_eq(bal_retry_decide(&f, 0, ~0u, &b, 20, T0), BAL_RETRY_EXHAUSTED, "retries: 0");
}

Test(retry, a_request_that_may_have_been_acted_on_or_cannot_be_resent_is_not_retried) {
  struct bal_budget b = {0};
  struct bal_retry_facts f = facts(BAL_FAIL_RESET, 1);

  f.idempotent = 0; /* POST */
  cr_assert_eq(bal_retry_decide(&f, 1, ~0u, &b, 20, T0), BAL_RETRY, "nothing was sent");
  f.request_sent = 1;
  cr_assert_eq(bal_retry_decide(&f, 1, ~0u, &b, 20, T0), BAL_RETRY_UNSAFE);
  f.idempotent = 1; /* PUT whose body went out and is gone */
  f.body_gone = 1;
  cr_assert_eq(bal_retry_decide(&f, 1, ~0u, &b, 20, T0), BAL_RETRY_UNSAFE);
  f.body_gone = 0;
  cr_assert_eq(bal_retry_decide(&f, 1, ~0u, &b, 20, T0), BAL_RETRY);
  f.response_started = 1;
  cr_assert_eq(bal_retry_decide(&f, 1, ~0u, &b, 20, T0), BAL_RETRY_TOO_LATE);
  cr_assert_str_eq(bal_retry_verdict_name(BAL_RETRY_TOO_LATE), "response already started");
}

Test(retry, a_spent_budget_stops_retries_and_only_a_yes_is_charged) {
  struct bal_budget b = {0};
  struct bal_retry_facts f = facts(BAL_FAIL_CONNECT, 1), no = facts(BAL_FAIL_TIMEOUT, 1);
  int yes = 0;

  for (int i = 0; i < 100; i++)
    bal_budget_request(&b, T0);
  for (int i = 0; i < 50; i++)
    cr_assert_eq(bal_retry_decide(&no, 1, ON(BAL_FAIL_CONNECT), &b, 20, T0), BAL_RETRY_NOT_ON);
  while (bal_retry_decide(&f, 1, ON(BAL_FAIL_CONNECT), &b, 20, T0) == BAL_RETRY)
    yes++;
  cr_assert_eq(yes, 20);
  cr_assert_eq(bal_retry_decide(&f, 1, ON(BAL_FAIL_CONNECT), &b, 20, T0), BAL_RETRY_NO_BUDGET);
}
