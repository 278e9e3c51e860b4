/* Request/response head parsing with llhttp and rewriting as iovecs over the received bytes. */

/*
 * A proxy must not forward hop-by-hop headers (Connection, Keep-Alive, Proxy-Connection, TE,
 * Upgrade unless it tunnels, and any header the Connection header names); it appends to the
 * lists it takes part in (X-Forwarded-For, Via, Forwarded) and replaces what only it can say
 * (X-Forwarded-Proto, X-Forwarded-Host). Everything else is forwarded byte for byte. Rather
 * than copying kept lines into a new buffer, the callbacks below only record where the lines to
 * drop start and end and where the lists end; px_head_iov_ins then describes the forwarded head
 * as runs of the received bytes with a few small inserts between them, and the caller hands
 * those iovecs to one writev together with the body bytes that followed the head.
 */
#include "http_head.h"

#include <string.h>
#include <strings.h>

int px_span_ieq(const char *base, struct px_span s, const char *lit, size_t litlen) {
  return s.len == litlen && strncasecmp(base + s.off, lit, litlen) == 0;
}

void px_head_reset(struct px_head *h, const char *base, int is_request, uint32_t start) {
  memset(h, 0, sizeof(*h));
  h->base = base;
  h->is_request = (uint8_t)is_request;
  h->start = start;
  h->end = start;
}

static struct px_head *head_of(llhttp_t *p) {
  return p->data;
}

/* Spans grow to the end of each new piece, not by its length: a value continued on the next
 * line (obs-fold) arrives in two pieces with the line break between them, and the span must
 * cover it to be seen (and rejected). */
static void extend(struct px_head *h, struct px_span *s, const char *at, size_t len) {
  s->len = (uint32_t)(at + len - h->base) - s->off;
}

static int on_url(llhttp_t *p, const char *at, size_t len) {
  struct px_head *h = head_of(p);
  if (h->url.len == 0)
    h->url.off = (uint32_t)(at - h->base);
  extend(h, &h->url, at, len);
  return 0;
}

static void drop_line(struct px_head *h) {
  if (h->ndrops == PX_HEAD_MAX_DROPS) {
    h->flags |= PX_HEAD_OVERFLOW;
    return;
  }
  h->drops[h->ndrops].off = h->field.off;
  h->drops[h->ndrops].len = 0;
  h->ndrops++;
  h->flags |= PX_HEAD_DROP_OPEN;
}

static uint32_t crlf_before(const struct px_head *h, uint32_t line_end) {
  return (line_end >= 2 && h->base[line_end - 2] == '\r') ? 2 : 1;
}

/* A header line ended at `line_end` (where the next one starts, or the blank line): lines
 * waiting for their end get it. */
static void close_open_lines(struct px_head *h, uint32_t line_end) {
  if (h->flags & PX_HEAD_DROP_OPEN)
    h->drops[h->ndrops - 1].len = line_end - h->drops[h->ndrops - 1].off;
  if (h->flags & PX_HEAD_XFF_OPEN)
    h->xff_end = line_end - crlf_before(h, line_end);
  if (h->flags & PX_HEAD_VIA_OPEN)
    h->via_end = line_end - crlf_before(h, line_end);
  if (h->flags & PX_HEAD_HOST_OPEN)
    h->host_line.len = line_end - h->host_line.off;
  h->flags &=
      (uint32_t) ~(PX_HEAD_DROP_OPEN | PX_HEAD_XFF_OPEN | PX_HEAD_HOST_OPEN | PX_HEAD_VIA_OPEN);
}

