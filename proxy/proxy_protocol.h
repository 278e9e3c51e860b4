/* PROXY protocol v2 (HAProxy's binary header): the master tells a worker who the client is. */
#ifndef LBP_PROXY_PROTOCOL_H
#define LBP_PROXY_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define PP2_SIG_LEN 12
#define PP2_HDR_MIN 16  /* signature, version/command, family, length */
#define PP2_MAX_LEN 232 /* what we accept: fixed part + addresses + some TLVs */

/* Writes a v2 PROXY header for a TCP connection from `src` to `dst` (both AF_INET or both
 * AF_INET6) into out. Returns its length, or -1 if cap is too small or families differ. */
int pp2_encode(const struct sockaddr *src, const struct sockaddr *dst, unsigned char *out,
               size_t cap);

/* Parses a v2 header at the start of buf[0..len). Returns its total length once complete
 * (and fills *src when it carries an IPv4/IPv6 address; src->ss_family = AF_UNSPEC for LOCAL
 * or unknown families), 0 if more bytes are needed, -1 if it is not a valid v2 header. */
int pp2_decode(const unsigned char *buf, size_t len, struct sockaddr_storage *src);

/* A shared secret in a custom TLV, so a worker can tell the master's PROXY headers from ones any
 * local process could send to its private port. The spec (section 2.2.7) leaves types
 * 0xE0..0xEF to applications; lbproxy uses 0xE1 with a value of exactly PP2_SECRET_LEN bytes. */
#define PP2_TYPE_SECRET 0xE1
#define PP2_SECRET_LEN  16

/* Writes a v2 header like pp2_encode followed by one PP2_TYPE_SECRET TLV carrying secret. With
 * src and dst both NULL it is a LOCAL header (the sender's own connection, no address) with the
 * TLV. The TLV is counted in the header's length field, so pp2_decode returns the whole length.
 * Returns that length, UV_EINVAL for families that differ or are not IPv4/IPv6, or UV_ENOBUFS if
 * cap is too small (PP2_MAX_LEN always suffices). */
int pp2_encode_secret(const struct sockaddr *src, const struct sockaddr *dst,
                      const unsigned char secret[PP2_SECRET_LEN], unsigned char *out, size_t cap);

/* Looks for a TLV of `type` in a complete v2 header hdr[0..len), len being what pp2_decode
 * returned. TLVs follow the address block of the header's family. Returns 1 with *value
 * pointing into hdr and *vlen set for the first such TLV, 0 if there is none, or UV_EPROTO if
 * the header is not v2 or its TLV list is malformed (a TLV running past the end). */
int pp2_tlv_find(const unsigned char *hdr, size_t len, uint8_t type, const unsigned char **value,
                 size_t *vlen);

/* Checks that a complete v2 header hdr[0..len) carries exactly one PP2_TYPE_SECRET TLV, of
 * exactly PP2_SECRET_LEN bytes, equal to `secret`; the comparison takes the same time wherever
 * the bytes differ. Returns 0 if so, UV_EACCES if the TLV is missing, repeated, of another
 * length or different, UV_EPROTO if the header or its TLV list is malformed. */
int pp2_check_secret(const unsigned char *hdr, size_t len,
                     const unsigned char secret[PP2_SECRET_LEN]);

/* 1 if a[0..n) equals b[0..n), in a time that depends on n only (no early exit). */
int pp2_ct_equal(const void *a, const void *b, size_t n);

#endif
