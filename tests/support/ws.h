/* WebSocket pieces shared by lbp-backend's echo endpoint and the tests' client: the handshake's
 * accept key (SHA-1 + base64, RFC 6455 4.2.2) and frame headers (RFC 6455 5.2). */
#ifndef LBP_TEST_WS_H
#define LBP_TEST_WS_H

#include <stddef.h>
#include <stdint.h>

enum ws_opcode { WS_CONT = 0, WS_TEXT = 1, WS_BINARY = 2, WS_CLOSE = 8, WS_PING = 9, WS_PONG = 10 };

/* Sec-WebSocket-Accept for a Sec-WebSocket-Key: base64(SHA-1(key + GUID)), 28 characters and
 * a NUL into out. */
void ws_accept(const char *key, size_t keylen, char out[29]);

/* Writes a frame header into out (at most 14 bytes): FIN when `fin`, the opcode, the payload
 * length, and the masking key when mask is not NULL (clients mask, servers do not). Returns its
 * length. */
size_t ws_frame_head(uint8_t *out, int fin, int opcode, uint64_t len, const uint8_t mask[4]);

/* A frame header being parsed. */
struct ws_head {
  uint8_t buf[14];
  size_t have, need; /* bytes seen, bytes the header takes (known after the first two) */
  int fin, opcode, masked;
  uint64_t len;
  uint8_t mask[4];
};

/* Feeds bytes to a header; returns how many it took, and sets *done once it is complete. */
size_t ws_head_feed(struct ws_head *h, const uint8_t *p, size_t n, int *done);

/* XORs p[0..n) with the mask, for payload bytes starting at offset `off` of the frame. */
void ws_unmask(uint8_t *p, size_t n, const uint8_t mask[4], uint64_t off);

#endif
