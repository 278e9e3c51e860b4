/* Tests for workers/accesslog.c: the line's format, whatever a request held. */
#include "accesslog.h"

#include <criterion/criterion.h>
#include <string.h>

static const char stamp[] = "29/Nov/2026:19:08:46 +0000";

Test(accesslog, a_proxied_request_is_one_combined_line_with_the_upstream_fields) {
  static const char head[] = "GET /a?b=1 HTTP/1.1\r\nHost: x\r\nuser-agent:  ua/1 \r\n"
                             "Referer: http://r/\r\n\r\n";
  struct px_request_log l = {.client = "10.0.0.1",
                             .method = "GET",
                             .target = head + 4,
                             .target_len = 6,
                             .http_minor = 1,
                             .status = 200,
                             .upstream_status = 200,
                             .upstream = "10.0.0.2:80",
                             .bytes_out = 1234,
                             .time_us = 2500,
                             .upstream_time_us = 1999,
                             .head = head,
                             .head_len = sizeof(head) - 1};
  char out[ALOG_LINE_MAX];
  size_t n = alog_format(out, sizeof(out), &l, stamp);

  out[n] = '\0';
  cr_assert_str_eq(out, "10.0.0.1 - - [29/Nov/2026:19:08:46 +0000] \"GET /a?b=1 HTTP/1.1\" 200 "
                        "1234 \"http://r/\" \"ua/1\" 10.0.0.2:80 200 0.001 0.002\n");
}

Test(accesslog, a_request_that_never_parsed_shows_its_first_line_escaped_and_499_without_answer) {
  static const char head[] = "\x16\x03\x01\"x\\ y\r\nmore";
  struct px_request_log l = {.client = "::1", .head = head, .head_len = sizeof(head) - 1};
  char out[ALOG_LINE_MAX];
  size_t n = alog_format(out, sizeof(out), &l, stamp);

  out[n] = '\0';
  cr_assert_str_eq(out, "::1 - - [29/Nov/2026:19:08:46 +0000] \"\\x16\\x03\\x01\\x22x\\x5c y\" "
                        "499 0 \"-\" \"-\" - - - 0.000\n");
}

Test(accesslog, a_huge_target_is_cut_and_the_line_stays_one_whole_line) {
  static char target[20000];
  struct px_request_log l = {.client = "1.2.3.4",
                             .method = "GET",
                             .target = target,
                             .target_len = sizeof(target),
                             .status = 414,
                             .time_us = 1000};
  char out[ALOG_LINE_MAX];
  size_t n;

  memset(target, 'a', sizeof(target));
  n = alog_format(out, sizeof(out), &l, stamp);
  cr_assert_leq(n, sizeof(out));
  cr_assert_eq(out[n - 1], '\n');
  cr_assert_null(memchr(out, '\n', n - 1));
  out[n - 1] = '\0';
  cr_assert(strstr(out, "\" 414 0 \"-\" \"-\" - - - 0.001") != NULL, "%s", out + n - 80);
}
