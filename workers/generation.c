/* Generations: one validated config and everything derived from it, owned by reference. */
#include "master.h"

#include "dispatch.h"
#include "log.h"
#include "shm.h"
#include "totals.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void gen_destroy(struct generation *g) {
  struct master *m = g->m;
  struct generation **pp = &m->gens;

  while (*pp != NULL && *pp != g)
    pp = &(*pp)->next;
  if (*pp == g)
    *pp = g->next;
  if (g->dispatch != NULL)
    g->dispatch->gen_fini(g);
  /* Its counters live on in the master's totals, named while its servers' records are still
   * there; a generation that never served (a failed reload) has nothing to keep. */
  if (g->shm != NULL && g->t_current != 0)
    totals_fold(g->m, g);
  servers_gen_free(g);
  for (size_t i = 0; i < LBP_MAX_LISTENERS; i++)
    if (g->listeners[i] != NULL)
      lsock_unref(g->listeners[i]);
  if (g->shm != NULL)
    lbp_shm_unmap(g->shm, g->shm_len);
  if (g->shm_fd >= 0)
    close(g->shm_fd);
  if (g->access_fd >= 0)
    close(g->access_fd);
  free(g->bytes);
  cfg_free(g->cfg);
  free(g);
  servers_sync(m); /* checks and name lookups follow the generations that are left */
}

void gen_ref(struct generation *g) {
  g->refs++;
}

void gen_unref(struct generation *g) {
  if (--g->refs == 0) {
    LBP_DEBUG("generation %u released", g->id);
    gen_destroy(g);
  }
}

/* The public socket of every listener; a bind that fails names its address. */
static int bind_listeners(struct generation *g, char *why, size_t whycap) {
  for (size_t i = 0; i < g->cfg->nlisteners; i++) {
    const struct cfg_addr *a = &g->cfg->listeners[i].addr;
    int rc = lsock_public(g->m, a, (unsigned)i, &g->listeners[i]);
    if (rc != 0) {
      snprintf(why, whycap, "%s:%d:%d: listen %s:%u: %s%s", g->cfg->file, a->line, a->col,
               a->any ? "*" : a->host, a->port, uv_strerror(rc),
               rc == UV_EADDRINUSE ? " (is another lbproxy or server running there?)" : "");
      return rc;
    }
  }
  return 0;
}

/* An access log as the config says: "off" none (-1), "stdout" a copy of ours, else the file
 * opened for appending (created 0640). The master opens it; workers get the fd. */
static int open_access_log(const char *path, int *fd) {
  *fd = -1;
  if (strcmp(path, "off") == 0)
    return 0;
  if (strcmp(path, "stdout") == 0)
    *fd = fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3);
  else
    *fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  return *fd >= 0 ? 0 : -errno;
}

int gen_reopen_access_log(struct generation *g) {
  int fd, rc;

  if (g->access_fd < 0 || strcmp(g->cfg->access_log, "stdout") == 0)
    return 0;
  if ((rc = open_access_log(g->cfg->access_log, &fd)) != 0)
    return rc;
  close(g->access_fd);
  g->access_fd = fd;
  return 0;
}

int gen_build(struct master *m, struct lbp_config *cfg, char *bytes, size_t len,
              struct generation **out, char *why, size_t whycap) {
  struct generation *g = calloc(1, sizeof(*g));
  struct lbp_shm_layout layout;
  int rc;

  if (g == NULL) {
    cfg_free(cfg);
    free(bytes);
    snprintf(why, whycap, "out of memory");
    return UV_ENOMEM;
  }
  g->m = m;
  g->id = ++m->next_gen_id;
  g->refs = 1; /* the master's */
  g->cfg = cfg;
  g->bytes = bytes;
  g->len = len;
  g->shm_fd = -1;
  g->access_fd = -1;
  g->nslots = cfg->workers;
  g->dispatch = dispatch_find(cfg->dispatch);
  g->next = m->gens;
  m->gens = g;
  memcpy(g->secret, m->secret, sizeof(g->secret));
  lbp_shm_layout(cfg, &layout);
  g->shm_len = layout.len;
  if ((rc = lbp_shm_create(g->shm_len, &g->shm_fd, &g->shm)) != 0) {
    snprintf(why, whycap, "shared memory: %s", uv_strerror(rc));
    goto fail;
  }
  lbp_shm_init(g->shm, &layout, cfg);
  if ((rc = open_access_log(g->cfg->access_log, &g->access_fd)) != 0) {
    snprintf(why, whycap, "%s: access_log %s: %s", g->cfg->file, g->cfg->access_log,
             uv_strerror(rc));
    goto fail;
  }
  if ((rc = servers_gen_init(g)) != 0) {
    snprintf(why, whycap, "upstream servers: %s", uv_strerror(rc));
    goto fail;
  }
  if ((rc = bind_listeners(g, why, whycap)) != 0)
    goto fail;
  if ((rc = g->dispatch->gen_init(g)) != 0) {
    snprintf(why, whycap, "dispatch %s: %s", g->dispatch->name, uv_strerror(rc));
    goto fail;
  }
  g->t_created = uv_now(m->loop);
  *out = g;
  servers_sync(m); /* its servers' checks start, its names' intervals apply */
  return 0;
fail:
  gen_destroy(g);
  return rc;
}

int gen_listener_index(const struct generation *g, const struct lsock *ls) {
  const struct lsock *pub = ls->kind == LSOCK_PUBLIC ? ls : ls->group;

  for (size_t i = 0; i < g->cfg->nlisteners; i++)
    if (g->listeners[i] == pub)
      return (int)i;
  return -1;
}

int gen_listener_by_name(const struct generation *g, const char *name) {
  for (size_t i = 0; i < g->cfg->nlisteners; i++)
    if (strcmp(g->listeners[i]->name, name) == 0)
      return (int)i;
  return -1;
}
