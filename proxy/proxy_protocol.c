/* PROXY protocol v2 encoding (master side) and decoding (worker side). */
#include "proxy_protocol.h"

#include <netinet/in.h>
#include <string.h>
#include <uv.h>

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

/* ---- the secret TLV ---- */

int pp2_encode_secret(const struct sockaddr *src, const struct sockaddr *dst,
                      const unsigned char secret[PP2_SECRET_LEN], unsigned char *out, size_t cap) {
  const size_t tlv = 3 + PP2_SECRET_LEN;
  size_t n, body;

  if ((src == NULL) != (dst == NULL))
    return UV_EINVAL;
  if (src == NULL) { /* LOCAL, AF_UNSPEC: no address block */
    if (cap < PP2_HDR_MIN + tlv)
      return UV_ENOBUFS;
    memcpy(out, sig, PP2_SIG_LEN);
    out[12] = 0x20;
    out[13] = 0x00;
    n = PP2_HDR_MIN;
  } else {
    int r;
    if (src->sa_family != dst->sa_family ||
        (src->sa_family != AF_INET && src->sa_family != AF_INET6))
      return UV_EINVAL;
    r = pp2_encode(src, dst, out, cap < tlv ? 0 : cap - tlv);
    if (r < 0)
      return UV_ENOBUFS;
    n = (size_t)r;
  }
  out[n] = PP2_TYPE_SECRET;
  out[n + 1] = 0;
  out[n + 2] = PP2_SECRET_LEN;
  memcpy(out + n + 3, secret, PP2_SECRET_LEN);
  n += tlv;
  body = n - PP2_HDR_MIN;
  out[14] = (unsigned char)(body >> 8);
  out[15] = (unsigned char)body;
  return (int)n;
}

/* Length of the address block of a header's family (byte 13, high nibble). */
static size_t addr_len(unsigned char fam) {
  switch (fam >> 4) {
  case 1:
    return 12; /* IPv4: two addresses, two ports */
  case 2:
    return 36; /* IPv6 */
  case 3:
    return 216; /* UNIX: two 108-byte paths */
  default:
    return 0; /* AF_UNSPEC */
  }
}

/* Walks the TLVs of hdr[0..len): the first one of `type` goes to *value and *vlen; returns how many
 * there are, or UV_EPROTO if the header or the list is malformed. */
static int tlv_walk(const unsigned char *hdr, size_t len, uint8_t type, const unsigned char **value,
                    size_t *vlen) {
  size_t pos, total;
  int found = 0;

  if (len < PP2_HDR_MIN || memcmp(hdr, sig, PP2_SIG_LEN) != 0 || (hdr[12] & 0xF0) != 0x20)
    return UV_EPROTO;
  total = PP2_HDR_MIN + (((size_t)hdr[14] << 8) | hdr[15]);
  pos = PP2_HDR_MIN + addr_len(hdr[13]);
  if (total != len || pos > total)
    return UV_EPROTO;
  while (pos < total) {
    size_t l;
    if (total - pos < 3)
      return UV_EPROTO;
    l = ((size_t)hdr[pos + 1] << 8) | hdr[pos + 2];
    if (total - pos - 3 < l)
      return UV_EPROTO;
    if (hdr[pos] == type && found++ == 0) {
      *value = hdr + pos + 3;
      *vlen = l;
    }
    pos += 3 + l;
  }
  return found;
}

int pp2_tlv_find(const unsigned char *hdr, size_t len, uint8_t type, const unsigned char **value,
                 size_t *vlen) {
  int n = tlv_walk(hdr, len, type, value, vlen);
  return n > 1 ? 1 : n;
}

int pp2_ct_equal(const void *a, const void *b, size_t n) {
  const volatile unsigned char *x = a, *y = b;
  unsigned char d = 0;

  for (size_t i = 0; i < n; i++)
    d |= (unsigned char)(x[i] ^ y[i]);
  return d == 0;
}

int pp2_check_secret(const unsigned char *hdr, size_t len,
                     const unsigned char secret[PP2_SECRET_LEN]) {
  const unsigned char *v = NULL;
  size_t vlen = 0;
  int n = tlv_walk(hdr, len, PP2_TYPE_SECRET, &v, &vlen);

  if (n < 0)
    return n;
  if (n != 1 || vlen != PP2_SECRET_LEN) /* none, or two: which one would the master have sent? */
    return UV_EACCES;
  return pp2_ct_equal(v, secret, PP2_SECRET_LEN) ? 0 : UV_EACCES;
}
