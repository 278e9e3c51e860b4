/* The data plane's counters as it writes them: one block per worker, one per upstream server, in
 * memory the master reads (the generation's shared memory; see workers/shm.h). */
#ifndef LBP_STATS_H
#define LBP_STATS_H

/*
 * 1. A worker block (struct px_stats) has exactly one writer, the worker of its slot: counters
 *    go up by a relaxed load and a relaxed store (no locked instruction, no syscall), and the
 *    master reads them with relaxed loads whenever it is asked. A counter is never reset while
 *    its generation lives: a worker restarted in the slot goes on from the value its
 *    predecessor left.
 * 2. A server block (struct px_server_stats) is shared by every worker of the generation: its
 *    counters are relaxed atomic read-modify-writes. `active` is the in-flight count the
 *    balancer reads (least_conn, random2) across workers.
 * 3. Latency histograms are log-linear (px_hist_bounds_us): nine bounds per decade from 10 us to
 *    100 s, so a percentile read from them is within a bucket's width (at most 50 % of its
 *    lower bound, usually 20-25 %).
 */

#include <stdatomic.h>
#include <stdint.h>

/* A worker's counters (struct px_stats.c). The metric table (workers/metrics.c) names them. */
enum px_stat {
  PX_ST_ACCEPTED,          /* client connections taken (a handed-over one is not new) */
  PX_ST_HANDED_OVER,       /* idle connections given back to the master while draining */
  PX_ST_REQUESTS,          /* HTTP requests that ended (every one the access log sees) */
  PX_ST_STATUS_1XX,        /* ... by the status sent to the client (no answer counts as */
  PX_ST_STATUS_2XX,        /*     499, nginx's "client closed request") */
  PX_ST_STATUS_3XX,        /*     */
  PX_ST_STATUS_4XX,        /*     */
  PX_ST_STATUS_5XX,        /*     */
  PX_ST_BYTES_IN,          /* request bytes read from clients (heads and bodies) */
  PX_ST_BYTES_OUT,         /* response bytes written to clients */
  PX_ST_CONNECT_ERRORS,    /* upstream connects that failed or timed out */
  PX_ST_UPSTREAM_TIMEOUTS, /* upstream responses that did not come in time (504 or cut) */
  PX_ST_CLIENT_TIMEOUTS,   /* clients too slow with a head (408) or a body */
  PX_ST_RETRIES,           /* attempts on another server after a failure */
  PX_ST_CUT,               /* responses cut short (an upstream failure once bytes had gone) */
  PX_ST_REBALANCED,        /* keep-alive connections given back to rebalance requests */
  PX_ST_COUNT
};

#define PX_HIST_BOUNDS  64
#define PX_HIST_BUCKETS (PX_HIST_BOUNDS + 1) /* the last one: above the last bound */

/* Upper bounds (inclusive, microseconds) of the histogram buckets, increasing. */
extern const uint64_t px_hist_bounds_us[PX_HIST_BOUNDS];

struct px_hist {
  _Atomic uint64_t bucket[PX_HIST_BUCKETS]; /* observations per bucket (not cumulative) */
  _Atomic uint64_t sum_us;
};

#define PX_BEAT_MS 100

/* One worker slot's block. */
struct px_stats {
  _Atomic uint64_t c[PX_ST_COUNT];
  _Atomic uint64_t active;      /* gauge: client connections open in this worker */
  _Atomic uint64_t beat_ms;     /* the worker's loop time (uv_now), every PX_BEAT_MS */
  struct px_hist request_time;  /* first byte of a request to its end */
  struct px_hist upstream_time; /* an attempt's start (connect included) to its response head */
};

/* One upstream server's block, shared by every worker of a generation: one cache line, so
 * that two servers never share one (the blocks lie in an array). */
struct px_server_stats {
  _Alignas(64) _Atomic uint64_t id;  /* bal_server_id; 0: a free block (the master assigns) */
  _Atomic uint64_t requests;         /* attempts sent to it */
  _Atomic uint64_t errors;           /* attempts it failed (connect, reset, timeout, 5xx) */
  _Atomic uint64_t last_failure_ms;  /* wall clock (ms since the epoch), 0: never */
  _Atomic uint64_t failing_until_ms; /* monotonic (uv_now): a worker skips it until then */
  _Atomic uint32_t active;           /* attempts in flight now, all workers */
};

/* Where one server's counters live for one worker: its block, and the worker's own share of
 * the block's `active` (so the master can take back what a crashed worker held). */
struct px_server_slot {
  struct px_server_stats *st;
  _Atomic uint32_t *mine;
};

/* Adds n to a counter this process alone writes. */
static inline void px_stat_add(_Atomic uint64_t *c, uint64_t n) {
  atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n, memory_order_relaxed);
}

static inline uint64_t px_stat_get(const _Atomic uint64_t *c) {
  return atomic_load_explicit(c, memory_order_relaxed);
}

/* The bucket of a value (binary search over px_hist_bounds_us). */
unsigned px_hist_bucket(uint64_t us);

/* Records one observation (single writer). */
static inline void px_hist_add(struct px_hist *h, uint64_t us) {
  px_stat_add(&h->bucket[px_hist_bucket(us)], 1);
  px_stat_add(&h->sum_us, us);
}

/* The value below which `q` (0..1) of the observations in `buckets` fall, interpolated within
 * its bucket; 0 with no observation. Above the last bound: the last bound. */
uint64_t px_hist_quantile(const uint64_t *buckets, double q);

#endif
