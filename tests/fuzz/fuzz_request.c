/* libFuzzer target: a client's bytes through request parsing, routing and head rewriting. */

/*
 * The input is everything a client sends on one connection. It is run the way a worker runs it
 * (proxy/request.c): px_head_reset, llhttp_execute with px_request_settings over each read until
 * the head pauses, the request checks, px_head_complete, px_route over a small fixed config,
 * the body up to the end of the message, px_head_iov with the X-Forwarded-For insert and tail
 * lines, then the next pipelined request from the start of a fresh buffer (as px__client_next
 * moves it).
 *
 * Checked for every forwarded request:
 * 1. every iovec lies inside the received bytes or is one of our inserts, the received runs in
 *    order and without overlap, the total within bounds;
 * 2. the forwarded head parses again, strictly, ends exactly where it should, carries no
 *    hop-by-hop line, keeps the method, version and target (or the origin form and a Host line
 *    made from an absolute-form target), and its last X-Forwarded-For ends with our client;
 * 3. the body bytes after the head are the received ones, unchanged;
 * 4. a catch-all route exists, so every request routes.
 * And for the connection: the whole run gives the same transcript (forwarded bytes, routes,
 * error statuses) whether the input arrives in one read or in reads of 1..256 bytes.
 */
#include "fuzz.h"

#include "config.h"
#include "http_head.h"
#include "rewrite.h"
#include "router.h"

#include <ctype.h>
#include <llhttp.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#define PEER       ", 127.0.0.2" /* request.c keeps the peer as ", ADDR" for the insert */
#define MAX_PIPE   16            /* pipelined requests run per input */
#define TOO_BIG    (-431)        /* feed(): the head outgrew max_header_bytes */
#define HEAD_LIMIT 2048

static const char config_yaml[] = "listen: 127.0.0.1:0\n"
                                  "workers: 1\n"
                                  "limits:\n"
                                  "  max_header_bytes: 2k\n"
                                  "upstreams:\n"
                                  "  a:\n"
                                  "    servers: [127.0.0.1:1001]\n"
                                  "  b:\n"
                                  "    servers: [127.0.0.1:1002, 127.0.0.1:1003]\n"
                                  "  c:\n"
                                  "    servers: ['[::1]:1004']\n"
                                  "routes:\n"
                                  "  - upstream: a\n"
                                  "    host: example.com\n"
                                  "  - upstream: b\n"
                                  "    host: '*.example.com'\n"
                                  "    path: /api/\n"
                                  "  - upstream: c\n"
                                  "    path: /static/\n"
                                  "  - upstream: a\n";

static struct lbp_config *cfg;

static const char xff_prefix[] = "X-Forwarded-For: ";
static const char host_prefix[] = "Host: ";
static const char crlf[] = "\r\n";
static const char conn_ka[] = "Connection: keep-alive\r\n";

/* One connection being run. `b` is the current buffer: the whole input for the first request,
 * a fresh exact-size copy of what is left for each pipelined one. */
struct sim {
  char *b;
  uint32_t size;
  llhttp_t parser;
  struct px_head head;
  struct px_span authority;
  int host_from_target, http10;
  uint64_t split; /* read pattern state; 0 = one read */
  struct fuzz_out out;
};

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  struct cfg_error err;
  int rc = cfg_parse("fuzz_request.yaml", config_yaml, sizeof(config_yaml) - 1, &cfg, &err);

  FUZZ_CHECK(rc == 0, "fixed config: %s", err.msg);
  FUZZ_CHECK(cfg->limits.max_header_bytes == HEAD_LIMIT, "limit %llu",
             (unsigned long long)cfg->limits.max_header_bytes);
  return 0;
}

/* Runs llhttp from *pos over reads until it pauses, fails or the input ends. Returns the
 * llhttp error (HPE_OK: input ended; *pos = size), or TOO_BIG when `limit` is not 0 and a read
 * left more than `limit` bytes of head unparsed (request.c's 431 check). */