static int on_header_field(llhttp_t *p, const char *at, size_t len) {
  struct px_head *h = head_of(p);
  uint32_t off = (uint32_t)(at - h->base);

  if (h->flags & PX_HEAD_DONE)
    return 0;
  if (!(h->flags & PX_HEAD_IN_FIELD)) {
    close_open_lines(h, off); /* a new line starts where the previous one ended */
    h->field.off = off;
    h->field.len = 0;
    h->value.off = off;
    h->value.len = 0;
    h->flags |= PX_HEAD_IN_FIELD;
  }
  extend(h, &h->field, at, len);
  return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len) {
  struct px_head *h = head_of(p);

  if (h->flags & PX_HEAD_DONE)
    return 0;
  if (!(h->flags & PX_HEAD_IN_VALUE)) {
    h->value.off = (uint32_t)(at - h->base);
    h->value.len = 0;
    h->flags |= PX_HEAD_IN_VALUE;
  }
  extend(h, &h->value, at, len);
  return 0;
}

/* True if a Connection token names a header we must keep or already handle. */
static int token_is_builtin(const char *t, size_t n) {
  /* Framing and routing headers stay whatever Connection says, and X-Forwarded-For too: we
   * write into it, and a client must not hide itself from the backend by naming it. */
  static const char *const keep[] = {"close",
                                     "keep-alive",
                                     "upgrade",
                                     "host",
                                     "content-length",
                                     "transfer-encoding",
                                     "x-forwarded-for",
                                     "x-forwarded-proto",
                                     "x-forwarded-host",
                                     "via",
                                     "forwarded"};
  for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++)
    if (strlen(keep[i]) == n && strncasecmp(t, keep[i], n) == 0)
      return 1;
  return 0;
}

/* Calls fn for each comma-separated token of a Connection value, trimmed of whitespace. */
static int each_token(const char *v, size_t n, int (*fn)(void *, const char *, size_t), void *arg) {
  size_t i = 0;
  while (i < n) {
    size_t s, e;
    while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
      i++;
    s = i;
    while (i < n && v[i] != ',')
      i++;
    e = i;
    while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
      e--;
    if (e > s && fn(arg, v + s, e - s))
      return 1;
  }
  return 0;
}

static int token_is_other(void *arg, const char *t, size_t n) {
  return !token_is_builtin(t, n);
}

static void classify(struct px_head *h) {
  const char *b = h->base;
  struct px_span f = h->field;

  if (memchr(b + h->value.off, '\n', h->value.len) != NULL)
    h->flags |= PX_HEAD_OBS_FOLD; /* RFC 9112 5.2: reject, never pass it on */
  switch (f.len) {
  case 2:
    if (px_span_ieq(b, f, "te", 2))
      drop_line(h);
    break;
  case 4:
    if (h->is_request && px_span_ieq(b, f, "host", 4)) {
      if (h->flags & PX_HEAD_HAS_HOST)
        h->flags |= PX_HEAD_DUP_HOST;
      h->host = h->value;
      h->host_line.off = f.off;
      h->flags |= PX_HEAD_HAS_HOST | PX_HEAD_HOST_OPEN;
    }
    break;
  case 3:
    if (px_span_ieq(b, f, "via", 3))
      h->flags |= PX_HEAD_HAS_VIA | PX_HEAD_VIA_OPEN; /* we append to the last one */
    break;
  case 7:
    if (px_span_ieq(b, f, "upgrade", 7)) {
      if (h->nupgrade < PX_HEAD_MAX_UPGRADE)
        h->upgrade[h->nupgrade++] = f; /* only its start matters: it is the drop's */
      else
        h->flags |= PX_HEAD_OVERFLOW;
      h->flags |= PX_HEAD_HAS_UPGRADE;
      drop_line(h);
    }
    break;
  case 10:
    if (px_span_ieq(b, f, "connection", 10)) {
      drop_line(h);
      if (h->nconn < PX_HEAD_MAX_CONN)
        h->conn[h->nconn++] = h->value;
      else
        h->flags |= PX_HEAD_OVERFLOW;
      if (each_token(b + h->value.off, h->value.len, token_is_other, NULL))
        h->flags |= PX_HEAD_CONN_TOKENS;
    } else if (px_span_ieq(b, f, "keep-alive", 10)) {
      drop_line(h);
    }
    break;
  case 15:
    if (h->is_request && px_span_ieq(b, f, "x-forwarded-for", 15)) {
      if (h->value.len == 0)
        drop_line(h); /* an empty list: ours replaces it */
      else
        h->flags |= PX_HEAD_HAS_XFF | PX_HEAD_XFF_OPEN; /* insert before the line's CRLF */
    }
    break;
  case 16:
    if (px_span_ieq(b, f, "proxy-connection", 16) ||
        (h->is_request && px_span_ieq(b, f, "x-forwarded-host", 16)))
      drop_line(h); /* hop-by-hop; or ours to say (the client's Host is what we send) */
    break;
  case 17:
    if (h->is_request && px_span_ieq(b, f, "x-forwarded-proto", 17))
      drop_line(h); /* ours to say: a client must not claim it came over TLS */
    break;
  default:
    break;
  }
}

