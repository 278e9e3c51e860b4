/* Tests for proxy/http_head.c: hop-by-hop removal, X-Forwarded-For, Connection tokens. */
#include "http_head.h"

#include <criterion/criterion.h>
#include <string.h>

struct parsed {
  char buf[4096];
  llhttp_t parser;
  struct px_head head;
  uint32_t end;
  int rc;
};

/* Parses the head of `raw` with the request or response settings, fed in pieces of `step`
 * bytes (all at once when 0), the way reads arrive. */
static void parse(struct parsed *p, const char *raw, int request, size_t step) {
  size_t n = strlen(raw), pos = 0;

  memset(p, 0, sizeof(*p));
  memcpy(p->buf, raw, n);
  llhttp_init(&p->parser, request ? HTTP_REQUEST : HTTP_RESPONSE,
              request ? &px_request_settings : &px_response_settings);
  p->parser.data = &p->head;
  px_head_reset(&p->head, p->buf, request, 0);
  for (;;) {
    size_t len = step && n - pos > step ? step : n - pos;
    llhttp_errno_t err = llhttp_execute(&p->parser, p->buf + pos, len);
    if (err == HPE_PAUSED) {
      p->end = (uint32_t)(llhttp_get_error_pos(&p->parser) - p->buf);
      p->rc = px_head_complete(&p->head, p->end);
      return;
    }
    cr_assert_eq(err, HPE_OK, "llhttp: %s", llhttp_errno_name(err));
    pos += len;
    cr_assert_lt(pos, n + 1, "head never completed");
  }
}

/* The forwarded head as one string, for a request from 127.0.0.2. */
static void forwarded(const struct parsed *p, int request, const char *tail_text, char *out) {
  uv_buf_t iov[PX_HEAD_MAX_IOV], tail[3];
  uv_buf_t xff = uv_buf_init(", 127.0.0.2", 11);
  int nt = 0, n;

  if (request && !(p->head.flags & PX_HEAD_HAS_XFF)) {
    tail[nt++] = uv_buf_init("X-Forwarded-For: ", 17);
    tail[nt++] = uv_buf_init("127.0.0.2", 9);
    tail[nt++] = uv_buf_init("\r\n", 2);
  }
  if (tail_text)
    tail[nt++] = uv_buf_init((char *)tail_text, (unsigned)strlen(tail_text));
  n = px_head_iov(&p->head, request ? &xff : NULL, tail, nt, 0, iov, PX_HEAD_MAX_IOV);
  cr_assert_gt(n, 0);
  out[0] = '\0';
  for (int i = 0; i < n; i++)
    strncat(out, iov[i].base, iov[i].len);
}

Test(http_head, forwards_a_plain_request_unchanged_but_for_x_forwarded_for) {
  struct parsed p;
  char out[4096];

  parse(&p, "GET /a?b=c HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n", 1, 0);
  cr_assert_eq(p.rc, 0);
  forwarded(&p, 1, NULL, out);
  cr_assert_str_eq(out, "GET /a?b=c HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n"
                        "X-Forwarded-For: 127.0.0.2\r\n\r\n");
}

Test(http_head, drops_every_hop_by_hop_header) {
  struct parsed p;
  char out[4096];

  parse(&p,
        "GET / HTTP/1.1\r\nConnection: keep-alive\r\nHost: h\r\nKeep-Alive: timeout=5\r\n"
        "TE: trailers\r\nProxy-Connection: close\r\nUpgrade: websocket\r\nX-Keep: 1\r\n\r\n",
        1, 0);
  cr_assert_eq(p.rc, 0);
  forwarded(&p, 1, NULL, out);
  cr_assert_str_eq(out, "GET / HTTP/1.1\r\nHost: h\r\nX-Keep: 1\r\n"
                        "X-Forwarded-For: 127.0.0.2\r\n\r\n");
}

Test(http_head, drops_headers_named_by_connection_before_or_after_it) {
  struct parsed p;
  char out[4096];

  parse(&p,
        "GET / HTTP/1.1\r\nX-Before: 1\r\nHost: h\r\nConnection: close, X-Before, x-after\r\n"
        "X-After: 2\r\nX-Other: 3\r\n\r\n",
        1, 0);
  cr_assert_eq(p.rc, 0);
  forwarded(&p, 1, NULL, out);
  cr_assert_str_eq(out, "GET / HTTP/1.1\r\nHost: h\r\nX-Other: 3\r\n"
                        "X-Forwarded-For: 127.0.0.2\r\n\r\n");
}

Test(http_head, never_drops_framing_headers_even_if_connection_names_them) {
  struct parsed p;
  char out[4096];

  parse(&p,
        "POST / HTTP/1.1\r\nHost: h\r\nConnection: Content-Length, host\r\n"
        "Content-Length: 0\r\n\r\n",
        1, 0);
  forwarded(&p, 1, NULL, out);
  cr_assert_str_eq(out, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n"
                        "X-Forwarded-For: 127.0.0.2\r\n\r\n");
}

Test(http_head, appends_the_client_to_the_last_x_forwarded_for) {
  struct parsed p;
  char out[4096];

  parse(&p,
        "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 10.0.0.1\r\n"
        "x-forwarded-for: 10.0.0.2, 10.0.0.3\r\nAccept: */*\r\n\r\n",
        1, 0);
  forwarded(&p, 1, NULL, out);
  cr_assert_str_eq(out, "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 10.0.0.1\r\n"
                        "x-forwarded-for: 10.0.0.2, 10.0.0.3, 127.0.0.2\r\nAccept: */*\r\n\r\n");
}