static int feed(struct sim *s, uint32_t *pos, uint64_t limit) {
  while (*pos < s->size) {
    uint32_t end = (uint32_t)fuzz_read_end(&s->split, *pos, s->size);
    llhttp_errno_t err = llhttp_execute(&s->parser, s->b + *pos, end - *pos);
    if (err == HPE_OK) {
      *pos = end;
      if (limit != 0 && end - s->head.start > limit)
        return TOO_BIG;
      continue;
    }
    if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE)
      *pos = (uint32_t)(llhttp_get_error_pos(&s->parser) - s->b);
    return (int)err;
  }
  return HPE_OK;
}

/* As request.c: px_head_absolute_target (rewrite.c) checks the authority and drops it from the
 * target; the Host line the client sent gives way to it. */
static int absolute_target(struct sim *s) {
  if (px_head_absolute_target(&s->head, &s->authority) < 0)
    return -1;
  s->host_from_target = 1;
  if (s->head.flags & PX_HEAD_HAS_HOST)
    px_head_drop(&s->head, s->head.host_line.off, s->head.host_line.len);
  return (s->head.flags & PX_HEAD_OVERFLOW) ? -1 : 0;
}

/* Mirrors check_request() in proxy/request.c: the error status, or 0. */
static int check_request(struct sim *s, uint32_t end) {
  const char *u = s->b + s->head.url.off;

  if (px_head_complete(&s->head, end) < 0 || (s->head.flags & PX_HEAD_DUP_HOST))
    return 400;
  s->http10 = s->parser.http_major == 1 && s->parser.http_minor == 0;
  if (s->parser.method == HTTP_CONNECT)
    return 405;
  if (s->head.url.len > 0 && u[0] != '/' && !(s->head.url.len == 1 && u[0] == '*') &&
      absolute_target(s) < 0)
    return 400;
  if (!(s->head.flags & PX_HEAD_HAS_HOST) && !s->http10 && !s->host_from_target)
    return 400;
  if (s->http10 && (s->parser.flags & (F_CHUNKED | F_TRANSFER_ENCODING)))
    return 400;
  return 0;
}

/* Whether an absolute-form authority is `host [":" port]` as RFC 3986 spells it: an IP-literal
 * in brackets or a reg-name/IPv4 of unreserved, sub-delims and pct-encoded characters. */
static int authority_ok(const char *a, size_t n) {
  static const char host_chars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                   "0123456789-._~!$&'()*+,;=%";
  size_t i = 0;

  if (n > 0 && a[0] == '[') {
    for (i = 1; i < n && a[i] != ']'; i++)
      if (!(isxdigit((unsigned char)a[i]) || a[i] == ':' || a[i] == '.'))
        return 0;
    if (i == n)
      return 0;
    i++;
  } else {
    for (; i < n && a[i] != ':'; i++)
      if (a[i] == '\0' || strchr(host_chars, a[i]) == NULL)
        return 0;
  }
  if (i == 0)
    return 0;
  if (i < n && a[i++] != ':')
    return 0;
  for (; i < n; i++)
    if (!isdigit((unsigned char)a[i]))
      return 0;
  return 1;
}

/* The oracle for request targets (independent of rewrite.c): control bytes, SP or bytes >= 0x80
 * (llhttp 8.1 lets \t and \f through), or an absolute-form authority that is not host[:port]
 * must be refused with 400. */
static int target_refused(const struct sim *s) {
  const char *u = s->b + s->head.url.off, *sep, *slash;
  uint32_t n = s->head.url.len;

  if (fuzz_known_allowed())
    return 0;
  for (uint32_t i = 0; i < n; i++)
    if ((unsigned char)u[i] <= ' ' || (unsigned char)u[i] >= 0x7f)
      return 1;
  if (n == 0 || u[0] == '/' || (sep = memmem(u, n, "://", 3)) == NULL)
    return 0;
  slash = memchr(sep + 3, '/', (size_t)(u + n - (sep + 3)));
  return slash != NULL && !authority_ok(sep + 3, (size_t)(slash - (sep + 3)));
}

