/* Tests for proxy/rewrite.c: the forwarded request and response heads. */
#include "rewrite.h"

#include <criterion/criterion.h>
#include <string.h>

static char buf[4096];
static llhttp_t parser;
static struct px_head head;

static void parse(const char *raw, int request) {
  size_t n = strlen(raw);
  llhttp_errno_t err;

  memcpy(buf, raw, n);
  llhttp_init(&parser, request ? HTTP_REQUEST : HTTP_RESPONSE,
              request ? &px_request_settings : &px_response_settings);
  parser.data = &head;
  px_head_reset(&head, buf, request, 0);
  err = llhttp_execute(&parser, buf, n);
  cr_assert_eq(err, HPE_PAUSED, "llhttp: %s", llhttp_errno_name(err));
  cr_assert_eq(px_head_complete(&head, (uint32_t)(llhttp_get_error_pos(&parser) - buf)), 0);
}

static void join(const uv_buf_t *iov, int n, char *out) {
  cr_assert_gt(n, 0);
  out[0] = '\0';
  for (int i = 0; i < n; i++)
    strncat(out, iov[i].base, iov[i].len);
}

/* A request from 127.0.0.2, its Host as the host asked for. */
static struct px_fwd fwd(void) {
  struct px_fwd f = {.peer = ", 127.0.0.2", .peer_len = 11};
  if (head.flags & PX_HEAD_HAS_HOST) {
    f.orig_host = buf + head.host.off;
    f.orig_host_len = head.host.len;
  }
  f.path_off = head.url.off;
  return f;
}

static void request(const struct px_fwd *f, char *out) {
  uv_buf_t iov[PX_HEAD_MAX_IOV];
  struct px_fwd copy = *f;
  join(iov, px_rewrite_request(&head, &copy, 0, iov, PX_HEAD_MAX_IOV), out);
}

#define OURS "X-Forwarded-Proto: http\r\nX-Forwarded-Host: h\r\nVia: 1.1 lbproxy\r\n"

Test(rewrite, adds_x_forwarded_proto_host_and_via) {
  char out[4096];
  struct px_fwd f;

  parse("GET /a HTTP/1.1\r\nHost: h\r\n\r\n", 1);
  f = fwd();
  request(&f, out);
  cr_assert_str_eq(out, "GET /a HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 127.0.0.2\r\n" OURS "\r\n");
}

Test(rewrite, replaces_what_the_client_claims_and_appends_to_its_lists) {
  char out[4096];
  struct px_fwd f;

  parse("GET /a HTTP/1.1\r\nX-Forwarded-Proto: https\r\nHost: h\r\nVia: 1.0 other\r\n"
        "X-Forwarded-Host: evil\r\nX-Forwarded-For: 1.1.1.1\r\n\r\n",
        1);
  f = fwd();
  request(&f, out);
  cr_assert_str_eq(out, "GET /a HTTP/1.1\r\nHost: h\r\nVia: 1.0 other, 1.1 lbproxy\r\n"
                        "X-Forwarded-For: 1.1.1.1, 127.0.0.2\r\nX-Forwarded-Proto: http\r\n"
                        "X-Forwarded-Host: h\r\n\r\n");
}

Test(rewrite, adds_a_forwarded_element_when_asked) {
  char out[4096];
  struct px_fwd f;

  parse("GET / HTTP/1.1\r\nHost: h:8080\r\nForwarded: for=1.1.1.1\r\n\r\n", 1);
  f = fwd();
  f.forwarded = 1;
  request(&f, out);
  cr_assert_str_eq(out, "GET / HTTP/1.1\r\nHost: h:8080\r\nForwarded: for=1.1.1.1\r\n"
                        "X-Forwarded-For: 127.0.0.2\r\nX-Forwarded-Proto: http\r\n"
                        "X-Forwarded-Host: h:8080\r\nVia: 1.1 lbproxy\r\n"
                        "Forwarded: for=127.0.0.2;host=\"h:8080\";proto=http\r\n\r\n");
}

Test(rewrite, quotes_an_ipv6_client_in_forwarded) {
  char out[4096];
  struct px_fwd f;

  parse("GET / HTTP/1.1\r\nHost: h\r\n\r\n", 1);
  f = fwd();
  f.peer = ", ::1";
  f.peer_len = 5;
  f.forwarded = 1;
  request(&f, out);
  cr_assert(strstr(out, "Forwarded: for=\"[::1]\";host=\"h\";proto=http\r\n") != NULL, "%s", out);
}

Test(rewrite, sets_the_host_of_the_route_and_keeps_the_asked_one_for_the_server) {
  char out[4096];
  struct px_fwd f;

  parse("GET / HTTP/1.1\r\nHost: h\r\nAccept: x\r\n\r\n", 1);
  f = fwd();
  f.new_host = "internal:81";
  f.new_host_len = 11;
  request(&f, out);
  cr_assert_str_eq(out, "GET / HTTP/1.1\r\nAccept: x\r\nHost: internal:81\r\n"
                        "X-Forwarded-For: 127.0.0.2\r\n" OURS "\r\n");
}

Test(rewrite, strips_a_path_prefix_and_keeps_the_leading_slash) {
  static const char *const cases[][3] = {
      {"/api/users?x=1", "/api", "/users?x=1"},
      {"/api/users", "/api/", "/users"},
      {"/api", "/api", "/"},
      {"/api?q", "/api", "/?q"},
  };
  char raw[256], out[4096], want[512];

  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    struct px_fwd f;
    snprintf(raw, sizeof(raw), "GET %s HTTP/1.1\r\nHost: h\r\n\r\n", cases[i][0]);
    parse(raw, 1);
    f = fwd();
    f.strip = (uint32_t)strlen(cases[i][1]);
    request(&f, out);
    snprintf(want, sizeof(want),
             "GET %s HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 127.0.0.2\r\n" OURS "\r\n",
             cases[i][2]);
    cr_assert_str_eq(out, want, "case %zu", i);
  }
}

Test(rewrite, a_tunnel_request_keeps_upgrade_with_our_connection_line) {
  char out[4096];
  struct px_fwd f;

  parse("GET /ws HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\n"
        "Upgrade: websocket\r\nSec-WebSocket-Key: k\r\n\r\n",
        1);
  f = fwd();
  f.upgrade = 1;
  request(&f, out);
  cr_assert_str_eq(out, "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n"
                        "Sec-WebSocket-Key: k\r\nX-Forwarded-For: 127.0.0.2\r\n" OURS
                        "Connection: upgrade\r\n\r\n");
}

Test(rewrite, responses_get_our_connection_line_and_via) {
  uv_buf_t iov[PX_HEAD_MAX_IOV];
  char out[4096];

  parse("HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", 0);
  join(iov, px_rewrite_response(&head, PX_CONN_CLOSE, NULL, 0, iov, PX_HEAD_MAX_IOV), out);
  cr_assert_str_eq(out, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n"
                        "Via: 1.1 lbproxy\r\n\r\n");
  parse("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Via: 1.1 a\r\n\r\n",
        0);
  join(iov, px_rewrite_response(&head, PX_CONN_UPGRADE, NULL, 0, iov, PX_HEAD_MAX_IOV), out);
  cr_assert_str_eq(out, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                        "Via: 1.1 a, 1.1 lbproxy\r\nConnection: upgrade\r\n\r\n");
}