Test(http_head, gives_the_same_result_whatever_the_read_boundaries) {
  const char *raw = "GET /p HTTP/1.1\r\nHost: h\r\nConnection: x-a\r\nX-A: 1\r\n"
                    "X-Forwarded-For: 1.2.3.4\r\nKeep-Alive: 1\r\n\r\n";
  struct parsed whole, piece;
  char want[4096], got[4096];

  parse(&whole, raw, 1, 0);
  forwarded(&whole, 1, NULL, want);
  cr_assert_str_eq(want,
                   "GET /p HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 1.2.3.4, 127.0.0.2\r\n\r\n");
  for (size_t step = 1; step < strlen(raw); step++) {
    parse(&piece, raw, 1, step);
    forwarded(&piece, 1, NULL, got);
    cr_assert_str_eq(got, want, "step %zu", step);
  }
}

Test(http_head, records_url_and_host_spans) {
  struct parsed p;

  parse(&p, "GET /x/y?z HTTP/1.1\r\nHost:  a.example  \r\n\r\n", 1, 0);
  cr_assert(p.head.flags & PX_HEAD_HAS_HOST);
  cr_assert_eq(p.head.url.len, 6);
  cr_assert_arr_eq(p.buf + p.head.url.off, "/x/y?z", 6);
  cr_assert_arr_eq(p.buf + p.head.host.off, "a.example", 9);
}

Test(http_head, flags_a_second_host_header) {
  struct parsed p;

  parse(&p, "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 1, 0);
  cr_assert(p.head.flags & PX_HEAD_DUP_HOST);
}

Test(http_head, refuses_a_head_with_too_many_lines_to_drop) {
  struct parsed p;
  char raw[2048] = "GET / HTTP/1.1\r\nHost: h\r\n";

  for (int i = 0; i <= PX_HEAD_MAX_DROPS; i++)
    strcat(raw, "Keep-Alive: 1\r\n");
  strcat(raw, "\r\n");
  parse(&p, raw, 1, 0);
  cr_assert_eq(p.rc, -1);
}

Test(http_head, rewrites_a_response_head_with_our_connection_line) {
  struct parsed p;
  char out[4096];

  parse(&p,
        "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n"
        "Transfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n",
        0, 0);
  cr_assert_eq(p.rc, 0);
  forwarded(&p, 0, "Connection: close\r\n", out);
  cr_assert_str_eq(out, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n"
                        "Connection: close\r\n\r\n");
}

Test(http_head, leaves_x_forwarded_for_of_responses_alone) {
  struct parsed p;
  char out[4096];

  parse(&p, "HTTP/1.1 204 No Content\r\nX-Forwarded-For: 1.1.1.1\r\n\r\n", 0, 0);
  forwarded(&p, 0, NULL, out);
  cr_assert_str_eq(out, "HTTP/1.1 204 No Content\r\nX-Forwarded-For: 1.1.1.1\r\n\r\n");
}

Test(http_head, keeps_x_forwarded_for_even_when_connection_names_it) {
  struct parsed p;
  char out[4096];

  parse(&p,
        "GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 1.2.3.4\r\n"
        "Connection: X-Forwarded-For\r\n\r\n",
        1, 0);
  cr_assert_eq(p.rc, 0);
  forwarded(&p, 1, NULL, out);
  cr_assert_str_eq(out, "GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 1.2.3.4, 127.0.0.2\r\n\r\n");
}

Test(http_head, replaces_an_empty_x_forwarded_for_wherever_it_stands) {
  struct parsed p;
  char out[4096];

  parse(&p, "GET / HTTP/1.1\r\nX-Forwarded-For:\r\nAccept: x\r\nHost: h\r\n\r\n", 1, 0);
  forwarded(&p, 1, NULL, out);
  cr_assert_str_eq(out, "GET / HTTP/1.1\r\nAccept: x\r\nHost: h\r\n"
                        "X-Forwarded-For: 127.0.0.2\r\n\r\n");
  parse(&p, "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For:   \r\n\r\n", 1, 0);
  forwarded(&p, 1, NULL, out);
  cr_assert_str_eq(out, "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 127.0.0.2\r\n\r\n");
}

Test(http_head, appends_after_trailing_whitespace_of_the_last_value) {
  struct parsed p;
  char out[4096];

  parse(&p, "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 9.9.9.9  \r\n\r\n", 1, 0);
  forwarded(&p, 1, NULL, out);
  cr_assert_str_eq(out,
                   "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 9.9.9.9  , 127.0.0.2\r\n\r\n");
}

Test(http_head, rejects_a_folded_header_value) {
  struct parsed p;

  parse(&p, "GET / HTTP/1.1\r\nHost: h\r\nX-Foo: a\r\n b\r\n\r\n", 1, 0);
  cr_assert_eq(p.rc, -1);
  cr_assert(p.head.flags & PX_HEAD_OBS_FOLD);
}

Test(http_head, records_the_whole_host_line) {
  struct parsed p;

  parse(&p, "GET / HTTP/1.1\r\nA: b\r\nHost: h.test\r\nC: d\r\n\r\n", 1, 0);
  cr_assert_eq(p.head.host_line.len, 14);
  cr_assert_arr_eq(p.buf + p.head.host_line.off, "Host: h.test\r\n", 14);
}

Test(http_head, never_emits_an_insert_inside_a_dropped_range) {
  struct parsed p;
  uv_buf_t iov[PX_HEAD_MAX_IOV], xff = uv_buf_init(", x", 3);

  parse(&p, "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 1\r\n\r\n", 1, 0);
  /* Drop the X-Forwarded-For line by hand: the insert point now lies inside a drop. */
  px_head_drop(&p.head, p.head.xff_end - 17, 20);
  cr_assert_eq(px_head_iov(&p.head, &xff, NULL, 0, 0, iov, PX_HEAD_MAX_IOV), -1);
}
