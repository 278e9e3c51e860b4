/* Load balancing: pools of servers with stable ids and states, algorithms behind one vtable. */
#ifndef LBP_BALANCER_H
#define LBP_BALANCER_H

/*
 * A pool is one upstream's servers as one worker sees them. Who does what:
 *
 * 1. The master owns the truth about every server: its stable id (bal_server_id), health
 *    (active checks), admin state (drain/disable/enable), runtime weight, and the passive
 *    failures workers report. It sends them as struct bal_server_state records; each worker
 *    calls bal_pool_apply. A worker started later gets the whole table once, at start.
 * 2. A worker picks a server per attempt with bal_select (hot path: no allocation, no
 *    syscall; round_robin is one atomic fetch-add) and ends the attempt with bal_release,
 *    saying whether the server failed. bal_release returns 1 when that failure made the
 *    server "failing" in this worker (max_fails within fail_timeout): the worker reports it
 *    to the master, which broadcasts it (failing_until_ms) so the other workers skip it too.
 * 3. DNS changes (a name now has other addresses) rebuild a pool in place with
 *    bal_pool_rebuild: servers whose id stays keep every per-server state; picks made before
 *    the rebuild are still released correctly (by id). A pool may have no server at all (its
 *    names resolve to nothing yet, or any more): every selection is then -EHOSTDOWN.
 *
 * Selection, for every algorithm (balancer.c drives it, the algorithm picks within a tier):
 *   - the primary tier: servers without `backup`, health up, admin enabled, not failing here;
 *   - else the backup tier: the same among `backup: true` servers;
 *   - else, with `panic`, every admin-enabled server whatever its health (Envoy's panic mode);
 *   - servers already in `tried` (this request's earlier attempts) are skipped everywhere.
 * A server in slow start takes a share that ramps linearly from 10 % to 100 % of its weight.
 * Nothing usable: -EHOSTDOWN (answer 503 with Retry-After). Usable servers exist but all were
 * tried: -EALREADY (answer with the last attempt's error, 502 or 504).
 *
 * Times are milliseconds on one monotonic clock shared by every process of the host (uv_now
 * of a libuv loop, which is CLOCK_MONOTONIC): the master's times mean the same in workers.
 * Errors are 0 or a negative errno (the UV_E* values on unix).
 */

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define BAL_MAX_SERVERS 256    /* per pool (server indexes fit a byte) */
#define BAL_MAX_TRIES   11     /* attempts per request: the first + at most 10 retries */
#define BAL_ONE         65536u /* fixed-point 1.0 for shares (slow start) */

/* ---- server identity ---- */

/* A server's stable id: a 64-bit hash of its upstream's name and its address as text, never
 * 0. Pass the address as configured ("host:port", "[v6]:port") for a literal server, or the
 * resolved "ip:port" for each address a DNS name yields. The same inputs give the same id in
 * every process and across reloads, so state follows the server, not its array index. */
uint64_t bal_server_id(const char *upstream, const char *address);

/* The hash of a balancing key (client address, header value, URI) for bal_select; never 0.
 * The caller extracts the key; only algorithms with BAL_USES_KEY (hash) read it. */
uint64_t bal_hash_key(const void *data, size_t len);
#define BAL_NO_KEY 0 /* no key (a header that is absent): hash spreads such requests evenly */

/* ---- states ---- */

enum bal_health {
  BAL_HEALTH_UP = 0, /* the initial state, and the state with no active checks */
  BAL_HEALTH_DOWN,   /* active checks failed `fall` times in a row (set by the master) */
};

enum bal_admin {
  BAL_ADMIN_ENABLED = 0,
  BAL_ADMIN_DRAINING, /* no new requests; those in flight finish (admin API) */
  BAL_ADMIN_DISABLED, /* no new requests; never used, not even in panic (admin API) */
};

/* One server's shared state, as the master broadcasts it and workers apply it. */
struct bal_server_state {
  uint64_t id;
  uint64_t up_since_ms;      /* when it last became usable (slow start starts there); 0: when
                                bal_pool_apply sees it become usable, else long ago */
  uint64_t failing_until_ms; /* passive failures reported by some worker: skip until then */
  uint16_t weight;           /* 1..1000 set at run time, or 0 for the configured weight */
  uint8_t health;            /* enum bal_health */
  uint8_t admin;             /* enum bal_admin */
};

/* Passive failure accounting of one server in one worker (pure functions in health.c). */
struct bal_fails {
  uint64_t window_ms; /* when the current counting window opened (0: none open) */
  uint64_t until_ms;  /* failing until then (0: never was) */
  uint32_t count;     /* failures in the window */
};

