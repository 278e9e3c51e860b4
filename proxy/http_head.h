/* Request/response head parsing with llhttp and rewriting as iovecs over the received bytes. */
#ifndef LBP_HTTP_HEAD_H
#define LBP_HTTP_HEAD_H

#include "http_strict.h"

#include <llhttp.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define PX_HEAD_MAX_DROPS   12 /* header lines one head may drop (hop-by-hop, replaced) */
#define PX_HEAD_MAX_CONN    4  /* Connection header lines remembered for their tokens */
#define PX_HEAD_MAX_UPGRADE 2  /* Upgrade header lines remembered (kept for a tunnel) */
#define PX_HEAD_MAX_IOV     48

struct px_span {
  uint32_t off, len;
};

enum px_head_flags {
  PX_HEAD_DONE = 1 << 0,        /* headers complete: later callbacks are trailers, ignored */
  PX_HEAD_HAS_XFF = 1 << 1,     /* an X-Forwarded-For line was seen (xff_end is valid) */
  PX_HEAD_HAS_HOST = 1 << 2,    /* a Host line was seen (host is valid) */
  PX_HEAD_DUP_HOST = 1 << 3,    /* more than one Host line: a bad request */
  PX_HEAD_CONN_TOKENS = 1 << 4, /* Connection names other headers, which must go too */
  PX_HEAD_OVERFLOW = 1 << 5,    /* too many lines to drop: treat the head as bad */
  PX_HEAD_IN_FIELD = 1 << 6,    /* parser is inside a header name */
  PX_HEAD_IN_VALUE = 1 << 7,    /* parser is inside a header value */
  PX_HEAD_DROP_OPEN = 1 << 8,   /* the last drop's end is not known yet */
  PX_HEAD_XFF_OPEN = 1 << 9,    /* the last X-Forwarded-For line's end is not known yet */
  PX_HEAD_HOST_OPEN = 1 << 10,  /* the Host line's end is not known yet */
  PX_HEAD_OBS_FOLD = 1 << 11,   /* a value continued on the next line (obsolete): reject */
  PX_HEAD_CHUNKED = 1 << 12,    /* the body is chunked: px_head_execute checks its framing */
  PX_HEAD_DECHUNK = 1 << 13,    /* ... and px_head_body strips it (for an HTTP/1.0 client) */
  PX_HEAD_LINE_SEEN = 1 << 14,  /* the request line started (leading empty lines skipped) */
  PX_HEAD_HAS_VIA = 1 << 15,    /* a Via line was seen (via_end is valid) */
  PX_HEAD_VIA_OPEN = 1 << 16,
  PX_HEAD_HAS_UPGRADE = 1 << 17, /* an Upgrade line was seen (dropped unless kept) */
  PX_HEAD_BODY_LIMIT = 1 << 18,  /* the body crossed body_max (the parser stopped: HPE_USER) */
};

/* Bytes to insert before offset `off` of the received head (px_head_iov_ins). */
struct px_insert {
  uint32_t off;
  uv_buf_t buf;
};

/* What the callbacks learn about one head. Offsets are from `base`, the buffer the message is
 * read into; the buffer must not move while the head is parsed. */
struct px_head {
  const char *base;
  uint32_t start; /* first byte of the head */
  uint32_t end;   /* one past the blank line ending the head (set by px_head_complete) */
  uint32_t flags;
  uint8_t is_request;
  uint8_t ndrops;
  uint8_t nconn;
  uint8_t nupgrade;
  struct px_span url;       /* request target */
  struct px_span host;      /* Host value */
  struct px_span host_line; /* the whole Host line, its CRLF included */
  struct px_span field;     /* current header name */
  struct px_span value;     /* current header value */
  uint32_t xff_end;         /* end of the last X-Forwarded-For line, before its CRLF */
  uint32_t via_end;         /* ... of the last Via line */
  uint64_t body_len;        /* request body bytes parsed so far (chunk framing excluded) */
  uint64_t body_max;        /* more than this stops the parser with HPE_USER (0: no limit) */
  struct px_span drops[PX_HEAD_MAX_DROPS];     /* header lines not forwarded, in order */
  struct px_span conn[PX_HEAD_MAX_CONN];       /* Connection values, for their tokens */
  struct px_span upgrade[PX_HEAD_MAX_UPGRADE]; /* Upgrade lines (in drops until kept) */
  struct px_span te_line;                      /* the Transfer-Encoding line, CRLF included */
  const char *why;         /* the strict-HTTP rule the head or body broke, or NULL */
  const llhttp_t *parser;  /* the parser of this head (set when its headers complete) */
  struct px_chunked chunk; /* our own check of a chunked body (px_head_execute) */
  struct px_chunked strip; /* de-chunking for an HTTP/1.0 client (px_head_body) */
};

