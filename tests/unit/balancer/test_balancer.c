/* Tests for balancer/balancer.c: ids, rebuilds, states, backup and panic tiers, tried, errors. */
#include "bal_test.h"

#include <errno.h>

Test(balancer, server_ids_depend_on_upstream_and_address_only) {
  cr_assert_eq(bal_server_id("app", "10.0.0.1:80"), bal_server_id("app", "10.0.0.1:80"));
  cr_assert_neq(bal_server_id("app", "10.0.0.1:80"), bal_server_id("api", "10.0.0.1:80"));
  cr_assert_neq(bal_server_id("app", "10.0.0.1:80"), bal_server_id("app", "10.0.0.1:81"));
  cr_assert_neq(bal_server_id("ab", "c:1"), bal_server_id("a", "bc:1"));
  cr_assert_neq(bal_server_id("", ""), 0);
  cr_assert_neq(bal_hash_key("", 0), BAL_NO_KEY);
}

Test(balancer, finds_algorithms_by_their_config_names) {
  cr_assert_eq(bal_find("round_robin"), &bal_round_robin);
  cr_assert_eq(bal_find("least_conn"), &bal_least_conn);
  cr_assert_eq(bal_find("random2"), &bal_random2);
  cr_assert_eq(bal_find("hash"), &bal_hash);
  cr_assert_null(bal_find("roundrobin"));
  cr_assert(bal_hash.flags & BAL_USES_KEY);
  cr_assert_not(bal_round_robin.flags & BAL_USES_KEY);
}

Test(balancer, rejects_too_many_servers_bad_weights_and_repeated_ids) {
  struct bal_server_conf sc[2] = {{.id = 1, .weight = 1}, {.id = 2, .weight = 0}};
  struct bal_conf conf = {0};
  struct bal_pool p;

  cr_assert_eq(bal_pool_init(&p, &bal_round_robin, &conf, sc, BAL_MAX_SERVERS + 1, NULL), -EINVAL);
  cr_assert_eq(bal_pool_init(&p, &bal_round_robin, &conf, sc, 2, NULL), -EINVAL);
  sc[1].weight = 1001;
  cr_assert_eq(bal_pool_init(&p, &bal_round_robin, &conf, sc, 2, NULL), -EINVAL);
  sc[1].weight = 1;
  sc[1].id = 1;
  cr_assert_eq(bal_pool_init(&p, &bal_round_robin, &conf, sc, 2, NULL), -EINVAL);
  sc[1].id = 0;
  cr_assert_eq(bal_pool_init(&p, &bal_round_robin, &conf, sc, 2, NULL), -EINVAL);
  cr_assert_null(p.servers, "a failed init leaves the pool zeroed");
}

static const struct bal_ops *const all_ops[] = {&bal_round_robin, &bal_least_conn, &bal_random2,
                                                &bal_hash};
#define NOPS (sizeof(all_ops) / sizeof(all_ops[0]))

Test(balancer, an_empty_pool_is_valid_and_every_algorithm_finds_nothing_usable) {
  for (size_t k = 0; k < NOPS; k++) {
    for (int panic = 0; panic <= 1; panic++) {
      struct bal_conf conf = {.panic = panic};
      struct bal_server_state st = {.id = sid('a')};
      struct bal_pool p;
      struct bal_tried t;
      struct bal_pick pk;

      cr_assert_eq(bal_pool_init(&p, all_ops[k], &conf, NULL, 0, NULL), 0, "%s", all_ops[k]->name);
      cr_assert_eq(p.n, 0);
      bal_tried_clear(&t);
      cr_assert_eq(bal_select(&p, &t, bal_hash_key("k", 1), T0, &pk), -EHOSTDOWN, "%s",
                   all_ops[k]->name);
      cr_assert_eq(bal_select(&p, &t, BAL_NO_KEY, T0, &pk), -EHOSTDOWN);
      cr_assert_eq(t.n, 0);
      cr_assert_eq(bal_pool_apply(&p, &st, 1, T0), 0);
      cr_assert_eq(bal_pool_find(&p, sid('a')), -ENOENT);
      bal_pool_free(&p);
    }
  }
}

