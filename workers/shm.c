/* Shared memory between master and workers (a memfd mapped MAP_SHARED in every process). */
#include "shm.h"

#include "config.h"

#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>
/* libuv errors on unix are negated errno values, so -errno is a UV error. */

size_t lbp_shm_size(const struct lbp_config *cfg) {
  size_t n = cfg->nupstreams ? cfg->nupstreams : 1;
  size_t len = n * sizeof(uint64_t);
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  return (len + page - 1) / page * page;
}

int lbp_shm_map(int fd, size_t len, void **ptr) {
  void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED)
    return -errno;
  *ptr = p;
  return 0;
}

int lbp_shm_create(size_t len, int *fd, void **ptr) {
  int f = memfd_create("lbproxy-shm", MFD_CLOEXEC);
  int rc;

  if (f < 0)
    return -errno;
  if (ftruncate(f, (off_t)len) != 0) {
    rc = -errno;
    close(f);
    return rc;
  }
  rc = lbp_shm_map(f, len, ptr);
  if (rc != 0) {
    close(f);
    return rc;
  }
  *fd = f;
  return 0;
}

void lbp_shm_unmap(void *ptr, size_t len) {
  munmap(ptr, len);
}
