/* The resolved server addresses a generation carries to its workers, so workers never resolve. */
#ifndef LBP_ADDRS_H
#define LBP_ADDRS_H

#include "config.h"

#include <stddef.h>

/* Encodes every server address of `cfg` (upstreams in order, servers in order) into a new
 * buffer: u32 count, then per server u8 family (4 or 6) | u16 port | 16 address bytes.
 * 0 or UV_ENOMEM. */
int lbp_addrs_encode(const struct lbp_config *cfg, unsigned char **out, size_t *len);

/* Sets the servers of a config parsed with CFG_NO_RESOLVE from such a buffer. UV_EINVAL if the
 * buffer does not describe exactly this config's servers. */
int lbp_addrs_apply(struct lbp_config *cfg, const unsigned char *buf, size_t len);

#endif