/* Trims spaces and tabs around a span of `b`. */
static struct px_span trim(const char *b, struct px_span v) {
  while (v.len > 0 && (b[v.off] == ' ' || b[v.off] == '\t'))
    v.off++, v.len--;
  while (v.len > 0 && (b[v.off + v.len - 1] == ' ' || b[v.off + v.len - 1] == '\t'))
    v.len--;
  return v;
}

/* The value of the last X-Forwarded-For line of a parsed head, or an empty span. */
static struct px_span last_xff(const char *b, uint32_t start, uint32_t end) {
  struct px_span v = {0, 0};
  uint32_t pos = start;

  while (pos < end) {
    uint32_t ls = pos, e;
    while (pos < end && b[pos] != '\n')
      pos++;
    e = pos++;
    if (e - ls > 16 && strncasecmp(b + ls, "x-forwarded-for:", 16) == 0) {
      v.off = ls + 16;
      v.len = e - v.off;
      if (v.len > 0 && b[v.off + v.len - 1] == '\r')
        v.len--;
    }
  }
  return trim(b, v);
}

/* Parses the forwarded head `fwd[0..len)` again and checks it against the original. */
static void check_reparse(struct sim *s, const char *fwd, uint32_t len) {
  char *copy = malloc(len ? len : 1);
  llhttp_t p;
  struct px_head h;
  llhttp_errno_t err;
  uint32_t end;
  struct px_span xff;

  FUZZ_CHECK(copy != NULL, "out of memory");
  memcpy(copy, fwd, len);
  fuzz_context("forwarded head", copy, len);
  llhttp_init(&p, HTTP_REQUEST, &px_request_settings);
  p.data = &h;
  px_head_reset(&h, copy, 1, 0);
  err = llhttp_execute(&p, copy, len);
  FUZZ_CHECK(err == HPE_PAUSED, "forwarded head does not parse: %s (%s)", llhttp_errno_name(err),
             llhttp_get_error_reason(&p));
  end = (uint32_t)(llhttp_get_error_pos(&p) - copy);
  FUZZ_CHECK(end == len, "forwarded head ends at %u of %u", end, len);
  FUZZ_CHECK(px_head_complete(&h, end) == 0, "forwarded head is refused (flags %#x)", h.flags);
  FUZZ_CHECK(h.ndrops == s->http10, "forwarded head has %u hop-by-hop lines, %d ours", h.ndrops,
             s->http10); /* ours: Connection: keep-alive for an HTTP/1.0 client */
  FUZZ_CHECK(!(h.flags & PX_HEAD_DUP_HOST), "forwarded head has two Host lines");
  FUZZ_CHECK(p.method == s->parser.method, "method %d became %d", s->parser.method, p.method);
  FUZZ_CHECK(p.http_major == s->parser.http_major && p.http_minor == s->parser.http_minor,
             "version changed");
  if (s->host_from_target) {
    struct px_span hv = trim(copy, h.host);
    FUZZ_CHECK(h.url.len > 0 && copy[h.url.off] == '/', "absolute target kept its authority");
    FUZZ_CHECK((h.flags & PX_HEAD_HAS_HOST) && hv.len == s->authority.len &&
                   memcmp(copy + hv.off, s->b + s->authority.off, hv.len) == 0,
               "Host is not the target's authority");
  } else {
    FUZZ_CHECK(h.url.len == s->head.url.len &&
                   memcmp(copy + h.url.off, s->b + s->head.url.off, h.url.len) == 0,
               "target changed");
    FUZZ_CHECK(!!(h.flags & PX_HEAD_HAS_HOST) == !!(s->head.flags & PX_HEAD_HAS_HOST),
               "Host line lost or added");
  }
  FUZZ_CHECK(h.flags & PX_HEAD_HAS_XFF, "no X-Forwarded-For forwarded");
  xff = last_xff(copy, 0, end);
  FUZZ_CHECK(xff.len >= 9 && memcmp(copy + xff.off + xff.len - 9, "127.0.0.2", 9) == 0,
             "last X-Forwarded-For does not end with the client");
  fuzz_context("request buffer", s->b, s->size);
  free(copy);
}

