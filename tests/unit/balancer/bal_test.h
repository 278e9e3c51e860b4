/* Helpers shared by the balancer unit tests: pools of servers named a, b, c, ... and pick strings.
 */
#ifndef LBP_BAL_TEST_H
#define LBP_BAL_TEST_H

#include "balancer.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#define T0 1000000 /* a "now" well past 0, which bal_server_state uses as "not set" */

/* The id of server `name` ("a", "b", ...) of upstream "app". */
static inline uint64_t sid(char name) {
  char addr[32];
  snprintf(addr, sizeof(addr), "10.0.0.%d:80", name - 'a' + 1);
  return bal_server_id("app", addr);
}

/* Builds a pool of servers a, b, c... with these weights; `backups` names the backup servers
 * ("" for none). `shared` is NULL or one counter per server. */
static inline void pool_make(struct bal_pool *p, const struct bal_ops *ops,
                             const struct bal_conf *conf, const unsigned *weights, unsigned n,
                             const char *backups, _Atomic uint32_t *shared,
                             _Atomic uint64_t *counter) {
  struct bal_server_conf sc[BAL_MAX_SERVERS];
  struct bal_conf none = {0};

  for (unsigned i = 0; i < n; i++) {
    sc[i].id = sid((char)('a' + i));
    sc[i].weight = weights[i];
    sc[i].backup = strchr(backups, 'a' + (int)i) != NULL;
    sc[i].shared = shared != NULL ? &shared[i] : NULL;
  }
  cr_assert_eq(bal_pool_init(p, ops, conf != NULL ? conf : &none, sc, n, counter), 0);
  bal_pool_seed(p, 42);
}

/* Sets server `name`'s shared state as the master would. */
static inline void set_state(struct bal_pool *p, char name, int health, int admin, unsigned weight,
                             uint64_t now) {
  struct bal_server_state st = {.id = sid(name),
                                .health = (uint8_t)health,
                                .admin = (uint8_t)admin,
                                .weight = (uint16_t)weight};
  cr_assert_eq(bal_pool_apply(p, &st, 1, now), 1);
}

static inline void set_down(struct bal_pool *p, char name, int down) {
  set_state(p, name, down ? BAL_HEALTH_DOWN : BAL_HEALTH_UP, BAL_ADMIN_ENABLED, 0, T0);
}

/* One request, one attempt: the server's letter ('-' when none), released with `outcome`. */
static inline char pick1(struct bal_pool *p, uint64_t key, uint64_t now, int outcome) {
  struct bal_tried t;
  struct bal_pick pk;

  bal_tried_clear(&t);
  if (bal_select(p, &t, key, now, &pk) != 0)
    return '-';
  bal_release(p, &pk, (enum bal_outcome)outcome, now);
  return (char)('a' + pk.idx);
}

/* n requests of one attempt each, released OK, as a string of letters. */
static inline void picks(struct bal_pool *p, int n, char *out) {
  for (int i = 0; i < n; i++)
    out[i] = pick1(p, BAL_NO_KEY, T0, BAL_OK);
  out[n] = '\0';
}

/* How many times each server is picked over n requests released at once. */
static inline void histogram(struct bal_pool *p, int n, uint64_t now, unsigned *count) {
  memset(count, 0, sizeof(unsigned) * p->n);
  for (int i = 0; i < n; i++) {
    char c = pick1(p, BAL_NO_KEY, now, BAL_OK);
    cr_assert_neq(c, '-');
    count[c - 'a']++;
  }
}

/* Makes server `name` failing in this worker: max_fails failures in a row. */
static inline void make_failing(struct bal_pool *p, char name, uint64_t now) {
  struct bal_pick pk = {.id = sid(name), .version = p->version, .idx = name - 'a'};
  int became = 0;

  for (unsigned k = 0; k < p->conf.max_fails && !became; k++) {
    atomic_fetch_add(p->servers[name - 'a'].active, 1); /* as bal_select would have */
    became = bal_release(p, &pk, BAL_FAILED, now);
  }
  cr_assert(became, "server %c did not become failing", name);
}

/* A simulated load: every tick `per_tick` requests arrive, taken in turn by the pools (workers
 * sharing their in-flight counters), and each holds its server for service[server] ticks.
 * count[i] receives how many requests server i got; the result is the most requests any one
 * server had in flight at once. */
#define SIM_MAX_HELD 8192
static inline unsigned simulate(struct bal_pool **pools, int npools, const unsigned *service,
                                int ticks, int per_tick, unsigned *count) {
  static struct {
    int end, pool;
    struct bal_pick pk;
  } held[SIM_MAX_HELD];
  int nheld = 0, turn = 0;
  unsigned peak = 0;

  memset(count, 0, sizeof(unsigned) * pools[0]->n);
  for (int tick = 0; tick < ticks; tick++) {
    for (int k = 0; k < nheld;) {
      if (held[k].end > tick) {
        k++;
        continue;
      }
      bal_release(pools[held[k].pool], &held[k].pk, BAL_OK, T0);
      held[k] = held[--nheld];
    }
    for (int r = 0; r < per_tick; r++, turn = (turn + 1) % npools) {
      struct bal_tried t;
      bal_tried_clear(&t);
      cr_assert_lt(nheld, SIM_MAX_HELD);
      cr_assert_eq(bal_select(pools[turn], &t, BAL_NO_KEY, T0, &held[nheld].pk), 0);
      held[nheld].pool = turn;
      held[nheld].end = tick + (int)service[held[nheld].pk.idx];
      count[held[nheld].pk.idx]++;
      if (*pools[turn]->servers[held[nheld].pk.idx].active > peak)
        peak = *pools[turn]->servers[held[nheld].pk.idx].active;
      nheld++;
    }
  }
  for (int k = 0; k < nheld; k++)
    bal_release(pools[held[k].pool], &held[k].pk, BAL_OK, T0);
  return peak;
}

#endif
