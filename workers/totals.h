/* The master's view of the counters: a snapshot of every live generation's shared memory plus
 * the totals of the generations already gone, so that totals never go backwards. */
#ifndef LBP_TOTALS_H
#define LBP_TOTALS_H

#include "stats.h"

#include <stddef.h>
#include <stdint.h>

struct master;
struct generation;
struct worker;

/* One slot's counters (or the sum of all of them): what struct px_stats holds, as plain
 * numbers. */
struct totals_slot {
  uint64_t c[PX_ST_COUNT];
  uint64_t active;
  uint64_t hist[2][PX_HIST_BUCKETS]; /* 0: request time, 1: upstream response time */
  uint64_t hist_sum_us[2];
};

/* One upstream server, over every generation that had it. */
struct totals_server {
  uint64_t id;
  char upstream[128];
  char address[128];
  uint64_t requests, errors;
  uint64_t last_failure_ms; /* wall clock, 0: never */
  uint32_t active;          /* in flight now */
  uint8_t health, admin;    /* enum bal_health, enum bal_admin (from the newest generation) */
  uint16_t weight;          /* now: the admin API's, else the configured one (0: unknown) */
  uint8_t failing;          /* some worker skips it now (passive failures) */
  uint8_t live;             /* a live generation has it */
};

struct totals_snap {
  struct totals_slot total;
  struct totals_slot *slots; /* [nslots] */
  unsigned nslots;
  struct totals_server *servers; /* current generation's first, in config order */
  unsigned nservers;
};

/* The master's totals of retired generations (struct master.totals). */
struct totals;

/* Reads everything now. 0 or UV_ENOMEM; free with totals_snap_free. */
int totals_snapshot(struct master *m, struct totals_snap *out);
void totals_snap_free(struct totals_snap *s);

/* A generation is going away: its final counters join the totals kept in the master. */
void totals_fold(struct master *m, const struct generation *g);
/* A worker record is about to go: what it held in flight is taken out of the shared in-flight
 * counts, unless another worker of its generation serves its slot already. */
void totals_worker_gone(struct master *m, const struct worker *w);
/* Frees the totals (the master is done). */
void totals_free(struct master *m);

#endif