/* One server of a pool. Read freely (stats, admin page); change only through the API. */
struct bal_server {
  uint64_t id;
  _Atomic uint32_t *active; /* requests in flight on it, all workers (shared) or this one */
  _Atomic uint32_t own_active;
  uint32_t inflight;    /* requests in flight on it from this worker */
  uint16_t weight;      /* effective: cfg_weight, or what the admin set */
  uint16_t cfg_weight;  /* from the configuration */
  uint8_t weight_set;   /* the admin set `weight` (survives a rebuild) */
  uint8_t backup;       /* gets traffic only when no primary is usable */
  uint8_t health;       /* enum bal_health */
  uint8_t admin;        /* enum bal_admin */
  uint64_t up_since_ms; /* slow start reference (0: no ramp) */
  struct bal_fails fails;
  uint64_t selected; /* attempts sent to it by this worker */
  uint64_t failed;   /* of which failed */
};

/* What the configuration says about one server when a pool is built or rebuilt. */
struct bal_server_conf {
  uint64_t id;              /* bal_server_id(); unique within the pool */
  unsigned weight;          /* 1..1000 */
  int backup;               /* nonzero: a backup server */
  _Atomic uint32_t *shared; /* its in-flight counter in memory shared by all workers, or NULL
                               (counted in this pool only). A server kept across a rebuild
                               must keep its counter; a counter may be reused for another
                               server only once no worker can hold a pick of the old one. */
};

/* Per-upstream settings (config: panic, slow_start, max_fails, fail_timeout). */
struct bal_conf {
  int panic;                /* nothing usable: try every enabled server anyway */
  uint64_t slow_start_ms;   /* ramp after becoming usable; 0: none */
  unsigned max_fails;       /* failures within fail_timeout that make a server failing; 0: never */
  uint64_t fail_timeout_ms; /* the counting window, and how long a failing server is skipped */
};

/* ---- per-request state ---- */

/* The attempts of one request, by server id, so a retry skips them even across a rebuild.
 * Clear it when a request starts; bal_select adds every server it returns. */
struct bal_tried {
  uint64_t ids[BAL_MAX_TRIES];
  uint64_t pos;         /* where the first attempt landed in the rotation (a retry does not
                           move the shared rotation, so the next request is not shifted) */
  uint8_t n;            /* attempts so far */
  uint8_t allow_repeat; /* set by the caller: when every usable server was tried and there is
                           exactly one, bal_select may return it again */
};

static inline void bal_tried_clear(struct bal_tried *t) {
  t->n = 0;
  t->pos = 0;
  t->allow_repeat = 0;
}

static inline int bal_tried_has(const struct bal_tried *t, uint64_t id) {
  for (unsigned k = 0; k < t->n; k++)
    if (t->ids[k] == id)
      return 1;
  return 0;
}

/* The server one attempt went to; give it back to bal_release. */
struct bal_pick {
  uint64_t id;
  _Atomic uint32_t *shared; /* its shared in-flight counter, or NULL */
  uint32_t version;         /* pool->version when picked (idx is valid while it matches) */
  int idx;                  /* index in pool->servers at that version */
};

/* How an attempt ended, for passive health. */
enum bal_outcome {
  BAL_OK = 0,    /* the server answered (any status the caller does not count as failure) */
  BAL_FAILED,    /* connect failure, reset, timeout, or a status the caller counts (502..) */
  BAL_CANCELLED, /* neither: the client went away, a bad request body, ... */
};

/* ---- pools and algorithms ---- */

enum bal_tier { BAL_TIER_PRIMARY = 0, BAL_TIER_BACKUP, BAL_TIER_PANIC, BAL_TIERS };

/* The servers an algorithm chooses from in one tier, by shared state only (health, admin,
 * backup, weight); the per-worker and per-request exclusions are applied at selection. Every
 * worker computes the same tiers from the same states, so structures built from them (the
 * round-robin schedule, the Maglev table) are identical in every worker. */
struct bal_tier_set {
  uint8_t *members; /* server indexes, in pool order */
  unsigned n;
};

struct bal_pool;
struct bal__sel; /* one selection in progress (internal.h) */

#define BAL_USES_KEY 1u /* select reads the key: callers compute bal_hash_key only then */

/* One algorithm: a const table, one per file. `priv` in the pool is its state. */
struct bal_ops {
  const char *name; /* as in the config: round_robin, least_conn, random2, hash */
  unsigned flags;
  /* Allocates the algorithm's state. 0 or -ENOMEM. */
  int (*init)(struct bal_pool *p);
  /* The tiers changed (membership or weights): rebuild what depends on them. On failure
   * (-ENOMEM) the old structures stay in use; selection stays correct, only less even. */
  int (*update)(struct bal_pool *p);
  /* Picks a server of tier s->tier that bal__accept() takes, or returns -1. */
  int (*select)(struct bal_pool *p, struct bal__sel *s);
  void (*destroy)(struct bal_pool *p);
};