/* Picks over 64 requests (keys vary) released at once: a bit per server index. */
static unsigned picked_set(struct bal_pool *p) {
  unsigned seen = 0;

  for (int r = 0; r < 64; r++) {
    struct bal_tried t;
    struct bal_pick pk;
    bal_tried_clear(&t);
    cr_assert_eq(bal_select(p, &t, bal_hash_key(&r, sizeof(r)), T0, &pk), 0);
    seen |= 1u << pk.idx;
    bal_release(p, &pk, BAL_OK, T0);
  }
  return seen;
}

Test(balancer, a_pool_rebuilt_to_no_servers_and_back_serves_again) {
  for (size_t k = 0; k < NOPS; k++) {
    _Atomic uint32_t shared[4] = {0, 0, 0, 0};
    struct bal_server_conf sc[2];
    struct bal_pool p;
    unsigned w[] = {1, 1, 1};
    struct bal_tried t;
    struct bal_pick held, pk;

    pool_make(&p, all_ops[k], NULL, w, 3, "", shared, NULL);
    bal_tried_clear(&t);
    cr_assert_eq(bal_select(&p, &t, BAL_NO_KEY, T0, &held), 0);
    cr_assert_eq(bal_pool_rebuild(&p, NULL, 0), 0, "%s", all_ops[k]->name);
    cr_assert_eq(p.n, 0);
    bal_tried_clear(&t);
    cr_assert_eq(bal_select(&p, &t, BAL_NO_KEY, T0, &pk), -EHOSTDOWN, "%s", all_ops[k]->name);
    /* The pick made before the pool emptied still gives its shared count back. */
    bal_release(&p, &held, BAL_OK, T0);
    cr_assert_eq(shared[held.idx], 0);
    sc[0] = (struct bal_server_conf){.id = sid('b'), .weight = 1, .shared = &shared[1]};
    sc[1] = (struct bal_server_conf){.id = sid('d'), .weight = 1, .shared = &shared[3]};
    cr_assert_eq(bal_pool_rebuild(&p, sc, 2), 0);
    cr_assert_eq(picked_set(&p), 3u, "%s: both new servers and only they", all_ops[k]->name);
    cr_assert_eq(p.servers[bal_pool_find(&p, sid('d'))].health, BAL_HEALTH_UP);
    bal_pool_free(&p);
  }
}

