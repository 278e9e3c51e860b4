/* Dispatch "proxy": the master accepts and relays each connection to a worker's private port. */

/*
 * Each slot has a private listening socket on 127.0.0.1 (port 0, or proxy_port_base + slot),
 * created and owned by the master and handed to whichever worker fills the slot, so a
 * restarted worker answers on the same port and connections made meanwhile wait in its
 * backlog. For each client the master picks a ready worker in turn, connects to its port,
 * sends a PROXY protocol v2 header with the client's address (the worker uses it for
 * X-Forwarded-For; it accepts PROXY headers only on private ports), then relays bytes both
 * ways with px_relay: backpressure, half-close and resets pass through.
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

#define RELAY_BUF (16 * 1024)
#define LINGER_MS (10 * 1000) /* after the worker's side ended, the client's may take this long */

/* One relayed connection; all of them are listed so a stop can close them. */
struct pconn {
  uv_connect_t creq;
  struct px_relay *r;
  struct master *m;
  struct pconn *prev, *next;
};

static struct pconn *pconns;

static int proxy_start(struct master *m) {
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

static void relay_done(struct px_relay *r, void *arg) {
  struct pconn *p = arg;
  if (p->prev)
    p->prev->next = p->next;
  else
    pconns = p->next;
  if (p->next)
    p->next->prev = p->prev;
  free(p);
}

static void connected(uv_connect_t *req, int status) {
  struct pconn *p = req->data;
  struct sockaddr_storage peer, local;
  int plen = sizeof(peer), llen = sizeof(local), n = -1;
  unsigned char hdr[PP2_MAX_LEN];

  if (status == 0 &&
      uv_tcp_getpeername(px_relay_tcp(p->r, 0), (struct sockaddr *)&peer, &plen) == 0 &&
      uv_tcp_getsockname(px_relay_tcp(p->r, 0), (struct sockaddr *)&local, &llen) == 0)
    n = pp2_encode((struct sockaddr *)&peer, (struct sockaddr *)&local, hdr, sizeof(hdr));
  if (status == UV_ECANCELED)
    return; /* closed while connecting (shutdown): relay_done frees p */
  if (n < 0 || px_relay_start(p->r, hdr, (size_t)n) != 0)
    px_relay_close(p->r, 1);
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

  if (p == NULL || (p->r = px_relay_new(m->loop, RELAY_BUF, relay_done, p)) == NULL) {
    free(p);
    m->accept_paused = 1;
    return;
  }
  p->m = m;
  p->next = pconns;
  if (pconns)
    pconns->prev = p;
  pconns = p;
  px_relay_set_linger(p->r, 1, LINGER_MS);
  if (uv_accept((uv_stream_t *)&m->listener, (uv_stream_t *)px_relay_tcp(p->r, 0)) != 0) {
    px_relay_close(p->r, 0);
    return;
  }
  s = dispatch_next_slot(m, NULL);
  p->creq.data = p;
  if (s == NULL || uv_tcp_connect(&p->creq, px_relay_tcp(p->r, 1),
                                  (struct sockaddr *)&s->private_sa, connected) != 0) {
    px_relay_close(p->r, 1);
    return;
  }
  s->handed++;
}

static void proxy_slot_free(struct master *m, struct slot *s) {
  dispatch_accept_resume(m);
}

static void proxy_slot_down(struct master *m, struct slot *s) {}

static void proxy_stop(struct master *m) {
  /* Fast stop: the workers are going too. px_relay_close only starts closing; the pconn is
   * unlinked by a later callback, so this walk stays valid. */
  for (struct pconn *p = pconns; p != NULL; p = p->next)
    px_relay_close(p->r, 0);
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
