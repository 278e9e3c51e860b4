/* Tests for balancer/random2.c: weighted random choices, the lighter of two, repeatable seeds. */
#include "bal_test.h"

Test(random2, the_same_seed_gives_the_same_picks) {
  struct bal_pool p, q;
  unsigned w[] = {1, 2, 3};
  char a[65], b[65];

  pool_make(&p, &bal_random2, NULL, w, 3, "", NULL, NULL);
  pool_make(&q, &bal_random2, NULL, w, 3, "", NULL, NULL);
  picks(&p, 64, a);
  picks(&q, 64, b);
  cr_assert_str_eq(a, b);
  bal_pool_seed(&q, 43);
  picks(&q, 64, b);
  cr_assert_str_neq(a, b);
  bal_pool_free(&p);
  bal_pool_free(&q);
}

Test(random2, without_overlapping_requests_picks_by_weight) {
  struct bal_pool p;
  unsigned w[] = {3, 1}, count[2];
  const int n = 40000;

  pool_make(&p, &bal_random2, NULL, w, 2, "", NULL, NULL);
  histogram(&p, n, T0, count);
  cr_expect(count[0] > n * 0.73 && count[0] < n * 0.77, "a %u of %d", count[0], n);
  bal_pool_free(&p);
}

Test(random2, sends_less_to_a_slow_server_under_load) {
  _Atomic uint32_t shared[2] = {0, 0};
  struct bal_pool w1, w2, *pools[] = {&w1, &w2};
  unsigned w[] = {1, 1}, service[] = {1, 4}, count[2];

  pool_make(&w1, &bal_random2, NULL, w, 2, "", shared, NULL);
  pool_make(&w2, &bal_random2, NULL, w, 2, "", shared, NULL);
  bal_pool_seed(&w2, 7);
  simulate(pools, 2, service, 5000, 4, count);
  /* Two servers: both are drawn whenever the draws differ (half the time), so the lighter
   * one wins at least then; a uniform choice would give each 50 %. */
  cr_expect(count[0] > 20000 * 0.65, "a %u, b %u", count[0], count[1]);
  bal_pool_free(&w1);
  bal_pool_free(&w2);
}

/* The same load with one uniform random choice per request: its peak in flight. */
static unsigned one_choice_peak(int n, unsigned service, int ticks, int per_tick) {
  unsigned active[16] = {0}, peak = 0;
  int ends[16][64], nends[16] = {0};
  uint64_t x = 42;

  for (int tick = 0; tick < ticks; tick++) {
    for (int i = 0; i < n; i++)
      for (int k = 0; k < nends[i];)
        if (ends[i][k] <= tick) {
          ends[i][k] = ends[i][--nends[i]];
          active[i]--;
        } else {
          k++;
        }
    for (int r = 0; r < per_tick; r++) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      int i = (int)(x % (uint64_t)n);
      cr_assert_lt(nends[i], 64);
      ends[i][nends[i]++] = tick + (int)service;
      if (++active[i] > peak)
        peak = active[i];
    }
  }
  return peak;
}

Test(random2, two_choices_keep_the_busiest_server_far_less_busy_than_one) {
  _Atomic uint32_t shared[10] = {0};
  struct bal_pool w1, w2, *pools[] = {&w1, &w2};
  unsigned w[10], service[10], count[10], peak, one;

  for (int i = 0; i < 10; i++) {
    w[i] = 1;
    service[i] = 20; /* 10 arrivals a tick: 20 in flight per server on average */
  }
  pool_make(&w1, &bal_random2, NULL, w, 10, "", shared, NULL);
  pool_make(&w2, &bal_random2, NULL, w, 10, "", shared, NULL);
  bal_pool_seed(&w2, 7);
  peak = simulate(pools, 2, service, 3000, 10, count);
  one = one_choice_peak(10, 20, 3000, 10);
  cr_expect(peak <= 26, "two choices: peak %u in flight (one choice: %u)", peak, one);
  cr_expect(one >= peak + 8, "two choices: peak %u in flight, one choice: %u", peak, one);
  bal_pool_free(&w1);
  bal_pool_free(&w2);
}

Test(random2, shares_a_steady_load_by_weight) {
  _Atomic uint32_t shared[3] = {0, 0, 0};
  struct bal_pool w1, w2, *pools[] = {&w1, &w2};
  unsigned w[] = {3, 1, 1}, service[] = {5, 5, 5}, count[3];
  const double n = 4000 * 10;

  pool_make(&w1, &bal_random2, NULL, w, 3, "", shared, NULL);
  pool_make(&w2, &bal_random2, NULL, w, 3, "", shared, NULL);
  bal_pool_seed(&w2, 7);
  simulate(pools, 2, service, 4000, 10, count);
  cr_expect(count[0] > n * 0.57 && count[0] < n * 0.63, "a %u of %.0f", count[0], n);
  cr_expect(count[1] > n * 0.17 && count[1] < n * 0.23, "b %u of %.0f", count[1], n);
  bal_pool_free(&w1);
  bal_pool_free(&w2);
}
