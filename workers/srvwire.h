/* Wire format of the upstream-server frames: SERVERS and STATES (master -> worker), FAILING. */
#ifndef LBP_SRVWIRE_H
#define LBP_SRVWIRE_H

#include "balancer.h"
#include "proxy.h"

#include <stddef.h>
#include <stdint.h>

/* SERVERS: u16 upstream index | u16 n | n x (u64 id | u8 family 4/6 | u16 port | 16 address
 * bytes | u16 weight | u8 backup | u8 name length | name). */
#define SRVWIRE_SPEC_MAX    (8 + 1 + 2 + 16 + 2 + 1 + 1 + 63)
#define SRVWIRE_SERVERS_MAX (4 + BAL_MAX_SERVERS * SRVWIRE_SPEC_MAX)

/* Writes one spec at p (room for SRVWIRE_SPEC_MAX bytes); returns the bytes written. */
size_t srvwire_put_spec(unsigned char *p, const struct px_server_spec *s);
/* Reads one spec (active = NULL); returns the bytes read, or 0 if the bytes are malformed. */
size_t srvwire_get_spec(const char *p, size_t len, struct px_server_spec *s);

/* STATES and FAILING: n x (u64 id | u64 up_since_ms | u64 failing_until_ms | u16 weight |
 * u8 health | u8 admin). FAILING carries exactly one. */
#define SRVWIRE_STATE_LEN 28

void srvwire_put_state(unsigned char *p, const struct bal_server_state *st);
void srvwire_get_state(const char *p, struct bal_server_state *st);

#endif
