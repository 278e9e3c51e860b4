/* Tests for proxy/http_strict.c and its use by http_head.c: strict heads, chunked framing. */
#include "http_head.h"
#include "http_strict.h"

#include <criterion/criterion.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <uv.h>

#define LEN(s) (sizeof(s) - 1)

struct sample {
  const char *text;
  size_t len;
  const char *why; /* a part of the expected reason (bad samples) */
};
#define S(text, why)                                                                               \
  { text, LEN(text), why }

static const struct sample good_requests[] = {
    S("GET / HTTP/1.1\r\nHost: a\r\n\r\n", NULL),
    S("GET /a?b=c&d=%20#frag HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n", NULL),
    S("GET http://a.example:80/x HTTP/1.1\r\nHost: a\r\n\r\n", NULL),
    S("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", NULL),
    S("GET / HTTP/1.0\r\n\r\n", NULL),
    S("POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n", NULL),
    S("POST /u HTTP/1.1\r\nHost: a\r\nContent-Length:   12  \r\n\r\n", NULL),
    S("POST /u HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", NULL),
    S("POST /u HTTP/1.1\r\nHost: a\r\ntransfer-encoding:  Chunked \r\n\r\n", NULL),
    S("GET / HTTP/1.1\r\nHost: a\r\nX-Tab:\tva\tlue\t\r\nX-Utf8: caf\xc3\xa9\r\nX-Empty:\r\n\r\n",
      NULL),
    S("GET / HTTP/1.1\r\nHost: a\r\nX_Under_Score: 1\r\n!#$%&'*+-.^_`|~: tchars\r\n\r\n", NULL),
};

static const struct sample good_responses[] = {
    S("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", NULL),
    S("HTTP/1.1 204 \r\n\r\n", NULL),
    S("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", NULL),
    S("HTTP/1.0 404 Not\tFound \xe9\r\n\r\n", NULL),
    S("HTTP/1.1 100 Continue\r\n\r\n", NULL),
    S("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X\r\n\r\n", NULL),
};