/* llhttp settings wired to the px_head in parser->data. on_headers_complete and
 * on_message_complete return HPE_PAUSED so the caller learns where the head and the message
 * end (llhttp_get_error_pos) and decides what comes next. */
extern const llhttp_settings_t px_request_settings;
extern const llhttp_settings_t px_response_settings;

/* Starts a new head at offset `start` of `base`. */
void px_head_reset(struct px_head *h, const char *base, int is_request, uint32_t start);

/* Finishes the head once llhttp paused at headers complete with error_pos at `end`: checks it
 * with px_strict_head (http_strict.h) and compares the framing found there with llhttp's
 * (version, Content-Length, chunked, status; no lenient flag may be set), closes the last
 * drop, applies the Connection tokens. Returns 0, or -1 if the head must not be forwarded (it
 * breaks a strict-HTTP rule: h->why says which; obs-fold; too many hop-by-hop lines). Callers
 * answer -1 with 400 for a request, 502 for a response, and never reuse that connection. */
int px_head_complete(struct px_head *h, uint32_t end);

/* llhttp_execute plus lbproxy's own check of a chunked body: every execute over a message
 * whose head px_head_complete accepted must go through here, in both directions. The body
 * bytes llhttp consumed are fed to a strict chunked-framing check (px_chunked_feed), which
 * must end exactly where llhttp reports message complete. Returns llhttp's result, or
 * HPE_INVALID_CHUNK_SIZE (h->why set) when the framing is bad or the two disagree: the caller
 * treats it like any llhttp error (400, or 502/cut for a response) and drops the connection. */
llhttp_errno_t px_head_execute(llhttp_t *p, struct px_head *h, const char *data, size_t len);

/* For a client that speaks HTTP/1.0, which cannot read chunked framing: call once the final
 * response head is complete (after px_head_complete). A chunked response is then passed on
 * close-delimited: its Transfer-Encoding line is dropped, *keep_alive is cleared (so the head
 * says "Connection: close" and the client connection closes after the body), and px_head_body
 * strips the framing. Returns 0, or -1 if the head cannot be rewritten (too many drops). */
int px_head_for_http10(struct px_head *h, uint8_t *keep_alive);

/* Body bytes base[from..to) of a response, about to be forwarded after px_head_execute
 * accepted them, each byte passed exactly once. Returns the end of what to forward from
 * `from`: `to`, or, when px_head_for_http10 asked for de-chunking, the end of the chunk data
 * moved to the front of the range (framing and trailers removed). */
uint32_t px_head_body(struct px_head *h, char *base, uint32_t from, uint32_t to);

/* Builds the forwarded head as iovecs over `h->base`: the received bytes minus dropped lines,
 * with the `nins` inserts (sorted by offset; none may fall inside a dropped range) placed
 * before their offsets, and `tail` pieces placed before the blank line. The last iovec runs on
 * to `extra` bytes past the head (body bytes already received). Returns the iovec count
 * (<= max) or -1. */
int px_head_iov_ins(const struct px_head *h, const struct px_insert *ins, int nins,
                    const uv_buf_t *tail, int ntail, uint32_t extra, uv_buf_t *iov, int max);

/* px_head_iov_ins with one insert: `xff_insert` (if not NULL and an X-Forwarded-For line
 * exists) placed after the last X-Forwarded-For value. */
int px_head_iov(const struct px_head *h, const uv_buf_t *xff_insert, const uv_buf_t *tail,
                int ntail, uint32_t extra, uv_buf_t *iov, int max);

/* Adds [off, off+len) to the bytes not forwarded (kept sorted; used for the scheme and
 * authority of an absolute-form target, the Host line it replaces, a stripped path prefix). */
void px_head_drop(struct px_head *h, uint32_t off, uint32_t len);

/* Forwards the Upgrade lines after all (a request or a 101 response of a tunnel): they were
 * dropped as hop-by-hop. */
void px_head_keep_upgrade(struct px_head *h);

/* Case-insensitive comparison of a span against a literal name. */
int px_span_ieq(const char *base, struct px_span s, const char *lit, size_t litlen);

/* What an llhttp error code (llhttp_errno_t) means, in words, with the code's name after them:
 * "not HTTP/1.x where the protocol name belongs (HPE_INVALID_CONSTANT)". A static string. */
const char *px_hpe_why(int err);

#endif
