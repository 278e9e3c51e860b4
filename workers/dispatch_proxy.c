/* Dispatch "proxy": the master accepts and relays each connection to a worker's private port. */

/*
 * Each slot has a private listening socket on 127.0.0.1 per listener (port 0, or
 * proxy_port_base + slot * listeners + listener), owned by the master (lsock_private) and
 * handed to whichever worker fills the slot, so a restarted worker answers on the same port and
 * connections made meanwhile wait in its backlog. For each client the master picks a serving
 * worker of the current generation in turn, connects to its port, sends a PROXY protocol v2
 * header with the client's address (the worker uses it for X-Forwarded-For; it accepts PROXY
 * headers only on private ports), then relays bytes both ways with px_relay: backpressure,
 * half-close and resets pass through. A connection handed back by a draining worker of another
 * strategy (a reload from handoff to proxy) is relayed the same way, its bytes already read
 * going after the header.
 *
 * Workers cannot hand a relayed connection back (the master holds the client socket), so a
 * draining worker ends each of them after its current or next response (Connection: close).
 *
 * The cost: two sockets per client in the master and every byte copied through it.
 */
#include "dispatch.h"

#include "log.h"
#include "proxy_protocol.h"
#include "relay.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RELAY_BUF (16 * 1024)
#define LINGER_MS (10 * 1000) /* after the worker's side ended, the client's may take this long */

/* One relayed connection; a generation lists its own so a stop can close them. */
struct pconn {
  uv_connect_t creq;
  struct px_relay *r;
  struct generation *g;  /* referenced while the relay lives */
  unsigned char *prefix; /* PROXY header + bytes already read */
  size_t prefixlen;
  struct pconn *prev, *next;
};

struct proxy_gen {
  struct lsock **priv; /* [slot * listeners + listener] */
  struct pconn *relays;
};

static struct proxy_gen *pg(struct generation *g) {
  return g->dpriv;
}

static int proxy_init(struct generation *g) {
  size_t nl = g->cfg->nlisteners;
  uint16_t base = g->cfg->proxy_port_base;
  struct proxy_gen *p = calloc(1, sizeof(*p));
  int rc;

  if (p == NULL)
    return UV_ENOMEM;
  g->dpriv = p;
  if ((p->priv = calloc((size_t)g->nslots * nl, sizeof(*p->priv))) == NULL)
    return UV_ENOMEM;
  for (unsigned s = 0; s < g->nslots; s++)
    for (size_t i = 0; i < nl; i++) {
      uint16_t port = base ? (uint16_t)(base + s * nl + i) : 0;
      rc = lsock_private(g->m, g->listeners[i], s, port, &p->priv[s * nl + i]);
      if (rc != 0) {
        LBP_ERROR("private port for worker %u: %s", s + 1, uv_strerror(rc));
        return rc;
      }
    }
  return 0;
}

static void proxy_fini(struct generation *g) {
  struct proxy_gen *p = pg(g);
  size_t nl = g->cfg->nlisteners;

  if (p == NULL)
    return;
  for (size_t k = 0; p->priv != NULL && k < (size_t)g->nslots * nl; k++)
    if (p->priv[k] != NULL)
      lsock_unref(p->priv[k]);
  free(p->priv);
  free(p);
  g->dpriv = NULL;
}

static int proxy_sockets(struct generation *g, unsigned slot, struct lsock **socks, uint8_t *kinds,
                         uint16_t *listeners, int max) {
  size_t nl = g->cfg->nlisteners;
  int n = 0;

  for (size_t i = 0; i < nl && n < max; i++, n++) {
    socks[n] = pg(g)->priv[slot * nl + i];
    kinds[n] = IPC_LISTEN_PRIVATE;
    listeners[n] = (uint16_t)i;
  }
  return n;
}

static void relay_done(struct px_relay *r, void *arg) {
  struct pconn *c = arg;
  struct proxy_gen *p = pg(c->g);

  if (c->prev)
    c->prev->next = c->next;
  else
    p->relays = c->next;
  if (c->next)
    c->next->prev = c->prev;
  free(c->prefix);
  gen_unref(c->g);
  free(c);
}