Test(balancer, a_rebuild_keeps_the_state_of_servers_whose_id_stays) {
  struct bal_conf conf = {.max_fails = 1, .fail_timeout_ms = 10000};
  struct bal_server_conf sc[3];
  struct bal_pool p;
  unsigned w[] = {1, 1, 1};
  struct bal_tried t;
  struct bal_pick held;
  int i;

  pool_make(&p, &bal_round_robin, &conf, w, 3, "", NULL, NULL);
  set_down(&p, 'b', 1);
  set_state(&p, 'c', BAL_HEALTH_UP, BAL_ADMIN_DRAINING, 7, T0);
  make_failing(&p, 'a', T0);
  bal_tried_clear(&t);
  set_state(&p, 'c', BAL_HEALTH_UP, BAL_ADMIN_ENABLED, 7, T0);
  cr_assert_eq(bal_select(&p, &t, BAL_NO_KEY, T0, &held), 0);
  cr_assert_eq(held.idx, 2, "only c is usable");
  set_state(&p, 'c', BAL_HEALTH_UP, BAL_ADMIN_DRAINING, 7, T0);

  /* New set: c first, then d (new), then b; a is gone. */
  sc[0] = (struct bal_server_conf){.id = sid('c'), .weight = 1};
  sc[1] = (struct bal_server_conf){.id = sid('d'), .weight = 2};
  sc[2] = (struct bal_server_conf){.id = sid('b'), .weight = 1};
  uint32_t version = p.version;
  cr_assert_eq(bal_pool_rebuild(&p, sc, 3), 0);
  cr_assert_neq(p.version, version);
  cr_assert_eq(bal_pool_find(&p, sid('a')), -ENOENT);
  i = bal_pool_find(&p, sid('c'));
  cr_assert_eq(i, 0);
  cr_expect_eq(p.servers[i].admin, BAL_ADMIN_DRAINING);
  cr_expect_eq(p.servers[i].weight, 7, "a weight set at run time stays");
  cr_expect_eq(p.servers[i].inflight, 1);
  cr_expect_eq(*p.servers[i].active, 1);
  cr_expect_eq(p.servers[i].selected, 1);
  i = bal_pool_find(&p, sid('b'));
  cr_expect_eq(p.servers[i].health, BAL_HEALTH_DOWN);
  i = bal_pool_find(&p, sid('d'));
  cr_expect_eq(p.servers[i].health, BAL_HEALTH_UP);
  cr_expect_eq(p.servers[i].weight, 2);
  /* The pick made before the rebuild (index 2 then, 0 now) is released on c. */
  bal_release(&p, &held, BAL_OK, T0);
  cr_expect_eq(*p.servers[0].active, 0);
  cr_expect_eq(p.servers[0].inflight, 0);
  cr_expect_eq(pick1(&p, BAL_NO_KEY, T0, BAL_OK), 'b', "d, the only usable server (index 1)");
  bal_pool_free(&p);
}

Test(balancer, a_pick_of_a_server_that_left_releases_its_shared_counter) {
  _Atomic uint32_t shared[2] = {0, 0};
  struct bal_server_conf sc[1];
  struct bal_pool p;
  unsigned w[] = {1, 1};
  struct bal_tried t;
  struct bal_pick pk;

  pool_make(&p, &bal_round_robin, NULL, w, 2, "", shared, NULL);
  bal_tried_clear(&t);
  cr_assert_eq(bal_select(&p, &t, BAL_NO_KEY, T0, &pk), 0);
  cr_assert_eq(pk.idx, 0);
  cr_assert_eq(shared[0], 1);
  sc[0] = (struct bal_server_conf){.id = sid('b'), .weight = 1, .shared = &shared[1]};
  cr_assert_eq(bal_pool_rebuild(&p, sc, 1), 0);
  bal_release(&p, &pk, BAL_OK, T0);
  cr_assert_eq(shared[0], 0);
  cr_assert_eq(shared[1], 0);
  bal_release(&p, &pk, BAL_OK, T0); /* once too often: the counter does not wrap */
  cr_assert_eq(shared[0], 0);
  bal_pool_free(&p);
}

Test(balancer, a_failed_rebuild_leaves_the_pool_as_it_was) {
  struct bal_server_conf sc[2] = {{.id = 5, .weight = 1}, {.id = 5, .weight = 1}};
  struct bal_pool p;
  unsigned w[] = {1, 1};

  pool_make(&p, &bal_round_robin, NULL, w, 2, "", NULL, NULL);
  cr_assert_eq(bal_pool_rebuild(&p, sc, 2), -EINVAL);
  cr_assert_eq(p.n, 2);
  cr_assert_eq(p.servers[0].id, sid('a'));
  cr_assert_eq(pick1(&p, BAL_NO_KEY, T0, BAL_OK), 'a');
  bal_pool_free(&p);
}