extern const struct bal_ops bal_round_robin; /* smooth weighted RR on one shared rotation */
extern const struct bal_ops bal_least_conn;  /* fewest in flight (all workers) per weight */
extern const struct bal_ops bal_random2;     /* best of two weighted random choices */
extern const struct bal_ops bal_hash;        /* consistent hashing (Maglev) of the key */

/* Finds an algorithm by its config name; NULL if unknown. */
const struct bal_ops *bal_find(const char *name);

struct bal_pool {
  const struct bal_ops *ops;
  struct bal_conf conf;
  struct bal_server *servers;
  unsigned n;
  uint32_t version; /* changes at every rebuild: picks of other versions are found by id */
  struct bal_tier_set tiers[BAL_TIERS];
  /* Rotation position shared by all workers when the master provides it (round_robin, and
   * least_conn's tie breaking), else `own_counter`. */
  _Atomic uint64_t *counter;
  _Atomic uint64_t own_counter;
  uint64_t rng; /* random2's per-worker generator state */
  void *priv;
};

/* Builds a pool of n servers (0..BAL_MAX_SERVERS, copied; `servers` may be NULL when n is 0)
 * using `ops`, every server up and enabled. An empty pool is valid (an upstream whose host
 * names resolve to nothing yet): bal_select then returns -EHOSTDOWN, whatever the algorithm
 * and even with panic. `shared_counter` may be NULL. 0, -EINVAL (n over BAL_MAX_SERVERS,
 * weight not 1..1000, id 0 or repeated) or -ENOMEM; on error the pool is left zeroed. The pool may
 * point into itself: keep it where it was built (embed it, do not copy it). Not thread-safe: one
 * pool belongs to one worker's loop; only the shared counters are touched by other processes. */
int bal_pool_init(struct bal_pool *p, const struct bal_ops *ops, const struct bal_conf *conf,
                  const struct bal_server_conf *servers, unsigned n,
                  _Atomic uint64_t *shared_counter);

/* Replaces the server set (DNS changes), with 0..BAL_MAX_SERVERS servers. Servers whose id
 * stays keep their state (health, admin, runtime weight, passive failures, slow start,
 * counters, own in-flight count); new ones start up and enabled; `version` changes. A server
 * that leaves and comes back later starts afresh. Errors as bal_pool_init; on error the pool
 * is unchanged. */
int bal_pool_rebuild(struct bal_pool *p, const struct bal_server_conf *servers, unsigned n);

void bal_pool_free(struct bal_pool *p);

/* Seeds random2's generator (tests; workers are seeded from pid and time at init). */
void bal_pool_seed(struct bal_pool *p, uint64_t seed);

/* Applies the master's states. Records whose id is not in the pool are ignored (another
 * pool's, or a server already gone). A record turning a server usable with up_since_ms 0
 * starts its slow start at now_ms. failing_until_ms only ever extends this worker's own,
 * except that a record bringing a server's health from down to up clears its passive failures
 * (the active checks say it is back).
 * Returns how many records matched, or -ENOMEM (states applied; see bal_ops.update). */
int bal_pool_apply(struct bal_pool *p, const struct bal_server_state *states, size_t n,
                   uint64_t now_ms);

/* The state of server `idx` as a record (what a worker reports, what the admin page shows). */
void bal_pool_state(const struct bal_pool *p, unsigned idx, struct bal_server_state *out);

/* The index of the server with this id, or -ENOENT. */
int bal_pool_find(const struct bal_pool *p, uint64_t id);

/* Picks a server for one attempt of a request, skipping and then recording `tried`. `key` is
 * bal_hash_key() of the request's key when ops->flags has BAL_USES_KEY (else ignored; may be
 * BAL_NO_KEY). Returns 0 and fills *out, -EHOSTDOWN (no usable server: 503), or -EALREADY
 * (every usable server was tried, or BAL_MAX_TRIES reached). The server's in-flight counts
 * go up by one until bal_release. */
int bal_select(struct bal_pool *p, struct bal_tried *tried, uint64_t key, uint64_t now_ms,
               struct bal_pick *out);

/* Ends an attempt picked by bal_select. Returns 1 when this failure made the server failing
 * in this worker (report it to the master with bal_pool_state), else 0. */
int bal_release(struct bal_pool *p, const struct bal_pick *pick, enum bal_outcome outcome,
                uint64_t now_ms);

/* ---- pure arithmetic (health.c, retry.c), unit-tested on their own ---- */

/* Passive failures: records a failure at now_ms. A window opens at a failure when none is
 * open and lasts fail_timeout_ms; the max_fails-th failure within it makes the server failing
 * until now + fail_timeout_ms. Returns 1 when this failure did that, else 0. After a failing
 * period a server gets traffic again "on probation": one more failure before any success
 * makes it failing again. max_fails 0: never failing. */
