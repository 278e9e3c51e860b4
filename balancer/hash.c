/* hash: consistent hashing of a request key (client address, header, URI) with Maglev tables. */

/*
 * Maglev (Eisenbud et al., NSDI 2016, section 3.4): every server has its own permutation of
 * the M slots of a lookup table, given by an offset and a skip derived from its stable id
 * (slot j of its preference list is (offset + j * skip) mod M; M is prime, so any skip visits
 * every slot). Servers take turns claiming their next preferred slot that is still free until
 * the table is full. A key goes to table[hash(key) mod M]. Each server ends up with M/N slots
 * (within one), and when a server joins or leaves, the others' preference lists are unchanged,
 * so only about 1/N of the keys move (a few more than the minimum: the test bounds it).
 *
 * Weights (as Envoy does it): a server of weight w takes a turn in round k only while it has
 * claimed fewer than k * w / max_weight slots, so it claims slots in proportion to its weight.
 *
 * M = 65537 for every pool whatever its size: a table size that depended on the number of
 * servers would remap every key when that number crossed a threshold. Entries are server
 * indexes (one byte), so a table is 64 KiB, one per tier, rebuilt when the tiers change
 * (health, admin, weights: shared states, the same in every worker); a build is a few
 * milliseconds. Exclusions that are per worker or per request (failing here, already tried)
 * do not rebuild: the key is hashed again (up to BAL__DRAWS times), so it lands on the same
 * fallback server in every worker. Slow start does not apply: ramping a weight in a consistent
 * hash would move keys back and forth. Requests without a key (BAL_NO_KEY) are spread by the
 * pool's rotation.
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define MAGLEV_M 65537u

struct hash_state {
  uint8_t *tables[BAL_TIERS]; /* NULL for an empty tier */
};

/* Fills table t from tier `tier`'s members; `full` is scratch of MAGLEV_M bytes. */
static void maglev_fill(uint8_t *table, uint8_t *full, const struct bal_pool *p,
                        const struct bal_tier_set *t) {
  uint32_t next[BAL_MAX_SERVERS], skip[BAL_MAX_SERVERS], taken[BAL_MAX_SERVERS];
  uint64_t maxw = 1;
  uint32_t filled = 0;

  memset(full, 0, MAGLEV_M);
  for (unsigned k = 0; k < t->n; k++) {
    const struct bal_server *v = &p->servers[t->members[k]];
    next[k] = (uint32_t)(bal__mix64(v->id ^ 0x6d61676c6576ull) % MAGLEV_M);
    skip[k] = (uint32_t)(bal__mix64(v->id ^ 0x736b6970ull) % (MAGLEV_M - 1)) + 1;
    taken[k] = 0;
    maxw = v->weight > maxw ? v->weight : maxw;
  }
  for (uint64_t round = 1; filled < MAGLEV_M; round++) {
    for (unsigned k = 0; k < t->n && filled < MAGLEV_M; k++) {
      uint32_t c = next[k];
      if ((uint64_t)taken[k] * maxw >= round * p->servers[t->members[k]].weight)
        continue; /* claimed its weight's worth for this round */
      while (full[c])
        c = (uint32_t)((c + skip[k]) % MAGLEV_M);
      full[c] = 1;
      table[c] = t->members[k];
      next[k] = (uint32_t)((c + skip[k]) % MAGLEV_M);
      taken[k]++;
      filled++;
    }
  }
}

static void tables_free(uint8_t *tables[BAL_TIERS]) {
  for (unsigned t = 0; t < BAL_TIERS; t++) {
    free(tables[t]);
    tables[t] = NULL;
  }
}

static int hash_init(struct bal_pool *p) {
  p->priv = calloc(1, sizeof(struct hash_state));
  return p->priv != NULL ? 0 : -ENOMEM;
}

static int hash_update(struct bal_pool *p) {
  struct hash_state *st = p->priv;
  uint8_t *next[BAL_TIERS] = {NULL}, *full = malloc(MAGLEV_M);
  int rc = full != NULL ? 0 : -ENOMEM;

  for (unsigned t = 0; t < BAL_TIERS && rc == 0; t++) {
    if (p->tiers[t].n == 0)
      continue;
    if ((next[t] = malloc(MAGLEV_M)) == NULL)
      rc = -ENOMEM;
    else
      maglev_fill(next[t], full, p, &p->tiers[t]);
  }
  free(full);
  if (rc != 0) {
    tables_free(next);
    return rc;
  }
  tables_free(st->tables);
  memcpy(st->tables, next, sizeof(next));
  return 0;
}

static int hash_select(struct bal_pool *p, struct bal__sel *s) {
  struct hash_state *st = p->priv;
  const uint8_t *table = st->tables[s->tier];
  uint64_t key;

  if (table == NULL)
    return -1;
  key = s->key != BAL_NO_KEY ? s->key : bal__mix64(bal__sel_pos(p, s));
  for (unsigned k = 0; k < BAL__DRAWS; k++) {
    uint64_t h = k == 0 ? key : bal__mix64(key + k * BAL__GOLDEN);
    unsigned i = table[h % MAGLEV_M];
    if (bal__accept(p, s, i) > 0)
      return (int)i;
  }
  return bal__scan(p, s, key);
}

static void hash_destroy(struct bal_pool *p) {
  struct hash_state *st = p->priv;

  if (st != NULL)
    tables_free(st->tables);
  free(st);
  p->priv = NULL;
}

const struct bal_ops bal_hash = {
    .name = "hash",
    .flags = BAL_USES_KEY,
    .init = hash_init,
    .update = hash_update,
    .select = hash_select,
    .destroy = hash_destroy,
};
