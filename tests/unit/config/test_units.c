/* Tests for config/units.c: durations, sizes, host:port and resolution. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>

#include <criterion/criterion.h>
#include <uv.h>

#include "config_internal.h"

static uint64_t duration(const char *s) {
  uint64_t ms = 12345;
  int rc = cfg_parse_duration(s, &ms);
  cr_assert_eq(rc, 0, "'%s' should be a duration", s);
  return ms;
}

static uint64_t size(const char *s) {
  uint64_t b = 12345;
  int rc = cfg_parse_size(s, &b);
  cr_assert_eq(rc, 0, "'%s' should be a size", s);
  return b;
}

Test(units, durations_take_ms_s_m_h_and_bare_seconds) {
  cr_expect_eq(duration("250ms"), 250);
  cr_expect_eq(duration("2s"), 2000);
  cr_expect_eq(duration("1m"), 60000);
  cr_expect_eq(duration("1h"), 3600000);
  cr_expect_eq(duration("5"), 5000);
  cr_expect_eq(duration("0"), 0);
  cr_expect_eq(duration("0ms"), 0);
  cr_expect_eq(duration("007s"), 7000);
}

Test(units, durations_reach_the_largest_millisecond_count_exactly) {
  cr_expect_eq(duration("18446744073709551615ms"), UINT64_MAX);
}

Test(units, durations_refuse_garbage_signs_fractions_and_spaces) {
  const char *bad[] = {"",    "s",   "ms", "-1s", "+1s", "1.5s", "5x",    "5sec", "1 s",
                       " 1s", "1s ", "1S", "1M",  "1d",  "0x10", "1m30s", "1hh",  "abc"};
  uint64_t ms = 7;

  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    cr_expect_eq(cfg_parse_duration(bad[i], &ms), UV_EINVAL, "'%s' should be refused", bad[i]);
  cr_expect_eq(ms, 7, "a refused duration leaves the output alone");
  cr_expect_eq(cfg_parse_duration(NULL, &ms), UV_EINVAL);
}

Test(units, durations_refuse_overflow) {
  uint64_t ms;

  cr_expect_eq(cfg_parse_duration("18446744073709551616ms", &ms), UV_EINVAL);
  cr_expect_eq(cfg_parse_duration("18446744073709551615", &ms), UV_EINVAL); /* seconds * 1000 */
  cr_expect_eq(cfg_parse_duration("5124095576030432h", &ms), UV_EINVAL);
  cr_expect_eq(cfg_parse_duration("99999999999999999999999999999999s", &ms), UV_EINVAL);
}

Test(units, sizes_take_binary_multiples_in_any_case_with_an_optional_b) {
  cr_expect_eq(size("512"), 512);
  cr_expect_eq(size("0"), 0);
  cr_expect_eq(size("16k"), 16384);
  cr_expect_eq(size("16K"), 16384);
  cr_expect_eq(size("16kb"), 16384);
  cr_expect_eq(size("16KB"), 16384);
  cr_expect_eq(size("1m"), 1048576);
  cr_expect_eq(size("1M"), 1048576);
  cr_expect_eq(size("1g"), 1073741824);
  cr_expect_eq(size("1GB"), 1073741824);
  cr_expect_eq(size("512b"), 512);
}

Test(units, sizes_refuse_garbage_and_overflow) {
  const char *bad[] = {"",
                       "k",
                       "b",
                       "-1k",
                       "1.5k",
                       "16q",
                       "16 k",
                       "1kk",
                       "1kbb",
                       "1t",
                       " 1k",
                       "1k ",
                       "0x10",
                       "17179869184g",
                       "18446744073709551616",
                       "18014398509481984k"};
  uint64_t b = 7;

  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    cr_expect_eq(cfg_parse_size(bad[i], &b), UV_EINVAL, "'%s' should be refused", bad[i]);
  cr_expect_eq(b, 7);
  cr_expect_eq(cfg_parse_size(NULL, &b), UV_EINVAL);
}

