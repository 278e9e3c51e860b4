/* The admin API's upstream routes: list pools and servers, and drain, disable, enable or
 * re-weight a server at run time (the master's records; every worker hears of it). */
#include "admin.h"

#include "config.h"
#include "master.h"
#include "totals.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * GET  /upstreams                                     every pool of the serving generation
 * GET  /upstreams/NAME                                one pool
 * POST /upstreams/NAME/servers/SERVER/drain           no new requests; in-flight ones finish
 * POST /upstreams/NAME/servers/SERVER/disable         no new requests, not even in panic
 * POST /upstreams/NAME/servers/SERVER/enable          back to normal (health checks still rule)
 * POST /upstreams/NAME/servers/SERVER/weight  body N  weight 1..1000, or "default"
 *
 * SERVER is a server's name as listed ("10.0.0.1:80", "[::1]:80"), its id (16 hex digits), or
 * a host name entry of the config ("web:80"), which means every address it resolves to now.
 * The change lives in the master's record of the server (struct userver): it is pushed to every
 * worker at once (a STATES frame) and given to every worker that starts later, so it survives
 * worker restarts and reloads for as long as the config lists the server.
 */

static const char *const admin_names[] = {"enabled", "draining", "disabled"};

/* The serving generation's upstream named `name`: its index, or -1. */
static int upstream_index(const struct generation *g, const char *name) {
  for (size_t k = 0; k < g->cfg->nupstreams; k++)
    if (strcmp(g->cfg->upstreams[k].name, name) == 0)
      return (int)k;
  return -1;
}

/* The generation the API shows and changes: the serving one (NULL before the first is up). */
static const struct generation *serving(const struct admin_req *req, struct admin_resp *resp) {
  if (req->m->cur == NULL) {
    admin_error(resp, 503, "no generation is serving yet");
    return NULL;
  }
  return req->m->cur;
}

static const char *state_name(const struct userver *u, uint64_t now) {
  if (u->st.admin != BAL_ADMIN_ENABLED)
    return admin_names[u->st.admin <= BAL_ADMIN_DISABLED ? u->st.admin : 0];
  if (u->st.health != BAL_HEALTH_UP)
    return "down";
  return u->st.failing_until_ms > now ? "failing" : "up";
}

static const struct totals_server *counters(const struct totals_snap *s, const char *up,
                                            uint64_t id) {
  for (unsigned i = 0; i < s->nservers; i++)
    if (s->servers[i].id == id && strcmp(s->servers[i].upstream, up) == 0)
      return &s->servers[i];
  return NULL;
}

static void server_json(struct abuf *b, const struct master *m, const struct gserver *gs,
                        const struct totals_server *c) {
  const struct userver *u = gs->u;
  uint64_t now = uv_now(m->loop);

  abuf_str(b, "{\"server\":");
  abuf_json_str(b, u->name);
  abuf_printf(b, ",\"id\":\"%016llx\",\"host\":", (unsigned long long)u->id);
  abuf_json_str(b, u->host);
  abuf_printf(b,
              ",\"state\":\"%s\",\"health\":\"%s\",\"admin\":\"%s\",\"failing\":%s,"
              "\"weight\":%u,\"configured_weight\":%u,\"backup\":%s,\"active\":%u,"
              "\"requests\":%llu,\"errors\":%llu,\"checks\":%llu,\"checks_failed\":%llu,"
              "\"passive_fails\":%llu,\"last_check_ago_ms\":%lld,\"last_change_ago_ms\":%lld,"
              "\"detail\":",
              state_name(u, now), u->st.health == BAL_HEALTH_UP ? "up" : "down",
              admin_names[u->st.admin <= BAL_ADMIN_DISABLED ? u->st.admin : 0],
              u->st.failing_until_ms > now ? "true" : "false",
              u->st.weight != 0 ? u->st.weight : gs->weight, gs->weight,
              gs->backup ? "true" : "false", c != NULL ? c->active : 0,
              (unsigned long long)(c != NULL ? c->requests : 0),
              (unsigned long long)(c != NULL ? c->errors : 0), (unsigned long long)u->checks,
              (unsigned long long)u->checks_failed, (unsigned long long)u->passive_fails,
              u->last_check_ms != 0 ? (long long)(now - u->last_check_ms) : -1LL,
              u->last_change_ms != 0 ? (long long)(now - u->last_change_ms) : -1LL);
  abuf_json_str(b, u->detail);
  abuf_add(b, "}", 1);
}

static void upstream_json(struct abuf *b, const struct master *m, const struct generation *g,
                          size_t k, const struct totals_snap *s) {
  const struct cfg_upstream *up = &g->cfg->upstreams[k];
  const struct gen_upstream *gu = &g->ups[k];

  abuf_str(b, "{\"name\":");
  abuf_json_str(b, up->name);
  abuf_printf(b, ",\"balance\":\"%s\",\"health_check\":%s,\"servers\":[",
              cfg_balance_name(up->balance), up->health_check.enabled ? "true" : "false");
  for (unsigned i = 0; i < gu->n; i++) {
    if (i > 0)
      abuf_add(b, ",", 1);
    server_json(b, m, &gu->s[i], counters(s, up->name, gu->s[i].u->id));
  }
  abuf_str(b, "]}");
}

