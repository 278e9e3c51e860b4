/* Tests for balancer/health.c: passive failure windows, slow start, active check thresholds. */
#include "bal_test.h"

Test(health, max_fails_failures_within_fail_timeout_make_a_server_failing) {
  struct bal_fails f = {0};

  cr_assert_eq(bal_fails_record(&f, 3, 10000, T0), 0);
  cr_assert_eq(bal_fails_record(&f, 3, 10000, T0 + 4000), 0);
  cr_assert_eq(bal_fails_record(&f, 3, 10000, T0 + 9999), 1);
  cr_assert(bal_fails_failing(&f, T0 + 9999));
  cr_assert(bal_fails_failing(&f, T0 + 19998));
  cr_assert_not(bal_fails_failing(&f, T0 + 19999), "skipped for fail_timeout exactly");
}

Test(health, failures_spread_wider_than_fail_timeout_do_not) {
  struct bal_fails f = {0};

  cr_assert_eq(bal_fails_record(&f, 3, 10000, T0), 0);
  cr_assert_eq(bal_fails_record(&f, 3, 10000, T0 + 5000), 0);
  /* The window opened at T0 closed at T0+10000: this failure opens a new one. */
  cr_assert_eq(bal_fails_record(&f, 3, 10000, T0 + 10000), 0);
  cr_assert_eq(bal_fails_record(&f, 3, 10000, T0 + 15000), 0);
  cr_assert_eq(bal_fails_record(&f, 3, 10000, T0 + 19999), 1);
}

Test(health, a_success_between_failures_starts_the_count_again) {
  struct bal_fails f = {0};

  cr_assert_eq(bal_fails_record(&f, 3, 10000, T0), 0);
  cr_assert_eq(bal_fails_record(&f, 3, 10000, T0 + 1), 0);
  bal_fails_success(&f);
  cr_assert_eq(bal_fails_record(&f, 3, 10000, T0 + 2), 0);
  cr_assert_eq(bal_fails_record(&f, 3, 10000, T0 + 3), 0);
  cr_assert_eq(bal_fails_record(&f, 3, 10000, T0 + 4), 1);
}

Test(health, after_failing_one_more_failure_before_a_success_is_enough) {
  struct bal_fails f = {0};

  for (int i = 0; i < 3; i++)
    bal_fails_record(&f, 3, 10000, T0);
  cr_assert_eq(bal_fails_record(&f, 3, 10000, T0 + 5000), 0, "already failing: no change");
  cr_assert_eq(f.until_ms, T0 + 10000, "a failure while failing does not extend it");
  cr_assert_eq(bal_fails_record(&f, 3, 10000, T0 + 10001), 1, "probation: one is enough");
  cr_assert_eq(f.until_ms, T0 + 20001);
  bal_fails_success(&f); /* served well after the period */
  cr_assert_eq(bal_fails_record(&f, 3, 10000, T0 + 20002), 0);
  cr_assert_eq(bal_fails_record(&f, 3, 10000, T0 + 20003), 0);
  cr_assert_eq(bal_fails_record(&f, 3, 10000, T0 + 20004), 1);
}

Test(health, probation_lapses_after_a_quiet_fail_timeout) {
  struct bal_fails f = {0};

  for (int i = 0; i < 2; i++)
    bal_fails_record(&f, 2, 1000, T0);
  cr_assert_eq(f.until_ms, T0 + 1000);
  /* No failure from T0+1000 to T0+2000: probation's window is over. */
  cr_assert_eq(bal_fails_record(&f, 2, 1000, T0 + 2000), 0);
  cr_assert_eq(bal_fails_record(&f, 2, 1000, T0 + 2001), 1);
}

Test(health, max_fails_zero_never_marks_a_server) {
  struct bal_fails f = {0};

  for (int i = 0; i < 100; i++)
    cr_assert_eq(bal_fails_record(&f, 0, 10000, T0 + (uint64_t)i), 0);
  cr_assert_not(bal_fails_failing(&f, T0 + 100));
}

Test(health, slow_start_ramps_linearly_from_a_tenth_to_the_whole_weight) {
  const uint32_t tenth = BAL_ONE / 10;

  cr_assert_eq(bal_slow_start_share(T0, 30000, T0), tenth);
  cr_assert_eq(bal_slow_start_share(T0, 30000, T0 - 5), tenth, "a clock before the start");
  cr_assert_eq(bal_slow_start_share(T0, 30000, T0 + 15000), tenth + (BAL_ONE - tenth) / 2);
  cr_assert_eq(bal_slow_start_share(T0, 30000, T0 + 29999),
               tenth + (uint32_t)((uint64_t)(BAL_ONE - tenth) * 29999 / 30000));
  cr_assert_eq(bal_slow_start_share(T0, 30000, T0 + 30000), BAL_ONE);
  cr_assert_eq(bal_slow_start_share(T0, 0, T0), BAL_ONE, "no slow start");
  cr_assert_eq(bal_slow_start_share(0, 30000, 5), BAL_ONE, "usable since long ago");
}

Test(health, a_failing_period_ends_with_a_slow_start) {
  struct bal_conf conf = {.max_fails = 1, .fail_timeout_ms = 1000, .slow_start_ms = 10000};
  struct bal_pool p;
  unsigned w[] = {1, 1}, count[2];
  const int n = 20000;

  pool_make(&p, &bal_round_robin, &conf, w, 2, "", NULL, NULL);
  make_failing(&p, 'b', T0); /* failing until T0+1000, then ramping until T0+11000 */
  histogram(&p, n, T0 + 1000, count);
  cr_expect(count[1] > n * 0.08 && count[1] < n * 0.10, "b got %u of %d", count[1], n);
  histogram(&p, n, T0 + 11000, count);
  cr_expect_eq(count[1], (unsigned)n / 2);
  bal_pool_free(&p);
}

Test(health, checks_flip_after_fall_failures_and_rise_passes_in_a_row) {
  struct bal_check c = {.health = BAL_HEALTH_UP};

  cr_assert_eq(bal_check_record(&c, 0, 2, 3), 0);
  cr_assert_eq(bal_check_record(&c, 0, 2, 3), 0);
  cr_assert_eq(bal_check_record(&c, 1, 2, 3), 0, "a pass breaks the run");
  cr_assert_eq(bal_check_record(&c, 0, 2, 3), 0);
  cr_assert_eq(bal_check_record(&c, 0, 2, 3), 0);
  cr_assert_eq(bal_check_record(&c, 0, 2, 3), 1);
  cr_assert_eq(c.health, BAL_HEALTH_DOWN);
  cr_assert_eq(bal_check_record(&c, 0, 2, 3), 0, "down and failing: nothing new");
  cr_assert_eq(bal_check_record(&c, 1, 2, 3), 0);
  cr_assert_eq(bal_check_record(&c, 1, 2, 3), 1);
  cr_assert_eq(c.health, BAL_HEALTH_UP);
  cr_assert_eq(bal_check_record(&c, 0, 1, 1), 1, "fall 1: one failure");
}

Test(health, check_delays_spread_within_the_jitter) {
  uint64_t lo = UINT64_MAX, hi = 0, x = 1;

  cr_assert_eq(bal_check_delay(2000, 0, 12345), 2000);
  for (int i = 0; i < 10000; i++) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    uint64_t d = bal_check_delay(2000, 10, x >> 11);
    lo = d < lo ? d : lo;
    hi = d > hi ? d : hi;
  }
  cr_assert(lo >= 1800 && lo < 1810, "shortest %lu", (unsigned long)lo);
  cr_assert(hi <= 2200 && hi > 2190, "longest %lu", (unsigned long)hi);
}
