/* Step 3 of loading a config, its meaning: checks across keys, listeners and their routes, "auto"
 * workers, the workers' user, resolving every address, and warnings about configs that are valid
 * but surely wrong, so that a config that loads is one the proxy can run as meant. */
#include <arpa/inet.h>
#include <errno.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uv.h>

#include "config_internal.h"
#include "fields.h"

/* The bounds of `workers:` in the fields table; "auto" is clamped to them too. */
#define MAX_WORKERS 256

static int resolve_workers(struct lbp_config *cfg) {
  unsigned n;

  if (cfg->workers != 0)
    return 0;
  n = uv_available_parallelism(); /* honours CPU affinity, unlike a bare CPU count */
  cfg->workers_auto = 1;
  cfg->workers = n < 1 ? 1 : n > MAX_WORKERS ? MAX_WORKERS : n;
  return 0;
}

/* Dispatch "proxy" gives worker i the private port base + i; all of them must exist. */
static int check_port_base(struct cfg__ctx *ctx, const struct cfg__node *root,
                           struct lbp_config *cfg) {
  const struct cfg__node *n = cfg__map_get(root, "proxy_port_base");

  if (cfg->proxy_port_base == 0)
    return 0;
  if (cfg->dispatch != CFG_DISPATCH_PROXY &&
      cfg__warn(ctx, cfg, n->line, n->col, "proxy_port_base",
                "has no effect unless dispatch is proxy (dispatch is %s)",
                cfg_dispatch_name(cfg->dispatch)) != 0)
    return UV_ENOMEM;
  /* One private port per worker and listener. */
  if ((uint64_t)cfg->proxy_port_base + (uint64_t)cfg->workers * cfg->nlisteners - 1 <= 65535)
    return 0;
  return cfg__error(ctx, n->line, n->col, "proxy_port_base",
                    "%u leaves no room for %u workers x %zu listeners (base + workers x listeners "
                    "- 1 must be <= 65535)",
                    cfg->proxy_port_base, cfg->workers, cfg->nlisteners);
}

static int find_upstream(const struct lbp_config *cfg, const char *name, size_t *index) {
  for (size_t i = 0; i < cfg->nupstreams; i++) {
    if (strcmp(cfg->upstreams[i].name, name) == 0) {
      *index = i;
      return 0;
    }
  }
  return UV_ENOENT;
}

/* `n` names an upstream: its index, or an error at n with a suggestion. */
static int upstream_ref(struct cfg__ctx *ctx, const struct lbp_config *cfg,
                        const struct cfg__node *n, const char *path, size_t *index) {
  const char **names, *close;
  char shown[64], hint[96] = "";

  if (find_upstream(cfg, n->text, index) == 0)
    return 0;
  if ((names = calloc(cfg->nupstreams + 1, sizeof(*names))) == NULL)
    return UV_ENOMEM;
  for (size_t i = 0; i < cfg->nupstreams; i++)
    names[i] = cfg->upstreams[i].name;
  if ((close = cfg__closest(n->text, names)) != NULL)
    snprintf(hint, sizeof(hint), "; did you mean '%s'?", close);
  free(names);
  return cfg__error(ctx, n->line, n->col, path, "no upstream named '%s'%s",
                    cfg__show(shown, sizeof(shown), n->text), hint);
}

/* Points each route of a list (the sequence node `list`, written at `path`) at its upstream. */
static int link_route_list(struct cfg__ctx *ctx, const struct lbp_config *cfg,
                           const struct cfg__node *list, const char *path, struct cfg_route *routes,
                           size_t nroutes) {
  const struct cfg__node *item = nroutes > 0 ? list->child : NULL;
  char rpath[CFG__PATH_MAX];
  int rc;

  for (size_t i = 0; i < nroutes; i++, item = item->next) {
    /* A path too long for rpath is cut: it only names the key in a message. */
    if (snprintf(rpath, sizeof(rpath), "%.160s[%zu].upstream", path, i) < 0)
      rpath[0] = '\0';
    if ((rc = upstream_ref(ctx, cfg, cfg__map_get(item, "upstream"), rpath, &routes[i].upstream)) !=
        0)
      return rc;
  }
  return 0;
}

