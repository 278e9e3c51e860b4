/* Tests for balancer/leastconn.c: fewest in flight per weight, across workers, under a load. */
#include "bal_test.h"

Test(least_conn, without_overlapping_requests_follows_the_weighted_rotation) {
  struct bal_pool p;
  unsigned w[] = {5, 1, 1};
  char got[16];

  pool_make(&p, &bal_least_conn, NULL, w, 3, "", NULL, NULL);
  picks(&p, 14, got);
  cr_assert_str_eq(got, "aabacaaaabacaa", "ties go by smooth weighted round-robin");
  bal_pool_free(&p);
}

Test(least_conn, holds_requests_in_flight_in_proportion_to_weight) {
  struct bal_pool p;
  unsigned w[] = {3, 1};
  struct bal_tried t;
  struct bal_pick pk;

  pool_make(&p, &bal_least_conn, NULL, w, 2, "", NULL, NULL);
  for (int i = 0; i < 400; i++) {
    bal_tried_clear(&t);
    cr_assert_eq(bal_select(&p, &t, BAL_NO_KEY, T0, &pk), 0); /* held, never released */
  }
  cr_assert_eq(*p.servers[0].active, 300);
  cr_assert_eq(*p.servers[1].active, 100);
  bal_pool_free(&p);
}

Test(least_conn, sees_the_requests_other_workers_have_in_flight) {
  _Atomic uint32_t shared[3] = {0, 0, 0};
  _Atomic uint64_t rotation = 0;
  struct bal_pool w1, w2;
  unsigned w[] = {1, 1, 1};
  struct bal_tried t;
  struct bal_pick held[3];

  pool_make(&w1, &bal_least_conn, NULL, w, 3, "", shared, &rotation);
  pool_make(&w2, &bal_least_conn, NULL, w, 3, "", shared, &rotation);
  for (int i = 0; i < 3; i++) {
    bal_tried_clear(&t);
    cr_assert_eq(bal_select(&w1, &t, BAL_NO_KEY, T0, &held[i]), 0);
    cr_assert_eq(held[i].idx, i);
  }
  bal_release(&w1, &held[1], BAL_OK, T0); /* worker 1 still holds a and c */
  /* Worker 2 has nothing in flight itself; the rotation says a, but a and c are busy. */
  cr_assert_eq(pick1(&w2, BAL_NO_KEY, T0, BAL_OK), 'b');
  cr_assert_eq(pick1(&w2, BAL_NO_KEY, T0, BAL_OK), 'b');
  bal_release(&w1, &held[0], BAL_OK, T0);
  bal_release(&w1, &held[2], BAL_OK, T0);
  bal_pool_free(&w1);
  bal_pool_free(&w2);
}

Test(least_conn, sends_less_to_a_slow_server_under_load) {
  _Atomic uint32_t shared[2] = {0, 0};
  struct bal_pool w1, w2, *pools[] = {&w1, &w2};
  unsigned w[] = {1, 1}, service[] = {1, 4}, count[2];

  /* Two workers, 4 requests a tick; a holds a request 1 tick, b 4 ticks. Keeping the counts
   * in flight level gives b one request a tick (it still holds the 3 of the ticks before)
   * and a three: 75 % and 25 %, where round-robin would give each half. */
  pool_make(&w1, &bal_least_conn, NULL, w, 2, "", shared, NULL);
  pool_make(&w2, &bal_least_conn, NULL, w, 2, "", shared, NULL);
  simulate(pools, 2, service, 5000, 4, count);
  cr_expect(count[0] > 20000 * 0.73 && count[0] < 20000 * 0.8, "a %u, b %u", count[0], count[1]);
  bal_pool_free(&w1);
  bal_pool_free(&w2);
}

Test(least_conn, shares_a_steady_load_by_weight) {
  _Atomic uint32_t shared[3] = {0, 0, 0};
  struct bal_pool w1, w2, *pools[] = {&w1, &w2};
  unsigned w[] = {3, 1, 1}, service[] = {5, 5, 5}, count[3];
  const double n = 4000 * 10;

  pool_make(&w1, &bal_least_conn, NULL, w, 3, "", shared, NULL);
  pool_make(&w2, &bal_least_conn, NULL, w, 3, "", shared, NULL);
  simulate(pools, 2, service, 4000, 10, count);
  cr_expect(count[0] > n * 0.58 && count[0] < n * 0.62, "a %u of %.0f", count[0], n);
  cr_expect(count[1] > n * 0.18 && count[1] < n * 0.22, "b %u of %.0f", count[1], n);
  cr_expect(count[2] > n * 0.18 && count[2] < n * 0.22, "c %u of %.0f", count[2], n);
  bal_pool_free(&w1);
  bal_pool_free(&w2);
}
