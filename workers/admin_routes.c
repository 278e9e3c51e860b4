/* The admin API's read-only routes: the status page, /stats (JSON), /metrics (Prometheus) and
 * /events (the lifecycle event ring, JSON). */
#include "admin.h"

#include "master.h"
#include "metrics.h"
#include "totals.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

/* The status page (admin_page.c). */
extern const char admin_page_html[];

static void page(const struct admin_req *req, struct admin_resp *resp) {
  resp->type = "text/html; charset=utf-8";
  resp->headers = "Content-Security-Policy: default-src 'self'; style-src 'unsafe-inline'; "
                  "script-src 'unsafe-inline'; img-src data:\r\n";
  abuf_str(&resp->body, admin_page_html);
}

static void stats(const struct admin_req *req, struct admin_resp *resp) {
  struct totals_snap s;

  if (totals_snapshot(req->m, &s) != 0) {
    admin_error(resp, 500, "out of memory");
    return;
  }
  metrics_json(req->m, &s, &resp->body);
  totals_snap_free(&s);
}

static void metrics(const struct admin_req *req, struct admin_resp *resp) {
  struct totals_snap s;

  if (totals_snapshot(req->m, &s) != 0) {
    admin_error(resp, 500, "out of memory");
    return;
  }
  resp->type = "text/plain; version=0.0.4; charset=utf-8";
  metrics_prometheus(req->m, &s, &resp->body);
  totals_snap_free(&s);
}

/* The ring, oldest first: time, type, slot (0: the master), pid, generation, detail. */
static void events(const struct admin_req *req, struct admin_resp *resp) {
  const struct master *m = req->m;
  unsigned first = (m->events_pos + EVENTS_MAX - m->nevents) % EVENTS_MAX;

  abuf_str(&resp->body, "{\"events\":[");
  for (unsigned i = 0; i < m->nevents; i++) {
    const struct event *e = &m->events[(first + i) % EVENTS_MAX];
    time_t sec = (time_t)(e->time_ms / 1000);
    struct tm tm;
    char iso[40];
    gmtime_r(&sec, &tm);
    strftime(iso, sizeof(iso), "%Y-%m-%dT%H:%M:%S", &tm);
    abuf_printf(&resp->body,
                "%s{\"time_ms\":%llu,\"time\":\"%s.%03uZ\",\"type\":\"%s\",\"worker\":%d,"
                "\"pid\":%ld,\"generation\":%u,\"detail\":",
                i ? "," : "", (unsigned long long)e->time_ms, iso, (unsigned)(e->time_ms % 1000),
                event_name(e->type), e->slot, e->pid, e->generation);
    abuf_json_str(&resp->body, e->detail);
    abuf_add(&resp->body, "}", 1);
  }
  abuf_str(&resp->body, "]}\n");
}

const struct admin_route admin_read_routes[] = {
    {"GET", "/", page},         {"GET", "/stats", stats}, {"GET", "/metrics", metrics},
    {"GET", "/events", events}, {NULL, NULL, NULL},
};