int bal_fails_record(struct bal_fails *f, unsigned max_fails, uint64_t fail_timeout_ms,
                     uint64_t now_ms);
/* A success closes the window and ends probation. */
void bal_fails_success(struct bal_fails *f);
/* 1 while the server is to be skipped. */
static inline int bal_fails_failing(const struct bal_fails *f, uint64_t now_ms) {
  return f->until_ms > now_ms;
}

/* Slow start: the share of its weight a server takes at now_ms, in BAL_ONE units, having
 * become usable at since_ms (0: long ago): BAL_ONE/10 at since_ms rising linearly to BAL_ONE
 * at since_ms + slow_start_ms; BAL_ONE when slow_start_ms is 0 or the ramp is over. */
uint32_t bal_slow_start_share(uint64_t since_ms, uint64_t slow_start_ms, uint64_t now_ms);

/* Active checks (run by the master): consecutive results against rise/fall thresholds. */
struct bal_check {
  uint8_t health;  /* enum bal_health; start with BAL_HEALTH_UP */
  uint16_t streak; /* consecutive results contrary to `health` */
};
/* Records one check result (ok nonzero = passed). Returns 1 when health flipped: up after
 * `rise` passes in a row, down after `fall` failures in a row. */
int bal_check_record(struct bal_check *c, int ok, unsigned rise, unsigned fall);
/* The delay before a server's next check: interval_ms spread by up to ±jitter_pct percent,
 * using `random` (any 64-bit random value), so checks of many servers do not align. */
uint64_t bal_check_delay(uint64_t interval_ms, unsigned jitter_pct, uint64_t random);

/* Retry budget: per upstream, at most `percent` % extra attempts over the requests of a
 * sliding window of BAL_BUDGET_WINDOW_MS (BAL_BUDGET_SLOTS slots of equal length), plus
 * BAL_BUDGET_MIN_RETRIES per window so a quiet upstream can still retry at all. */
#define BAL_BUDGET_WINDOW_MS   10000
#define BAL_BUDGET_SLOTS       10
#define BAL_BUDGET_MIN_RETRIES 10
struct bal_budget {
  uint64_t slot_start_ms; /* start of the newest slot */
  unsigned newest;        /* its index in the rings */
  uint32_t requests[BAL_BUDGET_SLOTS];
  uint32_t retries[BAL_BUDGET_SLOTS];
};
/* Counts one request (its first attempt). */
void bal_budget_request(struct bal_budget *b, uint64_t now_ms);
/* Returns 1 and counts a retry if the budget allows one more now, else 0. */
int bal_budget_retry(struct bal_budget *b, unsigned percent, uint64_t now_ms);

/* Why an attempt failed (the retry_on vocabulary; config's retry_on bits are 1 << these). */
enum bal_failure {
  BAL_FAIL_CONNECT = 0, /* connect failed or timed out */
  BAL_FAIL_RESET,       /* reset or closed before any response byte */
  BAL_FAIL_TIMEOUT,     /* no response byte within upstream_response */
  BAL_FAIL_HTTP_502,    /* the server answered 502 (its head held back, not forwarded) */
  BAL_FAIL_HTTP_503,    /* ... 503 */
  BAL_FAIL_HTTP_504,    /* ... 504 */
};

/* Everything the failure funnel knows about an attempt that failed. */
struct bal_retry_facts {
  enum bal_failure failure;
  unsigned attempts;    /* attempts made so far, this one included */
  int idempotent;       /* GET, HEAD, OPTIONS, TRACE, PUT, DELETE */
  int request_sent;     /* some byte of the request was written to the server */
  int body_gone;        /* body bytes were forwarded and are no longer held: they cannot be
                           sent again */
  int response_started; /* some byte of a response went to the client */
};

enum bal_retry_verdict {
  BAL_RETRY = 0,       /* retry (on another server: bal_select with the same tried) */
  BAL_RETRY_NOT_ON,    /* this failure is not in retry_on */
  BAL_RETRY_EXHAUSTED, /* `retries` retries were made already */
  BAL_RETRY_UNSAFE,    /* not idempotent and (part of) the request was sent, or the body
                          cannot be sent again */
  BAL_RETRY_TOO_LATE,  /* the client already has part of a response */
  BAL_RETRY_NO_BUDGET, /* the upstream's retry budget is spent */
};

/* The one retry decision. `retry_on` is a mask of 1 << enum bal_failure. The budget is only
 * charged when the answer is BAL_RETRY. */
enum bal_retry_verdict bal_retry_decide(const struct bal_retry_facts *f, unsigned retries,
                                        unsigned retry_on, struct bal_budget *budget,
                                        unsigned budget_pct, uint64_t now_ms);

/* The verdict's name for logs ("retry", "not in retry_on", ...). */
const char *bal_retry_verdict_name(enum bal_retry_verdict v);

#endif
