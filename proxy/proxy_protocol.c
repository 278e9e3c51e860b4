/* PROXY protocol v2 encoding (master side) and decoding (worker side). */
#include "proxy_protocol.h"

#include <netinet/in.h>
#include <string.h>

static const unsigned char sig[PP2_SIG_LEN] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                               0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

int pp2_encode(const struct sockaddr *src, const struct sockaddr *dst, unsigned char *out,
               size_t cap) {
  size_t alen;

  if (src->sa_family != dst->sa_family)
    return -1;
  alen = src->sa_family == AF_INET ? 12 : src->sa_family == AF_INET6 ? 36 : 0;
  if (alen == 0 || cap < PP2_HDR_MIN + alen)
    return -1;
  memcpy(out, sig, PP2_SIG_LEN);
  out[12] = 0x21;                                    /* version 2, PROXY */
  out[13] = src->sa_family == AF_INET ? 0x11 : 0x21; /* TCP over IPv4 / IPv6 */
  out[14] = (unsigned char)(alen >> 8);
  out[15] = (unsigned char)alen;
  if (src->sa_family == AF_INET) {
    const struct sockaddr_in *s = (const void *)src, *d = (const void *)dst;
    memcpy(out + 16, &s->sin_addr, 4);
    memcpy(out + 20, &d->sin_addr, 4);
    memcpy(out + 24, &s->sin_port, 2);
    memcpy(out + 26, &d->sin_port, 2);
  } else {
    const struct sockaddr_in6 *s = (const void *)src, *d = (const void *)dst;
    memcpy(out + 16, &s->sin6_addr, 16);
    memcpy(out + 32, &d->sin6_addr, 16);
    memcpy(out + 48, &s->sin6_port, 2);
    memcpy(out + 50, &d->sin6_port, 2);
  }
  return (int)(PP2_HDR_MIN + alen);
}

int pp2_decode(const unsigned char *buf, size_t len, struct sockaddr_storage *src) {
  size_t n = len < PP2_SIG_LEN ? len : PP2_SIG_LEN;
  size_t body, total;

  if (memcmp(buf, sig, n) != 0)
    return -1;
  if (len < PP2_HDR_MIN)
    return 0;
  if ((buf[12] & 0xF0) != 0x20 || (buf[12] & 0x0F) > 1)
    return -1;
  body = ((size_t)buf[14] << 8) | buf[15];
  total = PP2_HDR_MIN + body;
  if (total > PP2_MAX_LEN)
    return -1;
  if (len < total)
    return 0;
  memset(src, 0, sizeof(*src));
  src->ss_family = AF_UNSPEC;
  if ((buf[12] & 0x0F) == 0) /* LOCAL: the sender's own connection, no address */
    return (int)total;
  if (buf[13] == 0x11 && body >= 12) {
    struct sockaddr_in *s = (struct sockaddr_in *)src;
    s->sin_family = AF_INET;
    memcpy(&s->sin_addr, buf + 16, 4);
    memcpy(&s->sin_port, buf + 24, 2);
  } else if (buf[13] == 0x21 && body >= 36) {
    struct sockaddr_in6 *s = (struct sockaddr_in6 *)src;
    s->sin6_family = AF_INET6;
    memcpy(&s->sin6_addr, buf + 16, 16);
    memcpy(&s->sin6_port, buf + 48, 2);
  } else if ((buf[13] & 0xF0) == 0x10 || (buf[13] & 0xF0) == 0x20) {
    return -1; /* an address family we know, but too short */
  }
  return (int)total;
}
