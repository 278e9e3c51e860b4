/* Tests for workers/shm.c: the generation's layout, as the master writes it and workers check and
 * read it. */
#include "shm.h"

#include "balancer.h"
#include "config.h"
#include "proxy.h"

#include <criterion/criterion.h>
#include <string.h>
#include <unistd.h>

static struct lbp_config *load(const char *yaml) {
  struct lbp_config *cfg;
  struct cfg_error err;

  cr_assert_eq(cfg_parse("t.yaml", yaml, strlen(yaml), &cfg, &err), 0, "%s", err.msg);
  return cfg;
}

static const char two_upstreams[] = "workers: 3\n"
                                    "upstreams:\n"
                                    "  a:\n    servers: [127.0.0.1:1, 127.0.0.1:2]\n"
                                    "  b:\n    servers: [127.0.0.1:3]\n"
                                    "routes:\n  - {path: /a, upstream: a}\n"
                                    "  - {upstream: b}\n";

/* A segment laid out and initialised for cfg, as the master makes one. */
static void *make(const struct lbp_config *cfg, struct lbp_shm_layout *l, int *fd) {
  void *shm;

  lbp_shm_layout(cfg, l);
  cr_assert_eq(lbp_shm_create(l->len, fd, &shm), 0);
  lbp_shm_init(shm, l, cfg);
  return shm;
}

Test(shm, the_layout_reserves_eight_server_blocks_per_server_and_fits_a_page_multiple) {
  struct lbp_config *cfg = load(two_upstreams);
  struct lbp_shm_layout l;
  unsigned n;
  int fd;
  void *shm = make(cfg, &l, &fd);

  cr_assert_eq(l.len % (size_t)sysconf(_SC_PAGESIZE), 0);
  cr_assert_eq(l.nslots, 3);
  cr_assert_eq(l.nservers, 16 + 8);
  cr_assert(l.ups_off < l.rr_off && l.rr_off < l.workers_off && l.workers_off < l.servers_off &&
            l.servers_off < l.inflight_off && l.inflight_off < l.len);
  cr_assert_eq(lbp_shm_check(shm, l.len, 2, 2), 0);
  cr_assert_eq(lbp_shm_nslots(shm), 3);
  lbp_shm_servers(shm, 0, &n);
  cr_assert_eq(n, 16);
  lbp_shm_servers(shm, 1, &n);
  cr_assert_eq(n, 8);
  lbp_shm_unmap(shm, l.len);
  close(fd);
  cfg_free(cfg);
}

/* The id (and in spec, the name) of configured server k of up, written as an IP address. */
static uint64_t ident(const struct cfg_upstream *up, size_t k, struct px_server_spec *spec) {
  cr_assert_eq(px_server_spec_literal(up, k, spec), 0);
  return spec->id;
}

Test(shm, configured_servers_have_their_blocks_before_any_worker_starts) {
  struct lbp_config *cfg = load(two_upstreams);
  struct lbp_shm_layout l;
  struct px_server_slot s0, s1, other;
  struct px_server_spec spec;
  int fd;
  void *shm = make(cfg, &l, &fd);
  uint64_t a1 = ident(&cfg->upstreams[0], 0, &spec);
  uint64_t a2 = ident(&cfg->upstreams[0], 1, &spec);
  uint64_t b1 = ident(&cfg->upstreams[1], 0, &spec);

  cr_assert_str_eq(spec.name, "127.0.0.1:3");
  cr_assert_eq(lbp_shm_server_find(shm, 0, a1, 0, &s0), 0);
  cr_assert_eq(lbp_shm_server_find(shm, 0, a2, 0, &s1), 0);
  cr_assert_neq(s0.st, s1.st);
  cr_assert_eq(atomic_load(&s0.st->id), a1);
  cr_assert_eq(lbp_shm_server_find(shm, 1, b1, 2, &other), 0);
  cr_assert_eq(lbp_shm_server_find(shm, 0, b1, 0, &other), UV_ENOENT, "b's server is not a's");
  cr_assert_eq(lbp_shm_server_find(shm, 1, 12345, 0, &other), UV_ENOENT);
  /* Each slot has its own share of a server's in-flight count. */
  cr_assert_eq(lbp_shm_server_find(shm, 0, a1, 1, &other), 0);
  cr_assert_eq(other.st, s0.st);
  cr_assert_neq(other.mine, s0.mine);
  lbp_shm_unmap(shm, l.len);
  close(fd);
  cfg_free(cfg);
}

