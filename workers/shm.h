/* Memory shared by the master and all workers: one round-robin counter per upstream. */
#ifndef LBP_SHM_H
#define LBP_SHM_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct lbp_config;

/* Bytes needed for `cfg` (the same on both sides, since both parse the same bytes). */
size_t lbp_shm_size(const struct lbp_config *cfg);
/* Creates a zeroed segment (memfd) and maps it. 0 or a negative UV error. */
int lbp_shm_create(size_t len, int *fd, void **ptr);
/* Maps a segment inherited from the master. 0 or a negative UV error. */
int lbp_shm_map(int fd, size_t len, void **ptr);
void lbp_shm_unmap(void *ptr, size_t len);
/* The array of round-robin counters, one per upstream, in config order. */
static inline _Atomic uint64_t *lbp_shm_rr(void *shm) {
  return (_Atomic uint64_t *)shm;
}

#endif
