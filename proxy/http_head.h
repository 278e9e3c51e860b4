/* Request/response head parsing with llhttp and rewriting as iovecs over the received bytes. */
#ifndef LBP_HTTP_HEAD_H
#define LBP_HTTP_HEAD_H

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
  PX_HEAD_HAS_VIA = 1 << 12,    /* a Via line was seen (via_end is valid) */
  PX_HEAD_VIA_OPEN = 1 << 13,
  PX_HEAD_HAS_UPGRADE = 1 << 14, /* an Upgrade line was seen (dropped unless kept) */
  PX_HEAD_BODY_LIMIT = 1 << 15,  /* the body crossed body_max (the parser stopped: HPE_USER) */
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
};

/* llhttp settings wired to the px_head in parser->data. on_headers_complete and
 * on_message_complete return HPE_PAUSED so the caller learns where the head and the message
 * end (llhttp_get_error_pos) and decides what comes next. */
extern const llhttp_settings_t px_request_settings;
extern const llhttp_settings_t px_response_settings;

/* Starts a new head at offset `start` of `base`. */
void px_head_reset(struct px_head *h, const char *base, int is_request, uint32_t start);

/* Finishes the head once llhttp paused at headers complete with error_pos at `end`: closes the
 * last drop, applies the Connection tokens. Returns 0, or -1 if the head cannot be forwarded
 * (too many hop-by-hop lines). */
int px_head_complete(struct px_head *h, uint32_t end);

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

#endif