Test(shm, the_master_claims_free_blocks_for_new_servers_until_none_is_left) {
  struct lbp_config *cfg = load(two_upstreams);
  struct lbp_shm_layout l;
  struct px_server_slot s;
  int fd, k;
  void *shm = make(cfg, &l, &fd);

  for (uint64_t id = 1000; id < 1007; id++) {
    k = lbp_shm_server_claim(shm, 1, id);
    cr_assert_eq(k, (int)(id - 1000) + 1, "block %d for id %llu", k, (unsigned long long)id);
  }
  cr_assert_eq(lbp_shm_server_claim(shm, 1, 1003), 4, "an id keeps its block");
  cr_assert_eq(lbp_shm_server_claim(shm, 1, 2000), UV_ENOSPC);
  cr_assert_eq(lbp_shm_server_find(shm, 1, 1006, 0, &s), 0);
  lbp_shm_unmap(shm, l.len);
  close(fd);
  cfg_free(cfg);
}

Test(shm, a_crashed_slot_gives_back_what_it_held_in_flight) {
  struct lbp_config *cfg = load(two_upstreams);
  struct lbp_shm_layout l;
  struct px_server_slot w0, w1;
  struct px_server_spec spec;
  int fd;
  void *shm = make(cfg, &l, &fd);
  uint64_t id = ident(&cfg->upstreams[0], 1, &spec);

  lbp_shm_server_find(shm, 0, id, 0, &w0);
  lbp_shm_server_find(shm, 0, id, 1, &w1);
  atomic_store(&w0.st->active, 5); /* 3 from slot 0, 2 from slot 1 */
  atomic_store(w0.mine, 3);
  atomic_store(w1.mine, 2);
  lbp_shm_slot_lost(shm, 0);
  cr_assert_eq(atomic_load(&w0.st->active), 2);
  cr_assert_eq(atomic_load(w0.mine), 0);
  cr_assert_eq(atomic_load(w1.mine), 2);
  lbp_shm_unmap(shm, l.len);
  close(fd);
  cfg_free(cfg);
}

Test(shm, a_worker_refuses_a_segment_it_would_misread) {
  struct lbp_config *cfg = load(two_upstreams);
  struct lbp_shm_layout l;
  int fd;
  void *shm = make(cfg, &l, &fd);
  uint32_t *words = shm;

  cr_assert_eq(lbp_shm_check(shm, l.len, 2, 3), UV_EINVAL, "no slot 4 of 3");
  cr_assert_eq(lbp_shm_check(shm, l.len, 3, 0), UV_EINVAL, "another config's upstreams");
  cr_assert_eq(lbp_shm_check(shm, l.len - 4096, 2, 0), UV_EINVAL, "a size the master did not give");
  words[0] ^= 1; /* the magic */
  cr_assert_eq(lbp_shm_check(shm, l.len, 2, 0), UV_EINVAL);
  words[0] ^= 1;
  cr_assert_eq(lbp_shm_check(shm, l.len, 2, 0), 0);
  lbp_shm_unmap(shm, l.len);
  close(fd);
  cfg_free(cfg);
}

Test(shm, an_upstream_with_a_host_name_reserves_a_block_for_every_address_a_pool_can_hold) {
  /* A name's addresses come and go (compose scaling): 8 per entry ran out after 8 of them. */
  struct lbp_config *cfg = load("upstreams:\n  a:\n    servers: [web.test:80]\n"
                                "  b:\n    servers: [127.0.0.1:3, web.test:81]\n"
                                "routes:\n  - {path: /a, upstream: a}\n  - {upstream: b}\n");
  struct lbp_shm_layout l;
  unsigned n;
  int fd;
  void *shm = make(cfg, &l, &fd);

  lbp_shm_servers(shm, 0, &n);
  cr_assert_eq(n, BAL_MAX_SERVERS);
  lbp_shm_servers(shm, 1, &n);
  cr_assert_eq(n, BAL_MAX_SERVERS);
  for (uint64_t id = 1; id <= BAL_MAX_SERVERS; id++)
    cr_assert_geq(lbp_shm_server_claim(shm, 0, id * 7919), 0, "address %llu got no block",
                  (unsigned long long)id);
  cr_assert_eq(lbp_shm_server_claim(shm, 0, 1234567), UV_ENOSPC);
  lbp_shm_unmap(shm, l.len);
  close(fd);
  cfg_free(cfg);
}
