/* Test HTTP/1.1 client on blocking sockets, parsing responses with llhttp. */
#ifndef LBP_TEST_CLIENT_H
#define LBP_TEST_CLIENT_H

#include <stddef.h>
#include <stdint.h>

/* One parsed response. The body is checksummed as it streams (FNV-1a 64); only its first
 * `body_cap` bytes are kept. */
struct hc_resp {
  int status;
  int keep_alive;   /* llhttp_should_keep_alive() after the message */
  int chunked;      /* response used Transfer-Encoding: chunked */
  char head[16384]; /* raw response head as received (status line + headers) */
  size_t head_len;
  uint64_t body_len;
  uint64_t body_fnv; /* FNV-1a 64 over the whole body */
  char body[65536];  /* first bytes of the body, NUL-terminated */
};

/* Connects to 127.0.0.1:port (from `bind_ip` when not NULL, e.g. "127.0.0.2"); the socket
 * has 30 s send/receive timeouts. Returns the fd or -errno. */
int hc_connect(uint16_t port, const char *bind_ip);

/* Writes all of buf. 0 or -errno. */
int hc_send_all(int fd, const void *buf, size_t len);

/* Reads and parses one response from fd (into *r). `head_request` = 1 when the request was
 * HEAD. 0, or -ECONNRESET/-EPROTO/-ETIMEDOUT/... when no complete response arrived. */
int hc_read_response(int fd, struct hc_resp *r, int head_request);

/* Sends `req` (a raw request) and reads one response. 0 or negative. */
int hc_roundtrip(int fd, const char *req, struct hc_resp *r);

/* One-shot GET of `path` on a new connection with "Connection: close". 0 or negative. */
int hc_get(uint16_t port, const char *path, struct hc_resp *r);

/* Finds header `name` (case-insensitive) in r->head; copies its value into out. 0 or -1. */
int hc_header(const struct hc_resp *r, const char *name, char *out, size_t cap);

/* Reads until EOF or timeout; returns 1 if the peer closed (EOF/reset), 0 on timeout. */
int hc_wait_closed(int fd, int timeout_ms);

/* FNV-1a 64: start with HC_FNV_INIT, feed pieces in order. */
#define HC_FNV_INIT 0xcbf29ce484222325ULL
uint64_t hc_fnv(uint64_t h, const void *data, size_t len);

/* FNV-1a 64 of the first n bytes of the backends' pattern (pattern.h). */
uint64_t hc_pattern_fnv(uint64_t n);

#endif