static int on_header_value_complete(llhttp_t *p) {
  struct px_head *h = head_of(p);

  if (h->flags & PX_HEAD_DONE)
    return 0;
  classify(h);
  h->flags &= (uint32_t) ~(PX_HEAD_IN_FIELD | PX_HEAD_IN_VALUE);
  return 0;
}

static int on_pause(llhttp_t *p) {
  return HPE_PAUSED;
}

/* llhttp skips empty lines before a request line (RFC 9112 2.2 allows it): the head, and what
 * is forwarded of it, starts at the method. */
static int on_method(llhttp_t *p, const char *at, size_t len) {
  struct px_head *h = head_of(p);

  if (!(h->flags & PX_HEAD_LINE_SEEN)) {
    h->start = (uint32_t)(at - h->base);
    h->flags |= PX_HEAD_LINE_SEEN;
  }
  return 0;
}

/* px_head_complete compares llhttp's view of the framing with ours: remember the parser. */
static int on_response_headers_complete(llhttp_t *p) {
  head_of(p)->parser = p;
  return HPE_PAUSED;
}

/* Only a GET can open a tunnel (request.c decides, after the head); any other request asking
 * for an upgrade is an ordinary request: clear llhttp's upgrade state, or it would stop parsing
 * after this message (HPE_PAUSED_UPGRADE). */
static int on_request_headers_complete(llhttp_t *p) {
  if (p->method != HTTP_GET)
    p->upgrade = 0;
  return on_response_headers_complete(p);
}

/* Counts body bytes (chunk framing excluded) and stops the parser past the limit, so that a
 * chunked body is refused as soon as it grows too large (413), not once it has all passed. */
static int on_body(llhttp_t *p, const char *at, size_t len) {
  struct px_head *h = head_of(p);

  h->body_len += len;
  if (h->body_max > 0 && h->body_len > h->body_max) {
    h->flags |= PX_HEAD_BODY_LIMIT;
    return HPE_USER;
  }
  return 0;
}

const llhttp_settings_t px_request_settings = {
    .on_method = on_method,
    .on_url = on_url,
    .on_body = on_body,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_header_value_complete = on_header_value_complete,
    .on_headers_complete = on_request_headers_complete,
    .on_message_complete = on_pause,
};

const llhttp_settings_t px_response_settings = {
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_header_value_complete = on_header_value_complete,
    .on_headers_complete = on_response_headers_complete,
    .on_message_complete = on_pause,
};

/* Adds a drop for [off, off+len) keeping the list sorted and free of duplicates. */
void px_head_drop(struct px_head *h, uint32_t off, uint32_t len) {
  unsigned i = 0;
  while (i < h->ndrops && h->drops[i].off < off)
    i++;
  if (i < h->ndrops && h->drops[i].off == off)
    return;
  if (h->ndrops == PX_HEAD_MAX_DROPS) {
    h->flags |= PX_HEAD_OVERFLOW;
    return;
  }
  memmove(&h->drops[i + 1], &h->drops[i], (h->ndrops - i) * sizeof(h->drops[0]));
  h->drops[i].off = off;
  h->drops[i].len = len;
  h->ndrops++;
}

struct name_match {
  const char *name;
  size_t len;
};

