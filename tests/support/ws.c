/* WebSocket pieces for the test backend and the tests: SHA-1, base64, frame headers. */
#include "ws.h"

#include <string.h>

static uint32_t rol(uint32_t x, int n) {
  return (x << n) | (x >> (32 - n));
}

/* One 64-byte block of SHA-1 (FIPS 180-4). */
static void sha1_block(uint32_t h[5], const uint8_t *p) {
  uint32_t w[80], a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];

  for (int i = 0; i < 16; i++)
    w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 |
           p[4 * i + 3];
  for (int i = 16; i < 80; i++)
    w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
  for (int i = 0; i < 80; i++) {
    uint32_t f, k, t;
    if (i < 20)
      f = (b & c) | (~b & d), k = 0x5A827999;
    else if (i < 40)
      f = b ^ c ^ d, k = 0x6ED9EBA1;
    else if (i < 60)
      f = (b & c) | (b & d) | (c & d), k = 0x8F1BBCDC;
    else
      f = b ^ c ^ d, k = 0xCA62C1D6;
    t = rol(a, 5) + f + e + k + w[i];
    e = d, d = c, c = rol(b, 30), b = a, a = t;
  }
  h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e;
}

static void sha1(const uint8_t *p, size_t n, uint8_t out[20]) {
  uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
  uint8_t tail[128] = {0};
  size_t full = n / 64 * 64, rest = n - full, tn = rest + 9 <= 64 ? 64 : 128;
  uint64_t bits = (uint64_t)n * 8;

  for (size_t i = 0; i < full; i += 64)
    sha1_block(h, p + i);
  memcpy(tail, p + full, rest);
  tail[rest] = 0x80;
  for (int i = 0; i < 8; i++)
    tail[tn - 1 - i] = (uint8_t)(bits >> (8 * i));
  for (size_t i = 0; i < tn; i += 64)
    sha1_block(h, tail + i);
  for (int i = 0; i < 20; i++)
    out[i] = (uint8_t)(h[i / 4] >> (24 - 8 * (i % 4)));
}

void ws_accept(const char *key, size_t keylen, char out[29]) {
  static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  uint8_t in[256], d[21] = {0};
  size_t n = keylen < sizeof(in) - 36 ? keylen : sizeof(in) - 36;
  int o = 0;

  memcpy(in, key, n);
  memcpy(in + n, guid, 36);
  sha1(in, n + 36, d);
  for (int i = 0; i < 21; i += 3) { /* 20 bytes: six full groups and one of two */
    uint32_t v = (uint32_t)d[i] << 16 | (i + 1 < 21 ? (uint32_t)d[i + 1] << 8 : 0) |
                 (i + 2 < 21 ? d[i + 2] : 0);
    out[o++] = b64[v >> 18 & 63];
    out[o++] = b64[v >> 12 & 63];
    out[o++] = i + 1 < 20 ? b64[v >> 6 & 63] : '=';
    out[o++] = i + 2 < 20 ? b64[v & 63] : '=';
  }
  out[28] = '\0';
}

size_t ws_frame_head(uint8_t *out, int fin, int opcode, uint64_t len, const uint8_t mask[4]) {
  size_t n = 2;

  out[0] = (uint8_t)((fin ? 0x80 : 0) | (opcode & 0x0f));
  if (len < 126) {
    out[1] = (uint8_t)len;
  } else if (len < 65536) {
    out[1] = 126;
    out[2] = (uint8_t)(len >> 8);
    out[3] = (uint8_t)len;
    n = 4;
  } else {
    out[1] = 127;
    for (int i = 0; i < 8; i++)
      out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
    n = 10;
  }
  if (mask != NULL) {
    out[1] |= 0x80;
    memcpy(out + n, mask, 4);
    n += 4;
  }
  return n;
}

size_t ws_head_feed(struct ws_head *h, const uint8_t *p, size_t n, int *done) {
  size_t used = 0;

  *done = 0;
  while (used < n) {
    if (h->have < 2 || h->have < h->need)
      h->buf[h->have++] = p[used++];
    if (h->have == 2) {
      int l = h->buf[1] & 0x7f;
      h->masked = (h->buf[1] & 0x80) != 0;
      h->need = 2 + (l == 126 ? 2 : l == 127 ? 8 : 0) + (h->masked ? 4 : 0);
    }
    if (h->have >= 2 && h->have == h->need)
      break;
  }
  if (h->have < 2 || h->have < h->need)
    return used;
  h->fin = (h->buf[0] & 0x80) != 0;
  h->opcode = h->buf[0] & 0x0f;
  h->len = h->buf[1] & 0x7f;
  size_t at = 2;
  if (h->len == 126) {
    h->len = (uint64_t)h->buf[2] << 8 | h->buf[3];
    at = 4;
  } else if (h->len == 127) {
    h->len = 0;
    for (int i = 0; i < 8; i++)
      h->len = h->len << 8 | h->buf[2 + i];
    at = 10;
  }
  if (h->masked)
    memcpy(h->mask, h->buf + at, 4);
  *done = 1;
  return used;
}

void ws_unmask(uint8_t *p, size_t n, const uint8_t mask[4], uint64_t off) {
  for (size_t i = 0; i < n; i++)
    p[i] ^= mask[(off + i) & 3];
}
