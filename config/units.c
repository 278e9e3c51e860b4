/* Value syntaxes of the config: durations, sizes, plain numbers, host:port, and address resolution.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <uv.h>

#include "config_internal.h"

/* Reads the leading decimal digits of `s` into *v and returns how many there were (0 when none),
 * or -1 on overflow. Signs, spaces and "0x" are not digits, so they are refused by every caller. */
static int leading_uint(const char *s, uint64_t *v) {
  uint64_t n = 0;
  int i = 0;

  for (; s[i] >= '0' && s[i] <= '9'; i++) {
    unsigned d = (unsigned)(s[i] - '0');
    if (n > (UINT64_MAX - d) / 10)
      return -1;
    n = n * 10 + d;
    if (i > 64) /* a number this long has overflowed already; keeps `i` far from INT_MAX */
      return -1;
  }
  *v = n;
  return i;
}

int cfg__parse_uint(const char *s, uint64_t *v) {
  int n = leading_uint(s, v);
  return n > 0 && s[n] == '\0' ? 0 : UV_EINVAL;
}

/* Multiplies without wrapping: 0 or UV_EINVAL. */
static int scale(uint64_t n, uint64_t unit, uint64_t *out) {
  if (n != 0 && unit > UINT64_MAX / n)
    return UV_EINVAL;
  *out = n * unit;
  return 0;
}

int cfg_parse_duration(const char *s, uint64_t *ms) {
  /* Durations are spelled in lower case only: "1M" could as well mean a month. */
  static const struct {
    const char *suffix;
    uint64_t ms;
  } units[] = {{"", 1000}, {"ms", 1}, {"s", 1000}, {"m", 60 * 1000}, {"h", 60 * 60 * 1000}};
  uint64_t n;
  int len;

  if (s == NULL || (len = leading_uint(s, &n)) <= 0)
    return UV_EINVAL;
  for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
    if (strcmp(s + len, units[i].suffix) == 0)
      return scale(n, units[i].ms, ms);
  return UV_EINVAL;
}

int cfg_parse_size(const char *s, uint64_t *bytes) {
  uint64_t n, unit = 1;
  const char *p;
  int len;

  if (s == NULL || (len = leading_uint(s, &n)) <= 0)
    return UV_EINVAL;
  p = s + len;
  switch (*p) {
  case 'k':
  case 'K':
    unit = 1024;
    p++;
    break;
  case 'm':
  case 'M':
    unit = 1024 * 1024;
    p++;
    break;
  case 'g':
  case 'G':
    unit = 1024 * 1024 * 1024;
    p++;
    break;
  }
  if (*p == 'b' || *p == 'B') /* "16kb" and "512b" read as they would in prose */
    p++;
  if (*p != '\0')
    return UV_EINVAL;
  return scale(n, unit, bytes);
}

/* A host as written outside brackets: printable, no spaces, and no ':' (a bare IPv6 address is
 * ambiguous with the port) or brackets. */
static int host_chars_ok(const char *h, size_t len) {
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)h[i];
    if (c <= ' ' || c >= 0x7f || c == ':' || c == '[' || c == ']' || c == '/')
      return 0;
  }
  return 1;
}

/* Splits s into host (without brackets) and port text; 0 or UV_EINVAL with *why set. */
static int split_hostport(const char *s, const char **host, size_t *hlen, const char **port,
                          const char **why) {
  const char *colon;

  if (s[0] == '[') {
    const char *end = strchr(s, ']');
    if (end == NULL)
      return *why = "missing ']' after an IPv6 address", UV_EINVAL;
    if (end[1] != ':')
      return *why = "missing port (expected [v6]:port)", UV_EINVAL;
    *host = s + 1;
    *hlen = (size_t)(end - s - 1);
    *port = end + 2;
    return 0;
  }
  colon = strrchr(s, ':');
  if (colon == NULL)
    return *why = "missing port (expected host:port)", UV_EINVAL;
  *host = s;
  *hlen = (size_t)(colon - s);
  *port = colon + 1;
  if (!host_chars_ok(s, *hlen))
    return *why = "bad host (IPv6 addresses go in brackets: [::1]:80)", UV_EINVAL;
  return 0;
}

int cfg__parse_hostport(const char *s, struct cfg_addr *a, const char **why) {
  const char *host, *port;
  size_t hlen;
  uint64_t p;
  char v6[INET6_ADDRSTRLEN + 8];
  struct in6_addr in6;
  const char *unused;

  if (why == NULL)
    why = &unused;
  if (s == NULL)
    return *why = "missing value", UV_EINVAL;
  if (split_hostport(s, &host, &hlen, &port, why) != 0)
    return UV_EINVAL;
  if (hlen >= sizeof(a->host))
    return *why = "host name too long", UV_EINVAL;
  if (s[0] == '[') {
    if (hlen == 0 || hlen >= sizeof(v6))
      return *why = "bad IPv6 address in brackets", UV_EINVAL;
    memcpy(v6, host, hlen);
    v6[hlen] = '\0';
    if (inet_pton(AF_INET6, v6, &in6) != 1)
      return *why = "bad IPv6 address in brackets", UV_EINVAL;
  }
  if (*port == '\0')
    return *why = "missing port", UV_EINVAL;
  if (cfg__parse_uint(port, &p) != 0 || p > 65535)
    return *why = "port must be a number from 0 to 65535", UV_EINVAL;
  memcpy(a->host, host, hlen);
  a->host[hlen] = '\0';
  a->port = (uint16_t)p;
  return 0;
}