static int token_matches(void *arg, const char *t, size_t n) {
  struct name_match *m = arg;
  return n == m->len && !token_is_builtin(t, n) && strncasecmp(t, m->name, n) == 0;
}

/* Drops every header line whose name a Connection value lists (RFC 9110 7.6.1). The head was
 * already validated by llhttp, so splitting it into lines here is safe. */
static void drop_connection_tokens(struct px_head *h, uint32_t body_start) {
  const char *b = h->base;
  uint32_t pos = h->start;

  while (pos < body_start && b[pos] != '\n') /* skip the start line */
    pos++;
  pos++;
  while (pos < body_start) {
    uint32_t ls = pos, colon = pos;
    while (pos < body_start && b[pos] != '\n')
      pos++;
    pos += pos < body_start; /* past '\n'; a bare-CR line end (llhttp 8.1) has none */
    while (colon < pos && b[colon] != ':')
      colon++;
    if (colon >= pos)
      continue; /* the blank line */
    struct name_match m = {b + ls, colon - ls};
    for (unsigned i = 0; i < h->nconn; i++)
      if (each_token(b + h->conn[i].off, h->conn[i].len, token_matches, &m)) {
        px_head_drop(h, ls, pos - ls);
        break;
      }
  }
}

static uint32_t term_len(const struct px_head *h) {
  return (h->end - h->start >= 2 && h->base[h->end - 2] == '\r') ? 2 : 1;
}

/* Our strict reading of the head, then llhttp's framing against ours: a message two parsers
 * frame differently is exactly what request smuggling needs. NULL, or the reason to refuse. */
static const char *strict_check(struct px_head *h, uint32_t end) {
  const llhttp_t *p = h->parser;
  struct px_strict_head s;

  if (px_strict_head(h->base, h->start, end, h->is_request, &s) < 0)
    return s.why;
  if (p == NULL || p->lenient_flags != 0)
    return "llhttp is not strict";
  if (p->http_major != 1 || p->http_minor != s.minor || !!(p->flags & F_CHUNKED) != s.chunked ||
      !!(p->flags & F_CONTENT_LENGTH) != s.has_cl ||
      (s.has_cl && p->content_length != s.content_length) ||
      (!h->is_request && p->status_code != s.status))
    return "llhttp frames the message differently";
  if (s.chunked) {
    h->flags |= PX_HEAD_CHUNKED;
    h->te_line.off = s.te_off;
    h->te_line.len = s.te_len;
  }
  return NULL;
}

int px_head_complete(struct px_head *h, uint32_t end) {
  h->why = strict_check(h, end);
  if (h->why != NULL)
    return -1;
  h->end = end;
  close_open_lines(h, end - term_len(h));
  if (h->flags & PX_HEAD_CONN_TOKENS)
    drop_connection_tokens(h, end);
  h->flags |= PX_HEAD_DONE;
  h->flags &= (uint32_t) ~(PX_HEAD_IN_FIELD | PX_HEAD_IN_VALUE);
  return (h->flags & (PX_HEAD_OVERFLOW | PX_HEAD_OBS_FOLD)) ? -1 : 0;
}

/* ---- bodies ---- */

llhttp_errno_t px_head_execute(llhttp_t *p, struct px_head *h, const char *data, size_t len) {
  llhttp_errno_t err = llhttp_execute(p, data, len);
  size_t used;
  ssize_t n;

  if (!(h->flags & PX_HEAD_DONE) || !(h->flags & PX_HEAD_CHUNKED))
    return err; /* head bytes, or a body llhttp frames alone (Content-Length, none, to EOF) */
  if (err != HPE_OK && err != HPE_PAUSED)
    return err;
  used = err == HPE_OK ? len : (size_t)(llhttp_get_error_pos(p) - data);
  if (err == HPE_PAUSED && used == 0 && !px_chunked_started(&h->chunk))
    return err; /* no body after all: a response to HEAD, a 304 */
  n = px_chunked_feed(&h->chunk, data, used, NULL, NULL);
  if (n < 0) {
    h->why = "bad chunked framing";
    return HPE_INVALID_CHUNK_SIZE;
  }
  /* llhttp pauses after the head only at message complete: both must see the end there. */
  if ((err == HPE_PAUSED) != px_chunked_done(&h->chunk) || (size_t)n != used) {
    h->why = "llhttp ends the chunked body elsewhere";
    return HPE_INVALID_CHUNK_SIZE;
  }
  return err;
}

