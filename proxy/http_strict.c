/* Strict HTTP/1.x syntax checks of heads and chunked bodies, independent of the llhttp version. */

/*
 * Why this exists: lbproxy forwards the bytes it received, so any byte sequence llhttp reads one
 * way and a server behind us reads another way is a request smuggling hole. llhttp 8.1 (Debian
 * 12's) takes CR followed by any byte as a line end, accepts "Host : x", spaces inside names,
 * HTTP/2.0 or 0.9 request lines, double spaces, TAB and bytes >= 0x80 in the target, and skips
 * whatever two bytes follow a chunk's data. So lbproxy checks every head and every chunked body
 * it passes on against one strict grammar of its own, written to accept only what every
 * reasonable HTTP/1.1 parser reads the same way:
 *
 * 1. px_strict_head walks the head once, line by line; its caller then compares the framing it
 *    found (version, Content-Length, chunked, status) with llhttp's: two parsers must agree.
 * 2. px_chunked_feed is a byte-at-a-time state machine over a chunked body, so reads may split
 *    it anywhere; the caller checks that it ends exactly where llhttp says the message ends.
 *    The same machine, given an output pointer, de-chunks a body for an HTTP/1.0 client.
 *
 * Models read (not copied): HAProxy's h1_headers_to_hdr_list and h1_parse_chunk_size (a chunk
 * size below 2^52 for servers that keep numbers in doubles), llhttp 9's strict mode, and nginx's
 * refusal of any Transfer-Encoding but "chunked".
 */
#include "http_strict.h"

#include <string.h>
#include <strings.h>
#include <uv.h>

/* ---- character classes (RFC 9110 5.6.2, 5.5) ---- */

