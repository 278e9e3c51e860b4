/* The heads lbproxy forwards: what it adds (X-Forwarded-*, Via, Forwarded, Connection) and what
 * it changes (Host, a path prefix), as iovecs over the received bytes. */
#ifndef LBP_REWRITE_H
#define LBP_REWRITE_H

#include "http_head.h"

/* What a forwarded request says about where it came from and where it goes. */
struct px_fwd {
  const char *peer; /* ", ADDRESS": the client (the X-Forwarded-For insert; +2 is the address) */
  uint32_t peer_len;
  const char *orig_host; /* the host the client asked for (Host or absolute-form authority) */
  uint32_t orig_host_len;
  const char *new_host; /* a Host line to send instead of the client's one, or NULL */
  uint32_t new_host_len;
  uint32_t path_off; /* where the path starts in the head's buffer */
  uint32_t strip;    /* path prefix bytes to drop there (0: none) */
  uint8_t forwarded; /* add an RFC 7239 Forwarded element */
  uint8_t http10;    /* an HTTP/1.0 request: ask the server to keep the connection */
  uint8_t upgrade;   /* a tunnel request: keep Upgrade, send Connection: upgrade */
};

/* Drops and inserts for the forwarded request head `h` (its hop-by-hop lines are dropped
 * already), then its iovecs (px_head_iov_ins; `extra` body bytes follow). The iovecs point into
 * h's buffer, f's strings and static text. Returns the count, or -1 if they do not fit. */
int px_rewrite_request(struct px_head *h, const struct px_fwd *f, uint32_t extra, uv_buf_t *iov,
                       int max);

/* An absolute-form target ("http://host:port/path", RFC 9112 3.2.2): drops its scheme and
 * authority from the forwarded head (the origin form goes on) and gives the authority's span,
 * which routes the request and replaces its Host line, as a proxy must. 0, or -1 for a target
 * not to forward (no path, userinfo, too many drops). */
int px_head_absolute_target(struct px_head *h, struct px_span *authority);

/* What the Connection line of a forwarded response says. */
enum px_conn_line {
  PX_CONN_NONE,       /* nothing: keep-alive is the default (HTTP/1.1 both sides) */
  PX_CONN_CLOSE,      /* the client connection closes after this response */
  PX_CONN_KEEP_ALIVE, /* HTTP/1.0 somewhere: say it stays */
  PX_CONN_UPGRADE,    /* a 101: the connection becomes a tunnel */
};

/* The forwarded response head `h` with our Connection line, `line` (a whole header line, or
 * NULL; the debug header) and Via; `extra` body bytes follow. */
int px_rewrite_response(struct px_head *h, enum px_conn_line conn, const uv_buf_t *line,
                        uint32_t extra, uv_buf_t *iov, int max);

#endif
