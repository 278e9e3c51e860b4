/* Shared memory between the master and the workers of a generation (a memfd mapped MAP_SHARED in
 * every process): its layout, written once by the master, read by everyone (see shm.h). */
#include "shm.h"

#include "balancer.h"
#include "config.h"
#include "proxy.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
/* libuv errors on unix are negated errno values, so -errno is a UV error. */

#define SHM_MAGIC   0x4c425053u /* "LBPS" */
#define SHM_VERSION 1u
#define ALIGN       64u

/* What lbp_shm_init writes at offset 0. The sizes of the blocks are recorded so that a worker
 * of another build (a binary upgrade in between) refuses a segment it would misread. */
struct shm_header {
  uint32_t magic, version;
  uint32_t nupstreams, nslots, nservers;
  uint32_t worker_size, server_size;
  uint64_t len;
  uint64_t ups_off, rr_off, workers_off, servers_off, inflight_off;
};

/* One upstream's range of server blocks. */
struct shm_upstream {
  uint32_t first, count;
};

static size_t align_up(size_t n, size_t a) {
  return (n + a - 1) / a * a;
}

static size_t worker_stride(void) {
  return align_up(sizeof(struct px_stats), ALIGN);
}

/* Server blocks form an array (lbp_shm_servers): no padding beyond the struct's own. */
static size_t server_stride(void) {
  _Static_assert(sizeof(struct px_server_stats) % ALIGN == 0, "a server block is cache lines");
  return sizeof(struct px_server_stats);
}

/* Server blocks reserved for an upstream: LBP_SHM_SPARE per configured server, and the most a
 * pool can hold as soon as one of them is a host name (its addresses come and go). */
static unsigned reserve(const struct cfg_upstream *up) {
  size_t r = up->nservers * LBP_SHM_SPARE;

  for (size_t k = 0; k < up->nservers; k++)
    if (up->servers[k].dns)
      r = BAL_MAX_SERVERS;
  return (unsigned)(r > BAL_MAX_SERVERS ? BAL_MAX_SERVERS : r);
}