Test(units, plain_numbers_are_digits_only) {
  uint64_t v;

  cr_expect_eq(cfg__parse_uint("42", &v), 0);
  cr_expect_eq(v, 42);
  cr_expect_eq(cfg__parse_uint("18446744073709551615", &v), 0);
  cr_expect_eq(v, UINT64_MAX);
  cr_expect_eq(cfg__parse_uint("18446744073709551616", &v), UV_EINVAL);
  cr_expect_eq(cfg__parse_uint("", &v), UV_EINVAL);
  cr_expect_eq(cfg__parse_uint("-1", &v), UV_EINVAL);
  cr_expect_eq(cfg__parse_uint("+1", &v), UV_EINVAL);
  cr_expect_eq(cfg__parse_uint("1e3", &v), UV_EINVAL);
  cr_expect_eq(cfg__parse_uint("0x1", &v), UV_EINVAL);
}

static struct cfg_addr hostport(const char *s) {
  struct cfg_addr a;
  memset(&a, 0, sizeof(a));
  cr_assert_eq(cfg_parse_hostport(s, &a), 0, "'%s' should be host:port", s);
  return a;
}

Test(units, hostport_splits_a_name_or_ipv4_address_from_its_port) {
  struct cfg_addr a = hostport("127.0.0.1:8080");
  cr_expect_str_eq(a.host, "127.0.0.1");
  cr_expect_eq(a.port, 8080);

  a = hostport("backend.example.com:65535");
  cr_expect_str_eq(a.host, "backend.example.com");
  cr_expect_eq(a.port, 65535);
}

Test(units, hostport_takes_ipv6_in_brackets_without_the_brackets) {
  struct cfg_addr a = hostport("[::1]:80");
  cr_expect_str_eq(a.host, "::1");
  cr_expect_eq(a.port, 80);

  a = hostport("[2001:db8::1]:443");
  cr_expect_str_eq(a.host, "2001:db8::1");
  cr_expect_eq(a.port, 443);
}

Test(units, hostport_takes_star_or_nothing_as_any_address_and_port_zero) {
  struct cfg_addr a = hostport("*:8080");
  cr_expect_str_eq(a.host, "*");
  cr_expect_eq(a.port, 8080);

  a = hostport(":8080");
  cr_expect_str_eq(a.host, "");

  a = hostport("localhost:0");
  cr_expect_eq(a.port, 0);
}

Test(units, hostport_refuses_missing_or_bad_ports_and_bare_ipv6) {
  const char *bad[] = {"127.0.0.1",
                       "127.0.0.1:",
                       "host:65536",
                       "host:99999999999999999999",
                       "host:-1",
                       "host:+80",
                       "host:8o",
                       "host:80 ",
                       "::1:80",
                       "::1",
                       "[::1]",
                       "[::1]80",
                       "[::1]:",
                       "[]:80",
                       "[nothex]:80",
                       "[::1:80",
                       "ho st:80",
                       "host/x:80",
                       "",
                       "[1.2.3.4]:80"};
  struct cfg_addr a;

  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    cr_expect_eq(cfg_parse_hostport(bad[i], &a), UV_EINVAL, "'%s' should be refused", bad[i]);
}

Test(units, hostport_refuses_a_host_too_long_for_the_struct) {
  char s[300];
  struct cfg_addr a;

  memset(s, 'a', 255);
  strcpy(s + 255, ":80");
  cr_expect_eq(cfg_parse_hostport(s, &a), 0, "255 characters fit");
  cr_expect_eq(strlen(a.host), 255);
  memset(s, 'a', 256);
  strcpy(s + 256, ":80");
  cr_expect_eq(cfg_parse_hostport(s, &a), UV_EINVAL);
}

