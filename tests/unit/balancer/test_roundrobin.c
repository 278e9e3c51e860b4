/* Tests for balancer/roundrobin.c: smooth weighted order, servers out of it, retries, one rotation.
 */
#include "bal_test.h"

#include <errno.h>

Test(round_robin, alternates_between_servers_of_equal_weight) {
  struct bal_pool p;
  unsigned w[] = {1, 1, 1};
  char got[16];

  pool_make(&p, &bal_round_robin, NULL, w, 3, "", NULL, NULL);
  picks(&p, 9, got);
  cr_assert_str_eq(got, "abcabcabc");
  bal_pool_free(&p);
}

Test(round_robin, spreads_a_heavy_server_smoothly_like_nginx) {
  struct bal_pool p;
  unsigned w[] = {5, 1, 1};
  char got[16];

  pool_make(&p, &bal_round_robin, NULL, w, 3, "", NULL, NULL);
  picks(&p, 14, got);
  /* nginx's smooth weighted round-robin for {a:5, b:1, c:1}: a a b a c a a, repeated */
  cr_assert_str_eq(got, "aabacaaaabacaa");
  bal_pool_free(&p);
}

Test(round_robin, reduces_weights_by_their_common_divisor) {
  struct bal_pool p;
  unsigned w[] = {300, 100};
  char got[16];

  pool_make(&p, &bal_round_robin, NULL, w, 2, "", NULL, NULL);
  picks(&p, 8, got);
  cr_assert_str_eq(got, "aabaaaba");
  bal_pool_free(&p);
}

Test(round_robin, a_down_server_leaves_the_others_the_smooth_order_of_their_own_weights) {
  struct bal_pool p;
  unsigned w[] = {5, 1, 1};
  char got[16];

  pool_make(&p, &bal_round_robin, NULL, w, 3, "", NULL, NULL);
  set_down(&p, 'c', 1);
  picks(&p, 12, got);
  /* The cycle of {a:5, b:1}, not {a:5, b:1, c:1} with c's slot handed to its neighbour. */
  cr_assert_str_eq(got, "aaabaaaaabaa");
  bal_pool_free(&p);
}

Test(round_robin, a_down_server_is_not_replaced_by_its_neighbour_in_the_cycle) {
  struct bal_pool p;
  unsigned w[] = {1, 1, 1, 1};
  char got[16];

  pool_make(&p, &bal_round_robin, NULL, w, 4, "", NULL, NULL);
  set_down(&p, 'b', 1);
  picks(&p, 9, got);
  /* Walking the cycle forward from b's slot would give "accdaccda": c twice as often. */
  cr_assert_str_eq(got, "acdacdacd");
  set_down(&p, 'b', 0);
  picks(&p, 8, got);
  cr_assert_str_eq(got, "bcdabcda", "b is back, at the rotation's position 9");
  bal_pool_free(&p);
}

Test(round_robin, draining_and_disabled_servers_leave_the_rotation) {
  struct bal_pool p;
  unsigned w[] = {1, 1, 1};
  char got[16];

  pool_make(&p, &bal_round_robin, NULL, w, 3, "", NULL, NULL);
  set_state(&p, 'a', BAL_HEALTH_UP, BAL_ADMIN_DRAINING, 0, T0);
  set_state(&p, 'c', BAL_HEALTH_UP, BAL_ADMIN_DISABLED, 0, T0);
  picks(&p, 4, got);
  cr_assert_str_eq(got, "bbbb");
  set_state(&p, 'b', BAL_HEALTH_DOWN, BAL_ADMIN_ENABLED, 0, T0);
  cr_assert_eq(pick1(&p, BAL_NO_KEY, T0, BAL_OK), '-');
  bal_pool_free(&p);
}

