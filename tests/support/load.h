/* Load generator for stability tests: threads of blocking HTTP/1.1 clients, outcomes by kind. */
#ifndef LBP_TEST_LOAD_H
#define LBP_TEST_LOAD_H

#include <stddef.h>
#include <stdint.h>

/*
 * Usage (a Criterion test; see tests/integration/test_load.c):
 *
 *   struct load l;
 *   struct load_opts o = {.port = T.px.port, .threads = 4, .keepalive = 1, .header = "X-Backend"};
 *   struct load_stats s;
 *   char text[2048];
 *   cr_assert_eq(load_start(&l, &o), 0);
 *   load_wait(&l, 500, 30000);                  // until 500 requests are answered 2xx
 *   ... reload, kill workers, ...
 *   load_stop(&l, &s);
 *   cr_assert_eq(load_failed(&s), 0, "%s", load_format(&s, text, sizeof(text)));
 *
 * Every request a thread attempts ends in exactly one outcome counted in struct load_stats, so
 * requests == ok + non2xx + refused + connect_errors + reset_fresh + reset_reused + truncated
 * + timeouts + protocol_errors + cut_at_stop, at any snapshot.
 */

#define LOAD_MAX_THREADS 64
#define LOAD_MAX_VALUES  32 /* distinct values of the watched header; more go to values_other */
#define LOAD_MAX_ERRORS  16 /* the first errors, with when they happened, for failure messages */

struct load_opts {
  uint16_t port;         /* 127.0.0.1:port */
  int threads;           /* client threads, each one connection at a time (default 1) */
  int keepalive;         /* 1: reuse a connection while the server keeps it; 0: one per request */
  const char *path;      /* request target (default "/") */
  const char *host;      /* Host header value (default "127.0.0.1") */
  const char *extra;     /* extra request header lines, each ending in "\r\n" (default none) */
  int pace_us;           /* pause between two requests of a thread (0: as fast as possible) */
  int io_timeout_ms;     /* connect, send and receive timeout of every socket (default 5000) */
  int connect_retry_ms;  /* pause after a failed connect (default 10): a proxy that is down is
                          * not hammered; each failed attempt counts as one failed request */
  const char *header;    /* response header whose distinct values are counted (e.g. "X-Backend") */
  const char *bind_ip;   /* source address (e.g. "127.0.0.2"; default any) */
  uint64_t max_requests; /* each thread stops after this many attempts (0: until load_stop) */
};

/* Kinds of failed requests, as counted in load_stats and named in load_format. */
enum load_kind {
  LOAD_REFUSED,      /* connect: ECONNREFUSED (nobody listening) */
  LOAD_CONNECT,      /* connect: any other error (timeout, unreachable, fds exhausted) */
  LOAD_RESET_FRESH,  /* EOF or reset before any response byte, on a new connection */
  LOAD_RESET_REUSED, /* the same on a reused keep-alive connection (a client may retry these) */
  LOAD_TRUNCATED,    /* the response started but did not complete */
  LOAD_TIMEOUT,      /* no progress within io_timeout_ms while sending or receiving */
  LOAD_PROTOCOL,     /* bytes that are not an HTTP response */
  LOAD_CUT_AT_STOP,  /* still in flight when load_stop gave up waiting and shut the socket */
  LOAD_NKINDS,
};

struct load_value {
  char value[64];
  uint64_t count;
  int64_t first_ms, last_ms; /* when a response first and last carried it, since load_start */
};

struct load_error {
  enum load_kind kind;
  int err;       /* the negative errno that ended the request (0 if none) */
  int64_t at_ms; /* since load_start */
  int thread;
};

struct load_stats {
  uint64_t requests;    /* attempted */
  uint64_t ok;          /* answered 2xx */
  uint64_t non2xx;      /* answered with another status; by status in `status` */
  uint64_t status[600]; /* responses by status code (2xx included) */
  uint64_t kinds[LOAD_NKINDS];
  uint64_t connections;    /* connections established */
  uint64_t max_latency_us; /* the slowest answered request, connect included */
  int64_t elapsed_ms;      /* from load_start to the snapshot or to load_stop */
  struct load_value
      values[LOAD_MAX_VALUES]; /* watched header: value -> responses, first seen first */
  size_t nvalues;
  uint64_t values_other;                     /* responses whose value did not fit in `values` */
  uint64_t values_missing;                   /* responses without the header */
  struct load_error errors[LOAD_MAX_ERRORS]; /* the first failures */
  size_t nerrors;
};

struct load_state; /* private to load.c */

struct load {
  struct load_state *st;
};

/* Starts o->threads client threads (the options are copied; strings must outlive the load).
 * 0, or a negative errno (then nothing runs and load_stop is not needed). */
int load_start(struct load *l, const struct load_opts *o);

/* Copies the counters as they are now into *out; the load goes on. */
void load_snapshot(struct load *l, struct load_stats *out);

/* Waits until `ok` 2xx responses were counted in all, or timeout_ms passed, or every thread
 * reached max_requests. Returns 1 if `ok` was reached, else 0. Polls with a deadline. */
int load_wait(struct load *l, uint64_t ok, int timeout_ms);

/* Waits until the counter of failure kind `kind` reaches `n` (same rules as load_wait). */
int load_wait_kind(struct load *l, enum load_kind kind, uint64_t n, int timeout_ms);

/* Stops every thread: each finishes the request in flight (bounded by io_timeout_ms), then the
 * threads are joined; one still stuck after io_timeout_ms + 1 s has its socket shut down and
 * its request counted as LOAD_CUT_AT_STOP. Fills *out (may be NULL) and frees everything.
 * Returns 0, or -ETIMEDOUT if a socket had to be shut down. */
int load_stop(struct load *l, struct load_stats *out);

/* Requests that did not get a 2xx answer (requests - ok). */
uint64_t load_failed(const struct load_stats *s);

/* Responses whose watched header had `value` (0 if never seen). */
uint64_t load_value_count(const struct load_stats *s, const char *value);

/* Name of a failure kind ("refused", "reset-reused", ...). */
const char *load_kind_name(enum load_kind kind);

/* The stats in a few lines of text for a failure message: totals, statuses, failure kinds,
 * header values, the first errors. Returns buf. */
const char *load_format(const struct load_stats *s, char *buf, size_t cap);

#endif
