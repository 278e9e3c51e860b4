/* Encoding and decoding of the upstream-server frames (SERVERS, STATES, FAILING). */
#include "srvwire.h"

#include "ipc.h"

#include <netinet/in.h>
#include <string.h>

size_t srvwire_put_spec(unsigned char *p, const struct px_server_spec *s) {
  size_t namelen = strnlen(s->name, sizeof(s->name) - 1);
  unsigned char *q = p;

  ipc_put_u64(q, s->id), q += 8;
  memset(q, 0, 1 + 2 + 16);
  if (s->addr.ss_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&s->addr;
    q[0] = 6;
    memcpy(q + 1, &a->sin6_port, 2);
    memcpy(q + 3, &a->sin6_addr, 16);
  } else {
    const struct sockaddr_in *a = (const struct sockaddr_in *)&s->addr;
    q[0] = 4;
    memcpy(q + 1, &a->sin_port, 2);
    memcpy(q + 3, &a->sin_addr, 4);
  }
  q += 1 + 2 + 16;
  ipc_put_u16(q, s->weight), q += 2;
  *q++ = s->backup;
  *q++ = (unsigned char)namelen;
  memcpy(q, s->name, namelen);
  return (size_t)(q - p) + namelen;
}

size_t srvwire_get_spec(const char *p, size_t len, struct px_server_spec *s) {
  const unsigned char *u = (const unsigned char *)p;
  size_t fixed = 8 + 1 + 2 + 16 + 2 + 1 + 1, namelen;

  if (len < fixed || (namelen = u[fixed - 1]) >= sizeof(s->name) || len < fixed + namelen)
    return 0;
  memset(s, 0, sizeof(*s));
  s->id = ipc_get_u64(p);
  if (u[8] == 6) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&s->addr;
    a->sin6_family = AF_INET6;
    memcpy(&a->sin6_port, u + 9, 2);
    memcpy(&a->sin6_addr, u + 11, 16);
  } else if (u[8] == 4) {
    struct sockaddr_in *a = (struct sockaddr_in *)&s->addr;
    a->sin_family = AF_INET;
    memcpy(&a->sin_port, u + 9, 2);
    memcpy(&a->sin_addr, u + 11, 4);
  } else {
    return 0;
  }
  s->weight = ipc_get_u16(p + 27);
  s->backup = u[29];
  memcpy(s->name, p + fixed, namelen);
  s->name[namelen] = '\0';
  return fixed + namelen;
}

void srvwire_put_state(unsigned char *p, const struct bal_server_state *st) {
  ipc_put_u64(p, st->id);
  ipc_put_u64(p + 8, st->up_since_ms);
  ipc_put_u64(p + 16, st->failing_until_ms);
  ipc_put_u16(p + 24, st->weight);
  p[26] = st->health;
  p[27] = st->admin;
}

void srvwire_get_state(const char *p, struct bal_server_state *st) {
  memset(st, 0, sizeof(*st));
  st->id = ipc_get_u64(p);
  st->up_since_ms = ipc_get_u64(p + 8);
  st->failing_until_ms = ipc_get_u64(p + 16);
  st->weight = ipc_get_u16(p + 24);
  st->health = (uint8_t)p[26];
  st->admin = (uint8_t)p[27];
}