Test(balancer, apply_ignores_unknown_ids_and_reports_what_matched) {
  struct bal_server_state st[3] = {
      {.id = sid('b'), .health = BAL_HEALTH_DOWN},
      {.id = 12345, .health = BAL_HEALTH_DOWN},
      {.id = sid('a'), .failing_until_ms = T0 + 500},
  };
  struct bal_server_state out;
  struct bal_pool p;
  unsigned w[] = {1, 1, 1};

  pool_make(&p, &bal_round_robin, NULL, w, 3, "", NULL, NULL);
  cr_assert_eq(bal_pool_apply(&p, st, 3, T0), 2);
  cr_assert_eq(pick1(&p, BAL_NO_KEY, T0, BAL_OK), 'c', "a failing (reported), b down");
  cr_assert_eq(pick1(&p, BAL_NO_KEY, T0 + 500, BAL_OK), 'c', "the cycle is a c; pos 1 is c");
  cr_assert_eq(pick1(&p, BAL_NO_KEY, T0 + 500, BAL_OK), 'a', "failing ended");
  bal_pool_state(&p, 0, &out);
  cr_assert_eq(out.id, sid('a'));
  cr_assert_eq(out.failing_until_ms, T0 + 500);
  cr_assert_eq(out.weight, 0, "no weight set at run time");
  bal_pool_state(&p, 1, &out);
  cr_assert_eq(out.health, BAL_HEALTH_DOWN);
  bal_pool_free(&p);
}

Test(balancer, backup_servers_get_traffic_only_when_no_primary_is_usable) {
  struct bal_conf conf = {.max_fails = 1, .fail_timeout_ms = 10000};
  struct bal_pool p;
  unsigned w[] = {1, 1, 1, 1};
  char got[16];

  pool_make(&p, &bal_round_robin, &conf, w, 4, "cd", NULL, NULL);
  picks(&p, 6, got);
  cr_assert_str_eq(got, "ababab");
  set_down(&p, 'a', 1);
  picks(&p, 4, got);
  cr_assert_str_eq(got, "bbbb", "one primary left is enough");
  make_failing(&p, 'b', T0);
  picks(&p, 4, got);
  cr_assert_str_eq(got, "cdcd", "no primary usable (a down, b failing here)");
  set_down(&p, 'a', 0);
  picks(&p, 4, got);
  cr_assert_str_eq(got, "aaaa");
  bal_pool_free(&p);
}

Test(balancer, a_pool_of_backups_only_uses_them) {
  struct bal_pool p;
  unsigned w[] = {1, 1};
  char got[8];

  pool_make(&p, &bal_least_conn, NULL, w, 2, "ab", NULL, NULL);
  picks(&p, 4, got);
  cr_assert_str_eq(got, "abab");
  bal_pool_free(&p);
}

Test(balancer, a_retry_may_go_to_a_backup_once_every_primary_was_tried) {
  struct bal_pool p;
  unsigned w[] = {1, 1, 1};
  struct bal_tried t;
  struct bal_pick pk;

  pool_make(&p, &bal_round_robin, NULL, w, 3, "c", NULL, NULL);
  bal_tried_clear(&t);
  cr_assert_eq(bal_select(&p, &t, BAL_NO_KEY, T0, &pk), 0);
  cr_assert_eq(pk.idx, 0);
  cr_assert_eq(bal_select(&p, &t, BAL_NO_KEY, T0, &pk), 0);
  cr_assert_eq(pk.idx, 1);
  cr_assert_eq(bal_select(&p, &t, BAL_NO_KEY, T0, &pk), 0);
  cr_assert_eq(pk.idx, 2, "the backup, as nginx does");
  cr_assert_eq(bal_select(&p, &t, BAL_NO_KEY, T0, &pk), -EALREADY);
  cr_assert_eq(t.n, 3);
  bal_pool_free(&p);
}