Test(round_robin, a_weight_set_at_run_time_changes_the_cycle) {
  struct bal_pool p;
  unsigned w[] = {1, 1};
  char got[16];

  pool_make(&p, &bal_round_robin, NULL, w, 2, "", NULL, NULL);
  set_state(&p, 'a', BAL_HEALTH_UP, BAL_ADMIN_ENABLED, 3, T0);
  picks(&p, 8, got);
  cr_assert_str_eq(got, "aabaaaba");
  set_state(&p, 'a', BAL_HEALTH_UP, BAL_ADMIN_ENABLED, 0, T0); /* back to the configured 1 */
  picks(&p, 4, got);
  cr_assert_str_eq(got, "abab");
  bal_pool_free(&p);
}

Test(round_robin, a_failing_server_share_spreads_over_the_others_by_weight) {
  struct bal_conf conf = {.max_fails = 1, .fail_timeout_ms = 10000};
  struct bal_pool p;
  unsigned w[] = {2, 1, 1}, count[3];
  const int n = 40000;

  pool_make(&p, &bal_round_robin, &conf, w, 3, "", NULL, NULL);
  make_failing(&p, 'c', T0);
  histogram(&p, n, T0 + 1, count);
  /* The cycle is a b c a; c's quarter goes 2:1 to a and b (walking forward would give all of
   * it to a: 3/4 and 1/4). */
  cr_assert_eq(count[2], 0);
  cr_expect(count[0] > n * 0.65 && count[0] < n * 0.685, "a got %u of %d", count[0], n);
  cr_expect(count[1] > n * 0.315 && count[1] < n * 0.35, "b got %u of %d", count[1], n);
  bal_pool_free(&p);
}

Test(round_robin, only_the_failing_server_slots_are_redrawn) {
  struct bal_conf conf = {.max_fails = 1, .fail_timeout_ms = 10000};
  struct bal_pool p;
  unsigned w[] = {2, 1, 1};
  char got[41];

  pool_make(&p, &bal_round_robin, &conf, w, 3, "", NULL, NULL);
  make_failing(&p, 'c', T0);
  picks(&p, 40, got);
  /* Slots 0, 1, 3 of every "abca" cycle stay exactly where the rotation puts them. */
  for (int i = 0; i < 40; i += 4)
    cr_assert(got[i] == 'a' && got[i + 1] == 'b' && got[i + 3] == 'a' && got[i + 2] != 'c', "%s",
              got);
  /* After fail_timeout, c is back in its slots. */
  cr_assert_eq(pick1(&p, BAL_NO_KEY, T0 + 10000, BAL_OK), 'a');
  cr_assert_eq(pick1(&p, BAL_NO_KEY, T0 + 10000, BAL_OK), 'b');
  cr_assert_eq(pick1(&p, BAL_NO_KEY, T0 + 10000, BAL_OK), 'c');
  bal_pool_free(&p);
}

/* One request against [dead a, live b]: the first server it tries; failures are retried. */
static char request_with_retry(struct bal_pool *p, uint64_t now) {
  struct bal_tried t;
  struct bal_pick pk;
  char first;

  bal_tried_clear(&t);
  cr_assert_eq(bal_select(p, &t, BAL_NO_KEY, now, &pk), 0);
  first = (char)('a' + pk.idx);
  while (pk.idx == 0) { /* a is dead */
    bal_release(p, &pk, BAL_FAILED, now);
    cr_assert_eq(bal_select(p, &t, BAL_NO_KEY, now, &pk), 0);
    cr_assert_eq(pk.idx, 1, "the retry must go to the other server");
  }
  bal_release(p, &pk, BAL_OK, now);
  return first;
}

Test(round_robin, a_retry_does_not_shift_the_rotation_onto_the_failed_server) {
  struct bal_pool p;
  unsigned w[] = {1, 1};
  char got[21];

  pool_make(&p, &bal_round_robin, NULL, w, 2, "", NULL, NULL); /* max_fails 0: no passive */
  for (int i = 0; i < 20; i++)
    got[i] = request_with_retry(&p, T0);
  got[20] = '\0';
  /* A retry taking a rotation position made every request start on the dead server. */
  cr_assert_str_eq(got, "abababababababababab");
  bal_pool_free(&p);
}