/* One catch-all route to upstream `up`, at line:col. */
static int one_route(struct cfg_route **routes, size_t *nroutes, size_t up, int line, int col) {
  if ((*routes = calloc(1, sizeof(**routes))) == NULL)
    return UV_ENOMEM;
  *nroutes = 1;
  (*routes)[0].upstream = up;
  (*routes)[0].line = line;
  (*routes)[0].col = col;
  return 0;
}

/* The top-level routes; when there are none, the one default route a single upstream gets. Only
 * an error when some HTTP listener relies on them (`needed`). */
static int link_top_routes(struct cfg__ctx *ctx, const struct cfg__node *root,
                           struct lbp_config *cfg, int needed) {
  const struct cfg__node *ups = cfg__map_get(root, "upstreams");

  if (cfg->nroutes > 0)
    return link_route_list(ctx, cfg, cfg__map_get(root, "routes"), "routes", cfg->routes,
                           cfg->nroutes);
  if (!needed)
    return 0;
  if (cfg->nupstreams > 1)
    return cfg__error(ctx, ups->key_line, ups->key_col, "upstreams",
                      "routes are required when there are several upstreams (%zu)",
                      cfg->nupstreams);
  return one_route(&cfg->routes, &cfg->nroutes, 0, cfg->upstreams[0].line, cfg->upstreams[0].col);
}

/* A listener written under `listeners:` (item node `n`, index i): mode rules and its routes. */
static int link_listener(struct cfg__ctx *ctx, struct lbp_config *cfg, const struct cfg__node *n,
                         size_t i, int *uses_top) {
  struct cfg_listener *l = &cfg->listeners[i];
  const struct cfg__node *up = cfg__map_get(n, "upstream"), *routes = cfg__map_get(n, "routes");
  char path[CFG__PATH_MAX];
  size_t idx;
  int rc;

  snprintf(path, sizeof(path), "listeners[%zu]", i);
  if (up != NULL && routes != NULL)
    return cfg__error(ctx, routes->key_line, routes->key_col, path,
                      "give either routes or upstream, not both");
  if (up != NULL) {
    snprintf(path, sizeof(path), "listeners[%zu].upstream", i);
    if ((rc = upstream_ref(ctx, cfg, up, path, &idx)) != 0)
      return rc;
    l->upstream = idx;
    if (l->mode == CFG_MODE_HTTP) {
      l->own_routes = 1;
      return one_route(&l->routes, &l->nroutes, idx, up->line, up->col);
    }
    return 0;
  }
  if (l->mode == CFG_MODE_TCP)
    return cfg__error(ctx, l->line, l->col, path, "a tcp listener needs 'upstream'%s",
                      routes != NULL ? " (tcp has no routes)" : "");
  if (l->own_routes) {
    snprintf(path, sizeof(path), "listeners[%zu].routes", i);
    return link_route_list(ctx, cfg, routes, path, l->routes, l->nroutes);
  }
  *uses_top = 1;
  return 0;
}

/* Port 0 is "any free port": two of them never collide (tests run several listeners so). */
static int same_addr(const struct cfg_addr *a, const struct cfg_addr *b) {
  return a->port != 0 && a->port == b->port && strcmp(a->host, b->host) == 0;
}

