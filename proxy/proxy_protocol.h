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

#endif