/* The PROXY v2 header naming the client, then the bytes a previous worker had read. */
static int make_prefix(struct pconn *c, const char *bytes, uint32_t nbytes) {
  struct sockaddr_storage peer, local;
  int plen = sizeof(peer), llen = sizeof(local), n;
  unsigned char hdr[PP2_MAX_LEN];

  if (uv_tcp_getpeername(px_relay_tcp(c->r, 0), (struct sockaddr *)&peer, &plen) != 0 ||
      uv_tcp_getsockname(px_relay_tcp(c->r, 0), (struct sockaddr *)&local, &llen) != 0 ||
      (n = pp2_encode_secret((struct sockaddr *)&peer, (struct sockaddr *)&local, c->g->secret, hdr,
                             sizeof(hdr))) < 0)
    return UV_EINVAL;
  if ((c->prefix = malloc((size_t)n + nbytes)) == NULL)
    return UV_ENOMEM;
  memcpy(c->prefix, hdr, (size_t)n);
  if (nbytes)
    memcpy(c->prefix + n, bytes, nbytes);
  c->prefixlen = (size_t)n + nbytes;
  return 0;
}

static void connected(uv_connect_t *req, int status) {
  struct pconn *c = req->data;

  if (status == UV_ECANCELED)
    return; /* closed while connecting (stop): relay_done frees c */
  if (status != 0 || px_relay_start(c->r, c->prefix, c->prefixlen) != 0)
    px_relay_close(c->r, 1);
}

/* Moves the client's fd from the mconn into the relay's side 0. */
static int adopt_client(struct pconn *c, struct mconn *mc) {
  uv_os_fd_t fd;
  int dup_fd;

  if (uv_fileno((uv_handle_t *)&mc->tcp, &fd) != 0 || (dup_fd = dup(fd)) < 0)
    return UV_EBADF;
  if (uv_tcp_open(px_relay_tcp(c->r, 0), dup_fd) != 0) {
    close(dup_fd);
    return UV_EBADF;
  }
  return 0;
}

static void proxy_take(struct master *m, struct generation *g, struct mconn *mc) {
  struct worker *w = handoff_pick_rr(m);
  int listener = gen_listener_index(g, mc->ls);
  struct pconn *c;
  struct sockaddr_storage to;
  int tolen = sizeof(to);

  if (w == NULL && listener >= 0) {
    /* No worker serves right now (a handed-back connection while the new ones start): it
     * waits in the master's queue, and goes to a worker as an fd when one can take it. */
    handoff_give(m, mc);
    return;
  }
  c = calloc(1, sizeof(*c));
  if (c == NULL || w == NULL || listener < 0 ||
      (c->r = px_relay_new(m->loop, RELAY_BUF, relay_done, c)) == NULL) {
    free(c);
    mconn_close(mc);
    return;
  }
  c->g = g;
  gen_ref(g);
  c->next = pg(g)->relays;
  if (c->next)
    c->next->prev = c;
  pg(g)->relays = c;
  px_relay_set_linger(c->r, 1, LINGER_MS);
  c->creq.data = c;
  if (adopt_client(c, mc) != 0 || make_prefix(c, mc->bytes, mc->nbytes) != 0 ||
      uv_tcp_getsockname(&pg(g)->priv[w->slot->id * g->cfg->nlisteners + (size_t)listener]->tcp,
                         (struct sockaddr *)&to, &tolen) != 0 ||
      uv_tcp_connect(&c->creq, px_relay_tcp(c->r, 1), (struct sockaddr *)&to, connected) != 0)
    px_relay_close(c->r, 1);
  else
    w->hp.handed++;
  mconn_close(mc);
}

static int proxy_can_take(struct master *m, struct generation *g) {
  for (unsigned i = 0; i < g->nslots; i++)
    if (g->by_slot[i] != NULL && worker_serving(g->by_slot[i]))
      return 1;
  return 0;
}

static void proxy_stop(struct generation *g) {
  /* px_relay_close only starts closing; the pconn is unlinked by a later callback, so this
   * walk stays valid. */
  for (struct pconn *c = pg(g) != NULL ? pg(g)->relays : NULL; c != NULL; c = c->next)
    px_relay_close(c->r, 0);
}

const struct dispatch_ops dispatch_proxy = {
    .name = "proxy",
    .master_accepts = 1,
    .handover = 0,
    .gen_init = proxy_init,
    .gen_fini = proxy_fini,
    .worker_sockets = proxy_sockets,
    .take = proxy_take,
    .can_take = proxy_can_take,
    .pick = handoff_pick_rr,
    .stop = proxy_stop,
};