int px_head_for_http10(struct px_head *h, uint8_t *keep_alive) {
  if (!(h->flags & PX_HEAD_CHUNKED))
    return 0;
  px_head_drop(h, h->te_line.off, h->te_line.len);
  if (h->flags & PX_HEAD_OVERFLOW)
    return -1;
  h->flags |= PX_HEAD_DECHUNK;
  *keep_alive = 0;
  return 0;
}

uint32_t px_head_body(struct px_head *h, char *base, uint32_t from, uint32_t to) {
  size_t kept = 0;

  if (!(h->flags & PX_HEAD_DECHUNK) || to <= from)
    return to;
  if (px_chunked_feed(&h->strip, base + from, to - from, base + from, &kept) < 0)
    return from; /* cannot happen: px_head_execute accepted these bytes */
  return from + (uint32_t)kept;
}

static int emit(uv_buf_t *iov, int *n, int max, const char *p, size_t len) {
  if (len == 0)
    return 0;
  if (*n == max)
    return -1;
  iov[(*n)++] = uv_buf_init((char *)p, (unsigned)len);
  return 0;
}

void px_head_keep_upgrade(struct px_head *h) {
  for (unsigned u = 0; u < h->nupgrade; u++) {
    for (unsigned i = 0; i < h->ndrops; i++) {
      if (h->drops[i].off != h->upgrade[u].off)
        continue;
      memmove(&h->drops[i], &h->drops[i + 1], (h->ndrops - i - 1) * sizeof(h->drops[0]));
      h->ndrops--;
      break;
    }
  }
}

int px_head_iov(const struct px_head *h, const uv_buf_t *xff_insert, const uv_buf_t *tail,
                int ntail, uint32_t extra, uv_buf_t *iov, int max) {
  struct px_insert ins;
  int want_xff = xff_insert != NULL && (h->flags & PX_HEAD_HAS_XFF);

  if (want_xff) {
    ins.off = h->xff_end;
    ins.buf = *xff_insert;
  }
  return px_head_iov_ins(h, &ins, want_xff, tail, ntail, extra, iov, max);
}

int px_head_iov_ins(const struct px_head *h, const struct px_insert *ins, int nins,
                    const uv_buf_t *tail, int ntail, uint32_t extra, uv_buf_t *iov, int max) {
  const char *b = h->base;
  uint32_t pos = h->start, tailpos = h->end - term_len(h);
  unsigned di = 0;
  int n = 0, ii = 0;

  for (;;) {
    uint32_t next_drop = di < h->ndrops ? h->drops[di].off : UINT32_MAX;
    uint32_t next_ins = ii < nins ? ins[ii].off : UINT32_MAX;
    uint32_t ev = tailpos;

    if (next_drop < ev)
      ev = next_drop;
    if (next_ins <= ev)
      ev = next_ins;
    if (ev < pos)
      return -1; /* an insert point or a drop inside a dropped range: never emit it */
    if (emit(iov, &n, max, b + pos, ev - pos) < 0)
      return -1;
    pos = ev;
    if (ii < nins && ev == next_ins) {
      if (emit(iov, &n, max, ins[ii].buf.base, ins[ii].buf.len) < 0)
        return -1;
      ii++;
    } else if (ev == next_drop && ev < tailpos) {
      pos = h->drops[di].off + h->drops[di].len;
      di++;
    } else {
      break;
    }
  }
  for (int i = 0; i < ntail; i++)
    if (emit(iov, &n, max, tail[i].base, tail[i].len) < 0)
      return -1;
  if (emit(iov, &n, max, b + tailpos, h->end + extra - tailpos) < 0)
    return -1;
  return n;
}
