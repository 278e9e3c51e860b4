/* The metric definitions (one table) and their renderings: /stats JSON, /metrics Prometheus text,
 * and the schema the HTML status page builds its tables from. */
#ifndef LBP_METRICS_H
#define LBP_METRICS_H

#include "abuf.h"
#include "totals.h"

struct master;

enum metric_type { MT_COUNTER, MT_GAUGE, MT_HISTOGRAM };

/* What a row is counted over: the proxy, each worker slot, each upstream server. */
enum metric_scope { MS_GLOBAL, MS_WORKER, MS_SERVER };

/* Where a row's value comes from. */
enum metric_src {
  SRC_COUNTER,      /* worker: totals_slot.c[arg] (enum px_stat) */
  SRC_ACTIVE,       /* worker: open client connections */
  SRC_HIST,         /* worker: histogram arg (0 request time, 1 upstream response time) */
  SRC_RESTARTS,     /* worker: unplanned exits of the slot's workers */
  SRC_S_REQUESTS,   /* server: attempts */
  SRC_S_ERRORS,     /* server: failed attempts */
  SRC_S_ACTIVE,     /* server: attempts in flight */
  SRC_S_UP,         /* server: 1 when its health is up */
  SRC_S_FAILING,    /* server: 1 when some worker skips it (passive failures) */
  SRC_S_LAST_FAIL,  /* server: wall-clock ms of the last failure (0: never) */
  SRC_S_WEIGHT,     /* server: its weight now */
  SRC_G_GENERATION, /* the serving config generation */
  SRC_G_WORKERS,    /* worker slots configured */
  SRC_G_START,      /* wall-clock ms the master started */
};

/* One row: adding a metric is adding one. Rows of one Prometheus family (same name, a label
 * telling them apart) are adjacent. A NULL json key keeps a row out of /stats; a NULL name out
 * of /metrics. */
struct metric {
  const char *name; /* Prometheus name */
  enum metric_type type;
  enum metric_scope scope;
  const char *json;  /* key in /stats (and the status page) */
  const char *label; /* an extra Prometheus label of this row ("class=\"2xx\""), or NULL */
  enum metric_src src;
  unsigned arg;
  unsigned ms_time; /* the value is a wall-clock time in ms (Prometheus: seconds) */
  const char *help;
};

extern const struct metric metrics_table[];
extern const unsigned metrics_count;

/* GET /stats: totals, per worker, per server, generations, and the table itself ("metrics"). */
void metrics_json(struct master *m, const struct totals_snap *s, struct abuf *out);
/* GET /metrics: the Prometheus text exposition format 0.0.4. */
void metrics_prometheus(struct master *m, const struct totals_snap *s, struct abuf *out);

#endif
