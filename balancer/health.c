/* Health arithmetic as pure functions of a clock: passive failures, slow start, check results. */
#include "balancer.h"

/*
 * Passive failures, one server in one worker:
 *   1. No window open (count 0): a failure opens one at now, count 1.
 *   2. A failure within fail_timeout of the window's start adds one; a later one opens a new
 *      window (old failures are forgotten).
 *   3. The max_fails-th failure of a window makes the server failing until now+fail_timeout.
 *      Failures reported meanwhile (requests that were already in flight) change nothing.
 *   4. When the failing period ends the server is on probation: a window is open from that
 *      moment with max_fails - 1 failures in it, so one more failure before any success puts
 *      it back for fail_timeout (a dead server costs one attempt per period, not max_fails).
 *   5. A success closes the window (and ends probation).
 * So "max_fails failures within fail_timeout, with no success between them".
 */
int bal_fails_record(struct bal_fails *f, unsigned max_fails, uint64_t fail_timeout_ms,
                     uint64_t now_ms) {
  if (max_fails == 0 || f->until_ms > now_ms)
    return 0;
  if (f->count == 0 || now_ms - f->window_ms >= fail_timeout_ms || now_ms < f->window_ms) {
    f->window_ms = now_ms;
    f->count = 0;
  }
  if (++f->count < max_fails)
    return 0;
  f->until_ms = now_ms + fail_timeout_ms;
  f->window_ms = f->until_ms; /* probation starts when the failing period ends */
  f->count = max_fails - 1;
  return 1;
}

void bal_fails_success(struct bal_fails *f) {
  f->count = 0;
  f->window_ms = 0;
}

uint32_t bal_slow_start_share(uint64_t since_ms, uint64_t slow_start_ms, uint64_t now_ms) {
  const uint32_t floor = BAL_ONE / 10;

  if (slow_start_ms == 0 || since_ms == 0 || now_ms >= since_ms + slow_start_ms)
    return BAL_ONE;
  if (now_ms <= since_ms)
    return floor;
  return floor + (uint32_t)((uint64_t)(BAL_ONE - floor) * (now_ms - since_ms) / slow_start_ms);
}

int bal_check_record(struct bal_check *c, int ok, unsigned rise, unsigned fall) {
  int up = c->health == BAL_HEALTH_UP;
  unsigned need = up ? fall : rise;

  if ((up && ok) || (!up && !ok)) {
    c->streak = 0;
    return 0;
  }
  if (c->streak < UINT16_MAX)
    c->streak++;
  if (c->streak < (need > 0 ? need : 1))
    return 0;
  c->health = up ? BAL_HEALTH_DOWN : BAL_HEALTH_UP;
  c->streak = 0;
  return 1;
}

uint64_t bal_check_delay(uint64_t interval_ms, unsigned jitter_pct, uint64_t random) {
  uint64_t spread;

  if (jitter_pct > 100)
    jitter_pct = 100;
  spread = interval_ms * jitter_pct / 100;
  if (spread == 0)
    return interval_ms;
  return interval_ms - spread + random % (2 * spread + 1);
}
