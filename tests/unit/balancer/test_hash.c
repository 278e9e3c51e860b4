/* Tests for balancer/hash.c: Maglev consistency, balance, weights, and what moves when. */
#include "bal_test.h"

#include <stdlib.h>

#define NKEYS 100000

static uint64_t key_of(int k) {
  char s[32];
  int n = snprintf(s, sizeof(s), "client-%d", k);
  return bal_hash_key(s, (size_t)n);
}

/* The id of the server key k goes to. */
static uint64_t owner(struct bal_pool *p, int k, uint64_t now) {
  struct bal_tried t;
  struct bal_pick pk;

  bal_tried_clear(&t);
  cr_assert_eq(bal_select(p, &t, key_of(k), now, &pk), 0);
  bal_release(p, &pk, BAL_CANCELLED, now);
  return pk.id;
}

static uint64_t *owners(struct bal_pool *p, uint64_t now) {
  uint64_t *o = malloc(NKEYS * sizeof(*o));
  cr_assert_not_null(o);
  for (int k = 0; k < NKEYS; k++)
    o[k] = owner(p, k, now);
  return o;
}

/* Keys whose owner changed; *moved_between_stayers: those that moved while both their old and
 * new owner are in both sets (`gone` left, `added` joined; 0 for none). */
static int moved(const uint64_t *a, const uint64_t *b, uint64_t gone, uint64_t added,
                 int *moved_between_stayers) {
  int n = 0;
  *moved_between_stayers = 0;
  for (int k = 0; k < NKEYS; k++) {
    if (a[k] == b[k])
      continue;
    n++;
    if (a[k] != gone && b[k] != added)
      (*moved_between_stayers)++;
  }
  return n;
}

static void ten_servers(struct bal_pool *p, unsigned n) {
  unsigned w[16];
  for (unsigned i = 0; i < n; i++)
    w[i] = 1;
  pool_make(p, &bal_hash, NULL, w, n, "", NULL, NULL);
}

static void server_confs(struct bal_server_conf *sc, const char *names) {
  for (int i = 0; names[i] != '\0'; i++)
    sc[i] = (struct bal_server_conf){.id = sid(names[i]), .weight = 1};
}

Test(hash, a_key_goes_to_the_same_server_in_every_worker) {
  struct bal_pool w1, w2;

  ten_servers(&w1, 10);
  ten_servers(&w2, 10);
  bal_pool_seed(&w2, 99);
  for (int k = 0; k < 2000; k++) {
    uint64_t o = owner(&w1, k, T0);
    cr_assert_eq(owner(&w2, k, T0), o);
    cr_assert_eq(owner(&w1, k, T0 + 1), o);
  }
  bal_pool_free(&w1);
  bal_pool_free(&w2);
}

Test(hash, spreads_keys_evenly_and_by_weight) {
  struct bal_pool p;
  unsigned w[] = {2, 1, 1}, count[16] = {0};

  ten_servers(&p, 10);
  for (int k = 0; k < NKEYS; k++)
    count[bal_pool_find(&p, owner(&p, k, T0))]++;
  for (int i = 0; i < 10; i++)
    cr_expect(count[i] > NKEYS * 0.093 && count[i] < NKEYS * 0.107, "server %d got %u", i,
              count[i]);
  bal_pool_free(&p);

  memset(count, 0, sizeof(count));
  pool_make(&p, &bal_hash, NULL, w, 3, "", NULL, NULL);
  for (int k = 0; k < NKEYS; k++)
    count[bal_pool_find(&p, owner(&p, k, T0))]++;
  cr_expect(count[0] > NKEYS * 0.485 && count[0] < NKEYS * 0.515, "a got %u", count[0]);
  cr_expect(count[1] > NKEYS * 0.235 && count[1] < NKEYS * 0.265, "b got %u", count[1]);
  bal_pool_free(&p);
}