Test(balancer, with_nothing_usable_selection_fails_unless_panic) {
  struct bal_conf conf = {.max_fails = 1, .fail_timeout_ms = 10000};
  struct bal_pool p;
  unsigned w[] = {1, 1, 1};
  struct bal_tried t;
  struct bal_pick pk;
  char got[16];

  pool_make(&p, &bal_round_robin, &conf, w, 3, "", NULL, NULL);
  set_down(&p, 'a', 1);
  make_failing(&p, 'b', T0);
  set_state(&p, 'c', BAL_HEALTH_DOWN, BAL_ADMIN_ENABLED, 0, T0);
  bal_tried_clear(&t);
  cr_assert_eq(bal_select(&p, &t, BAL_NO_KEY, T0, &pk), -EHOSTDOWN);
  cr_assert_eq(t.n, 0);
  bal_pool_free(&p);

  conf.panic = 1;
  pool_make(&p, &bal_round_robin, &conf, w, 3, "", NULL, NULL);
  set_down(&p, 'a', 1);
  make_failing(&p, 'b', T0);
  set_state(&p, 'c', BAL_HEALTH_DOWN, BAL_ADMIN_DRAINING, 0, T0);
  picks(&p, 6, got);
  /* Panic: every enabled server whatever its health; c is draining, so never. */
  cr_assert_str_eq(got, "ababab");
  bal_tried_clear(&t);
  cr_assert_eq(bal_select(&p, &t, BAL_NO_KEY, T0, &pk), 0);
  cr_assert_eq(bal_select(&p, &t, BAL_NO_KEY, T0, &pk), 0);
  cr_assert_eq(bal_select(&p, &t, BAL_NO_KEY, T0, &pk), -EALREADY, "both tried");
  set_state(&p, 'a', BAL_HEALTH_DOWN, BAL_ADMIN_DISABLED, 0, T0);
  set_state(&p, 'b', BAL_HEALTH_UP, BAL_ADMIN_DISABLED, 0, T0);
  bal_tried_clear(&t);
  cr_assert_eq(bal_select(&p, &t, BAL_NO_KEY, T0, &pk), -EHOSTDOWN, "nothing enabled");
  bal_pool_free(&p);
}

Test(balancer, panic_is_not_used_while_a_usable_server_exists) {
  struct bal_conf conf = {.panic = 1};
  struct bal_pool p;
  unsigned w[] = {1, 1};
  struct bal_tried t;
  struct bal_pick pk;

  pool_make(&p, &bal_round_robin, &conf, w, 2, "", NULL, NULL);
  set_down(&p, 'a', 1);
  bal_tried_clear(&t);
  cr_assert_eq(bal_select(&p, &t, BAL_NO_KEY, T0, &pk), 0);
  cr_assert_eq(pk.idx, 1);
  /* b was tried: the retry must not go to a, which is down. */
  cr_assert_eq(bal_select(&p, &t, BAL_NO_KEY, T0, &pk), -EALREADY);
  bal_pool_free(&p);
}

Test(balancer, a_retry_goes_back_to_the_only_usable_server_only_when_allowed) {
  struct bal_pool p;
  unsigned w[] = {1, 1};
  struct bal_tried t;
  struct bal_pick pk;

  pool_make(&p, &bal_round_robin, NULL, w, 2, "", NULL, NULL);
  set_down(&p, 'a', 1);
  bal_tried_clear(&t);
  cr_assert_eq(bal_select(&p, &t, BAL_NO_KEY, T0, &pk), 0);
  bal_release(&p, &pk, BAL_FAILED, T0);
  cr_assert_eq(bal_select(&p, &t, BAL_NO_KEY, T0, &pk), -EALREADY);
  t.allow_repeat = 1;
  cr_assert_eq(bal_select(&p, &t, BAL_NO_KEY, T0, &pk), 0);
  cr_assert_eq(pk.idx, 1);
  cr_assert_eq(t.n, 2);
  bal_release(&p, &pk, BAL_OK, T0);
  set_down(&p, 'a', 0); /* two usable servers, both tried */
  cr_assert_eq(bal_select(&p, &t, BAL_NO_KEY, T0, &pk), 0);
  cr_assert_eq(pk.idx, 0, "a was never tried");
  cr_assert_eq(bal_select(&p, &t, BAL_NO_KEY, T0, &pk), -EALREADY);
  bal_pool_free(&p);
}

