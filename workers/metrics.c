/* The metric table (HAProxy's stats fields as the model: one row per value, with its name, type,
 * help and source) and its three renderings: /stats JSON, /metrics Prometheus, the page's schema.
 */
#include "metrics.h"

#include "balancer.h"
#include "dispatch.h"
#include "master.h"

#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#define ALL_SLOTS (~0u)

/* clang-format off */
#define W(name, json, label, src, arg, help) \
  {name, MT_COUNTER, MS_WORKER, json, label, src, arg, 0, help}
#define WG(name, json, src, help) {name, MT_GAUGE, MS_WORKER, json, NULL, src, 0, 0, help}
#define WH(name, json, arg, help) {name, MT_HISTOGRAM, MS_WORKER, json, NULL, SRC_HIST, arg, 0, help}
#define S(name, type, json, src, ms, help) {name, type, MS_SERVER, json, NULL, src, 0, ms, help}
#define G(name, json, src, ms, help) {name, MT_GAUGE, MS_GLOBAL, json, NULL, src, 0, ms, help}
#define CLASS(c) W("lbproxy_responses_total", "responses_" c, "class=\"" c "\"", SRC_COUNTER, \
  PX_ST_STATUS_1XX + (c[0] - '1'), \
  "HTTP responses by status class (no answer because the client left counts as 499)")

const struct metric metrics_table[] = {
  G("lbproxy_generation", "generation", SRC_G_GENERATION, 0,
    "The serving configuration generation (1 at start, +1 per reload)"),
  G("lbproxy_workers", "workers_configured", SRC_G_WORKERS, 0, "Worker slots configured"),
  G("lbproxy_start_time_seconds", "start_time_ms", SRC_G_START, 1,
    "When the master started, seconds since the epoch"),
  W("lbproxy_connections_accepted_total", "accepted", NULL, SRC_COUNTER, PX_ST_ACCEPTED,
    "Client connections a worker took (its share of the dispatch)"),
  WG("lbproxy_connections_active", "active", SRC_ACTIVE, "Client connections open now"),
  W("lbproxy_connections_handed_over_total", "handed_over", NULL, SRC_COUNTER, PX_ST_HANDED_OVER,
    "Idle keep-alive connections a draining worker gave back to the master"),
  W("lbproxy_connections_rebalanced_total", "rebalanced", NULL, SRC_COUNTER, PX_ST_REBALANCED,
    "Keep-alive connections a worker gave back to move requests to a less busy worker"),
  W("lbproxy_requests_total", "requests", NULL, SRC_COUNTER, PX_ST_REQUESTS,
    "HTTP requests that ended, answered or not"),
  CLASS("1xx"), CLASS("2xx"), CLASS("3xx"), CLASS("4xx"), CLASS("5xx"),
  W("lbproxy_request_bytes_total", "bytes_in", NULL, SRC_COUNTER, PX_ST_BYTES_IN,
    "Request bytes read from clients, heads and bodies"),
  W("lbproxy_response_bytes_total", "bytes_out", NULL, SRC_COUNTER, PX_ST_BYTES_OUT,
    "Response bytes written to clients"),
  W("lbproxy_upstream_connect_errors_total", "connect_errors", NULL, SRC_COUNTER,
    PX_ST_CONNECT_ERRORS, "Connections to upstream servers that failed or timed out"),
  W("lbproxy_upstream_timeouts_total", "upstream_timeouts", NULL, SRC_COUNTER,
    PX_ST_UPSTREAM_TIMEOUTS, "Upstream responses that did not come within upstream_response"),
  W("lbproxy_client_timeouts_total", "client_timeouts", NULL, SRC_COUNTER, PX_ST_CLIENT_TIMEOUTS,
    "Clients too slow sending a request head (408) or body"),
  W("lbproxy_retries_total", "retries", NULL, SRC_COUNTER, PX_ST_RETRIES,
    "Request attempts on another server after a failure"),
  W("lbproxy_responses_cut_total", "cut", NULL, SRC_COUNTER, PX_ST_CUT,
    "Responses cut short after they had started (upstream failure or client gone)"),
  W("lbproxy_worker_restarts_total", "restarts", NULL, SRC_RESTARTS, 0,
    "Workers of the slot that exited without being asked to (and were restarted)"),
  WH("lbproxy_request_duration_seconds", "request_time", 0,
     "Time from a request's first byte to the end of its response"),
  WH("lbproxy_upstream_response_seconds", "upstream_time", 1,
     "Time from an attempt's start (connect included) to the upstream's response head"),
  S("lbproxy_server_requests_total", MT_COUNTER, "requests", SRC_S_REQUESTS, 0,
    "Request attempts sent to the server"),
  S("lbproxy_server_errors_total", MT_COUNTER, "errors", SRC_S_ERRORS, 0,
    "Attempts the server failed (connect, reset, timeout, a 5xx retried)"),
  S("lbproxy_server_active_requests", MT_GAUGE, "active", SRC_S_ACTIVE, 0,
    "Attempts in flight on the server, all workers"),
  S("lbproxy_server_up", MT_GAUGE, NULL, SRC_S_UP, 0, "1 when active checks say up (or none run)"),
  S("lbproxy_server_weight", MT_GAUGE, "weight", SRC_S_WEIGHT, 0,
    "The server's weight now: set by the admin API, else configured"),
  S("lbproxy_server_failing", MT_GAUGE, NULL, SRC_S_FAILING, 0,
    "1 while some worker skips the server after passive failures"),
  S("lbproxy_server_last_failure_timestamp_seconds", MT_GAUGE, "last_failure_ms",
    SRC_S_LAST_FAIL, 1, "When the server last failed an attempt, seconds since the epoch (0: never)"),
};
/* clang-format on */

