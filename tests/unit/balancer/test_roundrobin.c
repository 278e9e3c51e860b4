/* Tests for balancer/roundrobin.c: smooth weighted order, skipping, and one shared rotation. */
#include "balancer.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>
#include <uv.h>

static void picks(struct bal_pool *p, const struct bal_tried *t, int n, char *out) {
  for (int i = 0; i < n; i++) {
    int s = bal_select(p, t);
    out[i] = s < 0 ? '-' : (char)('a' + s);
    if (s >= 0)
      bal_release(p, (unsigned)s, 0);
  }
  out[n] = '\0';
}

Test(roundrobin, alternates_between_servers_of_equal_weight) {
  struct bal_pool p;
  unsigned w[] = {1, 1, 1};
  char got[16];

  cr_assert_eq(bal_pool_init(&p, &bal_roundrobin, 3, w, NULL), 0);
  picks(&p, NULL, 9, got);
  cr_assert_str_eq(got, "abcabcabc");
  bal_pool_free(&p);
}

Test(roundrobin, spreads_a_heavy_server_smoothly_like_nginx) {
  struct bal_pool p;
  unsigned w[] = {5, 1, 1};
  char got[16];

  cr_assert_eq(bal_pool_init(&p, &bal_roundrobin, 3, w, NULL), 0);
  picks(&p, NULL, 14, got);
  /* nginx's smooth weighted round-robin for {a:5, b:1, c:1}: a a b a c a a, repeated */
  cr_assert_str_eq(got, "aabacaaaabacaa");
  bal_pool_free(&p);
}

Test(roundrobin, reduces_weights_by_their_common_divisor) {
  struct bal_pool p;
  unsigned w[] = {300, 100};
  char got[16];

  cr_assert_eq(bal_pool_init(&p, &bal_roundrobin, 2, w, NULL), 0);
  picks(&p, NULL, 8, got);
  cr_assert_str_eq(got, "aabaaaba");
  bal_pool_free(&p);
}

Test(roundrobin, skips_servers_already_tried) {
  struct bal_pool p;
  unsigned w[] = {1, 1, 1};
  struct bal_tried t;
  char got[16];

  cr_assert_eq(bal_pool_init(&p, &bal_roundrobin, 3, w, NULL), 0);
  bal_tried_clear(&t);
  bal_tried_add(&t, 1);
  picks(&p, &t, 6, got);
  cr_assert_eq(strchr(got, 'b'), NULL, "got %s", got);
  bal_tried_add(&t, 0);
  bal_tried_add(&t, 2);
  cr_assert_eq(bal_select(&p, &t), -1);
  bal_pool_free(&p);
}

Test(roundrobin, skips_servers_marked_down) {
  struct bal_pool p;
  unsigned w[] = {1, 1};
  char got[16];

  cr_assert_eq(bal_pool_init(&p, &bal_roundrobin, 2, w, NULL), 0);
  p.servers[0].down = 1;
  picks(&p, NULL, 4, got);
  cr_assert_str_eq(got, "bbbb");
  p.servers[1].down = 1;
  cr_assert_eq(bal_select(&p, NULL), -1);
  bal_pool_free(&p);
}

Test(roundrobin, keeps_one_rotation_across_pools_sharing_a_counter) {
  /* Two workers, each with its own pool over the same servers, share one counter: together
   * they must alternate, not each restart the rotation. */
  _Atomic uint64_t shared = 0;
  struct bal_pool w1, w2;
  unsigned w[] = {1, 1};
  char got[9];

  cr_assert_eq(bal_pool_init(&w1, &bal_roundrobin, 2, w, &shared), 0);
  cr_assert_eq(bal_pool_init(&w2, &bal_roundrobin, 2, w, &shared), 0);
  for (int i = 0; i < 8; i++)
    got[i] = (char)('a' + bal_select(i % 2 ? &w2 : &w1, NULL));
  got[8] = '\0';
  cr_assert_str_eq(got, "abababab");
  bal_pool_free(&w1);
  bal_pool_free(&w2);
}

Test(roundrobin, counts_requests_in_flight_per_server) {
  struct bal_pool p;
  unsigned w[] = {1, 1};

  cr_assert_eq(bal_pool_init(&p, &bal_roundrobin, 2, w, NULL), 0);
  int a = bal_select(&p, NULL), b = bal_select(&p, NULL);
  cr_assert_eq(p.servers[a].active + p.servers[b].active, 2);
  bal_release(&p, (unsigned)a, 0);
  bal_release(&p, (unsigned)b, 1);
  cr_assert_eq(p.servers[0].active + p.servers[1].active, 0);
  bal_pool_free(&p);
}

Test(balancer, rejects_empty_pools_and_zero_weights) {
  struct bal_pool p;
  unsigned w[] = {1, 0};

  cr_assert_eq(bal_pool_init(&p, &bal_roundrobin, 0, w, NULL), UV_EINVAL);
  cr_assert_eq(bal_pool_init(&p, &bal_roundrobin, 2, w, NULL), UV_EINVAL);
  cr_assert_eq(bal_find("roundrobin"), &bal_roundrobin);
  cr_assert_null(bal_find("nope"));
}