Test(hash, removing_one_of_ten_servers_moves_about_a_tenth_of_the_keys) {
  struct bal_server_conf sc[16];
  struct bal_pool p;
  uint64_t *before, *after;
  int stayers, n;

  ten_servers(&p, 10);
  before = owners(&p, T0);
  server_confs(sc, "abcdfghij"); /* e leaves */
  cr_assert_eq(bal_pool_rebuild(&p, sc, 9), 0);
  after = owners(&p, T0);
  n = moved(before, after, sid('e'), 0, &stayers);
  /* e had about 10 % of the keys; they must move, and little else may. */
  cr_expect(n > NKEYS * 0.09 && n < NKEYS * 0.115, "%d of %d keys moved", n, NKEYS);
  cr_expect(stayers < NKEYS * 0.015, "%d keys moved between servers that stayed", stayers);
  free(before);
  free(after);
  bal_pool_free(&p);
}

Test(hash, adding_an_eleventh_server_moves_about_an_eleventh_of_the_keys) {
  struct bal_server_conf sc[16];
  struct bal_pool p;
  uint64_t *before, *after;
  int stayers, n;

  ten_servers(&p, 10);
  before = owners(&p, T0);
  server_confs(sc, "abcdefghijk");
  cr_assert_eq(bal_pool_rebuild(&p, sc, 11), 0);
  after = owners(&p, T0);
  n = moved(before, after, 0, sid('k'), &stayers);
  cr_expect(n > NKEYS * 0.08 && n < NKEYS * 0.105, "%d of %d keys moved", n, NKEYS);
  cr_expect(stayers < NKEYS * 0.015, "%d keys moved between servers that stayed", stayers);
  free(before);
  free(after);
  bal_pool_free(&p);
}

Test(hash, a_down_server_keys_move_and_come_back_when_it_is_up) {
  struct bal_pool p;
  uint64_t *before, *down, *up;
  int stayers, n;

  ten_servers(&p, 10);
  before = owners(&p, T0);
  set_down(&p, 'e', 1);
  down = owners(&p, T0);
  n = moved(before, down, sid('e'), 0, &stayers);
  cr_expect(n > NKEYS * 0.09 && n < NKEYS * 0.115, "%d of %d keys moved", n, NKEYS);
  cr_expect(stayers < NKEYS * 0.015, "%d keys moved between servers that stayed", stayers);
  set_down(&p, 'e', 0);
  up = owners(&p, T0);
  cr_expect_eq(moved(before, up, 0, 0, &stayers), 0);
  free(before);
  free(down);
  free(up);
  bal_pool_free(&p);
}

Test(hash, a_failing_server_keys_go_to_the_same_fallback_in_every_worker) {
  struct bal_conf conf = {.max_fails = 1, .fail_timeout_ms = 10000};
  struct bal_pool w1, w2;
  unsigned w[10];
  uint64_t *before, *after;
  int stayers, n;

  for (int i = 0; i < 10; i++)
    w[i] = 1;
  pool_make(&w1, &bal_hash, &conf, w, 10, "", NULL, NULL);
  pool_make(&w2, &bal_hash, &conf, w, 10, "", NULL, NULL);
  before = owners(&w1, T0);
  make_failing(&w1, 'e', T0);
  make_failing(&w2, 'e', T0);
  after = owners(&w1, T0);
  n = moved(before, after, sid('e'), 0, &stayers);
  cr_expect_eq(stayers, 0, "no rebuild: only e's keys move");
  cr_expect(n > NKEYS * 0.09 && n < NKEYS * 0.11, "%d keys moved", n);
  for (int k = 0; k < NKEYS; k += 7)
    cr_assert_eq(owner(&w2, k, T0), after[k]);
  free(before);
  free(after);
  bal_pool_free(&w1);
  bal_pool_free(&w2);
}

Test(hash, requests_without_a_key_are_spread_evenly) {
  struct bal_pool p;
  unsigned w[] = {1, 1, 1}, count[3];
  const int n = 30000;

  pool_make(&p, &bal_hash, NULL, w, 3, "", NULL, NULL);
  histogram(&p, n, T0, count);
  for (int i = 0; i < 3; i++)
    cr_expect(count[i] > n * 0.31 && count[i] < n * 0.355, "server %d got %u", i, count[i]);
  bal_pool_free(&p);
}