/* Builds the forwarded head as request.c's client_forward does, checks it, and appends the
 * forwarded bytes (head, then body up to `end`) to the transcript. */
static void forward(struct sim *s, uint32_t end) {
  uv_buf_t iov[PX_HEAD_MAX_IOV], tail[8], xff = uv_buf_init((char *)PEER, sizeof(PEER) - 1);
  uint32_t prev_end = s->head.start, in_buf = 0, total = 0, inserts = 0, head_len;
  int nt = 0, n;
  struct fuzz_out fwd = {0};

  if (s->host_from_target) {
    tail[nt++] = uv_buf_init((char *)host_prefix, sizeof(host_prefix) - 1);
    tail[nt++] = uv_buf_init(s->b + s->authority.off, s->authority.len);
    tail[nt++] = uv_buf_init((char *)crlf, 2);
  }
  if (!(s->head.flags & PX_HEAD_HAS_XFF)) {
    tail[nt++] = uv_buf_init((char *)xff_prefix, sizeof(xff_prefix) - 1);
    tail[nt++] = uv_buf_init((char *)PEER + 2, sizeof(PEER) - 3);
    tail[nt++] = uv_buf_init((char *)crlf, 2);
  }
  if (s->http10)
    tail[nt++] = uv_buf_init((char *)conn_ka, sizeof(conn_ka) - 1);
  n = px_head_iov(&s->head, &xff, tail, nt, end - s->head.end, iov, PX_HEAD_MAX_IOV);
  if (n < 0) { /* request.c answers 400: a drop inside another, or too many pieces */
    fuzz_out_event(&s->out, 'E', 400);
    return;
  }
  FUZZ_CHECK(n > 0 && n <= PX_HEAD_MAX_IOV, "%d iovecs", n);
  for (int i = 0; i < n; i++) {
    const char *p = iov[i].base;
    int ours = p == xff.base && iov[i].len == xff.len;
    for (int t = 0; t < nt && !ours; t++)
      ours = p == tail[t].base && iov[i].len == tail[t].len;
    FUZZ_CHECK(iov[i].len > 0, "empty iovec %d", i);
    if (ours && !(p >= s->b && p < s->b + s->size)) {
      inserts += (uint32_t)iov[i].len;
    } else {
      uint32_t off = (uint32_t)(p - s->b);
      FUZZ_CHECK(p >= s->b && p + iov[i].len <= s->b + end, "iovec %d outside the input", i);
      if (!ours) { /* the authority tail points into the input, anywhere */
        FUZZ_CHECK(off >= prev_end, "iovec %d goes back (%u < %u)", i, off, prev_end);
        prev_end = off + (uint32_t)iov[i].len;
        in_buf += (uint32_t)iov[i].len;
      } else {
        inserts += (uint32_t)iov[i].len;
      }
    }
    total += (uint32_t)iov[i].len;
    fuzz_out_add(&fwd, p, iov[i].len);
  }
  FUZZ_CHECK(in_buf <= end - s->head.start, "more bytes than received");
  FUZZ_CHECK(total == in_buf + inserts && total >= (end - s->head.end) + inserts,
             "lengths do not add up");
  FUZZ_CHECK(prev_end == end, "the body does not end the last iovec");
  head_len = total - (end - s->head.end);
  FUZZ_CHECK(memcmp(fwd.p + head_len, s->b + s->head.end, end - s->head.end) == 0,
             "body bytes changed");
  check_reparse(s, fwd.p, head_len);
  fuzz_out_add(&s->out, fwd.p, fwd.len);
  fuzz_out_free(&fwd);
}

/* Runs one request from offset 0 of s->b. Returns 1 if the connection goes on to the
 * pipelined request at *next, 0 if it ends. */
