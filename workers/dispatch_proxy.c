/* Dispatch "proxy": the master accepts and relays each connection to a worker's private port. */

/*
 * Each slot has a private listening socket on 127.0.0.1 (port 0, or proxy_port_base + slot),
 * created and owned by the master and handed to whichever worker fills the slot, so a
 * restarted worker answers on the same port and connections made meanwhile wait in its
 * backlog. For each client the master picks a ready worker in turn, connects to its port,
 * sends a PROXY protocol v2 header with the client's address (the worker uses it for
 * X-Forwarded-For; it accepts PROXY headers only on private ports), then relays bytes both
 * ways with px_relay (proxy/relay.c, over the two sockets this file owns): backpressure,
 * half-close and resets pass through, and a client that stops reading is cut after
 * timeouts.client_send (else the relay, no longer reading the worker's side, would never see
 * the worker give up on it).
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

#define RELAY_BUF      (16 * 1024)
#define RELAY_FREE_MAX 64
#define LINGER_MS      (10 * 1000) /* after the worker's side ended, the client's may take this long */

/* One relayed connection: the client's socket (0) and the one to the worker (1), borrowed by
 * the relay. Freed when both are closed and the relay is done with them; all of them are
 * listed so a stop can close them. */
struct pconn {
  uv_tcp_t tcp[2];
  uv_connect_t creq;
  struct px_relay relay;
  struct master *m;
  struct pconn *prev, *next;
  int refs;     /* open handles, plus the running relay */
  int relaying; /* the relay started and its `done` has not run */
  int closing;
};

static struct pconn *pconns;
static struct px_bufpool relay_bufs; /* the master's buffers, shared by every relay */

static void pconn_unref(struct pconn *p) {
  if (--p->refs > 0)
    return;
  if (p->prev)
    p->prev->next = p->next;
  else
    pconns = p->next;
  if (p->next)
    p->next->prev = p->prev;
  free(p);
}

static void pconn_close_cb(uv_handle_t *h) {
  pconn_unref(h->data);
}

/* Closes both sockets (with a reset of side `reset_side`, -1 for none). A running relay is
 * stopped first, so it gives the sockets back. */
static void pconn_close(struct pconn *p, int reset_side) {
  if (p->closing)
    return;
  p->closing = 1;
  if (p->relaying)
    px_relay_stop(&p->relay);
  for (int i = 0; i < 2; i++)
    if (i != reset_side || uv_tcp_close_reset(&p->tcp[i], pconn_close_cb) != 0)
      uv_close((uv_handle_t *)&p->tcp[i], pconn_close_cb);
}

static int proxy_start(struct master *m) {
  px_bufpool_init(&relay_bufs, RELAY_BUF, RELAY_FREE_MAX);
  for (unsigned i = 0; i < m->nslots; i++) {
    struct slot *s = &m->slots[i];
    struct sockaddr_in sa;
    int len = sizeof(s->private_sa), rc;
    uv_tcp_t *t = malloc(sizeof(*t));

    if (t == NULL)
      return UV_ENOMEM;
    uv_ip4_addr("127.0.0.1", m->cfg->proxy_port_base ? m->cfg->proxy_port_base + (int)i : 0, &sa);
    rc = dispatch_listen_socket(m->loop, (struct sockaddr *)&sa, 0, t);
    if (rc == 0)
      rc = uv_tcp_getsockname(t, (struct sockaddr *)&s->private_sa, &len);
    if (rc != 0) {
      LBP_ERROR("private port for worker %u: %s", i + 1, uv_strerror(rc));
      if (t->type == UV_TCP)
        uv_close((uv_handle_t *)t, (uv_close_cb)free);
      else
        free(t);
      return rc;
    }
    s->listen_sock = t;
  }
  return dispatch_accept_start(m);
}

static int proxy_slot_listeners(struct master *m, struct slot *s, uv_tcp_t **socks, uint8_t *kinds,
                                int max) {
  if (max < 1)
    return 0;
  socks[0] = s->listen_sock;
  kinds[0] = LISTEN_PRIVATE;
  return 1;
}

/* A side that failed makes the other learn it by a reset; a client that stopped reading is
 * reset too (its unread bytes would make the kernel do it anyway). */
