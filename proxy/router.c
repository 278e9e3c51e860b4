/* Route matching: Host (exact or "*.suffix") and path prefix, most specific route wins. */
#include "router.h"

#include "config.h"

#include <string.h>
#include <strings.h>

/* Trims whitespace, a ":port" suffix and a trailing dot from a Host value. */
static void host_normalize(const char **h, size_t *n) {
  const char *s = *h;
  size_t len = *n;

  while (len && (*s == ' ' || *s == '\t'))
    s++, len--;
  while (len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
    len--;
  if (len && s[0] == '[') { /* [v6]:port */
    const char *close = memchr(s, ']', len);
    if (close)
      len = (size_t)(close - s) + 1;
  } else {
    const char *colon = memchr(s, ':', len);
    if (colon)
      len = (size_t)(colon - s);
  }
  if (len && s[len - 1] == '.')
    len--;
  *h = s;
  *n = len;
}

/* Returns 2 for an exact match, 1 for a "*.suffix" match, 0 for none. */
static int host_match(const char *pattern, const char *h, size_t n) {
  size_t plen = strlen(pattern);

  if (plen == n && strncasecmp(pattern, h, n) == 0)
    return 2;
  if (plen > 2 && pattern[0] == '*' && pattern[1] == '.' && n > plen - 1 &&
      strncasecmp(pattern + 1, h + n - (plen - 1), plen - 1) == 0)
    return 1;
  return 0;
}

/* Reduces a request target to its path: drops "scheme://authority" and the query. */
static void target_path(const char **t, size_t *n) {
  const char *s = *t;
  size_t len = *n;
  const char *q;

  if (len && s[0] != '/') {
    const char *scheme = memmem(s, len, "://", 3); /* the target is not NUL-terminated */
    if (scheme != NULL && (size_t)(scheme - s) < len) {
      const char *slash;
      size_t skip = (size_t)(scheme - s) + 3;
      slash = memchr(s + skip, '/', len - skip);
      if (slash == NULL) {
        *t = "/";
        *n = 1;
        return;
      }
      len -= (size_t)(slash - s);
      s = slash;
    }
  }
  q = memchr(s, '?', len);
  if (q)
    len = (size_t)(q - s);
  *t = s;
  *n = len;
}

int px_route(const struct lbp_config *cfg, const char *host, size_t hostlen, const char *target,
             size_t targetlen) {
  return px_route_in(cfg->routes, cfg->nroutes, host, hostlen, target, targetlen);
}

int px_route_in(const struct cfg_route *routes, size_t nroutes, const char *host, size_t hostlen,
                const char *target, size_t targetlen) {
  int best = -1, best_host = -1;
  size_t best_path = 0;

  if (host != NULL)
    host_normalize(&host, &hostlen);
  target_path(&target, &targetlen);
  for (size_t i = 0; i < nroutes; i++) {
    const struct cfg_route *r = &routes[i];
    int hm = 0;
    size_t plen = 0;

    if (r->host != NULL) {
      hm = host != NULL ? host_match(r->host, host, hostlen) : 0;
      if (hm == 0)
        continue;
    }
    if (r->path != NULL) {
      plen = strlen(r->path);
      if (plen > targetlen || memcmp(r->path, target, plen) != 0)
        continue;
    }
    if (hm > best_host || (hm == best_host && plen > best_path)) {
      best = (int)i;
      best_host = hm;
      best_path = plen;
    }
  }
  return best;
}
