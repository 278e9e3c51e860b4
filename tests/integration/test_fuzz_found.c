/* Requests the libFuzzer targets found lbproxy forwarding wrongly: regression tests, end to end. */
#include "itest.h"

#include <string.h>
#include <unistd.h>

/*
 * fuzz_request found that a request target was forwarded whatever bytes it held, and that the
 * authority of an absolute-form target ("http://AUTHORITY/path") became the Host line sent
 * upstream as it came: "GET http://evil.com?x/headers" reached the server as
 * "Host: evil.com?x"; with a '[' in the authority, llhttp 8.1 let a form feed through too.
 * Targets are now VCHAR only (http_strict.c) and an authority must be host[:port]
 * (rewrite.c valid_authority), else 400.
 */

static struct hc_resp R;

/* Sends one raw request on a new connection and reads the answer. */
static int send_raw(const char *req) {
  int fd = hc_connect(T.px.port, NULL), rc;

  cr_assert_geq(fd, 0);
  rc = hc_roundtrip(fd, req, &R);
  close(fd);
  return rc;
}

/* lbproxy answered 400 itself: no backend saw the request. */
static void assert_refused_by_proxy(const char *what) {
  char v[64];

  cr_expect_eq(R.status, 400, "%s: status %d\n%s", what, R.status, R.head);
  cr_expect_neq(hc_header(&R, "X-Backend", v, sizeof(v)), 0, "%s reached backend %s", what, v);
}

IT_TEST(fuzz_found, an_absolute_target_whose_authority_is_not_host_port_is_refused) {
  static const char *const reqs[] = {
      "GET http://evil.com?x/headers HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
      "GET http://a.com:81a[aa?aa\fb/headers HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
      "GET http://a.com:8x0/headers HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
  };

  it_start("handoff", 1, 1, NULL);
  for (size_t i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++) {
    cr_assert_eq(send_raw(reqs[i]), 0);
    assert_refused_by_proxy(reqs[i]);
  }
  it_stop();
}

IT_TEST(fuzz_found, a_target_with_a_control_byte_is_refused) {
  it_start("handoff", 1, 1, NULL);
  cr_assert_eq(send_raw("GET /he\faders HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"), 0);
  assert_refused_by_proxy("form feed in the target");
  it_stop();
}

IT_TEST(fuzz_found, a_valid_absolute_target_still_becomes_the_host_line) {
  it_start("handoff", 1, 1, NULL);
  cr_assert_eq(send_raw("GET http://Example.com:81/headers HTTP/1.1\r\nHost: h\r\n"
                        "Connection: close\r\n\r\n"),
               0);
  cr_expect_eq(R.status, 200);
  cr_expect(strstr(R.body, "GET /headers HTTP/1.1\r\n") == R.body, "%s", R.body);
  cr_expect(strstr(R.body, "\r\nHost: Example.com:81\r\n") != NULL, "%s", R.body);
  it_stop();
}