Test(units, hostport_says_why_it_refused) {
  struct cfg_addr a;
  const char *why = NULL;

  cr_expect_eq(cfg__parse_hostport("10.0.0.1", &a, &why), UV_EINVAL);
  cr_expect_str_eq(why, "missing port (expected host:port)");
  cr_expect_eq(cfg__parse_hostport("10.0.0.1:65536", &a, &why), UV_EINVAL);
  cr_expect_str_eq(why, "port must be a number from 0 to 65535");
}

static struct cfg_addr resolved(const char *s) {
  struct cfg_addr a = hostport(s);
  cr_assert_eq(cfg_resolve(&a), 0, "'%s' should resolve", s);
  return a;
}

Test(units, resolve_turns_numeric_ipv4_into_a_sockaddr_with_the_port) {
  struct cfg_addr a = resolved("10.1.2.3:8080");
  struct sockaddr_in *sin = (struct sockaddr_in *)&a.sa;

  cr_assert_eq(sin->sin_family, AF_INET);
  cr_expect_eq(a.salen, sizeof(struct sockaddr_in));
  cr_expect_eq(ntohs(sin->sin_port), 8080);
  cr_expect_eq(ntohl(sin->sin_addr.s_addr), 0x0a010203);
}

Test(units, resolve_turns_numeric_ipv6_into_a_sockaddr_with_the_port) {
  struct cfg_addr a = resolved("[::1]:80");
  struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&a.sa;

  cr_assert_eq(sin6->sin6_family, AF_INET6);
  cr_expect_eq(a.salen, sizeof(struct sockaddr_in6));
  cr_expect_eq(ntohs(sin6->sin6_port), 80);
  cr_expect(IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr));
}

Test(units, resolve_makes_star_and_empty_hosts_every_address_v6_and_v4) {
  const char *any[] = {"*:8080", ":8080"};

  for (size_t i = 0; i < 2; i++) {
    struct cfg_addr a = resolved(any[i]);
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&a.sa;
    cr_assert_eq(sin6->sin6_family, AF_INET6, "[::], bound dual-stack by the socket layer");
    cr_expect(IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr));
    cr_expect_eq(ntohs(sin6->sin6_port), 8080);
    cr_expect_eq(a.any, 1);
  }
  cr_expect_eq(resolved("0.0.0.0:80").any, 0, "0.0.0.0 stays IPv4 only, as written");
}

Test(units, resolve_looks_up_names) {
  struct cfg_addr a = resolved("localhost:9000");
  int family = a.sa.ss_family;

  cr_assert(family == AF_INET || family == AF_INET6);
  if (family == AF_INET)
    cr_expect_eq(ntohs(((struct sockaddr_in *)&a.sa)->sin_port), 9000);
  else
    cr_expect_eq(ntohs(((struct sockaddr_in6 *)&a.sa)->sin6_port), 9000);
}

Test(units, resolve_fails_on_a_name_that_cannot_exist) {
  struct cfg_addr a = hostport("nohost.invalid:80");
  cr_expect_lt(cfg_resolve(&a), 0);
}

Test(units, durations_and_sizes_print_with_their_largest_exact_unit) {
  char buf[32];

  cr_expect_str_eq(cfg__fmt_duration(buf, sizeof(buf), 3600000), "1h");
  cr_expect_str_eq(cfg__fmt_duration(buf, sizeof(buf), 90000), "90s");
  cr_expect_str_eq(cfg__fmt_duration(buf, sizeof(buf), 120000), "2m");
  cr_expect_str_eq(cfg__fmt_duration(buf, sizeof(buf), 250), "250ms");
  cr_expect_str_eq(cfg__fmt_duration(buf, sizeof(buf), 0), "0ms");
  cr_expect_str_eq(cfg__fmt_size(buf, sizeof(buf), 16384), "16k");
  cr_expect_str_eq(cfg__fmt_size(buf, sizeof(buf), 1048576), "1m");
  cr_expect_str_eq(cfg__fmt_size(buf, sizeof(buf), 1000), "1000");
}