static const struct sample bad_requests[] = {
    /* The bare CR smugglings of the issue, and their relatives. */
    S("GET / HTTP/1.1\r\nHost: a\r\nX: \rXContent-Length: 35\r\n\r\n", "CR not followed by LF"),
    S("GET / HTTP/1.1\r\nHost: a\r\nA: \rX-Forwarded-For: 6.6.6.6\r\n\r\n", "CR not followed"),
    S("GET / HTTP/1.1\rHost: a\r\n\r\n", "CR not followed"),
    S("GET / HTTP/1.1\r\nHost: a\r\n\rX\r\n", "CR not followed"),
    S("GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n", "bare LF"),
    S("GET / HTTP/1.1\r\nHost: a\r\n\n", "bare LF"),
    S("GET / HTTP/1.1\nHost: a\r\n\r\n", "request line"),
    /* Folds, the empty-first-line one included. */
    S("GET / HTTP/1.1\r\nHost: a\r\nX:\r\n Transfer-Encoding: chunked\r\n\r\n", "obs-fold"),
    S("GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n\tb\r\n\r\n", "obs-fold"),
    /* Names. */
    S("GET / HTTP/1.1\r\nHost : evil\r\n\r\n", "space in or after a header name"),
    S("GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For : 6.6.6.6\r\n\r\n", "space in or after"),
    S("GET / HTTP/1.1\r\nHost: a\r\nX Y: z\r\n\r\n", "space in or after"),
    S("GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", "TAB in or after"),
    S("GET / HTTP/1.1\r\nHost: a\r\n: empty\r\n\r\n", "empty header name"),
    S("GET / HTTP/1.1\r\nHost: a\r\nX\x01Y: z\r\n\r\n", "byte not allowed in a header name"),
    S("GET / HTTP/1.1\r\nHost: a\r\nX\xe9: z\r\n\r\n", "byte not allowed in a header name"),
    S("GET / HTTP/1.1\r\nHost: a\r\nTransfer_Encoding: chunked\r\n\r\n", "spelt with '_'"),
    S("GET / HTTP/1.1\r\nHost: a\r\ncontent_length: 5\r\n\r\n", "spelt with '_'"),
    /* Values. */
    S("GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n", "control byte"),
    S("GET / HTTP/1.1\r\nHost: a\r\nX: a\x0b b\r\n\r\n", "control byte"),
    S("GET / HTTP/1.1\r\nHost: a\r\nX: a\x7f\r\n\r\n", "control byte"),
    /* Request lines. */
    S("GET / HTTP/2.0\r\nHost: a\r\n\r\n", "HTTP version"),
    S("GET / HTTP/0.9\r\nHost: a\r\n\r\n", "HTTP version"),
    S("GET / HTTP/1.2\r\nHost: a\r\n\r\n", "HTTP version"),
    S("GET / http/1.1\r\nHost: a\r\n\r\n", "HTTP version"),
    S("GET  / HTTP/1.1\r\nHost: a\r\n\r\n", "empty request target or two spaces"),
    S("GET /  HTTP/1.1\r\nHost: a\r\n\r\n", "HTTP version"),
    S("GET / HTTP/1.1 \r\nHost: a\r\n\r\n", "request line does not end"),
    S("GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", "bad method"),
    S("G@T / HTTP/1.1\r\nHost: a\r\n\r\n", "bad method"),
    S(" GET / HTTP/1.1\r\nHost: a\r\n\r\n", "bad method"),
    S("GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n", "byte not allowed in the request target"),
    S("GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", "byte not allowed in the request target"),
    S("GET /a\x01 HTTP/1.1\r\nHost: a\r\n\r\n", "byte not allowed in the request target"),
    /* Framing. */
    S("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
      "Content-Length with Transfer-Encoding"),
    S("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n", "not a number"),
    S("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\n", "not a number"),
    S("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n", "not 1 to 18 digits"),
    S("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\n", "not a number"),
    S("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n", "not a number"),
    S("POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\t5\r\n\r\n", "not a number"),
    S("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1234567890123456789\r\n\r\n", "1 to 18"),
    S("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
      "two Content-Length"),
    S("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
      "other than chunked"),
    S("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
      "other than chunked"),
    S("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", "other than chunked"),
    S("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n", "other than chunked"),
    S("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\tchunked\r\n\r\n", "other than chunked"),
    S("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \"chunked\"\r\n\r\n", "other than chunked"),
    S("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ,chunked\r\n\r\n", "other than chunked"),
    S("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \x0b"
      "chunked\r\n\r\n",
      "control byte"),
    S("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \rchunked\r\n\r\n", "CR not followed"),
    S("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n", "space in or after"),
    S("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"
      "\r\n",
      "two Transfer-Encoding"),
};

static const struct sample bad_responses[] = {
    S("HTTP/2.0 200 OK\r\n\r\n", "HTTP version"),
    S("HTTP/1.1  200 OK\r\n\r\n", "three digits"),
    S("HTTP/1.1 20 OK\r\n\r\n", "three digits"),
    S("HTTP/1.1 2000 OK\r\n\r\n", "status line"),
    S("HTTP/1.1 200 O\x01K\r\n\r\n", "status line"),
    S("HTTP/1.1 200 OK\rX: y\r\n\r\n", "CR not followed"),
    S("HTTP/1.1 200 OK\r\nX: b\rX-Smuggled: 1\r\n\r\n", "CR not followed"),
    S("HTTP/1.1 200 OK\r\nX: b\nY: c\r\n\r\n", "bare LF"),
    S("HTTP/1.1 200 OK\r\nX:\r\n Content-Length: 2\r\n\r\n", "obs-fold"),
    S("HTTP/1.1 200 OK\r\nX-A : b\r\n\r\n", "space in or after"),
    S("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n", "two Content-Length"),
    S("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
      "Content-Length with"),
    S("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", "other than chunked"),
    S("\r\nHTTP/1.1 200 OK\r\n\r\n", "HTTP version"),
};

