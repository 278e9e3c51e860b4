/* Tests for workers/srvwire.c: server specs and states survive the wire, bad bytes are refused. */
#include "srvwire.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <string.h>

static struct px_server_spec spec4(void) {
  struct px_server_spec s;
  struct sockaddr_in *a = (struct sockaddr_in *)&s.addr;

  memset(&s, 0, sizeof(s));
  s.id = 0x0123456789abcdefull;
  a->sin_family = AF_INET;
  a->sin_port = htons(8081);
  inet_pton(AF_INET, "10.1.2.3", &a->sin_addr);
  strcpy(s.name, "10.1.2.3:8081");
  s.weight = 1000;
  s.backup = 1;
  return s;
}

Test(srvwire, an_ipv4_spec_round_trips) {
  struct px_server_spec in = spec4(), out;
  unsigned char buf[SRVWIRE_SPEC_MAX];
  size_t n = srvwire_put_spec(buf, &in);

  cr_assert_eq(srvwire_get_spec((const char *)buf, n, &out), n);
  cr_expect_eq(out.id, in.id);
  cr_expect_eq(memcmp(&out.addr, &in.addr, sizeof(struct sockaddr_in)), 0);
  cr_expect_str_eq(out.name, in.name);
  cr_expect_eq(out.weight, 1000);
  cr_expect_eq(out.backup, 1);
}

Test(srvwire, an_ipv6_spec_with_a_long_name_round_trips) {
  struct px_server_spec in, out;
  struct sockaddr_in6 *a = (struct sockaddr_in6 *)&in.addr;
  unsigned char buf[SRVWIRE_SPEC_MAX];
  size_t n;

  memset(&in, 0, sizeof(in));
  in.id = 42;
  a->sin6_family = AF_INET6;
  a->sin6_port = htons(443);
  inet_pton(AF_INET6, "2001:db8::1", &a->sin6_addr);
  memset(in.name, 'x', sizeof(in.name) - 1);
  in.weight = 1;
  n = srvwire_put_spec(buf, &in);
  cr_assert_leq(n, SRVWIRE_SPEC_MAX);
  cr_assert_eq(srvwire_get_spec((const char *)buf, n, &out), n);
  cr_expect_eq(out.addr.ss_family, AF_INET6);
  cr_expect_eq(memcmp(&((struct sockaddr_in6 *)&out.addr)->sin6_addr, &a->sin6_addr, 16), 0);
  cr_expect_eq(((struct sockaddr_in6 *)&out.addr)->sin6_port, htons(443));
  cr_expect_eq(strlen(out.name), sizeof(in.name) - 1);
}

Test(srvwire, truncated_or_malformed_specs_are_refused) {
  struct px_server_spec in = spec4(), out;
  unsigned char buf[SRVWIRE_SPEC_MAX];
  size_t n = srvwire_put_spec(buf, &in);

  for (size_t cut = 0; cut < n; cut++)
    cr_expect_eq(srvwire_get_spec((const char *)buf, cut, &out), 0, "cut at %zu", cut);
  buf[8] = 5; /* no such family */
  cr_expect_eq(srvwire_get_spec((const char *)buf, n, &out), 0);
  buf[8] = 4;
  buf[30] = 200; /* a name longer than the field */
  cr_expect_eq(srvwire_get_spec((const char *)buf, sizeof(buf), &out), 0);
}

Test(srvwire, a_state_round_trips) {
  struct bal_server_state in = {.id = 7,
                                .up_since_ms = 123456789012ull,
                                .failing_until_ms = 987654321ull,
                                .weight = 250,
                                .health = BAL_HEALTH_DOWN,
                                .admin = BAL_ADMIN_DRAINING},
                          out;
  unsigned char buf[SRVWIRE_STATE_LEN];

  srvwire_put_state(buf, &in);
  srvwire_get_state((const char *)buf, &out);
  cr_expect_eq(memcmp(&in, &out, sizeof(in)), 0);
}