static int one_request(struct sim *s, uint32_t *next) {
  uint32_t pos = 0, end;
  const struct px_span *host;
  int rc, status, r, keep_alive, done = 0;

  s->host_from_target = 0;
  px_head_reset(&s->head, s->b, 1, 0);
  rc = feed(s, &pos, HEAD_LIMIT);
  if (rc != HPE_PAUSED) {
    /* Which of 400 and 431 a worker answers to a long bad head depends on how the reads fell
     * (the size check runs between reads): both runs report 431 past the limit. */
    if (rc != HPE_OK && rc != TOO_BIG)
      pos = (uint32_t)(llhttp_get_error_pos(&s->parser) - s->b);
    fuzz_out_event(&s->out, 'E', pos - s->head.start > HEAD_LIMIT ? 431 : rc == HPE_OK ? 0 : 400);
    return 0;
  }
  end = pos;
  llhttp_resume(&s->parser);
  if (end - s->head.start > HEAD_LIMIT) {
    fuzz_out_event(&s->out, 'E', 431);
    return 0;
  }
  if (fuzz_refuse_known(s->b + s->head.start, end - s->head.start) || target_refused(s)) {
    fuzz_out_event(&s->out, 'E', 400); /* fuzz.h: known defects, refused here */
    return 0;
  }
  if ((status = check_request(s, end)) != 0) {
    fuzz_out_event(&s->out, 'E', status);
    return 0;
  }
  keep_alive = llhttp_should_keep_alive(&s->parser);
  if (llhttp_execute(&s->parser, s->b + pos, 0) == HPE_PAUSED) { /* bodiless: complete now */
    llhttp_resume(&s->parser);
    done = 1;
  }
  host = s->host_from_target ? &s->authority : &s->head.host;
  r = px_route(
      cfg, (s->host_from_target || (s->head.flags & PX_HEAD_HAS_HOST)) ? s->b + host->off : NULL,
      host->len, s->b + s->head.url.off, s->head.url.len);
  FUZZ_CHECK(r >= 0 && (size_t)r < cfg->nroutes, "route %d with a catch-all route", r);
  fuzz_out_event(&s->out, 'R', r);
  if (!done) {
    rc = feed(s, &pos, 0);
    if (rc == HPE_PAUSED) {
      llhttp_resume(&s->parser);
      done = 1;
    } else if (rc != HPE_OK) {
      pos = (uint32_t)(llhttp_get_error_pos(&s->parser) - s->b);
      forward(s, pos); /* what went out before the error was found */
      fuzz_out_event(&s->out, 'E', 400);
      return 0;
    }
  }
  forward(s, pos);
  *next = pos;
  return done && keep_alive && pos < s->size;
}

/* Runs the whole input as one connection; its transcript is left in s->out. */
static void run(struct sim *s, const uint8_t *data, size_t size, uint64_t split) {
  uint32_t next = 0;
  int go = 1;

  memset(s, 0, sizeof(*s));
  s->split = split;
  s->size = (uint32_t)size;
  s->b = malloc(size ? size : 1);
  FUZZ_CHECK(s->b != NULL, "out of memory");
  memcpy(s->b, data, size);
  llhttp_init(&s->parser, HTTP_REQUEST, &px_request_settings);
  s->parser.data = &s->head;
  for (int i = 0; go && i < MAX_PIPE; i++) {
    go = one_request(s, &next);
    if (go) { /* px__client_next: what is left moves to the start of the buffer */
      uint32_t left = s->size - next;
      char *nb = malloc(left);
      FUZZ_CHECK(nb != NULL, "out of memory");
      memcpy(nb, s->b + next, left);
      free(s->b);
      s->b = nb;
      s->size = left;
      fuzz_out_event(&s->out, 'P', (long)left);
    }
  }
  free(s->b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static struct sim one, split;
  uint64_t seed = fuzz_hash(data, size) | 1;

  if (size > 1u << 20)
    return 0;
  run(&one, data, size, 0);
  run(&split, data, size, seed);
  FUZZ_CHECK(one.out.len == split.out.len &&
                 (one.out.len == 0 || memcmp(one.out.p, split.out.p, one.out.len) == 0),
             "one read and split reads differ:\n--- one read (%zu)\n%.*s\n--- split (%zu)\n%.*s",
             one.out.len, (int)one.out.len, one.out.p, split.out.len, (int)split.out.len,
             split.out.p);
  fuzz_out_free(&one.out);
  fuzz_out_free(&split.out);
  return 0;
}