Test(balancer, a_request_has_at_most_bal_max_tries_attempts) {
  struct bal_pool p;
  unsigned w[] = {1};
  struct bal_tried t;
  struct bal_pick pk;

  pool_make(&p, &bal_round_robin, NULL, w, 1, "", NULL, NULL);
  bal_tried_clear(&t);
  t.allow_repeat = 1;
  for (int i = 0; i < BAL_MAX_TRIES; i++) {
    cr_assert_eq(bal_select(&p, &t, BAL_NO_KEY, T0, &pk), 0);
    bal_release(&p, &pk, BAL_FAILED, T0);
  }
  cr_assert_eq(bal_select(&p, &t, BAL_NO_KEY, T0, &pk), -EALREADY);
  bal_pool_free(&p);
}

Test(balancer, tried_servers_are_skipped_by_every_algorithm) {
  const struct bal_ops *ops[] = {&bal_round_robin, &bal_least_conn, &bal_random2, &bal_hash};
  unsigned w[] = {1, 2, 1, 3};

  for (size_t k = 0; k < sizeof(ops) / sizeof(ops[0]); k++) {
    struct bal_pool p;
    pool_make(&p, ops[k], NULL, w, 4, "", NULL, NULL);
    for (int r = 0; r < 200; r++) {
      struct bal_tried t;
      struct bal_pick pk;
      unsigned seen = 0;
      bal_tried_clear(&t);
      for (int a = 0; a < 4; a++) {
        cr_assert_eq(bal_select(&p, &t, bal_hash_key(&r, sizeof(r)), T0, &pk), 0);
        cr_assert_not(seen & (1u << pk.idx), "%s picked %d twice", ops[k]->name, pk.idx);
        seen |= 1u << pk.idx;
      }
      cr_assert_eq(bal_select(&p, &t, bal_hash_key(&r, sizeof(r)), T0, &pk), -EALREADY);
      for (int i = 0; i < 4; i++) /* the picks are held: counts only grow */
        cr_assert_eq(*p.servers[i].active, (unsigned)r + 1);
    }
    bal_pool_free(&p);
  }
}

Test(balancer, coming_back_up_by_the_checks_clears_passive_failures) {
  struct bal_server_state st = {.id = sid('a'), .failing_until_ms = T0 + 10000};
  struct bal_pool p;
  unsigned w[] = {1, 1};

  pool_make(&p, &bal_round_robin, NULL, w, 2, "", NULL, NULL);
  cr_assert_eq(bal_pool_apply(&p, &st, 1, T0), 1);
  cr_assert_eq(pick1(&p, BAL_NO_KEY, T0, BAL_OK), 'b', "a is failing");
  st.health = BAL_HEALTH_DOWN;
  cr_assert_eq(bal_pool_apply(&p, &st, 1, T0), 1);
  /* Back up with no failing time of its own: the worker's passive verdict goes too. */
  st.health = BAL_HEALTH_UP;
  st.failing_until_ms = 0;
  cr_assert_eq(bal_pool_apply(&p, &st, 1, T0 + 1), 1);
  cr_assert_eq(p.servers[0].fails.until_ms, 0);
  cr_assert_eq(p.servers[0].fails.count, 0);
  /* A record that leaves health as it is only ever extends failing. */
  st.failing_until_ms = T0 + 5000;
  cr_assert_eq(bal_pool_apply(&p, &st, 1, T0 + 2), 1);
  st.failing_until_ms = 0;
  cr_assert_eq(bal_pool_apply(&p, &st, 1, T0 + 3), 1);
  cr_assert_eq(p.servers[0].fails.until_ms, T0 + 5000);
  bal_pool_free(&p);
}
