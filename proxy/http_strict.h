/* Strict HTTP/1.x syntax that lbproxy checks itself, whatever llhttp accepts: heads, chunked
 * bodies. */
#ifndef LBP_HTTP_STRICT_H
#define LBP_HTTP_STRICT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* What px_strict_head learned about a head. Offsets are from the `buf` it was given. */
struct px_strict_head {
  const char *why;  /* the first rule the head broke (a static string), NULL if none */
  uint32_t err_off; /* offset of the byte where that was seen */
  uint32_t te_off;  /* the Transfer-Encoding line, its CRLF included ... */
  uint32_t te_len;  /* ... (0 if there is none) */
  uint64_t content_length;
  uint16_t status; /* responses: the status code */
  uint8_t minor;   /* HTTP/1.<minor>: 0 or 1 */
  uint8_t has_cl;  /* one valid Content-Length line */
  uint8_t chunked; /* one Transfer-Encoding line whose value is exactly "chunked" */
};

/* Checks the head buf[start..end), which must run from the first byte of the start line to the
 * end of the blank line (as llhttp reported it), and fills *out. The rules (RFC 9110/9112 read
 * strictly, so that no server behind us can frame a message differently from us):
 *
 * - every line ends in CRLF: no bare CR, no bare LF; the head ends exactly at `end`;
 * - request line: METHOD SP target SP version CRLF, single spaces, METHOD a token, the target
 *   only visible ASCII (no space, TAB, control or byte >= 0x80); status line: version SP 3DIGIT
 *   [SP reason] CRLF, the reason without control bytes but HTAB; version HTTP/1.0 or HTTP/1.1;
 * - header lines: a non-empty token name directly followed by ':' (no space or TAB before the
 *   colon or inside the name), a value of SP, HTAB, visible ASCII and bytes >= 0x80 only (no NUL,
 *   no other control byte, no DEL); no line starts with SP or HTAB (obs-fold);
 * - Content-Length: at most one line, 1 to 18 digits between optional spaces (no sign, no hex,
 *   no list, no TAB); Transfer-Encoding: at most one line, exactly "chunked" (any case) between
 *   optional spaces; never both; no Content_Length or Transfer_Encoding spelt with '_'.
 *
 * Returns 0, or UV_EPROTO with out->why and out->err_off set. Never reads outside the range. */
int px_strict_head(const char *buf, uint32_t start, uint32_t end, int is_request,
                   struct px_strict_head *out);

/* Limits of the chunked framing we pass on. A chunk size is at most 16 hex digits (leading
 * zeros included) and below 2^52, so that no server (not even one storing it in a double) reads
 * another number; an extension or trailer line is at most PX_CHUNKED_MAX_LINE bytes. */
#define PX_CHUNKED_MAX_DIGITS 16
#define PX_CHUNKED_MAX_SIZE   ((1ULL << 52) - 1)
#define PX_CHUNKED_MAX_LINE   8192

/* An incremental check of a chunked body (RFC 9112 7.1), fed in pieces as they arrive:
 *   chunk-size (hex) [; extensions] CRLF  data CRLF  ...  0 [; extensions] CRLF
 *   trailer lines (token ':' value CRLF, checked as header lines)  CRLF
 * Zero-initialised is the start state. */
struct px_chunked {
  uint64_t left;  /* data bytes still to come in this chunk, or the size being read */
  uint16_t line;  /* bytes of the current extension or trailer line */
  uint8_t state;  /* internal (http_strict.c) */
  uint8_t digits; /* hex digits of the size being read */
};

/* Runs the grammar over p[0..n). Returns how many bytes belong to the body: n, or fewer when the
 * body ended inside p (the rest is the next message); or UV_EPROTO at the first byte that breaks
 * it (the state then stays failed). With `out` not NULL, only chunk data is kept: data bytes are
 * copied to out (which may be p itself: data only moves towards the front) and *out_len is set
 * to their count; framing, extensions and trailers are dropped. */
ssize_t px_chunked_feed(struct px_chunked *c, const char *p, size_t n, char *out, size_t *out_len);

/* 1 once the whole body (last chunk, trailers, final CRLF) has been fed. */
int px_chunked_done(const struct px_chunked *c);

/* 1 once any byte has been fed. */
int px_chunked_started(const struct px_chunked *c);

#endif
