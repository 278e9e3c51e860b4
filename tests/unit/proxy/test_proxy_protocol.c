/* Tests for proxy/proxy_protocol.c: PROXY v2 headers, the secret TLV and its constant-time check.
 */
#include "proxy_protocol.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <string.h>
#include <uv.h>

static const unsigned char secret[PP2_SECRET_LEN] = "0123456789abcdef";

static struct sockaddr_in v4(const char *ip, int port) {
  struct sockaddr_in a;
  cr_assert_eq(uv_ip4_addr(ip, port, &a), 0);
  return a;
}

static struct sockaddr_in6 v6(const char *ip, int port) {
  struct sockaddr_in6 a;
  cr_assert_eq(uv_ip6_addr(ip, port, &a), 0);
  return a;
}

Test(proxy_protocol, a_header_with_the_secret_decodes_to_the_client_address_at_every_split) {
  struct sockaddr_in src = v4("192.0.2.7", 40000), dst = v4("127.0.0.1", 8080);
  unsigned char hdr[PP2_MAX_LEN];
  struct sockaddr_storage ss;
  int n =
      pp2_encode_secret((struct sockaddr *)&src, (struct sockaddr *)&dst, secret, hdr, sizeof(hdr));

  cr_assert_eq(n, 16 + 12 + 3 + PP2_SECRET_LEN);
  for (int len = 0; len < n; len++)
    cr_assert_eq(pp2_decode(hdr, (size_t)len, &ss), 0, "complete at %d of %d bytes?", len, n);
  cr_assert_eq(pp2_decode(hdr, (size_t)n, &ss), n);
  cr_assert_eq(ss.ss_family, AF_INET);
  cr_assert_eq(((struct sockaddr_in *)&ss)->sin_addr.s_addr, src.sin_addr.s_addr);
  cr_assert_eq(((struct sockaddr_in *)&ss)->sin_port, src.sin_port);
  cr_assert_eq(pp2_check_secret(hdr, (size_t)n, secret), 0);
}

Test(proxy_protocol, ipv6_and_local_headers_carry_the_secret_too) {
  struct sockaddr_in6 src = v6("2001:db8::1", 1234), dst = v6("::1", 80);
  unsigned char hdr[PP2_MAX_LEN];
  struct sockaddr_storage ss;
  const unsigned char *v;
  size_t vlen;
  int n =
      pp2_encode_secret((struct sockaddr *)&src, (struct sockaddr *)&dst, secret, hdr, sizeof(hdr));

  cr_assert_eq(n, 16 + 36 + 3 + PP2_SECRET_LEN);
  cr_assert_eq(pp2_decode(hdr, (size_t)n, &ss), n);
  cr_assert_eq(ss.ss_family, AF_INET6);
  cr_assert_eq(pp2_tlv_find(hdr, (size_t)n, PP2_TYPE_SECRET, &v, &vlen), 1);
  cr_assert_eq(vlen, PP2_SECRET_LEN);
  cr_assert_arr_eq(v, secret, PP2_SECRET_LEN);
  cr_assert_eq(pp2_check_secret(hdr, (size_t)n, secret), 0);

  n = pp2_encode_secret(NULL, NULL, secret, hdr, sizeof(hdr));
  cr_assert_eq(n, 16 + 3 + PP2_SECRET_LEN);
  cr_assert_eq(pp2_decode(hdr, (size_t)n, &ss), n);
  cr_assert_eq(ss.ss_family, AF_UNSPEC, "LOCAL: no address");
  cr_assert_eq(pp2_check_secret(hdr, (size_t)n, secret), 0);
}