Test(round_robin, passive_failures_keep_requests_off_a_dead_server) {
  struct bal_conf conf = {.max_fails = 1, .fail_timeout_ms = 10000};
  struct bal_pool p;
  unsigned w[] = {1, 1};
  char got[21];

  pool_make(&p, &bal_round_robin, &conf, w, 2, "", NULL, NULL);
  for (int i = 0; i < 20; i++)
    got[i] = request_with_retry(&p, T0 + (uint64_t)i);
  got[20] = '\0';
  cr_assert_str_eq(got, "abbbbbbbbbbbbbbbbbbb");
  /* fail_timeout later it gets one request on probation, which fails: skipped again. */
  for (int i = 0; i < 6; i++)
    got[i] = request_with_retry(&p, T0 + 10000 + (uint64_t)i);
  got[6] = '\0';
  cr_assert_str_eq(got, "abbbbb");
  bal_pool_free(&p);
}

Test(round_robin, slow_start_ramps_a_recovered_server_share) {
  struct bal_conf conf = {.slow_start_ms = 10000};
  struct bal_pool p;
  unsigned w[] = {1, 1}, count[2];
  const int n = 20000;

  pool_make(&p, &bal_round_robin, &conf, w, 2, "", NULL, NULL);
  set_down(&p, 'b', 1);
  set_down(&p, 'b', 0); /* up again at T0 */
  histogram(&p, n, T0, count);
  /* b's weight counts 10 %: 0.1 / 1.1 of the traffic */
  cr_expect(count[1] > n * 0.08 && count[1] < n * 0.10, "b got %u of %d", count[1], n);
  histogram(&p, n, T0 + 5000, count);
  /* 55 %: 0.55 / 1.55 */
  cr_expect(count[1] > n * 0.34 && count[1] < n * 0.37, "b got %u of %d", count[1], n);
  histogram(&p, n, T0 + 10000, count);
  cr_expect_eq(count[1], (unsigned)n / 2);
  bal_pool_free(&p);
}

Test(round_robin, keeps_one_rotation_across_pools_sharing_a_counter) {
  /* Two workers, each with its own pool over the same servers, share one counter: together
   * they must alternate, not each restart the rotation. */
  _Atomic uint64_t shared = 0;
  struct bal_pool w1, w2;
  unsigned w[] = {1, 1};
  char got[9];

  pool_make(&w1, &bal_round_robin, NULL, w, 2, "", NULL, &shared);
  pool_make(&w2, &bal_round_robin, NULL, w, 2, "", NULL, &shared);
  for (int i = 0; i < 8; i++)
    got[i] = pick1(i % 2 ? &w2 : &w1, BAL_NO_KEY, T0, BAL_OK);
  got[8] = '\0';
  cr_assert_str_eq(got, "abababab");
  bal_pool_free(&w1);
  bal_pool_free(&w2);
}

Test(round_robin, counts_requests_in_flight_per_server) {
  struct bal_pool p;
  unsigned w[] = {1, 1};
  struct bal_tried t1, t2;
  struct bal_pick a, b;

  pool_make(&p, &bal_round_robin, NULL, w, 2, "", NULL, NULL);
  bal_tried_clear(&t1);
  bal_tried_clear(&t2);
  cr_assert_eq(bal_select(&p, &t1, BAL_NO_KEY, T0, &a), 0);
  cr_assert_eq(bal_select(&p, &t2, BAL_NO_KEY, T0, &b), 0);
  cr_assert_eq(*p.servers[0].active + *p.servers[1].active, 2);
  cr_assert_eq(p.servers[0].inflight + p.servers[1].inflight, 2);
  bal_release(&p, &a, BAL_OK, T0);
  bal_release(&p, &b, BAL_FAILED, T0);
  cr_assert_eq(*p.servers[0].active + *p.servers[1].active, 0);
  cr_assert_eq(p.servers[0].inflight + p.servers[1].inflight, 0);
  cr_assert_eq(p.servers[b.idx].failed, 1);
  bal_pool_free(&p);
}