void lbp_shm_layout(const struct lbp_config *cfg, struct lbp_shm_layout *l) {
  size_t off = align_up(sizeof(struct shm_header), ALIGN);
  size_t page = (size_t)sysconf(_SC_PAGESIZE);

  memset(l, 0, sizeof(*l));
  l->nupstreams = (unsigned)cfg->nupstreams;
  l->nslots = cfg->workers;
  for (size_t i = 0; i < cfg->nupstreams; i++)
    l->nservers += reserve(&cfg->upstreams[i]);
  l->ups_off = off;
  off = align_up(off + l->nupstreams * sizeof(struct shm_upstream), ALIGN);
  l->rr_off = off;
  off = align_up(off + (l->nupstreams ? l->nupstreams : 1) * sizeof(uint64_t), ALIGN);
  l->workers_off = off;
  off += l->nslots * worker_stride();
  l->servers_off = off;
  off += l->nservers * server_stride();
  l->inflight_off = off;
  off += (size_t)l->nslots * l->nservers * sizeof(uint32_t);
  l->len = align_up(off, page);
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

static const struct shm_header *header(const void *shm) {
  return shm;
}

static const struct shm_upstream *upstream(const void *shm, unsigned up) {
  return (const struct shm_upstream *)((const char *)shm + header(shm)->ups_off) + up;
}

static struct px_server_stats *server_block(void *shm, unsigned k) {
  return (struct px_server_stats *)((char *)shm + header(shm)->servers_off + k * server_stride());
}

static _Atomic uint32_t *inflight(void *shm, unsigned slot, unsigned k) {
  const struct shm_header *h = header(shm);
  return (_Atomic uint32_t *)((char *)shm + h->inflight_off) + (size_t)slot * h->nservers + k;
}

void lbp_shm_init(void *shm, const struct lbp_shm_layout *l, const struct lbp_config *cfg) {
  struct shm_header *h = shm;
  struct shm_upstream *ups = (struct shm_upstream *)((char *)shm + l->ups_off);
  unsigned first = 0;
  struct px_server_spec spec;

  *h = (struct shm_header){.magic = SHM_MAGIC,
                           .version = SHM_VERSION,
                           .nupstreams = l->nupstreams,
                           .nslots = l->nslots,
                           .nservers = l->nservers,
                           .worker_size = (uint32_t)sizeof(struct px_stats),
                           .server_size = (uint32_t)sizeof(struct px_server_stats),
                           .len = l->len,
                           .ups_off = l->ups_off,
                           .rr_off = l->rr_off,
                           .workers_off = l->workers_off,
                           .servers_off = l->servers_off,
                           .inflight_off = l->inflight_off};
  for (unsigned i = 0; i < l->nupstreams; i++) {
    const struct cfg_upstream *up = &cfg->upstreams[i];
    ups[i].first = first;
    ups[i].count = reserve(up);
    first += ups[i].count;
    /* Servers written as IP addresses; a host name's addresses are claimed once resolved. */
    for (size_t k = 0, b = 0; k < up->nservers; k++)
      if (px_server_spec_literal(up, k, &spec) == 0)
        atomic_store(&server_block(shm, ups[i].first + (unsigned)b++)->id, spec.id);
  }
}

/* A range [off, off + n) inside len, without overflow. */
static int inside(uint64_t off, uint64_t n, uint64_t len) {
  return off <= len && n <= len - off;
}

int lbp_shm_check(const void *shm, size_t len, unsigned nupstreams, unsigned slot) {
  const struct shm_header *h = shm;
  uint64_t total = 0;

  if (len < sizeof(*h) || h->magic != SHM_MAGIC || h->version != SHM_VERSION || h->len != len ||
      h->worker_size != sizeof(struct px_stats) ||
      h->server_size != sizeof(struct px_server_stats) || h->nupstreams != nupstreams ||
      slot >= h->nslots || h->nservers > (1u << 24))
    return UV_EINVAL;
  if (!inside(h->ups_off, (uint64_t)h->nupstreams * sizeof(struct shm_upstream), len) ||
      !inside(h->rr_off, (uint64_t)(h->nupstreams ? h->nupstreams : 1) * sizeof(uint64_t), len) ||
      !inside(h->workers_off, (uint64_t)h->nslots * worker_stride(), len) ||
      !inside(h->servers_off, (uint64_t)h->nservers * server_stride(), len) ||
      !inside(h->inflight_off, (uint64_t)h->nslots * h->nservers * sizeof(uint32_t), len))
    return UV_EINVAL;
  for (unsigned i = 0; i < h->nupstreams; i++) {
    const struct shm_upstream *u = upstream(shm, i);
    if (u->first != total || u->count > h->nservers - total)
      return UV_EINVAL;
    total += u->count;
  }
  return 0;
}

unsigned lbp_shm_nslots(const void *shm) {
  return header(shm)->nslots;
}

unsigned lbp_shm_nupstreams(const void *shm) {
  return header(shm)->nupstreams;
}

_Atomic uint64_t *lbp_shm_rr(void *shm) {
  return (_Atomic uint64_t *)((char *)shm + header(shm)->rr_off);
}

struct px_stats *lbp_shm_worker(void *shm, unsigned slot) {
  return (struct px_stats *)((char *)shm + header(shm)->workers_off + slot * worker_stride());
}

struct px_server_stats *lbp_shm_servers(void *shm, unsigned up, unsigned *n) {
  *n = upstream(shm, up)->count;
  return server_block(shm, upstream(shm, up)->first);
}

int lbp_shm_server_find(void *shm, unsigned up, uint64_t id, unsigned slot,
                        struct px_server_slot *out) {
  const struct shm_upstream *u = upstream(shm, up);

  if (id == 0 || up >= header(shm)->nupstreams)
    return UV_ENOENT;
  for (unsigned k = u->first; k < u->first + u->count; k++) {
    struct px_server_stats *st = server_block(shm, k);
    if (atomic_load_explicit(&st->id, memory_order_acquire) == id) {
      out->st = st;
      out->mine = inflight(shm, slot, k);
      return 0;
    }
  }
  return UV_ENOENT;
}

int lbp_shm_server_claim(void *shm, unsigned up, uint64_t id) {
  const struct shm_upstream *u = upstream(shm, up);
  int free_k = -1;

  for (unsigned k = 0; k < u->count; k++) {
    uint64_t have = atomic_load(&server_block(shm, u->first + k)->id);
    if (have == id)
      return (int)k;
    if (have == 0 && free_k < 0)
      free_k = (int)k;
  }
  if (free_k < 0 || id == 0)
    return UV_ENOSPC;
  atomic_store_explicit(&server_block(shm, u->first + (unsigned)free_k)->id, id,
                        memory_order_release);
  return free_k;
}

void lbp_shm_slot_lost(void *shm, unsigned slot) {
  const struct shm_header *h = header(shm);

  if (slot >= h->nslots)
    return;
  for (unsigned k = 0; k < h->nservers; k++) {
    _Atomic uint32_t *mine = inflight(shm, slot, k);
    uint32_t n = atomic_exchange(mine, 0);
    if (n != 0)
      atomic_fetch_sub_explicit(&server_block(shm, k)->active, n, memory_order_relaxed);
  }
}
