/* Tests for proxy/stats.c: the latency histograms' buckets and the percentiles read from them. */
#include "stats.h"

#include <criterion/criterion.h>

Test(stats, bounds_are_log_linear_from_10us_to_100s) {
  cr_assert_eq(px_hist_bounds_us[0], 10);
  cr_assert_eq(px_hist_bounds_us[PX_HIST_BOUNDS - 1], 100000000);
  for (unsigned i = 1; i < PX_HIST_BOUNDS; i++) {
    cr_assert_gt(px_hist_bounds_us[i], px_hist_bounds_us[i - 1]);
    /* no bucket wider than half its lower bound: percentiles stay within that */
    cr_assert_leq(px_hist_bounds_us[i] * 2, px_hist_bounds_us[i - 1] * 3 + 1, "bound %u", i);
  }
}

Test(stats, a_value_goes_to_the_first_bucket_whose_bound_is_not_below_it) {
  cr_assert_eq(px_hist_bucket(0), 0);
  cr_assert_eq(px_hist_bucket(10), 0);
  cr_assert_eq(px_hist_bucket(11), 1);
  cr_assert_eq(px_hist_bucket(1000), 18);
  cr_assert_eq(px_hist_bounds_us[18], 1000);
  cr_assert_eq(px_hist_bucket(100000000), PX_HIST_BOUNDS - 1);
  cr_assert_eq(px_hist_bucket(100000001), PX_HIST_BOUNDS, "above the last bound");
}

Test(stats, percentiles_come_back_within_their_bucket) {
  struct px_hist h = {0};
  uint64_t b[PX_HIST_BUCKETS];

  /* 1000 requests: 900 of 1 ms, 90 of 20 ms, 9 of 200 ms, 1 of 3 s */
  for (int i = 0; i < 900; i++)
    px_hist_add(&h, 1000);
  for (int i = 0; i < 90; i++)
    px_hist_add(&h, 20000);
  for (int i = 0; i < 9; i++)
    px_hist_add(&h, 200000);
  px_hist_add(&h, 3000000);
  for (unsigned i = 0; i < PX_HIST_BUCKETS; i++)
    b[i] = atomic_load(&h.bucket[i]);
  cr_assert_eq(atomic_load(&h.sum_us), 900 * 1000 + 90 * 20000 + 9 * 200000 + 3000000);
  uint64_t p50 = px_hist_quantile(b, 0.5), p99 = px_hist_quantile(b, 0.99);
  uint64_t p999 = px_hist_quantile(b, 0.999), p100 = px_hist_quantile(b, 1.0);
  cr_assert(p50 > 750 && p50 <= 1000, "p50 %llu", (unsigned long long)p50);
  cr_assert(p99 > 15000 && p99 <= 20000, "p99 %llu", (unsigned long long)p99);
  cr_assert(p999 > 150000 && p999 <= 200000, "p99.9 %llu", (unsigned long long)p999);
  cr_assert(p100 > 2500000 && p100 <= 3000000, "max %llu", (unsigned long long)p100);
  cr_assert_eq(px_hist_quantile((uint64_t[PX_HIST_BUCKETS]){0}, 0.5), 0);
}