const unsigned metrics_count = sizeof(metrics_table) / sizeof(metrics_table[0]);

static const char *const type_names[] = {"counter", "gauge", "histogram"};
static const char *const scope_names[] = {"global", "worker", "server"};

/* ---- values ---- */

static uint64_t wall_ms(void) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  return (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
}

static uint64_t crashes(const struct master *m, unsigned slot) {
  uint64_t n = 0;
  for (unsigned i = 0; i < m->nslots_made; i++)
    if (slot == ALL_SLOTS || slot == i)
      n += m->slots[i].crashes;
  return n;
}

static uint64_t worker_value(const struct metric *r, const struct master *m,
                             const struct totals_slot *sl, unsigned slot) {
  switch (r->src) {
  case SRC_COUNTER:
    return sl->c[r->arg];
  case SRC_ACTIVE:
    return sl->active;
  case SRC_RESTARTS:
    return crashes(m, slot);
  default:
    return 0;
  }
}

static uint64_t server_value(const struct metric *r, const struct totals_server *e) {
  switch (r->src) {
  case SRC_S_REQUESTS:
    return e->requests;
  case SRC_S_ERRORS:
    return e->errors;
  case SRC_S_ACTIVE:
    return e->active;
  case SRC_S_UP:
    return e->health == BAL_HEALTH_UP;
  case SRC_S_FAILING:
    return e->failing;
  case SRC_S_LAST_FAIL:
    return e->last_failure_ms;
  case SRC_S_WEIGHT:
    return e->weight;
  default:
    return 0;
  }
}

static uint64_t global_value(const struct metric *r, const struct master *m) {
  switch (r->src) {
  case SRC_G_GENERATION:
    return m->cur != NULL ? m->cur->id : 0;
  case SRC_G_WORKERS:
    return m->cur != NULL ? m->cur->nslots : 0;
  case SRC_G_START:
    return m->t_start_ms;
  default:
    return 0;
  }
}

/* ---- JSON ---- */

static void json_hist(struct abuf *b, const uint64_t *buckets, uint64_t sum_us) {
  static const double qs[] = {0.5, 0.9, 0.99, 0.999};
  static const char *const names[] = {"p50_ms", "p90_ms", "p99_ms", "p999_ms"};
  uint64_t count = 0;

  for (unsigned i = 0; i < PX_HIST_BUCKETS; i++)
    count += buckets[i];
  abuf_printf(b, "{\"count\":%llu,\"sum_ms\":", (unsigned long long)count);
  abuf_fixed(b, sum_us, 1000, 3);
  for (unsigned q = 0; q < 4; q++) {
    abuf_printf(b, ",\"%s\":", names[q]);
    abuf_fixed(b, px_hist_quantile(buckets, qs[q]), 1000, 3);
  }
  abuf_add(b, "}", 1);
}

/* The worker-scope rows of one slot (or the totals) as "key":value pairs after `{...`. */
static void json_worker_rows(struct abuf *b, const struct master *m, const struct totals_slot *sl,
                             unsigned slot) {
  for (unsigned i = 0; i < metrics_count; i++) {
    const struct metric *r = &metrics_table[i];
    if (r->scope != MS_WORKER || r->json == NULL)
      continue;
    abuf_printf(b, ",\"%s\":", r->json);
    if (r->type == MT_HISTOGRAM)
      json_hist(b, sl->hist[r->arg], sl->hist_sum_us[r->arg]);
    else
      abuf_printf(b, "%llu", (unsigned long long)worker_value(r, m, sl, slot));
  }
}

