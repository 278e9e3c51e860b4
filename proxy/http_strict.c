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

/* ---- character classes (RFC 9110 5.6.2, 5.5), one table lookup per byte ---- */

enum { C_TCHAR = 1, C_FIELD = 2, C_VCHAR = 4 };

#define IS_ALNUM(c)                                                                                \
  (((c) >= '0' && (c) <= '9') || ((c) >= 'a' && (c) <= 'z') || ((c) >= 'A' && (c) <= 'Z'))
#define IS_TSYM(c)                                                                                 \
  ((c) == '!' || (c) == '#' || (c) == '$' || (c) == '%' || (c) == '&' || (c) == '\'' ||            \
   (c) == '*' || (c) == '+' || (c) == '-' || (c) == '.' || (c) == '^' || (c) == '_' ||             \
   (c) == '`' || (c) == '|' || (c) == '~')
#define IS_VCHAR(c) ((c) >= 0x21 && (c) <= 0x7e)
/* A field value or reason phrase byte: SP, HTAB, VCHAR, obs-text (>= 0x80). */
#define IS_FIELD(c) ((c) == ' ' || (c) == '\t' || IS_VCHAR(c) || (c) >= 0x80)
#define CLS(c)                                                                                     \
  ((IS_ALNUM(c) || IS_TSYM(c) ? C_TCHAR : 0) | (IS_FIELD(c) ? C_FIELD : 0) |                       \
   (IS_VCHAR(c) ? C_VCHAR : 0))
#define CLS4(c)  CLS(c), CLS((c) + 1), CLS((c) + 2), CLS((c) + 3)
#define CLS16(c) CLS4(c), CLS4((c) + 4), CLS4((c) + 8), CLS4((c) + 12)
#define CLS64(c) CLS16(c), CLS16((c) + 16), CLS16((c) + 32), CLS16((c) + 48)

static const uint8_t cls[256] = {CLS64(0), CLS64(64), CLS64(128), CLS64(192)};

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
  const unsigned char *b, *p, *e; /* the buffer, the cursor, the end of the head */
  struct px_strict_head *out;
};

static int fail(struct cursor *k, const char *why) {
  k->out->why = why;
  k->out->err_off = (uint32_t)(k->p - k->b);
  return UV_EPROTO;
}

/* The byte at the cursor, or -1 at the end. */
static int cur(const struct cursor *k) {
  return k->p < k->e ? *k->p : -1;
}

/* Steps over the bytes of class `c` at the cursor. */
static void skip(struct cursor *k, uint8_t c) {
  const unsigned char *p = k->p, *e = k->e;
  while (e - p >= 4 && (cls[p[0]] & cls[p[1]] & cls[p[2]] & cls[p[3]] & c))
    p += 4;
  while (p < e && (cls[*p] & c))
    p++;
  k->p = p;
}

/* Eight bytes at a time (SWAR): nonzero if any byte of x is below n (n <= 128), or is zero. */
#define ONES           0x0101010101010101ULL
#define HIGHS          0x8080808080808080ULL
#define HAS_LESS(x, n) (((x)-ONES * (n)) & ~(x)&HIGHS)
#define HAS_ZERO(x)    HAS_LESS(x, 1)

/* skip(k, C_FIELD) for values, the bulk of a head, eight bytes at a time: the lowest flagged
 * byte of HAS_LESS and HAS_ZERO is always a true one (a borrow only runs upwards), so on a
 * little-endian machine the first byte that is not SP..'~' or obs-text is found at once; an
 * HTAB there is allowed and skipped, anything else ends the value. */
static void skip_value(struct cursor *k) {
  const unsigned char *p = k->p, *e = k->e;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  uint64_t x, m;

  while (e - p >= 8) {
    memcpy(&x, p, 8);
    m = HAS_LESS(x, 0x20) | HAS_ZERO(x ^ (ONES * 0x7f));
    if (m == 0) {
      p += 8;
      continue;
    }
    p += __builtin_ctzll(m) / 8;
    if (*p != '\t')
      break;
    p++;
  }
#endif
  while (p < e && (cls[*p] & C_FIELD))
    p++;
  k->p = p;
}

/* Expects CRLF at the cursor and steps over it. */
static int crlf(struct cursor *k, const char *why) {
  if (cur(k) != '\r')
    return fail(k, why);
  k->p++;
  if (cur(k) != '\n')
    return fail(k, "CR not followed by LF");
  k->p++;
  return 0;
}

/* "HTTP/1.0" or "HTTP/1.1" at the cursor. */
static int version(struct cursor *k) {
  if (k->e - k->p < 8 || memcmp(k->p, "HTTP/1.", 7) != 0 || (k->p[7] != '0' && k->p[7] != '1'))
    return fail(k, "HTTP version other than 1.0 or 1.1");
  k->out->minor = (uint8_t)(k->p[7] - '0');
  k->p += 8;
  return 0;
}

static int request_line(struct cursor *k) {
  const unsigned char *s = k->p;

  skip(k, C_TCHAR);
  if (k->p == s || cur(k) != ' ')
    return fail(k, "bad method");
  k->p++;
  s = k->p;
  skip(k, C_VCHAR);
  if (k->p == s)
    return fail(k, "empty request target or two spaces");
  if (cur(k) != ' ')
    return fail(k, "byte not allowed in the request target");
  k->p++;
  if (version(k) < 0)
    return UV_EPROTO;
  return crlf(k, "request line does not end after the version");
}