static void relay_done(struct px_relay *r, enum px_relay_end why, int side) {
  struct pconn *p = r->data;

  p->relaying = 0;
  if (why == PX_RELAY_RESET)
    pconn_close(p, 1 - side);
  else if (why == PX_RELAY_SEND_TIMEOUT)
    pconn_close(p, side);
  else
    pconn_close(p, -1);
  pconn_unref(p);
}

static void connected(uv_connect_t *req, int status) {
  struct pconn *p = req->data;
  struct sockaddr_storage peer, local;
  int plen = sizeof(peer), llen = sizeof(local), n = -1;
  unsigned char hdr[PP2_MAX_LEN];
  uv_buf_t pre[2];

  if (status == UV_ECANCELED || p->closing)
    return; /* closed while connecting (shutdown) */
  if (status == 0 && uv_tcp_getpeername(&p->tcp[0], (struct sockaddr *)&peer, &plen) == 0 &&
      uv_tcp_getsockname(&p->tcp[0], (struct sockaddr *)&local, &llen) == 0)
    n = pp2_encode((struct sockaddr *)&peer, (struct sockaddr *)&local, hdr, sizeof(hdr));
  if (n < 0) {
    pconn_close(p, 0);
    return;
  }
  /* The relay writes whatever each read brought: with Nagle, a small tail would wait for the
   * peer's delayed ACK, up to 40 ms per exchange. */
  uv_tcp_nodelay(&p->tcp[0], 1);
  uv_tcp_nodelay(&p->tcp[1], 1);
  pre[0] = uv_buf_init(NULL, 0);
  pre[1] = uv_buf_init((char *)hdr, (unsigned)n); /* the PROXY header goes to the worker first */
  px_relay_init(&p->relay, &relay_bufs, 0, p->m->cfg->timeouts.client_send_ms, 1, LINGER_MS);
  p->relay.data = p;
  p->refs++;
  p->relaying = 1;
  px_relay_start(&p->relay, p->m->loop, (uv_stream_t *)&p->tcp[0], (uv_stream_t *)&p->tcp[1], pre,
                 relay_done);
}

static int proxy_can_take(struct master *m) {
  for (unsigned i = 0; i < m->nslots; i++)
    if (master_slot_serving(&m->slots[i]))
      return 1;
  return 0;
}

static void proxy_take(struct master *m) {
  struct pconn *p = calloc(1, sizeof(*p));
  struct slot *s;

  if (p == NULL) {
    m->accept_paused = 1;
    return;
  }
  p->m = m;
  for (int i = 0; i < 2; i++) {
    uv_tcp_init(m->loop, &p->tcp[i]);
    p->tcp[i].data = p;
  }
  p->refs = 2;
  p->next = pconns;
  if (pconns)
    pconns->prev = p;
  pconns = p;
  if (uv_accept((uv_stream_t *)&m->listener, (uv_stream_t *)&p->tcp[0]) != 0) {
    pconn_close(p, -1);
    return;
  }
  s = dispatch_next_slot(m, NULL);
  p->creq.data = p;
  if (s == NULL ||
      uv_tcp_connect(&p->creq, &p->tcp[1], (struct sockaddr *)&s->private_sa, connected) != 0) {
    pconn_close(p, 0);
    return;
  }
  s->handed++;
}

static void proxy_slot_free(struct master *m, struct slot *s) {
  dispatch_accept_resume(m);
}

static void proxy_slot_down(struct master *m, struct slot *s) {}

static void proxy_stop(struct master *m) {
  /* Fast stop: the workers are going too. Closing only starts; the pconn is unlinked by a
   * later callback, so this walk stays valid. */
  for (struct pconn *p = pconns; p != NULL; p = p->next)
    pconn_close(p, -1);
}

const struct dispatch_ops dispatch_proxy = {
    .name = "proxy",
    .start = proxy_start,
    .can_take = proxy_can_take,
    .take = proxy_take,
    .slot_listeners = proxy_slot_listeners,
    .slot_free = proxy_slot_free,
    .slot_down = proxy_slot_down,
    .stop = proxy_stop,
};