static void list(const struct admin_req *req, struct admin_resp *resp) {
  const struct generation *g = serving(req, resp);
  struct totals_snap s;
  int one = req->nargs == 1, k = -1;

  if (g == NULL)
    return;
  if (one && (k = upstream_index(g, req->args[0])) < 0) {
    admin_error(resp, 404, "no upstream named '%s'", req->args[0]);
    return;
  }
  if (totals_snapshot(req->m, &s) != 0) {
    admin_error(resp, 500, "out of memory");
    return;
  }
  if (one) {
    upstream_json(&resp->body, req->m, g, (size_t)k, &s);
  } else {
    abuf_printf(&resp->body, "{\"generation\":%u,\"upstreams\":[", g->id);
    for (size_t i = 0; i < g->cfg->nupstreams; i++) {
      if (i > 0)
        abuf_add(&resp->body, ",", 1);
      upstream_json(&resp->body, req->m, g, i, &s);
    }
    abuf_str(&resp->body, "]}");
  }
  abuf_add(&resp->body, "\n", 1);
  totals_snap_free(&s);
}

/* Does `want` name u: its name, its id in hex, or "host:port" of the entry it came from. */
static int names(const struct userver *u, const char *want) {
  char buf[300];

  if (strcmp(u->name, want) == 0)
    return 1;
  snprintf(buf, sizeof(buf), "%016llx", (unsigned long long)u->id);
  if (strcmp(buf, want) == 0)
    return 1;
  if (u->host[0] == '\0')
    return 0;
  snprintf(buf, sizeof(buf), strchr(u->host, ':') ? "[%s]:%u" : "%s:%u", u->host, u->port);
  return strcmp(buf, want) == 0;
}

/* The weight a POST .../weight asks for: 1..1000, or 0 for "default" (the configured one). */
static int parse_weight(const char *body, size_t len, unsigned *out) {
  char v[16];
  char *end;
  long n;

  while (len > 0 && (body[len - 1] == '\n' || body[len - 1] == '\r' || body[len - 1] == ' '))
    len--;
  while (len > 0 && *body == ' ')
    body++, len--;
  if (len == 0 || len >= sizeof(v))
    return -1;
  memcpy(v, body, len);
  v[len] = '\0';
  if (strcmp(v, "default") == 0) {
    *out = 0;
    return 0;
  }
  if (v[0] < '0' || v[0] > '9')
    return -1;
  errno = 0;
  n = strtol(v, &end, 10);
  if (errno != 0 || *end != '\0' || n < 1 || n > 1000)
    return -1;
  *out = (unsigned)n;
  return 0;
}

/* POST /upstreams/NAME/servers/SERVER/ACTION. */
static void act(const struct admin_req *req, struct admin_resp *resp, const char *action) {
  const struct generation *g = serving(req, resp);
  const struct gen_upstream *gu;
  unsigned weight = 0, hit = 0;
  char why[96];
  int k;

  if (g == NULL)
    return;
  if ((k = upstream_index(g, req->args[0])) < 0) {
    admin_error(resp, 404, "no upstream named '%s'", req->args[0]);
    return;
  }
  if (strcmp(action, "weight") == 0 && parse_weight(req->body, req->body_len, &weight) != 0) {
    admin_error(resp, 400,
                "the body must be the weight: an integer 1..1000, or 'default' for the "
                "configured one");
    return;
  }
  gu = &g->ups[k];
  for (unsigned i = 0; i < gu->n; i++) {
    struct userver *u = gu->s[i].u;
    uint8_t admin = u->st.admin;
    uint16_t w = u->st.weight;
    if (!names(u, req->args[1]))
      continue;
    hit++;
    if (strcmp(action, "drain") == 0)
      admin = BAL_ADMIN_DRAINING;
    else if (strcmp(action, "disable") == 0)
      admin = BAL_ADMIN_DISABLED;
    else if (strcmp(action, "enable") == 0)
      admin = BAL_ADMIN_ENABLED;
    else
      w = (uint16_t)weight;
    if (admin == u->st.admin && w == u->st.weight)
      continue; /* already so: nothing to tell anyone */
    if (w != u->st.weight)
      snprintf(why, sizeof(why), "weight %u by the admin API",
               w != 0 ? w : (unsigned)gu->s[i].weight);
    else
      snprintf(why, sizeof(why), "%s by the admin API", admin_names[admin]);
    /* Back in service: it ramps up (slow_start), as after a check brings it back. */
    if (admin == BAL_ADMIN_ENABLED && u->st.admin != BAL_ADMIN_ENABLED)
      u->st.up_since_ms = uv_now(req->m->loop);
    u->st.admin = admin;
    u->st.weight = w;
    servers_state_changed(u, why);
  }
  if (hit == 0) {
    admin_error(resp, 404, "upstream '%s' has no server '%s' (GET /upstreams/%s lists them)",
                req->args[0], req->args[1], req->args[0]);
    return;
  }
  list(&(struct admin_req){.m = req->m, .args = {req->args[0]}, .nargs = 1}, resp);
}

static void drain(const struct admin_req *req, struct admin_resp *resp) {
  act(req, resp, "drain");
}

static void disable(const struct admin_req *req, struct admin_resp *resp) {
  act(req, resp, "disable");
}

static void enable(const struct admin_req *req, struct admin_resp *resp) {
  act(req, resp, "enable");
}

static void weight(const struct admin_req *req, struct admin_resp *resp) {
  act(req, resp, "weight");
}

const struct admin_route admin_server_routes[] = {
    {"GET", "/upstreams", list},
    {"GET", "/upstreams/*", list},
    {"POST", "/upstreams/*/servers/*/drain", drain},
    {"POST", "/upstreams/*/servers/*/disable", disable},
    {"POST", "/upstreams/*/servers/*/enable", enable},
    {"POST", "/upstreams/*/servers/*/weight", weight},
    {NULL, NULL, NULL},
};