Test(proxy_protocol, a_wrong_missing_or_repeated_secret_is_refused) {
  struct sockaddr_in src = v4("10.0.0.1", 1), dst = v4("127.0.0.1", 2);
  unsigned char hdr[PP2_MAX_LEN], other[PP2_SECRET_LEN];
  int n;

  /* Any one byte different, wherever it is, is a mismatch. */
  n = pp2_encode_secret((struct sockaddr *)&src, (struct sockaddr *)&dst, secret, hdr, sizeof(hdr));
  for (int i = 0; i < PP2_SECRET_LEN; i++) {
    memcpy(other, secret, sizeof(other));
    other[i] ^= 0x20;
    cr_assert_eq(pp2_check_secret(hdr, (size_t)n, other), UV_EACCES, "byte %d", i);
  }
  /* A plain header, as any local process could send: no secret. */
  n = pp2_encode((struct sockaddr *)&src, (struct sockaddr *)&dst, hdr, sizeof(hdr));
  cr_assert_eq(pp2_check_secret(hdr, (size_t)n, secret), UV_EACCES);
  /* The secret TLV twice, or with another length. */
  n = pp2_encode_secret((struct sockaddr *)&src, (struct sockaddr *)&dst, secret, hdr, sizeof(hdr));
  memcpy(hdr + n, hdr + n - 19, 19);
  n += 19;
  hdr[14] = (unsigned char)((n - 16) >> 8);
  hdr[15] = (unsigned char)(n - 16);
  cr_assert_eq(pp2_check_secret(hdr, (size_t)n, secret), UV_EACCES, "two secrets");
  n = pp2_encode_secret((struct sockaddr *)&src, (struct sockaddr *)&dst, secret, hdr, sizeof(hdr));
  hdr[n - 17] = PP2_SECRET_LEN - 1; /* TLV length 15, plus a 1-byte unknown TLV-looking tail */
  cr_assert_neq(pp2_check_secret(hdr, (size_t)n, secret), 0, "a 15-byte secret");
}

Test(proxy_protocol, malformed_tlv_lists_are_protocol_errors) {
  struct sockaddr_in src = v4("10.0.0.1", 1), dst = v4("127.0.0.1", 2);
  unsigned char hdr[PP2_MAX_LEN];
  const unsigned char *v;
  size_t vlen;
  int n =
      pp2_encode_secret((struct sockaddr *)&src, (struct sockaddr *)&dst, secret, hdr, sizeof(hdr));

  hdr[n - 17] = 0xFF; /* the TLV claims more bytes than the header holds */
  cr_assert_eq(pp2_tlv_find(hdr, (size_t)n, PP2_TYPE_SECRET, &v, &vlen), UV_EPROTO);
  cr_assert_eq(pp2_check_secret(hdr, (size_t)n, secret), UV_EPROTO);
  cr_assert_eq(pp2_tlv_find(hdr, (size_t)n - 1, PP2_TYPE_SECRET, &v, &vlen), UV_EPROTO,
               "a length that is not the header's");
  hdr[0] = 'X';
  cr_assert_eq(pp2_check_secret(hdr, (size_t)n, secret), UV_EPROTO, "not a v2 header");
}

Test(proxy_protocol, other_tlvs_are_skipped_to_find_the_secret) {
  struct sockaddr_in src = v4("10.0.0.1", 1), dst = v4("127.0.0.1", 2);
  unsigned char hdr[PP2_MAX_LEN], with[PP2_MAX_LEN];
  const unsigned char noop[] = {0x04, 0x00, 0x02, 'x', 'y'}; /* PP2_TYPE_NOOP */
  int n =
      pp2_encode_secret((struct sockaddr *)&src, (struct sockaddr *)&dst, secret, hdr, sizeof(hdr));
  int m = n - 19;

  memcpy(with, hdr, (size_t)m);
  memcpy(with + m, noop, sizeof(noop));
  memcpy(with + m + sizeof(noop), hdr + m, 19);
  m = n + (int)sizeof(noop);
  with[14] = (unsigned char)((m - 16) >> 8);
  with[15] = (unsigned char)(m - 16);
  cr_assert_eq(pp2_check_secret(with, (size_t)m, secret), 0);
}

Test(proxy_protocol, encoding_reports_errors_as_uv_codes) {
  struct sockaddr_in src = v4("10.0.0.1", 1);
  struct sockaddr_in6 dst6 = v6("::1", 2);
  unsigned char hdr[PP2_MAX_LEN];

  cr_assert_eq(pp2_encode_secret((struct sockaddr *)&src, (struct sockaddr *)&src, secret, hdr,
                                 16 + 12 + 18),
               UV_ENOBUFS);
  cr_assert_eq(pp2_encode_secret(NULL, NULL, secret, hdr, 16 + 18), UV_ENOBUFS);
  cr_assert_eq(pp2_encode_secret((struct sockaddr *)&src, (struct sockaddr *)&dst6, secret, hdr,
                                 sizeof(hdr)),
               UV_EINVAL);
  cr_assert_eq(pp2_encode_secret((struct sockaddr *)&src, NULL, secret, hdr, sizeof(hdr)),
               UV_EINVAL);
}

Test(proxy_protocol, constant_time_comparison_compares) {
  cr_assert(pp2_ct_equal("abc", "abc", 3));
  cr_assert(!pp2_ct_equal("abc", "abd", 3));
  cr_assert(!pp2_ct_equal("xbc", "abc", 3));
  cr_assert(pp2_ct_equal("a", "b", 0));
}