/* Builds cfg->listeners: the `listeners:` entries, or one HTTP listener from `listen:`. */
static int link_listeners(struct cfg__ctx *ctx, const struct cfg__node *root,
                          struct lbp_config *cfg) {
  const struct cfg__node *list = cfg__map_get(root, "listeners");
  const struct cfg__node *listen = cfg__map_get(root, "listen"), *item;
  int uses_top = 0, rc;

  if (list != NULL && listen != NULL)
    return cfg__error(ctx, listen->key_line, listen->key_col, "listen",
                      "give either listen (one HTTP listener) or listeners, not both");
  if (list == NULL) {
    if ((cfg->listeners = calloc(1, sizeof(*cfg->listeners))) == NULL)
      return UV_ENOMEM;
    cfg->nlisteners = 1;
    cfg->listeners[0].addr = cfg->listen;
    cfg->listeners[0].line = listen != NULL ? listen->key_line : 1;
    cfg->listeners[0].col = listen != NULL ? listen->key_col : 1;
    uses_top = 1;
  } else {
    item = list->child;
    for (size_t i = 0; i < cfg->nlisteners; i++, item = item->next)
      if ((rc = link_listener(ctx, cfg, item, i, &uses_top)) != 0)
        return rc;
    for (size_t i = 1; i < cfg->nlisteners; i++)
      for (size_t j = 0; j < i; j++)
        if (same_addr(&cfg->listeners[i].addr, &cfg->listeners[j].addr))
          return cfg__error(ctx, cfg->listeners[i].addr.line, cfg->listeners[i].addr.col,
                            "listeners", "listeners[%zu] has the same address as listeners[%zu]", i,
                            j);
  }
  if ((rc = link_top_routes(ctx, root, cfg, uses_top)) != 0)
    return rc;
  for (size_t i = 0; i < cfg->nlisteners; i++)
    if (cfg->listeners[i].mode == CFG_MODE_HTTP && !cfg->listeners[i].own_routes) {
      cfg->listeners[i].routes = cfg->routes;
      cfg->listeners[i].nroutes = cfg->nroutes;
    }
  return 0;
}

/* ---- upstreams: servers, balancing, retries, health checks ---- */

#define DEFAULT_RESOLVE_INTERVAL_MS 5000 /* resolve_interval's default in schema.c */

/* Two servers of one upstream at one address would have one stable id (balancer.h). */
static int check_server_addrs(struct cfg__ctx *ctx, const struct cfg_upstream *u,
                              const char *upath) {
  char servers[CFG__PATH_MAX], path[CFG__PATH_MAX];

  for (size_t i = 1; i < u->nservers; i++)
    for (size_t j = 0; j < i; j++) {
      if (!same_addr(&u->servers[i].addr, &u->servers[j].addr))
        continue;
      cfg__join_key(servers, upath, "servers");
      cfg__join_index(path, servers, i);
      return cfg__error(ctx, u->servers[i].addr.line, u->servers[i].addr.col, path,
                        "the same address as servers[%zu] (give that one a weight instead)", j);
    }
  return 0;
}

/* Warns "path.key: message" at key's value in mapping `map`, when the key is written there. */
static int warn_key(struct cfg__ctx *ctx, struct lbp_config *cfg, const struct cfg__node *map,
                    const char *upath, const char *key, const char *msg) {
  const struct cfg__node *n = cfg__map_get(map, key);
  char path[CFG__PATH_MAX];

  if (n == NULL)
    return 0;
  cfg__join_key(path, upath, key);
  return cfg__warn(ctx, cfg, n->key_line, n->key_col, path, "%s", msg) != 0 ? UV_ENOMEM : 0;
}

