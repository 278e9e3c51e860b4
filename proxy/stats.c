/* Latency histograms of the data plane's counters: bucket bounds, placing a value, quantiles. */
#include "stats.h"

#define DECADE(d) d, d * 3 / 2, d * 2, d * 5 / 2, d * 3, d * 4, d * 5, d * 6, d * 15 / 2

/* Nine bounds per decade, 10 us to 75 s, then 100 s. */
const uint64_t px_hist_bounds_us[PX_HIST_BOUNDS] = {
    DECADE(10ull),     DECADE(100ull),     DECADE(1000ull),     DECADE(10000ull),
    DECADE(100000ull), DECADE(1000000ull), DECADE(10000000ull), 100000000ull,
};

unsigned px_hist_bucket(uint64_t us) {
  unsigned lo = 0, hi = PX_HIST_BOUNDS;

  /* The first bound >= us; PX_HIST_BOUNDS when there is none. */
  while (lo < hi) {
    unsigned mid = (lo + hi) / 2;
    if (px_hist_bounds_us[mid] < us)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

uint64_t px_hist_quantile(const uint64_t *buckets, double q) {
  uint64_t total = 0, seen = 0;
  double rank;

  for (unsigned i = 0; i < PX_HIST_BUCKETS; i++)
    total += buckets[i];
  if (total == 0)
    return 0;
  rank = q * (double)total;
  for (unsigned i = 0; i < PX_HIST_BUCKETS; i++) {
    uint64_t lo, hi;
    if (buckets[i] == 0 || (double)(seen + buckets[i]) < rank) {
      seen += buckets[i];
      continue;
    }
    if (i == PX_HIST_BOUNDS)
      return px_hist_bounds_us[PX_HIST_BOUNDS - 1];
    lo = i > 0 ? px_hist_bounds_us[i - 1] : 0;
    hi = px_hist_bounds_us[i];
    return lo + (uint64_t)((double)(hi - lo) * ((rank - (double)seen) / (double)buckets[i]));
  }
  return px_hist_bounds_us[PX_HIST_BOUNDS - 1];
}
