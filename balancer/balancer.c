/* Pool set-up and the table of balancing algorithms. */
#include "balancer.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

static const struct bal_ops *const algorithms[] = {&bal_roundrobin};

const struct bal_ops *bal_find(const char *name) {
  for (size_t i = 0; i < sizeof(algorithms) / sizeof(algorithms[0]); i++)
    if (strcmp(algorithms[i]->name, name) == 0)
      return algorithms[i];
  return NULL;
}

int bal_pool_init(struct bal_pool *p, const struct bal_ops *ops, unsigned n,
                  const unsigned *weights, _Atomic uint64_t *shared_counter) {
  int rc;

  memset(p, 0, sizeof(*p));
  if (n == 0 || n > BAL_MAX_SERVERS)
    return UV_EINVAL;
  for (unsigned i = 0; i < n; i++)
    if (weights[i] == 0)
      return UV_EINVAL;
  p->servers = calloc(n, sizeof(*p->servers));
  if (p->servers == NULL)
    return UV_ENOMEM;
  for (unsigned i = 0; i < n; i++)
    p->servers[i].weight = weights[i];
  p->n = n;
  p->ops = ops;
  atomic_init(&p->own_counter, 0);
  p->counter = shared_counter ? shared_counter : &p->own_counter;
  rc = ops->init(p);
  if (rc != 0) {
    free(p->servers);
    memset(p, 0, sizeof(*p));
  }
  return rc;
}

void bal_pool_free(struct bal_pool *p) {
  if (p->ops != NULL && p->ops->destroy != NULL)
    p->ops->destroy(p);
  free(p->servers);
  memset(p, 0, sizeof(*p));
}
