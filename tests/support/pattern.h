/* The deterministic byte pattern that backends serve and tests check (shared, header-only). */
#ifndef LBP_TEST_PATTERN_H
#define LBP_TEST_PATTERN_H

#include <stddef.h>
#include <stdint.h>

/* Fills out[0..len) with the pattern bytes at stream offsets [off, off+len): byte i of the
 * stream is a mix of i so that shifted, dropped or duplicated pieces change any checksum. */
static inline void pattern_fill(uint64_t off, unsigned char *out, size_t len) {
  for (size_t k = 0; k < len; k++) {
    uint64_t i = off + k;
    out[k] = (unsigned char)((i * 2654435761u) >> 13) ^ (unsigned char)(i >> 8);
  }
}

#endif