int cfg_parse_hostport(const char *s, struct cfg_addr *a) {
  return cfg__parse_hostport(s, a, NULL);
}

/* getaddrinfo's EAI_* codes as libuv's UV_EAI_*, so callers can print them with uv_strerror. */
static int eai_to_uv(int rc) {
  switch (rc) {
  case EAI_AGAIN:
    return UV_EAI_AGAIN;
  case EAI_BADFLAGS:
    return UV_EAI_BADFLAGS;
  case EAI_FAMILY:
    return UV_EAI_FAMILY;
  case EAI_MEMORY:
    return UV_EAI_MEMORY;
  case EAI_NONAME:
    return UV_EAI_NONAME;
  case EAI_SERVICE:
    return UV_EAI_SERVICE;
  case EAI_SOCKTYPE:
    return UV_EAI_SOCKTYPE;
#ifdef EAI_NODATA
  case EAI_NODATA:
    return UV_EAI_NODATA;
#endif
#ifdef EAI_ADDRFAMILY
  case EAI_ADDRFAMILY:
    return UV_EAI_ADDRFAMILY;
#endif
  case EAI_SYSTEM:
    return errno != 0 ? -errno : UV_EAI_FAIL;
  default:
    return UV_EAI_FAIL;
  }
}

/* Stores an IPv4 or IPv6 address with a->port into a->sa. */
static void set_sa(struct cfg_addr *a, int family, const void *addr) {
  memset(&a->sa, 0, sizeof(a->sa));
  if (family == AF_INET) {
    struct sockaddr_in *sin = (struct sockaddr_in *)&a->sa;
    sin->sin_family = AF_INET;
    sin->sin_port = htons(a->port);
    memcpy(&sin->sin_addr, addr, sizeof(sin->sin_addr));
    a->salen = sizeof(*sin);
  } else {
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&a->sa;
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(a->port);
    memcpy(&sin6->sin6_addr, addr, sizeof(sin6->sin6_addr));
    a->salen = sizeof(*sin6);
  }
}

int cfg_resolve(struct cfg_addr *a) {
  struct in_addr in4;
  struct in6_addr in6;
  struct addrinfo hints, *res, *ai;
  int rc;

  a->any = 0;
  if (a->host[0] == '\0' || strcmp(a->host, "*") == 0) {
    a->any = 1;
    return set_sa(a, AF_INET6, &in6addr_any), 0;
  }
  if (inet_pton(AF_INET, a->host, &in4) == 1)
    return set_sa(a, AF_INET, &in4), 0;
  if (inet_pton(AF_INET6, a->host, &in6) == 1)
    return set_sa(a, AF_INET6, &in6), 0;

  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  errno = 0;
  rc = getaddrinfo(a->host, NULL, &hints, &res);
  if (rc != 0)
    return eai_to_uv(rc);
  rc = UV_EAI_NODATA;
  for (ai = res; ai != NULL; ai = ai->ai_next) {
    if (ai->ai_family == AF_INET) {
      set_sa(a, AF_INET, &((struct sockaddr_in *)ai->ai_addr)->sin_addr);
      rc = 0;
      break;
    }
    if (ai->ai_family == AF_INET6) {
      set_sa(a, AF_INET6, &((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr);
      rc = 0;
      break;
    }
  }
  freeaddrinfo(res);
  return rc;
}

/* Writes n with the largest unit of `units` (smallest first) that divides it exactly. */
static const char *fmt_units(char *buf, size_t size, uint64_t n, const char *const *names,
                             const uint64_t *mult, size_t nunits) {
  size_t i = nunits - 1;

  while (i > 0 && (n == 0 || n % mult[i] != 0))
    i--;
  snprintf(buf, size, "%llu%s", (unsigned long long)(n / mult[i]), names[i]);
  return buf;
}

const char *cfg__fmt_duration(char *buf, size_t size, uint64_t ms) {
  static const char *const names[] = {"ms", "s", "m", "h"};
  static const uint64_t mult[] = {1, 1000, 60 * 1000, 60 * 60 * 1000};
  return fmt_units(buf, size, ms, names, mult, 4);
}

const char *cfg__fmt_size(char *buf, size_t size, uint64_t bytes) {
  static const char *const names[] = {"", "k", "m", "g"};
  static const uint64_t mult[] = {1, 1024, 1024 * 1024, 1024 * 1024 * 1024};
  return fmt_units(buf, size, bytes, names, mult, 4);
}