static const char *worker_state(const struct master *m, unsigned slot, const struct worker **w) {
  static const char *const names[] = {"starting", "online", "ready", "draining", "stopping"};
  const struct generation *g = m->cur;

  *w = g != NULL && slot < g->nslots ? g->by_slot[slot] : NULL;
  if (*w != NULL)
    return names[(*w)->state];
  if (g == NULL || slot >= g->nslots)
    return "gone"; /* a slot of an older, larger generation */
  return slot < m->nslots_made && m->slots[slot].errored ? "errored" : "restarting";
}

static void json_workers(struct abuf *b, const struct master *m, const struct totals_snap *s) {
  uint64_t now = uv_now(m->loop);

  abuf_str(b, ",\"workers\":[");
  for (unsigned i = 0; i < s->nslots; i++) {
    const struct worker *w;
    const char *state = worker_state(m, i, &w);
    uint64_t acc = s->slots[i].c[PX_ST_ACCEPTED], all = s->total.c[PX_ST_ACCEPTED];
    abuf_printf(b, "%s{\"worker\":%u,\"pid\":%ld,\"state\":\"%s\",\"generation\":%u,\"uptime_s\":",
                i ? "," : "", i + 1, w != NULL ? (long)w->pid : 0L, state,
                w != NULL ? w->gen->id : 0);
    abuf_fixed(b, w != NULL ? now - w->t_start : 0, 1000, 3);
    abuf_printf(b, ",\"share\":%.4f", all ? (double)acc / (double)all : 0.0);
    json_worker_rows(b, m, &s->slots[i], i);
    abuf_add(b, "}", 1);
  }
  abuf_add(b, "]", 1);
}

static void json_servers(struct abuf *b, const struct totals_snap *s) {
  static const char *const admin[] = {"enabled", "draining", "disabled"};

  abuf_str(b, ",\"servers\":[");
  for (unsigned i = 0; i < s->nservers; i++) {
    const struct totals_server *e = &s->servers[i];
    abuf_str(b, i ? ",{\"upstream\":" : "{\"upstream\":");
    abuf_json_str(b, e->upstream);
    abuf_str(b, ",\"server\":");
    abuf_json_str(b, e->address);
    abuf_printf(b,
                ",\"id\":\"%016llx\",\"health\":\"%s\",\"admin\":\"%s\",\"failing\":%s,"
                "\"live\":%s",
                (unsigned long long)e->id, e->health == BAL_HEALTH_UP ? "up" : "down",
                admin[e->admin <= BAL_ADMIN_DISABLED ? e->admin : 0], e->failing ? "true" : "false",
                e->live ? "true" : "false");
    for (unsigned k = 0; k < metrics_count; k++) {
      const struct metric *r = &metrics_table[k];
      if (r->scope == MS_SERVER && r->json != NULL)
        abuf_printf(b, ",\"%s\":%llu", r->json, (unsigned long long)server_value(r, e));
    }
    abuf_add(b, "}", 1);
  }
  abuf_add(b, "]", 1);
}

static void json_generations(struct abuf *b, const struct master *m) {
  static const char *const states[] = {"starting", "current", "draining"};
  int first = 1;

  abuf_str(b, ",\"generations\":[");
  for (const struct generation *g = m->gens; g != NULL; g = g->next) {
    unsigned n = 0;
    for (const struct worker *w = m->workers; w != NULL; w = w->next)
      n += w->gen == g;
    abuf_printf(b, "%s{\"id\":%u,\"state\":\"%s\",\"dispatch\":\"%s\",\"workers\":%u}",
                first ? "" : ",", g->id, states[g->state], g->dispatch->name, n);
    first = 0;
  }
  abuf_add(b, "]", 1);
}

/* The table itself, so the status page lays out whatever rows there are. */
static void json_schema(struct abuf *b) {
  abuf_str(b, ",\"metrics\":[");
  for (unsigned i = 0, n = 0; i < metrics_count; i++) {
    const struct metric *r = &metrics_table[i];
    if (r->json == NULL)
      continue;
    abuf_printf(b, "%s{\"json\":\"%s\",\"name\":", n++ ? "," : "", r->json);
    abuf_json_str(b, r->name != NULL ? r->name : "");
    abuf_printf(b, ",\"type\":\"%s\",\"scope\":\"%s\",\"help\":", type_names[r->type],
                scope_names[r->scope]);
    abuf_json_str(b, r->help);
    abuf_add(b, "}", 1);
  }
  abuf_add(b, "]", 1);
}

