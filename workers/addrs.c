/* Encoding of a generation's resolved server addresses (master) and applying them (worker). */
#include "addrs.h"

#include "ipc.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#define ENTRY 19 /* u8 family | u16 port | 16 address bytes */

static size_t count_servers(const struct lbp_config *cfg) {
  size_t n = 0;
  for (size_t i = 0; i < cfg->nupstreams; i++)
    n += cfg->upstreams[i].nservers;
  return n;
}

int lbp_addrs_encode(const struct lbp_config *cfg, unsigned char **out, size_t *len) {
  size_t n = count_servers(cfg), k = 0;
  unsigned char *b = calloc(1, 4 + n * ENTRY), *p;

  if (b == NULL)
    return UV_ENOMEM;
  ipc_put_u32(b, (uint32_t)n);
  for (size_t i = 0; i < cfg->nupstreams; i++)
    for (size_t j = 0; j < cfg->upstreams[i].nservers; j++, k++) {
      const struct sockaddr_storage *ss = &cfg->upstreams[i].servers[j].addr.sa;
      p = b + 4 + k * ENTRY;
      if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;
        p[0] = 6;
        memcpy(p + 1, &s6->sin6_port, 2);
        memcpy(p + 3, &s6->sin6_addr, 16);
      } else {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;
        p[0] = 4;
        memcpy(p + 1, &s4->sin_port, 2);
        memcpy(p + 3, &s4->sin_addr, 4);
      }
    }
  *out = b;
  *len = 4 + n * ENTRY;
  return 0;
}

static void set_one(struct cfg_addr *a, const unsigned char *p) {
  memset(&a->sa, 0, sizeof(a->sa));
  if (p[0] == 6) {
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&a->sa;
    s6->sin6_family = AF_INET6;
    memcpy(&s6->sin6_port, p + 1, 2);
    memcpy(&s6->sin6_addr, p + 3, 16);
    a->salen = sizeof(*s6);
  } else {
    struct sockaddr_in *s4 = (struct sockaddr_in *)&a->sa;
    s4->sin_family = AF_INET;
    memcpy(&s4->sin_port, p + 1, 2);
    memcpy(&s4->sin_addr, p + 3, 4);
    a->salen = sizeof(*s4);
  }
}

int lbp_addrs_apply(struct lbp_config *cfg, const unsigned char *buf, size_t len) {
  size_t n = count_servers(cfg), k = 0;

  if (len < 4 || ipc_get_u32((const char *)buf) != n || len != 4 + n * ENTRY)
    return UV_EINVAL;
  for (size_t i = 0; i < n; i++)
    if (buf[4 + i * ENTRY] != 4 && buf[4 + i * ENTRY] != 6)
      return UV_EINVAL;
  for (size_t i = 0; i < cfg->nupstreams; i++)
    for (size_t j = 0; j < cfg->upstreams[i].nservers; j++, k++)
      set_one(&cfg->upstreams[i].servers[j].addr, buf + 4 + k * ENTRY);
  return 0;
}
