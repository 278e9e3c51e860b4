/* Step 3 of loading a config, its meaning: checks across keys, the default route, "auto" workers,
 * and resolving every address, so that a config that loads is one the proxy can run. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "config_internal.h"

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
                           const struct lbp_config *cfg) {
  const struct cfg__node *n;

  if (cfg->proxy_port_base == 0 || (unsigned)cfg->proxy_port_base + cfg->workers - 1 <= 65535)
    return 0;
  n = cfg__map_get(root, "proxy_port_base");
  return cfg__error(ctx, n->line, n->col, "proxy_port_base",
                    "%u leaves no room for %u workers (base + workers - 1 must be <= 65535)",
                    cfg->proxy_port_base, cfg->workers);
}

static int find_upstream(const struct lbp_config *cfg, const char *name, size_t *index) {
  for (size_t i = 0; i < cfg->nupstreams; i++) {
    if (strcmp(cfg->upstreams[i].name, name) == 0) {
      *index = i;
      return 0;
    }
  }
  return -ENOENT;
}

static int missing_upstream(struct cfg__ctx *ctx, const struct lbp_config *cfg,
                            const struct cfg__node *n, size_t route) {
  const char **names, *close;
  char path[CFG__PATH_MAX], shown[64], hint[96] = "";

  if ((names = calloc(cfg->nupstreams + 1, sizeof(*names))) == NULL)
    return -ENOMEM;
  for (size_t i = 0; i < cfg->nupstreams; i++)
    names[i] = cfg->upstreams[i].name;
  if ((close = cfg__closest(n->text, names)) != NULL)
    snprintf(hint, sizeof(hint), "; did you mean '%s'?", close);
  free(names);
  snprintf(path, sizeof(path), "routes[%zu].upstream", route);
  return cfg__error(ctx, n->line, n->col, path, "no upstream named '%s'%s",
                    cfg__show(shown, sizeof(shown), n->text), hint);
}

/* Points each route at its upstream, or makes the one default route a single upstream needs. */
static int link_routes(struct cfg__ctx *ctx, const struct cfg__node *root, struct lbp_config *cfg) {
  const struct cfg__node *item = cfg->nroutes > 0 ? cfg__map_get(root, "routes")->child : NULL;
  const struct cfg__node *ups = cfg__map_get(root, "upstreams");

  for (size_t i = 0; i < cfg->nroutes; i++, item = item->next) {
    const struct cfg__node *name = cfg__map_get(item, "upstream");
    if (find_upstream(cfg, name->text, &cfg->routes[i].upstream) != 0)
      return missing_upstream(ctx, cfg, name, i);
  }
  if (cfg->nroutes > 0)
    return 0;
  if (cfg->nupstreams > 1)
    return cfg__error(ctx, ups->key_line, ups->key_col, "upstreams",
                      "routes are required when there are several upstreams (%zu)",
                      cfg->nupstreams);
  if ((cfg->routes = calloc(1, sizeof(*cfg->routes))) == NULL)
    return -ENOMEM;
  cfg->nroutes = 1;
  cfg->routes[0].upstream = 0;
  cfg->routes[0].line = cfg->upstreams[0].line;
  cfg->routes[0].col = cfg->upstreams[0].col;
  return 0;
}

static int resolve(struct cfg__ctx *ctx, struct cfg_addr *a, const char *path) {
  char shown[64];
  int rc = cfg_resolve(a);

  if (rc == 0)
    return 0;
  if (rc == UV_ENOMEM || rc == UV_EAI_MEMORY)
    return -ENOMEM;
  return cfg__error(ctx, a->line, a->col, path, "cannot resolve '%s': %s",
                    cfg__show(shown, sizeof(shown), a->host), uv_strerror(rc));
}

/* Resolves `listen` and every server once, now, so a typo fails the load rather than a request.
 * Servers that move (compose DNS) are re-resolved at run time by the master, not here. */
static int resolve_all(struct cfg__ctx *ctx, struct lbp_config *cfg) {
  char path[CFG__PATH_MAX], shown[64];
  int rc;

  if ((rc = resolve(ctx, &cfg->listen, "listen")) != 0)
    return rc;
  for (size_t i = 0; i < cfg->nupstreams; i++) {
    struct cfg_upstream *u = &cfg->upstreams[i];
    for (size_t j = 0; j < u->nservers; j++) {
      snprintf(path, sizeof(path), "upstreams.%s.servers[%zu]",
               cfg__show(shown, sizeof(shown), u->name), j);
      if ((rc = resolve(ctx, &u->servers[j].addr, path)) != 0)
        return rc;
    }
  }
  return 0;
}

int cfg__meaning(struct cfg__ctx *ctx, const struct cfg__node *root, struct lbp_config *cfg) {
  int rc;

  if ((rc = resolve_workers(cfg)) != 0 || (rc = check_port_base(ctx, root, cfg)) != 0 ||
      (rc = link_routes(ctx, root, cfg)) != 0 || (rc = resolve_all(ctx, cfg)) != 0)
    return rc;
  return 0;
}