void metrics_json(struct master *m, const struct totals_snap *s, struct abuf *b) {
  uint64_t now = wall_ms();

  abuf_printf(b, "{\"version\":\"%s\",\"pid\":%ld,\"now_ms\":%llu,\"uptime_s\":", LBPROXY_VERSION,
              (long)getpid(), (unsigned long long)now);
  abuf_fixed(b, now > m->t_start_ms ? now - m->t_start_ms : 0, 1000, 3);
  abuf_str(b, ",\"dispatch\":");
  abuf_json_str(b, m->cur != NULL ? m->cur->dispatch->name : "");
  for (unsigned i = 0; i < metrics_count; i++)
    if (metrics_table[i].scope == MS_GLOBAL && metrics_table[i].json != NULL)
      abuf_printf(b, ",\"%s\":%llu", metrics_table[i].json,
                  (unsigned long long)global_value(&metrics_table[i], m));
  json_generations(b, m);
  abuf_str(b, ",\"totals\":{\"workers\":");
  abuf_printf(b, "%u", s->nslots);
  json_worker_rows(b, m, &s->total, ALL_SLOTS);
  abuf_add(b, "}", 1);
  json_workers(b, m, s);
  json_servers(b, s);
  json_schema(b);
  abuf_str(b, "}\n");
}

/* ---- Prometheus ---- */

/* A bound in microseconds as seconds, without trailing zeros ("0.0015", "1"). */
static void prom_le(struct abuf *b, uint64_t us) {
  char frac[8];
  int n;

  abuf_printf(b, "%llu", (unsigned long long)(us / 1000000));
  if (us % 1000000 == 0)
    return;
  n = snprintf(frac, sizeof(frac), "%06llu", (unsigned long long)(us % 1000000));
  while (n > 0 && frac[n - 1] == '0')
    frac[--n] = '\0';
  abuf_printf(b, ".%s", frac);
}

static void prom_value(struct abuf *b, const struct metric *r, uint64_t v) {
  if (r->ms_time)
    abuf_fixed(b, v, 1000, 3);
  else
    abuf_printf(b, "%llu", (unsigned long long)v);
  abuf_add(b, "\n", 1);
}

static void prom_hist(struct abuf *b, const char *name, unsigned slot, const uint64_t *buckets,
                      uint64_t sum_us) {
  uint64_t cum = 0;

  for (unsigned i = 0; i < PX_HIST_BOUNDS; i++) {
    cum += buckets[i];
    abuf_printf(b, "%s_bucket{worker=\"%u\",le=\"", name, slot + 1);
    prom_le(b, px_hist_bounds_us[i]);
    abuf_printf(b, "\"} %llu\n", (unsigned long long)cum);
  }
  cum += buckets[PX_HIST_BOUNDS];
  abuf_printf(b, "%s_bucket{worker=\"%u\",le=\"+Inf\"} %llu\n", name, slot + 1,
              (unsigned long long)cum);
  abuf_printf(b, "%s_sum{worker=\"%u\"} ", name, slot + 1);
  abuf_fixed(b, sum_us, 1000000, 6);
  abuf_printf(b, "\n%s_count{worker=\"%u\"} %llu\n", name, slot + 1, (unsigned long long)cum);
}

static void prom_rows(struct abuf *b, struct master *m, const struct totals_snap *s,
                      const struct metric *r) {
  const char *sep = r->label != NULL ? "," : "", *label = r->label != NULL ? r->label : "";

  if (r->scope == MS_GLOBAL) {
    abuf_printf(b, "%s ", r->name);
    prom_value(b, r, global_value(r, m));
  } else if (r->scope == MS_WORKER) {
    for (unsigned i = 0; i < s->nslots; i++) {
      if (r->type == MT_HISTOGRAM) {
        prom_hist(b, r->name, i, s->slots[i].hist[r->arg], s->slots[i].hist_sum_us[r->arg]);
        continue;
      }
      abuf_printf(b, "%s{worker=\"%u\"%s%s} ", r->name, i + 1, sep, label);
      prom_value(b, r, worker_value(r, m, &s->slots[i], i));
    }
  } else {
    for (unsigned i = 0; i < s->nservers; i++) {
      abuf_printf(b, "%s{upstream=\"", r->name);
      abuf_prom_label(b, s->servers[i].upstream);
      abuf_str(b, "\",server=\"");
      abuf_prom_label(b, s->servers[i].address);
      abuf_printf(b, "\"%s%s} ", sep, label);
      prom_value(b, r, server_value(r, &s->servers[i]));
    }
  }
}

void metrics_prometheus(struct master *m, const struct totals_snap *s, struct abuf *b) {
  const char *family = "";

  for (unsigned i = 0; i < metrics_count; i++) {
    const struct metric *r = &metrics_table[i];
    if (r->name == NULL)
      continue;
    if (strcmp(r->name, family) != 0) {
      abuf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", r->name, r->help, r->name,
                  type_names[r->type]);
      family = r->name;
    }
    prom_rows(b, m, s, r);
  }
}
