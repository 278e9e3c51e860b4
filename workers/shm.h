/* Memory shared by the master and the workers of one generation: round-robin positions, each
 * slot's counters, each upstream server's counters. */
#ifndef LBP_SHM_H
#define LBP_SHM_H

/*
 * The layout is the master's: it computes it from the config (lbp_shm_layout), writes it at
 * the start of the segment (lbp_shm_init) and sends the segment's size with CONFIG. A worker
 * never recomputes it: it maps that size and reads the offsets from the header, after checking
 * them (lbp_shm_check). In order, 64-byte aligned:
 *
 *   header | upstream table | round-robin counters (u64 per upstream)
 *   | worker blocks (struct px_stats per slot)
 *   | server blocks (struct px_server_stats; each upstream owns a fixed range of them)
 *   | in-flight shares (u32 per slot per server block: what each worker adds to `active`)
 *
 * Each upstream reserves 8 server blocks per configured server, or BAL_MAX_SERVERS as soon as
 * one of them is a host name (never more than BAL_MAX_SERVERS): the
 * configured servers take the first ones (the master writes their ids before any worker
 * starts); the rest are free (id 0) for servers found later (DNS), which the master claims with
 * lbp_shm_server_claim before telling workers about them. A block is never given to another
 * server while its generation lives (a worker may still release a pick of the old one): a
 * generation whose names gave more distinct addresses than that counts the rest in each worker
 * only (the master warns; a reload starts afresh).
 */

#include "stats.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct lbp_config;

#define LBP_SHM_SPARE 8 /* server blocks reserved per configured server */

/* Where everything is, as the master laid it out. */
struct lbp_shm_layout {
  size_t len; /* the segment's size (a multiple of the page size) */
  size_t ups_off, rr_off, workers_off, servers_off, inflight_off;
  unsigned nupstreams, nslots, nservers; /* nservers: server blocks of all upstreams */
};

/* Computes the layout for cfg (cfg->workers slots). */
void lbp_shm_layout(const struct lbp_config *cfg, struct lbp_shm_layout *out);
/* Creates a zeroed segment (memfd) of len bytes and maps it. 0 or a negative UV error. */
int lbp_shm_create(size_t len, int *fd, void **ptr);
/* Writes the header and the upstream table, and gives each configured server its block. */
void lbp_shm_init(void *shm, const struct lbp_shm_layout *l, const struct lbp_config *cfg);
/* Maps a segment inherited from the master. 0 or a negative UV error. */
int lbp_shm_map(int fd, size_t len, void **ptr);
void lbp_shm_unmap(void *ptr, size_t len);

/* Checks a mapped segment of len bytes: the header is ours, every range lies inside, it has
 * `nupstreams` upstreams and a block for `slot`. 0 or UV_EINVAL. */
int lbp_shm_check(const void *shm, size_t len, unsigned nupstreams, unsigned slot);

/* ---- accessors (on a segment that lbp_shm_init wrote or lbp_shm_check accepted) ---- */

unsigned lbp_shm_nslots(const void *shm);
unsigned lbp_shm_nupstreams(const void *shm);
/* The round-robin counters, one per upstream, in config order. */
_Atomic uint64_t *lbp_shm_rr(void *shm);
/* Slot `slot`'s counters (one writer: the worker in that slot). */
struct px_stats *lbp_shm_worker(void *shm, unsigned slot);
/* The server blocks of upstream `up`: how many (*n), the first one returned. */
struct px_server_stats *lbp_shm_servers(void *shm, unsigned up, unsigned *n);
/* Server `id` of upstream `up`: its block and slot `slot`'s share of its in-flight count.
 * 0, or UV_ENOENT when the upstream has no block for it. */
int lbp_shm_server_find(void *shm, unsigned up, uint64_t id, unsigned slot,
                        struct px_server_slot *out);
/* Master: a block of upstream `up` for server `id` (its own, or a free one now its). The
 * block's index among the upstream's, or UV_ENOSPC when every one is taken. */
int lbp_shm_server_claim(void *shm, unsigned up, uint64_t id);
/* Master: the worker of `slot` is gone without releasing what it had in flight (a crash): its
 * shares are taken out of the servers' in-flight counts. Only while no process writes them. */
void lbp_shm_slot_lost(void *shm, unsigned slot);

#endif