static int status_line(struct cursor *k) {
  unsigned st = 0;

  if (version(k) < 0)
    return UV_EPROTO;
  if (cur(k) != ' ')
    return fail(k, "status line: one space must follow the version");
  k->p++;
  for (int i = 0; i < 3; i++, k->p++) {
    if (cur(k) < '0' || cur(k) > '9')
      return fail(k, "status code is not three digits");
    st = st * 10 + (unsigned)(cur(k) - '0');
  }
  k->out->status = (uint16_t)st;
  if (cur(k) == ' ') {
    k->p++;
    skip(k, C_FIELD);
  }
  return crlf(k, "byte not allowed in the status line");
}

/* The value of a framing header, spaces trimmed (TAB is refused there). */
static void trim_spaces(const unsigned char **vs, const unsigned char **ve) {
  while (*vs < *ve && **vs == ' ')
    (*vs)++;
  while (*ve > *vs && (*ve)[-1] == ' ')
    (*ve)--;
}

static int content_length(struct cursor *k, const unsigned char *vs, const unsigned char *ve) {
  uint64_t v = 0;

  if (k->out->has_cl)
    return fail(k, "two Content-Length lines");
  trim_spaces(&vs, &ve);
  if (ve == vs || ve - vs > 18)
    return fail(k, "Content-Length is not 1 to 18 digits");
  for (; vs < ve; vs++) {
    if (*vs < '0' || *vs > '9')
      return fail(k, "Content-Length is not a number");
    v = v * 10 + (uint64_t)(*vs - '0');
  }
  k->out->has_cl = 1;
  k->out->content_length = v;
  return 0;
}

static int transfer_encoding(struct cursor *k, const unsigned char *line, const unsigned char *vs,
                             const unsigned char *ve) {
  if (k->out->te_len != 0)
    return fail(k, "two Transfer-Encoding lines");
  trim_spaces(&vs, &ve);
  if (ve - vs != 7 || strncasecmp((const char *)vs, "chunked", 7) != 0)
    return fail(k, "Transfer-Encoding other than chunked");
  k->out->chunked = 1;
  k->out->te_off = (uint32_t)(line - k->b);
  k->out->te_len = (uint32_t)(k->p - line); /* the cursor is past the line's CRLF */
  return 0;
}

/* The framing headers (and their '_' spellings, which some gateways turn into '-'). Only names
 * of their lengths starting with c or t are compared, which keeps this off the hot path. */
static int framing_header(struct cursor *k, const unsigned char *line, size_t nlen,
                          const unsigned char *vs, const unsigned char *ve) {
  const char *n = (const char *)line;

  if (nlen == 14 && (*line | 0x20) == 'c') {
    if (strncasecmp(n, "content-length", 14) == 0)
      return content_length(k, vs, ve);
    if (strncasecmp(n, "content_length", 14) == 0)
      return fail(k, "framing header spelt with '_'");
  } else if (nlen == 17 && (*line | 0x20) == 't') {
    if (strncasecmp(n, "transfer-encoding", 17) == 0)
      return transfer_encoding(k, line, vs, ve);
    if (strncasecmp(n, "transfer_encoding", 17) == 0)
      return fail(k, "framing header spelt with '_'");
  }
  return 0;
}

/* One header line at the cursor (not the blank line); steps past its CRLF. */
static int header_line(struct cursor *k) {
  const unsigned char *line = k->p, *ne, *vs, *ve;
  int c;

  if (cur(k) == ' ' || cur(k) == '\t')
    return fail(k, "obs-fold (a line starting with a space or TAB)");
  skip(k, C_TCHAR);
  ne = k->p;
  c = cur(k);
  if (c != ':')
    return fail(k, c < 0       ? "head ends inside a header name"
                   : c == '\n' ? "bare LF"
                   : c == ' '  ? "space in or after a header name"
                   : c == '\t' ? "TAB in or after a header name"
                               : "byte not allowed in a header name");
  if (ne == line)
    return fail(k, "empty header name");
  k->p++;
  vs = k->p;
  skip_value(k);
  ve = k->p;
  c = cur(k);
  if (c != '\r')
    return fail(k, c == '\n' ? "bare LF"
                   : c < 0   ? "head ends inside a header line"
                             : "control byte in a header value");
  if (crlf(k, "") < 0)
    return UV_EPROTO;
  return framing_header(k, line, (size_t)(ne - line), vs, ve);
}

int px_strict_head(const char *buf, uint32_t start, uint32_t end, int is_request,
                   struct px_strict_head *out) {
  const unsigned char *b = (const unsigned char *)buf;
  struct cursor k = {b, b + start, b + end, out};
  int rc;

  memset(out, 0, sizeof(*out));
  rc = is_request ? request_line(&k) : status_line(&k);
  while (rc == 0 && cur(&k) != '\r')
    rc = cur(&k) < 0 ? fail(&k, "head ends before its blank line") : header_line(&k);
  if (rc == 0)
    rc = crlf(&k, "");
  if (rc == 0 && k.p != k.e)
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
    else if (!(cls[x] & C_FIELD) || ++c->line > PX_CHUNKED_MAX_LINE)
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
    else if ((cls[x] & C_TCHAR))
      c->state = CH_TNAME; /* SP or HTAB here would be obs-fold, ':' an empty name */
    else
      return UV_EPROTO;
    return 0;
  case CH_TNAME:
    if (x == ':')
      c->state = CH_TVALUE;
    else if (!(cls[x] & C_TCHAR) || ++c->line > PX_CHUNKED_MAX_LINE)
      return UV_EPROTO;
    return 0;
  case CH_TVALUE:
    if (x == '\r')
      c->state = CH_TLF;
    else if (!(cls[x] & C_FIELD) || ++c->line > PX_CHUNKED_MAX_LINE)
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