#define N(a) (sizeof(a) / sizeof(a[0]))

/* ---- px_strict_head alone ---- */

/* Places text at the very end of a page followed by an inaccessible one (picohttpparser's
 * guard page), so that reading one byte past the end crashes the test. */
static char *guarded(const char *text, size_t len) {
  static char *map;
  static size_t page;

  if (map == NULL) {
    page = (size_t)sysconf(_SC_PAGESIZE);
    map = mmap(NULL, 3 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    cr_assert_neq(map, MAP_FAILED);
    cr_assert_eq(mprotect(map + 2 * page, page, PROT_NONE), 0);
  }
  cr_assert_leq(len, 2 * page);
  memcpy(map + 2 * page - len, text, len);
  return map + 2 * page - len;
}

Test(http_strict, accepts_well_formed_heads) {
  struct px_strict_head out;

  for (size_t i = 0; i < N(good_requests); i++) {
    const struct sample *s = &good_requests[i];
    int rc = px_strict_head(guarded(s->text, s->len), 0, (uint32_t)s->len, 1, &out);
    cr_assert_eq(rc, 0, "request %zu refused: %s at %u", i, out.why, out.err_off);
  }
  for (size_t i = 0; i < N(good_responses); i++) {
    const struct sample *s = &good_responses[i];
    int rc = px_strict_head(guarded(s->text, s->len), 0, (uint32_t)s->len, 0, &out);
    cr_assert_eq(rc, 0, "response %zu refused: %s at %u", i, out.why, out.err_off);
  }
}

Test(http_strict, refuses_each_malformed_head_with_its_reason) {
  struct px_strict_head out;

  for (size_t i = 0; i < N(bad_requests); i++) {
    const struct sample *s = &bad_requests[i];
    int rc = px_strict_head(guarded(s->text, s->len), 0, (uint32_t)s->len, 1, &out);
    cr_assert_eq(rc, UV_EPROTO, "request %zu accepted: %s", i, s->text);
    cr_assert_not_null(strstr(out.why, s->why), "request %zu: '%s', expected '%s'", i, out.why,
                       s->why);
    cr_assert_leq(out.err_off, s->len);
  }
  for (size_t i = 0; i < N(bad_responses); i++) {
    const struct sample *s = &bad_responses[i];
    int rc = px_strict_head(guarded(s->text, s->len), 0, (uint32_t)s->len, 0, &out);
    cr_assert_eq(rc, UV_EPROTO, "response %zu accepted: %s", i, s->text);
    cr_assert_not_null(strstr(out.why, s->why), "response %zu: '%s', expected '%s'", i, out.why,
                       s->why);
  }
}

Test(http_strict, refuses_a_head_that_does_not_end_exactly_at_the_given_end) {
  const char *h = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
  struct px_strict_head out;
  size_t n = strlen(h);

  for (size_t end = 0; end < n; end++)
    cr_assert_eq(px_strict_head(guarded(h, end), 0, (uint32_t)end, 1, &out), UV_EPROTO,
                 "a head cut at %zu was accepted", end);
  cr_assert_eq(px_strict_head(h, 0, (uint32_t)n - 2, 1, &out), UV_EPROTO);
  cr_assert_eq(px_strict_head("GET / HTTP/1.1\r\nHost: a\r\n\r\nX", 0, (uint32_t)n + 1, 1, &out),
               UV_EPROTO);
}

Test(http_strict, reports_the_framing_it_found) {
  struct px_strict_head out;
  const char *te = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nX: y\r\n\r\n";
  const char *cl = "HTTP/1.0 203 Fine\r\nContent-Length: 0012\r\n\r\n";

  cr_assert_eq(px_strict_head(te, 0, (uint32_t)strlen(te), 1, &out), 0);
  cr_assert(out.chunked && !out.has_cl && out.minor == 1);
  cr_assert_eq(out.te_len, 28);
  cr_assert_arr_eq(te + out.te_off, "Transfer-Encoding: chunked\r\n", 28);
  cr_assert_eq(px_strict_head(cl, 0, (uint32_t)strlen(cl), 0, &out), 0);
  cr_assert(out.has_cl && !out.chunked && out.minor == 0);
  cr_assert_eq(out.content_length, 12);
  cr_assert_eq(out.status, 203);
}

/* ---- through llhttp and px_head, at every split point ---- */

struct parsed {
  char buf[4096];
  llhttp_t parser;
  struct px_head head;
  int rc; /* 0: accepted; -1: px_head_complete refused; -2: llhttp refused */
};

/* Feeds raw[0..n) to llhttp in two pieces split at `split`, the way reads arrive, then
 * completes the head. */
static void parse_split(struct parsed *p, const char *raw, size_t n, int request, size_t split) {
  size_t pos = 0;

  memset(p, 0, sizeof(*p));
  memcpy(p->buf, raw, n);
  llhttp_init(&p->parser, request ? HTTP_REQUEST : HTTP_RESPONSE,
              request ? &px_request_settings : &px_response_settings);
  p->parser.data = &p->head;
  px_head_reset(&p->head, p->buf, request, 0);
  while (pos < n) {
    size_t len = pos < split && split < n ? split - pos : n - pos;
    llhttp_errno_t err = px_head_execute(&p->parser, &p->head, p->buf + pos, len);
    if (err == HPE_PAUSED) {
      uint32_t end = (uint32_t)(llhttp_get_error_pos(&p->parser) - p->buf);
      p->rc = px_head_complete(&p->head, end);
      return;
    }
    if (err != HPE_OK) {
      p->rc = -2;
      return;
    }
    pos += len;
  }
  p->rc = -3; /* never completed */
}

static void every_split(const struct sample *s, size_t n, int request, int want_ok) {
  static struct parsed p;

  for (size_t i = 0; i < n; i++)
    for (size_t split = 1; split <= s[i].len; split++) {
      parse_split(&p, s[i].text, s[i].len, request, split);
      if (want_ok)
        cr_assert_eq(p.rc, 0, "%s %zu split at %zu: %d (%s)", request ? "request" : "response", i,
                     split, p.rc, p.head.why);
      else
        cr_assert(p.rc == -1 || p.rc == -2, "%s %zu split at %zu was accepted (%d)",
                  request ? "request" : "response", i, split, p.rc);
    }
}

Test(http_strict, llhttp_and_px_head_accept_good_heads_at_every_split_point) {
  every_split(good_requests, N(good_requests), 1, 1);
  every_split(good_responses, N(good_responses), 0, 1);
}

Test(http_strict, px_head_refuses_every_bad_head_at_every_split_point) {
  every_split(bad_requests, N(bad_requests), 1, 0);
  every_split(bad_responses, N(bad_responses), 0, 0);
}

Test(http_strict, px_head_catches_what_llhttp_8_lets_through) {
  /* llhttp alone accepts these (Debian 12's 8.1); the strict check is what refuses them. */
  static const struct sample s[] = {
      S("GET / HTTP/1.1\r\nHost: a\r\nX: \rXContent-Length: 35\r\n\r\n", "CR not followed"),
      S("GET / HTTP/1.1\r\nHost : evil\r\n\r\n", "space in or after"),
      S("GET / HTTP/2.0\r\nHost: a\r\n\r\n", "HTTP version"),
      S("GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n", "request target"),
      S("GET / HTTP/1.1\r\nHost: a\r\nX:\r\n Transfer-Encoding: chunked\r\n\r\n", "obs-fold"),
  };
  static struct parsed p;

  for (size_t i = 0; i < N(s); i++) {
    parse_split(&p, s[i].text, s[i].len, 1, s[i].len);
    cr_assert_eq(p.rc, -1, "case %zu: %d", i, p.rc);
    cr_assert_not_null(strstr(p.head.why, s[i].why), "case %zu: %s", i, p.head.why);
  }
}

Test(http_strict, skips_empty_lines_before_a_request_line_and_forwards_from_the_method) {
  static struct parsed p;
  const char raw[] = "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";

  for (size_t split = 1; split <= LEN(raw); split++) {
    parse_split(&p, raw, LEN(raw), 1, split);
    cr_assert_eq(p.rc, 0, "split %zu: %s", split, p.head.why);
    cr_assert_eq(p.head.start, 4);
  }
}

Test(http_strict, llhttp_is_never_lenient) {
  static struct parsed p;
  const char raw[] = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";

  parse_split(&p, raw, LEN(raw), 1, 0);
  cr_assert_eq(p.rc, 0);
  cr_assert_eq(p.parser.lenient_flags, 0, "px settings must not make llhttp lenient");
  /* And a parser someone made lenient is refused outright. */
  memset(&p, 0, sizeof(p));
  memcpy(p.buf, raw, LEN(raw));
  llhttp_init(&p.parser, HTTP_REQUEST, &px_request_settings);
  llhttp_set_lenient_headers(&p.parser, 1);
  p.parser.data = &p.head;
  px_head_reset(&p.head, p.buf, 1, 0);
  cr_assert_eq(llhttp_execute(&p.parser, p.buf, LEN(raw)), HPE_PAUSED);
  cr_assert_eq(px_head_complete(&p.head, (uint32_t)LEN(raw)), -1);
  cr_assert_str_eq(p.head.why, "llhttp is not strict");
}

/* ---- chunked bodies ---- */

static const struct sample good_bodies[] = {
    S("5\r\nhello\r\n0\r\n\r\n", "hello"),
    S("5;name=value;x=\"q s\"\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", "hello world"),
    S("A\r\n0123456789\r\n000\r\nX-Sum: 1\r\nY:\r\n\r\n", "0123456789"),
    S("0000000000000001\r\nx\r\n0\r\n\r\n", "x"),
    S("0\r\n\r\n", ""),
};

static const struct sample bad_bodies[] = {
    S("+5\r\nhello\r\n0\r\n\r\n", NULL),
    S("-5\r\nhello\r\n0\r\n\r\n", NULL),
    S(" 5\r\nhello\r\n0\r\n\r\n", NULL),
    S("5 \r\nhello\r\n0\r\n\r\n", NULL),
    S("5\t\r\nhello\r\n0\r\n\r\n", NULL),
    S("0x5\r\nhello\r\n0\r\n\r\n", NULL),
    S("\r\nhello\r\n0\r\n\r\n", NULL),
    S("10000000000000005\r\nhello\r\n0\r\n\r\n", NULL),
    S("ffffffffffffffff\r\nhello\r\n0\r\n\r\n", NULL),
    S("00000000000000005\r\nhello\r\n0\r\n\r\n", NULL),
    S("5\nhello\r\n0\r\n\r\n", NULL),
    S("5\rXhello\r\n0\r\n\r\n", NULL),
    S("5\r\nhelloXX0\r\n\r\n", NULL),
    S("5\r\nhello\rX0\r\n\r\n", NULL),
    S("5\r\nhello\n0\r\n\r\n", NULL),
    S("5;e\rX\r\nhello\r\n0\r\n\r\n", NULL),
    S("5;e\x01\r\nhello\r\n0\r\n\r\n", NULL),
    S("0\r\n\rX", NULL),
    S("0\r\nX: \rContent-Length: 5\r\n\r\n", NULL),
    S("0\r\n Folded: x\r\n\r\n", NULL),
    S("0\r\nBad Name: x\r\n\r\n", NULL),
    S("0\r\n\n", NULL),
};

/* Feeds body[0..n) in pieces cut at a and b (two split points); returns the total consumed, or
 * -1 on error; de-chunked data goes to out when given. */
static long feed3(const char *body, size_t n, size_t a, size_t b, char *out, size_t *olen) {
  struct px_chunked c = {0};
  char copy[256];
  size_t cuts[4] = {0, a, b, n}, total = 0;

  memcpy(copy, body, n);
  *olen = 0;
  for (int i = 0; i < 3; i++) {
    size_t kept = 0;
    ssize_t r = px_chunked_feed(&c, copy + cuts[i], cuts[i + 1] - cuts[i],
                                out ? copy + cuts[i] : NULL, &kept);
    if (r < 0)
      return -1;
    if (out) {
      memcpy(out + *olen, copy + cuts[i], kept);
      *olen += kept;
    }
    total += (size_t)r;
    if (px_chunked_done(&c))
      break;
  }
  return px_chunked_done(&c) ? (long)total : -2;
}

Test(http_strict, chunked_bodies_pass_and_dechunk_at_every_pair_of_split_points) {
  char out[256];
  size_t olen;

  for (size_t i = 0; i < N(good_bodies); i++) {
    const struct sample *s = &good_bodies[i];
    for (size_t a = 0; a <= s->len; a++)
      for (size_t b = a; b <= s->len; b++) {
        cr_assert_eq(feed3(s->text, s->len, a, b, NULL, &olen), (long)s->len,
                     "body %zu cut at %zu,%zu", i, a, b);
        cr_assert_eq(feed3(s->text, s->len, a, b, out, &olen), (long)s->len);
        cr_assert_eq(olen, strlen(s->why), "body %zu cut at %zu,%zu", i, a, b);
        cr_assert_arr_eq(out, s->why, olen);
      }
  }
}

Test(http_strict, bad_chunked_framing_fails_at_every_pair_of_split_points) {
  size_t olen;

  for (size_t i = 0; i < N(bad_bodies); i++) {
    const struct sample *s = &bad_bodies[i];
    for (size_t a = 0; a <= s->len; a++)
      for (size_t b = a; b <= s->len; b++)
        cr_assert_lt(feed3(s->text, s->len, a, b, NULL, &olen), 0,
                     "body %zu (%s) passed, cut at %zu,%zu", i, s->text, a, b);
  }
}

Test(http_strict, a_chunked_body_stops_where_the_next_message_starts) {
  struct px_chunked c = {0};
  const char raw[] = "3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n";

  cr_assert_eq(px_chunked_feed(&c, raw, LEN(raw), NULL, NULL), 13);
  cr_assert(px_chunked_done(&c));
  cr_assert_eq(px_chunked_feed(&c, "more", 4, NULL, NULL), 0, "nothing more belongs to it");
  struct px_chunked e = {0};
  cr_assert_lt(px_chunked_feed(&e, "Z", 1, NULL, NULL), 0);
  cr_assert_lt(px_chunked_feed(&e, "", 0, NULL, NULL), 0, "a failed check stays failed");
  cr_assert(!px_chunked_started(&(struct px_chunked){0}));
}

/* A request with a chunked body through llhttp + px_head_execute, fed in two pieces. */
static llhttp_errno_t chunked_request(const char *body, size_t blen, size_t split) {
  static struct parsed p;
  char raw[512];
  const char head[] = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
  size_t n = LEN(head) + blen, pos = 0;
  llhttp_errno_t err = HPE_OK;

  memcpy(raw, head, LEN(head));
  memcpy(raw + LEN(head), body, blen);
  parse_split(&p, raw, LEN(head), 1, LEN(head));
  cr_assert_eq(p.rc, 0);
  llhttp_resume(&p.parser);
  memcpy(p.buf, raw, n);
  pos = LEN(head);
  while (pos < n) {
    size_t len = pos < split && split < n ? split - pos : n - pos;
    err = px_head_execute(&p.parser, &p.head, p.buf + pos, len);
    if (err != HPE_OK)
      return err;
    pos += len;
  }
  return err;
}

Test(http_strict, px_head_execute_refuses_the_chunk_framing_llhttp_8_skips) {
  static const struct sample lax[] = {
      S("5\r\nhelloXX0\r\n\r\n", NULL),
      S("5\r\nhello\rX0\r\n\r\n", NULL),
      S("5\rXhello\r\n0\r\n\r\n", NULL),
      S("ffffffffffffffff\r\nhello\r\n0\r\n\r\n", NULL),
      S("0\r\nX: \rContent-Length: 5\r\n\r\n", NULL),
  };
  const char good[] = "5\r\nhello\r\n0\r\nX: y\r\n\r\n";
  size_t hl = LEN("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");

  for (size_t split = hl; split <= hl + LEN(good); split++)
    cr_assert_eq(chunked_request(good, LEN(good), split), HPE_PAUSED, "split %zu", split);
  for (size_t i = 0; i < N(lax); i++)
    for (size_t split = hl; split <= hl + lax[i].len; split++) {
      llhttp_errno_t err = chunked_request(lax[i].text, lax[i].len, split);
      cr_assert(err != HPE_OK && err != HPE_PAUSED, "body %zu split %zu passed (%s)", i, split,
                llhttp_errno_name(err));
    }
}

Test(http_strict, a_chunked_response_is_dechunked_for_an_http10_client) {
  static struct parsed p;
  const char head[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n";
  const char body[] = "3\r\nabc\r\n4;x=y\r\ndefg\r\n0\r\nT: v\r\n\r\n";
  uv_buf_t iov[PX_HEAD_MAX_IOV], tail = uv_buf_init("Connection: close\r\n", 19);
  uint8_t keep_alive = 1;
  char out[512] = "";
  int n;

  for (size_t split = 0; split <= LEN(body); split++) {
    char raw[512];
    size_t pos = LEN(head), fwd = LEN(head), got = 0;
    memcpy(raw, head, LEN(head));
    memcpy(raw + LEN(head), body, LEN(body));
    parse_split(&p, raw, LEN(head), 0, LEN(head));
    cr_assert_eq(p.rc, 0);
    llhttp_resume(&p.parser);
    keep_alive = 1;
    cr_assert_eq(px_head_for_http10(&p.head, &keep_alive), 0);
    cr_assert_eq(keep_alive, 0);
    n = px_head_iov(&p.head, NULL, &tail, 1, 0, iov, PX_HEAD_MAX_IOV);
    out[0] = '\0';
    for (int i = 0; i < n; i++)
      strncat(out, iov[i].base, iov[i].len);
    cr_assert_str_eq(out, "HTTP/1.1 200 OK\r\nX-A: 1\r\nConnection: close\r\n\r\n");
    memcpy(p.buf + LEN(head), body, LEN(body));
    for (size_t cut = LEN(head) + split; pos < LEN(head) + LEN(body); cut = LEN(head) + LEN(body)) {
      llhttp_errno_t err = px_head_execute(&p.parser, &p.head, p.buf + pos, cut - pos);
      uint32_t to =
          err == HPE_PAUSED ? (uint32_t)(llhttp_get_error_pos(&p.parser) - p.buf) : (uint32_t)cut;
      cr_assert(err == HPE_OK || err == HPE_PAUSED, "split %zu: %s", split, llhttp_errno_name(err));
      uint32_t end = px_head_body(&p.head, p.buf, (uint32_t)fwd, to);
      memcpy(out + got, p.buf + fwd, end - fwd);
      got += end - fwd;
      pos = fwd = to;
    }
    cr_assert_eq(got, 7, "split %zu", split);
    cr_assert_arr_eq(out, "abcdefg", 7);
  }
}