static int is_ip(const char *host) {
  unsigned char buf[sizeof(struct in6_addr)];
  return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

static int check_balance(struct cfg__ctx *ctx, struct lbp_config *cfg, const struct cfg__node *un,
                         const struct cfg_upstream *u, const char *upath) {
  const struct cfg__node *bal = cfg__map_get(un, "balance");
  char path[CFG__PATH_MAX], msg[128];
  size_t backups = 0, names = 0;
  int rc;

  cfg__join_key(path, upath, "balance");
  if (u->balance == CFG_BALANCE_HASH && u->hash_key == CFG_HASH_KEY_NONE)
    return cfg__error(ctx, bal->line, bal->col, path,
                      "hash needs hash_key (client_ip, uri or header:<Name>)");
  /* Warnings depend on values, not on which keys were written: lbproxy -T writes them all,
   * and its output must load with the same warnings as the file it came from. */
  snprintf(msg, sizeof(msg), "has no effect unless balance is hash (balance is %s)",
           cfg_balance_name(u->balance));
  if ((u->balance != CFG_BALANCE_HASH && u->hash_key != CFG_HASH_KEY_NONE &&
       (rc = warn_key(ctx, cfg, un, upath, "hash_key", msg))) ||
      (u->balance == CFG_BALANCE_HASH && u->slow_start_ms > 0 &&
       (rc = warn_key(ctx, cfg, un, upath, "slow_start",
                      "has no effect with balance hash (a ramping weight would move keys)"))) ||
      (u->retries > 0 && u->retry_on == 0 &&
       (rc = warn_key(ctx, cfg, un, upath, "retry_on", "is empty: retries has no effect"))))
    return rc;
  for (size_t i = 0; i < u->nservers; i++) {
    backups += u->servers[i].backup != 0;
    names += !is_ip(u->servers[i].addr.host);
  }
  if (backups == u->nservers &&
      (rc = warn_key(ctx, cfg, un, upath, "servers",
                     "every server is a backup, so the backups take all the traffic")))
    return rc;
  if (names == 0 && u->resolve_interval_ms != DEFAULT_RESOLVE_INTERVAL_MS &&
      (rc = warn_key(ctx, cfg, un, upath, "resolve_interval",
                     "has no effect: every server is an IP address")))
    return rc;
  return 0;
}

static int check_health_check(struct cfg__ctx *ctx, struct lbp_config *cfg,
                              const struct cfg__node *un, const struct cfg_health_check *hc,
                              const char *upath) {
  const struct cfg__node *hn = cfg__map_get(un, "health_check"), *at;
  static const char *const http_only[] = {"path", "host", "expect_status"};
  char path[CFG__PATH_MAX], a[32], b[32];
  int rc;

  if (!hc->enabled)
    return 0;
  cfg__join_key(path, upath, "health_check");
  if (hc->timeout_ms >= hc->interval_ms) {
    at = cfg__map_get(hn, "timeout") != NULL ? cfg__map_get(hn, "timeout")
                                             : cfg__map_get(hn, "interval");
    return cfg__error(ctx, at->line, at->col, path,
                      "timeout (%s) must be shorter than interval (%s)",
                      cfg__fmt_duration(a, sizeof(a), hc->timeout_ms),
                      cfg__fmt_duration(b, sizeof(b), hc->interval_ms));
  }
  if (hc->type != CFG_CHECK_TCP)
    return 0;
  for (size_t k = 0; k < 3; k++) {
    int is_default = k == 0   ? strcmp(hc->path, "/") == 0
                     : k == 1 ? hc->host == NULL
                              : hc->status_lo == 200 && hc->status_hi == 399;
    if (!is_default &&
        (rc = warn_key(ctx, cfg, hn, path, http_only[k], "has no effect with type tcp")) != 0)
      return rc;
  }
  return 0;
}

/* Every upstream's own rules, at the places their keys were written. */
static int check_upstreams(struct cfg__ctx *ctx, const struct cfg__node *root,
                           struct lbp_config *cfg) {
  const struct cfg__node *un = cfg__map_get(root, "upstreams")->child;
  char upath[CFG__PATH_MAX], shown[64];
  int rc;

  for (size_t i = 0; i < cfg->nupstreams; i++, un = un->next) {
    const struct cfg_upstream *u = &cfg->upstreams[i];
    snprintf(upath, sizeof(upath), "upstreams.%s", cfg__show(shown, sizeof(shown), u->name));
    if ((rc = check_server_addrs(ctx, u, upath)) != 0 ||
        (rc = check_balance(ctx, cfg, un, u, upath)) != 0 ||
        (rc = check_health_check(ctx, cfg, un, &u->health_check, upath)) != 0)
      return rc;
  }
  return 0;
}

/* The workers' user must exist where the master runs: looked up now, so -t catches a typo. */
static int lookup_user(struct cfg__ctx *ctx, const struct cfg__node *root, struct lbp_config *cfg) {
  const struct cfg__node *n = cfg__map_get(root, "user");
  struct passwd pw, *res = NULL;
  char buf[4096], shown[64];
  int rc;

  if (cfg->user == NULL || (ctx->flags & CFG_NO_RESOLVE))
    return 0;
  rc = getpwnam_r(cfg->user, &pw, buf, sizeof(buf), &res);
  if (rc != 0 || res == NULL)
    return cfg__error(ctx, n->line, n->col, "user", "no such user '%s'%s%s",
                      cfg__show(shown, sizeof(shown), cfg->user), rc != 0 ? ": " : "",
                      rc != 0 ? strerror(rc) : "");
  cfg->uid = pw.pw_uid;
  cfg->gid = pw.pw_gid;
  cfg->has_user_ids = 1;
  return 0;
}

static int resolve(struct cfg__ctx *ctx, struct cfg_addr *a, const char *path) {
  char shown[64];
  int rc = cfg_resolve(a);

  if (rc == 0)
    return 0;
  if (rc == UV_ENOMEM || rc == UV_EAI_MEMORY)
    return UV_ENOMEM;
  return cfg__error(ctx, a->line, a->col, path, "cannot resolve '%s': %s",
                    cfg__show(shown, sizeof(shown), a->host), uv_strerror(rc));
}

/* Resolves every listener now, so a typo fails the load rather than the start; reads every
 * server that is an IP address (numeric: never blocks, also with CFG_NO_RESOLVE). A server that
 * is a host name is never resolved here: the master resolves it at run time and keeps
 * re-resolving it (a compose service may start after the proxy, and scale). */
static int resolve_all(struct cfg__ctx *ctx, struct lbp_config *cfg) {
  char path[CFG__PATH_MAX];
  int rc;

  for (size_t i = 0; i < cfg->nupstreams; i++) {
    struct cfg_upstream *u = &cfg->upstreams[i];
    for (size_t j = 0; j < u->nservers; j++) {
      struct cfg_server *s = &u->servers[j];
      if (!(s->dns = !is_ip(s->addr.host)) && cfg_resolve(&s->addr) != 0)
        return UV_EINVAL; /* is_ip said numeric: cannot happen */
    }
  }
  if (ctx->flags & CFG_NO_RESOLVE)
    return 0;
  for (size_t i = 0; i < cfg->nlisteners; i++) {
    snprintf(path, sizeof(path), cfg->nlisteners == 1 ? "listen" : "listeners[%zu].listen", i);
    if ((rc = resolve(ctx, &cfg->listeners[i].addr, path)) != 0)
      return rc;
  }
  cfg->listen = cfg->listeners[0].addr;
  return 0;
}

/* ---- warnings: valid, but surely not what was meant ---- */

static int same_str(const char *a, const char *b) {
  return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* "/" matches what no path matches: both are catch-alls. */
static const char *norm_path(const char *p) {
  return p != NULL && strcmp(p, "/") == 0 ? NULL : p;
}

static int warn_routes(struct cfg__ctx *ctx, struct lbp_config *cfg, const char *path,
                       const struct cfg_route *r, size_t n) {
  for (size_t i = 1; i < n; i++)
    for (size_t j = 0; j < i; j++) {
      if (!same_str(r[i].host, r[j].host) || !same_str(norm_path(r[i].path), norm_path(r[j].path)))
        continue;
      char rp[CFG__PATH_MAX];
      snprintf(rp, sizeof(rp), "%s[%zu]", path, i);
      if (cfg__warn(ctx, cfg, r[i].line, r[i].col, rp,
                    r[i].host == NULL && norm_path(r[i].path) == NULL
                        ? "a second catch-all route; %s[%zu] already takes every request, so this "
                          "one never matches"
                        : "the same host and path as %s[%zu], which wins: this one never matches",
                    path, j) != 0)
        return UV_ENOMEM;
      break;
    }
  return 0;
}

static int upstream_used(const struct lbp_config *cfg, size_t u) {
  for (size_t i = 0; i < cfg->nlisteners; i++) {
    const struct cfg_listener *l = &cfg->listeners[i];
    if (l->mode == CFG_MODE_TCP && l->upstream == u)
      return 1;
    for (size_t k = 0; l->mode == CFG_MODE_HTTP && k < l->nroutes; k++)
      if (l->routes[k].upstream == u)
        return 1;
  }
  return 0;
}

static int warnings(struct cfg__ctx *ctx, struct lbp_config *cfg) {
  char path[CFG__PATH_MAX], shown[64];
  int rc;

  if ((rc = warn_routes(ctx, cfg, "routes", cfg->routes, cfg->nroutes)) != 0)
    return rc;
  for (size_t i = 0; i < cfg->nlisteners; i++) {
    snprintf(path, sizeof(path), "listeners[%zu].routes", i);
    if (cfg->listeners[i].own_routes &&
        (rc = warn_routes(ctx, cfg, path, cfg->listeners[i].routes, cfg->listeners[i].nroutes)))
      return rc;
  }
  for (size_t u = 0; u < cfg->nupstreams; u++) {
    if (upstream_used(cfg, u))
      continue;
    snprintf(path, sizeof(path), "upstreams.%s",
             cfg__show(shown, sizeof(shown), cfg->upstreams[u].name));
    if (cfg__warn(ctx, cfg, cfg->upstreams[u].line, cfg->upstreams[u].col, path,
                  "no route or listener sends anything to this upstream") != 0)
      return UV_ENOMEM;
  }
  return 0;
}

/* The admin API is never public by accident: an address that is literally not loopback needs
 * admin.allow_public (a host name is checked by the master once resolved). */
static int check_admin(struct cfg__ctx *ctx, const struct cfg__node *root,
                       const struct lbp_config *cfg) {
  const struct cfg__node *an = cfg__map_get(root, "admin");
  const struct cfg__node *n = an != NULL ? cfg__map_get(an, "listen") : NULL;
  unsigned char ip[16];
  struct cfg_addr a;
  int loop;

  if (n == NULL || cfg->admin.allow_public || strcmp(cfg->admin.listen, "off") == 0)
    return 0;
  memset(&a, 0, sizeof(a));
  if (cfg_parse_hostport(cfg->admin.listen, &a) != 0)
    return 0; /* the fields step said so already */
  if (uv_inet_pton(AF_INET, a.host, ip) == 0)
    loop = ip[0] == 127;
  else if (uv_inet_pton(AF_INET6, a.host, ip) == 0)
    loop = memcmp(ip, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\1", 16) == 0;
  else
    loop = !a.any; /* a name: the master checks what it resolves to */
  if (loop)
    return 0;
  return cfg__error(ctx, n->line, n->col, "admin.listen",
                    "%s is not a loopback address: the admin API would be public; set "
                    "admin.allow_public: true if that is what you want",
                    cfg->admin.listen);
}

int cfg__meaning(struct cfg__ctx *ctx, const struct cfg__node *root, struct lbp_config *cfg) {
  int rc;

  if ((rc = resolve_workers(cfg)) != 0 || (rc = link_listeners(ctx, root, cfg)) != 0 ||
      (rc = check_port_base(ctx, root, cfg)) != 0 || (rc = check_upstreams(ctx, root, cfg)) != 0 ||
      (rc = lookup_user(ctx, root, cfg)) != 0 || (rc = resolve_all(ctx, cfg)) != 0 ||
      (rc = check_admin(ctx, root, cfg)) != 0 || (rc = warnings(ctx, cfg)) != 0)
    return rc;
  return 0;
}
