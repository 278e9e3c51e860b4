/* Dispatch "shared" and "reuseport": workers accept themselves on sockets the master owns. */

/*
 * shared: the one public socket goes to every worker (Node's SharedHandle); each worker polls
 * it and the kernel decides who wins each accept, which is known to be uneven.
 *
 * reuseport: one SO_REUSEPORT socket per slot on the same address (nginx's `reuseport`); the
 * kernel spreads connections by a hash of the 4-tuple. The public socket is slot 0's, the
 * others join its group on the port it got (so port 0 works). A slot's socket belongs to the
 * master and outlives the worker in it: while a worker restarts, connections hashed to its
 * socket wait in that socket's backlog and the replacement serves them.
 *
 * The master never accepts in these modes; counters come from the workers' STATUS.
 */
#include "dispatch.h"

#include "log.h"

#include <stdlib.h>

static int shared_start(struct master *m) {
  for (unsigned i = 0; i < m->nslots; i++)
    m->slots[i].listen_sock = &m->listener;
  return 0;
}

static int reuseport_start(struct master *m) {
  struct sockaddr_storage ss;
  int len = sizeof(ss), rc;

  rc = uv_tcp_getsockname(&m->listener, (struct sockaddr *)&ss, &len);
  if (rc != 0)
    return rc;
  m->slots[0].listen_sock = &m->listener;
  for (unsigned i = 1; i < m->nslots; i++) {
    uv_tcp_t *t = malloc(sizeof(*t));
    if (t == NULL)
      return UV_ENOMEM;
    rc = dispatch_listen_socket(m->loop, (struct sockaddr *)&ss, 1, t);
    if (rc != 0) {
      free(t);
      LBP_ERROR("reuseport socket for worker %u: %s", i + 1, uv_strerror(rc));
      return rc;
    }
    m->slots[i].listen_sock = t;
  }
  return 0;
}

static int listen_slot_listeners(struct master *m, struct slot *s, uv_tcp_t **socks, uint8_t *kinds,
                                 int max) {
  if (max < 1 || s->listen_sock == NULL)
    return 0;
  socks[0] = s->listen_sock;
  kinds[0] = LISTEN_PUBLIC;
  return 1;
}

static void listen_nothing(struct master *m, struct slot *s) {}

static void listen_stop(struct master *m) {}

const struct dispatch_ops dispatch_shared = {
    .name = "shared",
    .start = shared_start,
    .slot_listeners = listen_slot_listeners,
    .slot_free = listen_nothing,
    .slot_down = listen_nothing,
    .stop = listen_stop,
};

const struct dispatch_ops dispatch_reuseport = {
    .name = "reuseport",
    .reuseport = 1,
    .start = reuseport_start,
    .slot_listeners = listen_slot_listeners,
    .slot_free = listen_nothing,
    .slot_down = listen_nothing,
    .stop = listen_stop,
};