static int is_tchar(unsigned char c) {
  if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
    return 1;
  return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int is_vchar(unsigned char c) {
  return c >= 0x21 && c <= 0x7e;
}

/* A byte allowed in a field value or a reason phrase: SP, HTAB, VCHAR, obs-text. */
static int is_field_byte(unsigned char c) {
  return c == ' ' || c == '\t' || is_vchar(c) || c >= 0x80;
}

static int is_hex(unsigned char c, unsigned *v) {
  if (c >= '0' && c <= '9')
    *v = c - '0';
  else if (c >= 'a' && c <= 'f')
    *v = c - 'a' + 10;
  else if (c >= 'A' && c <= 'F')
    *v = c - 'A' + 10;
  else
    return 0;
  return 1;
}

/* ---- heads ---- */

struct cursor {
  const unsigned char *b;
  uint32_t pos, end;
  struct px_strict_head *out;
};

static int fail(struct cursor *k, const char *why) {
  k->out->why = why;
  k->out->err_off = k->pos;
  return UV_EPROTO;
}

static int at(const struct cursor *k, uint32_t i) {
  return k->pos + i < k->end ? k->b[k->pos + i] : -1;
}

/* Expects CRLF at the cursor and steps over it. */
static int crlf(struct cursor *k, const char *why) {
  if (at(k, 0) != '\r')
    return fail(k, why);
  k->pos++;
  if (at(k, 0) != '\n')
    return fail(k, "CR not followed by LF");
  k->pos++;
  return 0;
}

/* "HTTP/1.0" or "HTTP/1.1" at the cursor. */
static int version(struct cursor *k) {
  if (k->end - k->pos < 8 || memcmp(k->b + k->pos, "HTTP/1.", 7) != 0 ||
      (k->b[k->pos + 7] != '0' && k->b[k->pos + 7] != '1'))
    return fail(k, "HTTP version other than 1.0 or 1.1");
  k->out->minor = (uint8_t)(k->b[k->pos + 7] - '0');
  k->pos += 8;
  return 0;
}

static int request_line(struct cursor *k) {
  uint32_t s = k->pos;

  while (at(k, 0) >= 0 && is_tchar((unsigned char)at(k, 0)))
    k->pos++;
  if (k->pos == s || at(k, 0) != ' ')
    return fail(k, "bad method");
  k->pos++;
  s = k->pos;
  while (at(k, 0) >= 0 && is_vchar((unsigned char)at(k, 0)))
    k->pos++;
  if (k->pos == s)
    return fail(k, "empty request target or two spaces");
  if (at(k, 0) != ' ')
    return fail(k, "byte not allowed in the request target");
  k->pos++;
  if (version(k) < 0)
    return UV_EPROTO;
  return crlf(k, "request line does not end after the version");
}

static int status_line(struct cursor *k) {
  unsigned st = 0;

  if (version(k) < 0)
    return UV_EPROTO;
  if (at(k, 0) != ' ')
    return fail(k, "status line: one space must follow the version");
  k->pos++;
  for (int i = 0; i < 3; i++, k->pos++) {
    if (at(k, 0) < '0' || at(k, 0) > '9')
      return fail(k, "status code is not three digits");
    st = st * 10 + (unsigned)(at(k, 0) - '0');
  }
  k->out->status = (uint16_t)st;
  if (at(k, 0) == ' ') {
    k->pos++;
    while (at(k, 0) >= 0 && is_field_byte((unsigned char)at(k, 0)))
      k->pos++;
  }
  return crlf(k, "byte not allowed in the status line");
}

/* The value of a framing header, spaces trimmed (TAB is refused there). */
static void trim_spaces(const unsigned char *b, uint32_t *vs, uint32_t *ve) {
  while (*vs < *ve && b[*vs] == ' ')
    (*vs)++;
  while (*ve > *vs && b[*ve - 1] == ' ')
    (*ve)--;
}

static int content_length(struct cursor *k, uint32_t vs, uint32_t ve) {
  uint64_t v = 0;

  if (k->out->has_cl)
    return fail(k, "two Content-Length lines");
  trim_spaces(k->b, &vs, &ve);
  if (ve == vs || ve - vs > 18)
    return fail(k, "Content-Length is not 1 to 18 digits");
  for (uint32_t i = vs; i < ve; i++) {
    if (k->b[i] < '0' || k->b[i] > '9')
      return fail(k, "Content-Length is not a number");
    v = v * 10 + (uint64_t)(k->b[i] - '0');
  }
  k->out->has_cl = 1;
  k->out->content_length = v;
  return 0;
}

static int transfer_encoding(struct cursor *k, uint32_t line, uint32_t vs, uint32_t ve) {
  if (k->out->te_len != 0)
    return fail(k, "two Transfer-Encoding lines");
  trim_spaces(k->b, &vs, &ve);
  if (ve - vs != 7 || strncasecmp((const char *)k->b + vs, "chunked", 7) != 0)
    return fail(k, "Transfer-Encoding other than chunked");
  k->out->chunked = 1;
  k->out->te_off = line;
  k->out->te_len = k->pos - line; /* the cursor is past the line's CRLF */
  return 0;
}

static int name_is(const unsigned char *b, uint32_t s, uint32_t e, const char *lit) {
  size_t n = strlen(lit);
  return e - s == n && strncasecmp((const char *)b + s, lit, n) == 0;
}

/* The framing headers (with '_' spelt variants, which some gateways turn into '-'). */
static int framing_header(struct cursor *k, uint32_t line, uint32_t ne, uint32_t vs, uint32_t ve) {
  if (name_is(k->b, line, ne, "content-length"))
    return content_length(k, vs, ve);
  if (name_is(k->b, line, ne, "transfer-encoding"))
    return transfer_encoding(k, line, vs, ve);
  if (name_is(k->b, line, ne, "content_length") || name_is(k->b, line, ne, "transfer_encoding"))
    return fail(k, "framing header spelt with '_'");
  return 0;
}

/* One header line at the cursor (not the blank line); steps past its CRLF. */
static int header_line(struct cursor *k) {
  uint32_t line = k->pos, ne, vs;

  if (at(k, 0) == ' ' || at(k, 0) == '\t')
    return fail(k, "obs-fold (a line starting with a space or TAB)");
  while (at(k, 0) >= 0 && is_tchar((unsigned char)at(k, 0)))
    k->pos++;
  ne = k->pos;
  if (at(k, 0) != ':')
    return fail(k, k->pos == k->end   ? "head ends inside a header name"
                   : at(k, 0) == '\n' ? "bare LF"
                   : at(k, 0) == ' '  ? "space in or after a header name"
                   : at(k, 0) == '\t' ? "TAB in or after a header name"
                                      : "byte not allowed in a header name");
  if (ne == line)
    return fail(k, "empty header name");
  k->pos++;
  vs = k->pos;
  while (at(k, 0) >= 0 && is_field_byte((unsigned char)at(k, 0)))
    k->pos++;
  {
    uint32_t ve = k->pos;
    int c = at(k, 0);
    if (c != '\r')
      return fail(k, c == '\n' ? "bare LF"
                     : c < 0   ? "head ends inside a header line"
                               : "control byte in a header value");
    if (crlf(k, "") < 0)
      return UV_EPROTO;
    return framing_header(k, line, ne, vs, ve);
  }
}

int px_strict_head(const char *buf, uint32_t start, uint32_t end, int is_request,
                   struct px_strict_head *out) {
  struct cursor k = {(const unsigned char *)buf, start, end, out};
  int rc;

  memset(out, 0, sizeof(*out));
  rc = is_request ? request_line(&k) : status_line(&k);
  while (rc == 0 && at(&k, 0) != '\r')
    rc = at(&k, 0) < 0 ? fail(&k, "head ends before its blank line") : header_line(&k);
  if (rc == 0)
    rc = crlf(&k, "");
  if (rc == 0 && k.pos != end)
    rc = fail(&k, "head does not end where llhttp says");
  if (rc == 0 && out->has_cl && out->chunked)
    rc = fail(&k, "Content-Length with Transfer-Encoding");
  return rc;
}

/* ---- chunked bodies ---- */

enum {
  CH_SIZE,    /* hex digits of a chunk size (the start state) */
  CH_EXT,     /* after ';': an extension, up to CR */
  CH_SIZE_LF, /* the LF after a size line */
  CH_DATA,    /* chunk data */
  CH_DATA_CR, /* the CR after the data */
  CH_DATA_LF, /* the LF after the data */
  CH_TRAILER, /* the start of a trailer line, or the final CRLF */
  CH_TNAME,   /* a trailer field name */
  CH_TVALUE,  /* a trailer field value */
  CH_TLF,     /* the LF after a trailer line */
  CH_END_LF,  /* the final LF */
  CH_DONE,    /* the body has ended */
  CH_ERROR,
};

/* One framing byte (anything but chunk data). 0, or UV_EPROTO. */
static int chunk_byte(struct px_chunked *c, unsigned char x) {
  unsigned v;

  switch (c->state) {
  case CH_SIZE:
    if (is_hex(x, &v)) {
      c->left = c->left * 16 + v;
      if (++c->digits > PX_CHUNKED_MAX_DIGITS || c->left > PX_CHUNKED_MAX_SIZE)
        return UV_EPROTO;
      return 0;
    }
    if (c->digits == 0 || (x != ';' && x != '\r'))
      return UV_EPROTO; /* no digits, or a sign, space, TAB, "0x", bare LF... */
    c->state = x == ';' ? CH_EXT : CH_SIZE_LF;
    c->line = 0;
    return 0;
  case CH_EXT:
    if (x == '\r')
      c->state = CH_SIZE_LF;
    else if (!is_field_byte(x) || ++c->line > PX_CHUNKED_MAX_LINE)
      return UV_EPROTO;
    return 0;
  case CH_SIZE_LF:
    if (x != '\n')
      return UV_EPROTO;
    c->state = c->left > 0 ? CH_DATA : CH_TRAILER;
    return 0;
  case CH_DATA_CR:
    c->state = CH_DATA_LF;
    return x == '\r' ? 0 : UV_EPROTO;
  case CH_DATA_LF:
    c->state = CH_SIZE;
    c->digits = 0;
    c->left = 0;
    return x == '\n' ? 0 : UV_EPROTO;
  case CH_TRAILER:
    c->line = 0;
    if (x == '\r')
      c->state = CH_END_LF;
    else if (is_tchar(x))
      c->state = CH_TNAME; /* SP or HTAB here would be obs-fold, ':' an empty name */
    else
      return UV_EPROTO;
    return 0;
  case CH_TNAME:
    if (x == ':')
      c->state = CH_TVALUE;
    else if (!is_tchar(x) || ++c->line > PX_CHUNKED_MAX_LINE)
      return UV_EPROTO;
    return 0;
  case CH_TVALUE:
    if (x == '\r')
      c->state = CH_TLF;
    else if (!is_field_byte(x) || ++c->line > PX_CHUNKED_MAX_LINE)
      return UV_EPROTO;
    return 0;
  case CH_TLF:
    c->state = CH_TRAILER;
    return x == '\n' ? 0 : UV_EPROTO;
  case CH_END_LF:
    if (x != '\n')
      return UV_EPROTO;
    c->state = CH_DONE;
    return 0;
  default:
    return UV_EPROTO;
  }
}

ssize_t px_chunked_feed(struct px_chunked *c, const char *p, size_t n, char *out, size_t *out_len) {
  size_t i = 0, kept = 0;

  if (c->state == CH_ERROR)
    return UV_EPROTO;
  while (i < n && c->state != CH_DONE) {
    if (c->state == CH_DATA) {
      size_t k = n - i < c->left ? n - i : (size_t)c->left;
      if (out != NULL)
        memmove(out + kept, p + i, k);
      kept += k;
      i += k;
      c->left -= k;
      if (c->left == 0)
        c->state = CH_DATA_CR;
      continue;
    }
    if (chunk_byte(c, (unsigned char)p[i]) < 0) {
      c->state = CH_ERROR;
      return UV_EPROTO;
    }
    i++;
  }
  if (out_len != NULL)
    *out_len = kept;
  return (ssize_t)i;
}

int px_chunked_done(const struct px_chunked *c) {
  return c->state == CH_DONE;
}

int px_chunked_started(const struct px_chunked *c) {
  return c->state != CH_SIZE || c->digits != 0;
}
