/* Picks the upstream for a request from its Host and path, using the config's routes. */
#ifndef LBP_ROUTER_H
#define LBP_ROUTER_H

#include <stddef.h>

struct lbp_config;
struct cfg_route;

/* Returns the index of the route that matches best, or -1 if none does. `host` is the Host
 * header value as received (port, trailing dot and surrounding whitespace are ignored; NULL if
 * absent); `target` the request target (origin form "/p?q" or absolute form "http://h/p").
 * Precedence: a route with a matching host beats one without (exact beats "*."), then the
 * longest matching path prefix, then the earliest route in the file. */
int px_route(const struct lbp_config *cfg, const char *host, size_t hostlen, const char *target,
             size_t targetlen);

/* The same over any list of routes (a listener's). */
int px_route_in(const struct cfg_route *routes, size_t nroutes, const char *host, size_t hostlen,
                const char *target, size_t targetlen);

#endif
