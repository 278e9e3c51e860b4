/* Dispatch "proxy": the master accepts and relays each connection to a worker's private port. */

/*
 * Each slot has a private listening socket on 127.0.0.1 per listener (port 0, or
 * proxy_port_base + slot * listeners + listener), owned by the master (lsock_private) and
 * handed to whichever worker fills the slot, so a restarted worker answers on the same port and
 * connections made meanwhile wait in its backlog. For each client the master picks a serving
 * worker of the current generation in turn, connects to its port, sends a PROXY protocol v2
 * header with the client's address (the worker uses it for X-Forwarded-For; it accepts PROXY
 * headers only on private ports), then relays bytes both ways with px_relay (proxy/relay.c,
 * over the two sockets this file owns): backpressure, half-close and resets pass through, and
 * a client that stops reading is cut after timeouts.client_send (else the relay, no longer
 * reading the worker's side, would never see the worker give up). A connection handed back by a
 * draining worker of another
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

#define RELAY_BUF      (64 * 1024)
#define RELAY_FREE_MAX 16
#define LINGER_MS      (10 * 1000) /* after the worker's side ended, the client's may take this long */

/* One relayed connection: the client's socket (0) and the one to the worker (1), borrowed by
 * the relay. Freed once both are closed and the relay is done with them; a generation lists its
 * own so a stop can close them. */
struct pconn {
  uv_tcp_t tcp[2];
  uv_connect_t creq;
  struct px_relay relay;
  struct generation *g;  /* referenced while the pconn lives */
  unsigned char *prefix; /* PROXY header + bytes already read */
  size_t prefixlen;
  struct pconn *prev, *next;
  int refs;     /* open handles, plus the running relay */
  int relaying; /* the relay started and its `done` has not run */
  int closing;
};

static struct px_bufpool relay_bufs; /* the master's buffers, shared by every relay */

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

static void pconn_unref(struct pconn *c) {
  struct proxy_gen *p = pg(c->g);

  if (--c->refs > 0)
    return;
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

static void pconn_close_cb(uv_handle_t *h) {
  pconn_unref(h->data);
}

/* Closes both sockets (with a reset of side `reset_side`, -1 for none). A running relay is
 * stopped first, so it gives the sockets back. */
static void pconn_close(struct pconn *c, int reset_side) {
  if (c->closing)
    return;
  c->closing = 1;
  if (c->relaying)
    px_relay_stop(&c->relay);
  for (int i = 0; i < 2; i++)
    if (i != reset_side || uv_tcp_close_reset(&c->tcp[i], pconn_close_cb) != 0)
      uv_close((uv_handle_t *)&c->tcp[i], pconn_close_cb);
}

/* A side that failed makes the other learn it by a reset; a client that stopped reading is
 * reset too (its unread bytes would make the kernel do it anyway). */
static void relay_done(struct px_relay *r, enum px_relay_end why, int side) {
  struct pconn *c = r->data;

  c->relaying = 0;
  if (why == PX_RELAY_RESET)
    pconn_close(c, 1 - side);
  else if (why == PX_RELAY_SEND_TIMEOUT)
    pconn_close(c, side);
  else
    pconn_close(c, -1);
  pconn_unref(c);
}

/* The PROXY v2 header naming the client, then the bytes a previous worker had read. */
static int make_prefix(struct pconn *c, const char *bytes, uint32_t nbytes) {
  struct sockaddr_storage peer, local;
  int plen = sizeof(peer), llen = sizeof(local), n;
  unsigned char hdr[PP2_MAX_LEN];

  if (uv_tcp_getpeername(&c->tcp[0], (struct sockaddr *)&peer, &plen) != 0 ||
      uv_tcp_getsockname(&c->tcp[0], (struct sockaddr *)&local, &llen) != 0 ||
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
  uv_buf_t pre[2];

  if (status == UV_ECANCELED || c->closing)
    return; /* closed while connecting (stop) */
  if (status != 0) {
    pconn_close(c, 0);
    return;
  }
  /* The relay writes whatever each read brought: with Nagle, a small tail would wait for the
   * peer's delayed ACK, up to 40 ms per exchange. */
  uv_tcp_nodelay(&c->tcp[0], 1);
  uv_tcp_nodelay(&c->tcp[1], 1);
  pre[0] = uv_buf_init(NULL, 0);
  pre[1] = uv_buf_init((char *)c->prefix, (unsigned)c->prefixlen); /* to the worker, first */
  px_relay_init(&c->relay, &relay_bufs, 0, c->g->cfg->timeouts.client_send_ms, 1, LINGER_MS);
  c->relay.data = c;
  c->refs++;
  c->relaying = 1;
  px_relay_start(&c->relay, req->handle->loop, (uv_stream_t *)&c->tcp[0], (uv_stream_t *)&c->tcp[1],
                 pre, relay_done);
}

/* Moves the client's fd from the mconn into the relay's side 0. */
static int adopt_client(struct pconn *c, struct mconn *mc) {
  int dup_fd;

  if (mc->fd < 0 || (dup_fd = dup(mc->fd)) < 0)
    return UV_EBADF;
  if (uv_tcp_open(&c->tcp[0], dup_fd) != 0) {
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
  if (c == NULL || w == NULL || listener < 0) {
    free(c);
    mconn_close(mc);
    return;
  }
  if (relay_bufs.size == 0)
    px_bufpool_init(&relay_bufs, RELAY_BUF, RELAY_FREE_MAX);
  c->g = g;
  gen_ref(g);
  for (int i = 0; i < 2; i++) {
    uv_tcp_init(m->loop, &c->tcp[i]);
    c->tcp[i].data = c;
  }
  c->refs = 2;
  c->next = pg(g)->relays;
  if (c->next)
    c->next->prev = c;
  pg(g)->relays = c;
  c->creq.data = c;
  if (adopt_client(c, mc) != 0 || make_prefix(c, mc->bytes, mc->nbytes) != 0 ||
      uv_tcp_getsockname(&pg(g)->priv[w->slot->id * g->cfg->nlisteners + (size_t)listener]->tcp,
                         (struct sockaddr *)&to, &tolen) != 0 ||
      uv_tcp_connect(&c->creq, &c->tcp[1], (struct sockaddr *)&to, connected) != 0)
    pconn_close(c, 0);
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
  /* Closing only starts; the pconn is unlinked by a later callback, so this walk stays valid. */
  for (struct pconn *c = pg(g) != NULL ? pg(g)->relays : NULL; c != NULL; c = c->next)
    pconn_close(c, -1);
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
