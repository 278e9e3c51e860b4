/* Client connections: accepting, reading, writing, timers, keep-alive, lingering close, drain and
 * handover; HTTP requests go to request.c, tcp listeners to tcp.c. */

/*
 * Life of a client connection:
 *
 * 1. Start: the peer address is formatted once (or taken from the master's PROXY v2 header on a
 *    private port: PROXYHDR). A tcp listener's connection goes to tcp.c (TCP) and is only a
 *    relay from then on.
 * 2. IDLE: no request bytes; no buffer and no request struct are held, so an idle keep-alive
 *    connection costs only this struct. The first byte starts a request (REQUEST).
 * 3. REQUEST: bytes are read into one buffer and handed to request.c, which says what it waits
 *    for (the timer follows: client_header for a head, client_idle between body reads,
 *    client_send while a response write waits for the client) and how the connection goes on
 *    when the request ends. The client is read on while the upstream works (body bytes,
 *    pipelined requests) until the buffer is full: stopping and restarting reads costs two
 *    epoll_ctl calls a request.
 * 4. After a request: keep-alive -> IDLE (a pipelined request already buffered is served on the
 *    next loop turn), or FIN and close, or LINGER: FIN, then read and discard until the client's
 *    own FIN when it may still be sending, so that a close never turns into an RST that destroys
 *    the end of our response in the client's kernel. A 101 makes it a TUNNEL.
 * 5. Drain: a connection between requests is handed over (HANDOVER) or closed; one in a request
 *    is handed over or closed when it ends. Rebalancing (px_ctx_shed) hands over chosen
 *    connections the same way, without draining: `recent` counts each one's requests since
 *    the last shed, so the busiest go first.
 * 6. The struct is freed in the last close callback, with its request (and the tunnel's share).
 */
#include "client.h"

#include "log.h"
#include "proxy_protocol.h"
#include "request.h"
#include "tcp.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define LINGER_MS  2000      /* a lingering close waits this long for more client bytes */
#define LINGER_MAX (1 << 20) /* and discards at most this many */

enum {
  C_PROXYHDR, /* reading the master's PROXY protocol header */
  C_IDLE,     /* between requests */
  C_REQUEST,  /* a request in progress */
  C_LINGER,   /* FIN sent; discarding until the client's */
  C_TUNNEL,   /* relayed after a 101 (request.c's tunnel) */
  C_TCP,      /* a tcp listener's connection (tcp.c) */
  C_HANDOVER, /* given to the drain's handover function */
  C_CLOSING,
};

struct px_client {
  uv_tcp_t tcp;
  uv_timer_t timer;
  uv_write_t wreq;
  struct px_ctx *ctx;
  struct px_list link; /* ctx->clients */
  struct px_inbuf in;
  struct px_request *req; /* NULL when idle */
  struct px_tcp *tcps;    /* C_TCP */
  uint32_t lingered;
  uint32_t nwrites;
  uint32_t recent;       /* requests ended since the last shed (px_ctx_shed) */
  uint64_t settle_until; /* handed over from another worker: not shed again before then */
  uint64_t shed_until;   /* marked by px_ctx_shed: handed over if between requests before then */
  uint16_t listener;
  uint8_t state;
  uint8_t refs; /* handles not closed yet */
  uint8_t wait; /* enum px_wait */
  uint8_t writing;
  uint8_t reading;
  uint8_t eof;       /* the client half-closed */
  uint8_t deferred;  /* the timer runs a pipelined request, not a deadline */
  uint8_t fd_shared; /* the master may still hold this socket (handoff) */
  uint8_t proxy_protocol;
  uint8_t nodelay;
  uint8_t peer_len;
  char peer[52]; /* ", " + the client's address, for X-Forwarded-For */
};

static void client_read_start(struct px_client *c);
static void client_start_request(struct px_client *c);
static void parse_proxy_header(struct px_client *c);
static const struct px_request_ops client_request_ops;

/* ---- closing ---- */

static void client_free(struct px_client *c) {
  struct px_ctx *ctx = c->ctx;

  if (c->req != NULL)
    px_request_free(c->req);
  if (c->tcps != NULL)
    px_tcp_release(c->tcps);
  px_buf_put(&ctx->bufs, c->in.b);
  px_list_remove(&c->link);
  ctx->nclients--;
  free(c);
  px__ctx_check_empty(ctx);
}

static void client_close_cb(uv_handle_t *h) {
  struct px_client *c = h->data;

  if (--c->refs == 0)
    client_free(c);
}

/* One connection fewer: the worker may take more again. */
static void count_closed(struct px_ctx *ctx) {
  ctx->counters.active--;
  atomic_store_explicit(&ctx->st->active, ctx->counters.active, memory_order_relaxed);
  if (ctx->full &&
      (ctx->set.max_connections == 0 || ctx->counters.active < ctx->set.max_connections)) {
    ctx->full = 0;
    if (ctx->room_cb != NULL && !ctx->closing)
      ctx->room_cb(ctx->room_arg);
  }
}

/* Closes the connection now (with RST when `reset`); whatever runs on it stops first. */
static void client_close(struct px_client *c, int reset) {
  if (c->state == C_CLOSING)
    return;
  LBP_DEBUG("client %p close: state=%d eof=%d", (void *)c, c->state, c->eof);
  if (c->req != NULL)
    px_request_abort(c->req); /* a tunnel gives the stream back first */
  if (c->tcps != NULL)
    px_tcp_stop(c->tcps);
  c->state = C_CLOSING;
  count_closed(c->ctx);
  if (!reset || uv_tcp_close_reset(&c->tcp, client_close_cb) != 0)
    uv_close((uv_handle_t *)&c->tcp, client_close_cb);
  uv_close((uv_handle_t *)&c->timer, client_close_cb);
}

static void client_timer(struct px_client *c, uint64_t ms);

/* Ends a connection after its last response. A socket the master handed over may still be
 * open in the master (until it reads our acknowledgement), and then close() alone would not
 * send the FIN: shut down first. If the client may still be sending (an error page, an early
 * response, bytes we did not read), closing now would make the kernel answer its next segment
 * with RST and throw away the unread tail of our response in the client's receive path:
 * linger instead, as nginx's lingering_close does, reading and discarding until its FIN,
 * LINGER_MS of silence or LINGER_MAX bytes. */
static void client_finish(struct px_client *c, int linger) {
  uv_os_fd_t fd;

  linger = (linger || c->in.pos < c->in.len) && !c->eof && !c->ctx->closing;
  if ((linger || c->fd_shared) && uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0)
    shutdown(fd, SHUT_WR);
  if (!linger) {
    client_close(c, 0);
    return;
  }
  c->state = C_LINGER;
  c->in.len = c->in.pos = c->in.fwd = 0;
  c->lingered = 0;
  client_timer(c, LINGER_MS);
  client_read_start(c);
}

/* ---- reading ---- */

static void client_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void client_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  struct px_client *c = h->data;
  size_t size = c->ctx->bufs.size;

  if (c->in.b == NULL)
    c->in.b = px_buf_get(&c->ctx->bufs);
  if (c->in.b == NULL || c->in.len >= size) {
    *buf = uv_buf_init(NULL, 0); /* -> UV_ENOBUFS in the read callback */
    return;
  }
  *buf = uv_buf_init(c->in.b->data + c->in.len, (unsigned)(size - c->in.len));
}

static void client_read_start(struct px_client *c) {
  int ok =
      c->state == C_IDLE || c->state == C_REQUEST || c->state == C_PROXYHDR || c->state == C_LINGER;

  if (!c->reading && ok && (!c->eof || c->state == C_LINGER) && c->in.len < c->ctx->bufs.size &&
      uv_read_start((uv_stream_t *)&c->tcp, client_alloc, client_read_cb) == 0)
    c->reading = 1;
}

static void client_read_stop(struct px_client *c) {
  if (c->reading) {
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = 0;
  }
}

static void linger_read(struct px_client *c, ssize_t nread) {
  c->lingered += nread > 0 ? (uint32_t)nread : 0;
  c->in.len = 0; /* discarded */
  if (nread < 0 || c->lingered > LINGER_MAX)
    client_close(c, 0);
  else if (nread > 0)
    client_timer(c, LINGER_MS);
}

/* EOF or an error from the client. */
static void client_read_end(struct px_client *c, ssize_t nread) {
  if (nread != UV_EOF) {
    client_close(c, 0);
    return;
  }
  c->eof = 1;
  client_read_stop(c);
  if (c->state == C_REQUEST) {
    /* A half-close after complete requests still gets their responses: those being served,
     * and the pipelined ones already read. */
    c->req->client_eof = 1;
    px_request_eof(c->req);
    return;
  }
  client_close(c, 0);
}

static void client_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  struct px_client *c = s->data;

  if (c->state == C_LINGER) {
    linger_read(c, nread);
    return;
  }
  if (nread > 0) {
    c->in.len += (uint32_t)nread;
    if (c->state == C_PROXYHDR) {
      parse_proxy_header(c);
    } else if (c->state == C_IDLE) {
      client_start_request(c);
    } else if (c->state == C_REQUEST && !c->deferred) {
      if (c->wait == PX_WAIT_BODY && !c->writing)
        client_timer(c, c->ctx->set.client_idle_ms);
      px_request_input(c->req);
    }
    return;
  }
  if (nread == UV_ENOBUFS) {
    client_read_stop(c); /* full: request.c makes room (read_more), or the request ends */
    if (c->in.b == NULL)
      client_close(c, 0);
    return;
  }
  if (nread == 0) {
    if (c->state == C_IDLE && c->in.len == 0) {
      px_buf_put(&c->ctx->bufs, c->in.b);
      c->in.b = NULL;
    }
    return;
  }
  client_read_end(c, nread);
}

/* ---- timers ---- */

static void client_timer_cb(uv_timer_t *t) {
  struct px_client *c = t->data;

  if (c->deferred) {
    c->deferred = 0;
    if (c->state == C_REQUEST)
      px_request_input(c->req);
    else if (c->state == C_IDLE && c->in.len > 0)
      client_start_request(c); /* bytes given at the start (handover) */
    return;
  }
  switch (c->state) {
  case C_REQUEST:
    if (c->writing)
      client_close(c, 0); /* the client stopped reading its response */
    else
      px_request_timeout(c->req);
    break;
  case C_IDLE:
  case C_LINGER:
  case C_PROXYHDR:
    client_close(c, 0);
    break;
  default:
    break;
  }
}

static void client_timer(struct px_client *c, uint64_t ms) {
  uv_timer_start(&c->timer, client_timer_cb, ms, 0);
}

/* Runs the request on the next loop turn (not recursively from the end of the previous one). */
static void client_defer(struct px_client *c) {
  c->deferred = 1;
  client_timer(c, 0);
}

/* ---- what a request asks of its connection ---- */

static struct px_client *client_of(struct px_request *r) {
  return r->conn;
}

static void client_write_cb(uv_write_t *req, int status) {
  struct px_client *c = req->data;

  c->writing = 0;
  if (c->state == C_CLOSING)
    return;
  if (c->wait == PX_WAIT_NONE || status < 0)
    uv_timer_stop(&c->timer);
  else
    client_timer(c, c->wait == PX_WAIT_HEAD ? c->ctx->set.client_header_ms
                                            : c->ctx->set.client_idle_ms);
  px_request_written(c->req, status);
}

/* Nagle's algorithm holds a small write back while earlier data is unacknowledged. A response
 * that goes out in one writev never meets it; a response in several writes, or a second
 * response on the connection, can wait for the client's delayed ACK (40 ms). So the option is
 * set then, once, not for every connection: that saves a syscall for each short-lived one. */
static int op_write(struct px_request *r, uv_buf_t *bufs, unsigned n) {
  struct px_client *c = client_of(r);
  int rc;

  if (c->nwrites++ > 0 && !c->nodelay) {
    uv_tcp_nodelay(&c->tcp, 1);
    c->nodelay = 1;
  }
  c->wreq.data = c;
  rc = px_write((uv_stream_t *)&c->tcp, &c->wreq, bufs, n, client_write_cb);
  if (rc == 0) {
    /* The socket is full: the client has client_send to take more (nginx's send_timeout). */
    c->writing = 1;
    client_timer(c, c->ctx->set.client_send_ms);
  }
  return rc;
}

static void op_read_more(struct px_request *r) {
  client_read_start(client_of(r));
}

static void op_wait(struct px_request *r, enum px_wait w) {
  struct px_client *c = client_of(r);

  c->wait = (uint8_t)w;
  if (c->writing)
    return; /* the send deadline stands */
  if (w == PX_WAIT_HEAD)
    client_timer(c, c->ctx->set.client_header_ms);
  else if (w == PX_WAIT_BODY)
    client_timer(c, c->ctx->set.client_idle_ms);
  else if (!c->deferred)
    uv_timer_stop(&c->timer);
}

static int client_can_hand_over(const struct px_client *c);
static int client_handover(struct px_client *c);

/* Marked by px_ctx_shed, and not too late for the master to expect it. */
static int client_shed(const struct px_client *c) {
  return c->shed_until != 0 && uv_now(c->ctx->loop) < c->shed_until;
}

/* The request ended with keep-alive: the next one, idle, or handed over. */
static void client_next(struct px_client *c) {
  struct px_inbuf *in = &c->in;

  if (in->pos < in->len && in->pos > 0)
    memmove(in->b->data, in->b->data + in->pos, in->len - in->pos);
  in->len -= in->pos;
  in->pos = in->fwd = 0;
  c->wait = PX_WAIT_NONE;
  c->recent++;
  if ((c->ctx->draining || client_shed(c)) && client_can_hand_over(c) &&
      (client_handover(c) == 0 || c->ctx->draining))
    return; /* gone, or (a drain that could not hand it) closing */
  c->shed_until = 0;
  /* Nowhere to hand it: it stays, and its next response says Connection: close (closing it
   * now, between requests, could cross a request the client is already sending). */
  if (in->len > 0) {
    /* A pipelined request is already here: serve it on the next loop turn, and read on, the
     * buffer has room again for the rest of it. */
    client_defer(c);
    client_read_start(c);
    return;
  }
  if (c->eof) {
    client_finish(c, 0); /* half-closed, and every request it sent is answered */
    return;
  }
  c->state = C_IDLE;
  px_request_free(c->req);
  c->req = NULL;
  px_buf_put(&c->ctx->bufs, in->b);
  in->b = NULL;
  client_timer(c, c->ctx->set.client_idle_ms);
  client_read_start(c);
}

static void op_end(struct px_request *r, enum px_next next) {
  struct px_client *c = client_of(r);

  if (c->state == C_CLOSING)
    return;
  switch (next) {
  case PX_NEXT_KEEP:
    client_next(c);
    break;
  case PX_NEXT_CLOSE:
    client_finish(c, 0);
    break;
  case PX_NEXT_LINGER:
    client_finish(c, 1);
    break;
  case PX_NEXT_CUT:
    client_close(c, 1);
    break;
  case PX_NEXT_TUNNEL:
    /* The relay takes the stream over: it reads and times from now on. */
    client_read_stop(c);
    uv_timer_stop(&c->timer);
    c->state = C_TUNNEL;
    break;
  }
}

static const struct px_request_ops client_request_ops = {
    .write = op_write,
    .read_more = op_read_more,
    .wait = op_wait,
    .end = op_end,
};

static void client_start_request(struct px_client *c) {
  struct px_request *r = c->req;

  if (r == NULL && (r = px_request_new(c->ctx)) == NULL) {
    client_close(c, 0);
    return;
  }
  c->req = r;
  r->ops = &client_request_ops;
  r->conn = c;
  r->tcp = &c->tcp;
  r->in = &c->in;
  r->peer = c->peer;
  r->peer_len = c->peer_len;
  r->listener = c->listener;
  r->conn_flags = c->proxy_protocol ? 0 : PX_REQ_HANDOVER;
  r->client_eof = c->eof;
  c->state = C_REQUEST;
  px_request_input(r);
}

/* ---- draining ---- */

/* 1 if the connection can go to the drain's handover function. */
static int client_can_hand_over(const struct px_client *c) {
  return c->ctx->handover != NULL && !c->proxy_protocol;
}

/* Gives the connection, between requests, to the handover function with the bytes of its
 * next request read so far: 0 if it went. If the function refused it (-1), a drain closes it
 * as after a Connection: close response; a shed leaves it serving here, untouched. */
static int client_handover(struct px_client *c) {
  struct px_ctx *ctx = c->ctx;
  int rc;

  /* The fd is in a write the worker queued: the client (its handle) must outlive that write,
   * even if the context closes first (a stop right after a drain); px_client_handed_over
   * drops this reference when the write is done, cancelled or failed. */
  c->refs++;
  rc = ctx->handover(ctx->handover_arg, &c->tcp, c->listener, c->in.b ? c->in.b->data : NULL,
                     c->in.len);
  if (rc < 0) {
    c->refs--;
    c->shed_until = 0;
    if (!ctx->draining)
      return -1;
  }
  client_read_stop(c);
  uv_timer_stop(&c->timer);
  c->deferred = 0;
  if (c->req != NULL) {
    px_request_abort(c->req); /* a partial head: the next worker parses it again */
    px_request_free(c->req);
    c->req = NULL;
  }
  c->state = C_HANDOVER;
  if (rc < 0)
    client_finish(c, 0);
  return rc < 0 ? -1 : 0;
}

/* Has the client sent bytes we have not read yet? (A request on its way: not idle.) */
static int bytes_waiting(struct px_client *c) {
  uv_os_fd_t fd;
  char b;

  return uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0 &&
         recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) == 1;
}

/* The context started draining. Idle: handed over, or at a graceful stop closed (nginx does
 * the same) unless a request is already on its way in the kernel (closing would lose a
 * request the client has sent). A partial head: handed over, or answered (with
 * Connection: close: request.c sees the drain). A request in progress drains when it ends
 * (client_next); tunnels and tcp sessions run on until the context closes. */
static void client_drain(struct px_client *c) {
  int between = c->state == C_IDLE || (c->state == C_REQUEST && c->req->phase == PX_PHASE_HEAD);

  if (!between)
    return;
  if (client_can_hand_over(c))
    client_handover(c);
  else if (c->ctx->handover == NULL && c->state == C_IDLE && !bytes_waiting(c))
    client_finish(c, 0);
  /* A private port's connection during a reload (the master's relay holds the client): its
   * next response says Connection: close (request.c), then it ends. Closing it idle could
   * cross a request the client is sending. */
}

/* Rebalancing: the candidates are the HTTP connections that can be handed over and ended a
 * request since the last shed, busiest first. */
static int by_recent_desc(const void *a, const void *b) {
  uint32_t x = (*(struct px_client *const *)a)->recent, y = (*(struct px_client *const *)b)->recent;
  return x < y ? 1 : x > y ? -1 : 0;
}

unsigned px__client_shed(struct px_ctx *ctx, unsigned permille) {
  struct px_client **cand;
  uint64_t total = 0, want, got = 0, now = uv_now(ctx->loop);
  unsigned n = 0, marked = 0;

  if ((cand = malloc(sizeof(*cand) * (ctx->nclients + 1))) == NULL)
    return 0;
  for (struct px_list *e = ctx->clients.next; e != &ctx->clients; e = e->next) {
    struct px_client *c = px_container_of(e, struct px_client, link);
    if (client_shed(c))
      continue; /* already on its way: neither counted nor chosen again */
    total += c->recent;
    /* One that came lately (maybe moved here by the last shed) stays: no bouncing. */
    if (c->recent > 0 && now >= c->settle_until && client_can_hand_over(c) &&
        (c->state == C_IDLE || c->state == C_REQUEST))
      cand[n++] = c;
  }
  qsort(cand, n, sizeof(*cand), by_recent_desc);
  want = total * permille / 1000;
  for (unsigned i = 0; i < n && got < want; i++) {
    /* One connection that alone carries more than half again what is left would move the
     * imbalance, not cure it. */
    if (cand[i]->recent > (want - got) * 3 / 2)
      continue;
    got += cand[i]->recent;
    cand[i]->shed_until = now + PX_SHED_MS;
    marked++;
  }
  free(cand);
  for (struct px_list *e = ctx->clients.next; e != &ctx->clients;) {
    struct px_client *c = px_container_of(e, struct px_client, link);
    e = e->next;
    c->recent = 0;
    if (client_shed(c) && c->state == C_IDLE)
      client_handover(c); /* idle now: goes at once (busy ones go from client_next) */
  }
  return marked;
}

void px__client_drain_all(struct px_ctx *ctx) {
  for (struct px_list *e = ctx->clients.next; e != &ctx->clients;) {
    struct px_client *c = px_container_of(e, struct px_client, link);
    e = e->next; /* closing does not unlink, but be safe against future changes */
    client_drain(c);
  }
}

void px__client_close_all(struct px_ctx *ctx) {
  for (struct px_list *e = ctx->clients.next; e != &ctx->clients; e = e->next)
    client_close(px_container_of(e, struct px_client, link), 0);
}

/* ---- accepting ---- */

/* Remembers ", ADDRESS" for X-Forwarded-For. */
static void set_peer(struct px_client *c, const struct sockaddr_storage *ss) {
  char ip[INET6_ADDRSTRLEN] = "unknown";

  if (ss->ss_family == AF_INET)
    inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, ip, sizeof(ip));
  else if (ss->ss_family == AF_INET6)
    inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, ip, sizeof(ip));
  c->peer_len = (uint8_t)snprintf(c->peer, sizeof(c->peer), ", %s", ip);
}

static void peer_from_socket(struct px_client *c) {
  struct sockaddr_storage ss;
  int len = sizeof(ss);

  memset(&ss, 0, sizeof(ss));
  if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) != 0)
    ss.ss_family = AF_UNSPEC;
  set_peer(c, &ss);
}

static void tcp_done(void *arg, int reset) {
  client_close(arg, reset);
}

/* A tcp listener's connection: relayed from now on; `initial` bytes go first. */
static void client_start_tcp(struct px_client *c, const uv_buf_t *initial) {
  client_read_stop(c);
  uv_timer_stop(&c->timer);
  c->state = C_TCP;
  if (px_tcp_start(c->ctx, &c->ctx->listeners[c->listener], (uv_stream_t *)&c->tcp, c->peer + 2,
                   initial, tcp_done, c, &c->tcps) != 0)
    client_close(c, 1);
}

/* A private port's connection starts with the master's PROXY v2 header naming the client. */
static void parse_proxy_header(struct px_client *c) {
  struct sockaddr_storage ss;
  int n = pp2_decode((const unsigned char *)c->in.b->data, c->in.len, &ss);

  if (n == 0 && c->in.len < PP2_MAX_LEN)
    return; /* more to come */
  if (n <= 0) {
    LBP_WARN("bad PROXY protocol header on a private port: closing");
    client_close(c, 0);
    return;
  }
  /* Only the master speaks here: any local process could connect to a loopback port and claim
   * to be any client (X-Forwarded-For). The master's headers carry its generation's secret. */
  if (pp2_check_secret((const unsigned char *)c->in.b->data, (size_t)n, c->ctx->gen.secret) != 0) {
    LBP_WARN("PROXY header without the master's secret on a private port: closing");
    client_close(c, 0);
    return;
  }
  if (ss.ss_family != AF_UNSPEC)
    set_peer(c, &ss);
  else
    peer_from_socket(c); /* LOCAL (the master's own connection) or no address family */
  memmove(c->in.b->data, c->in.b->data + n, c->in.len - (uint32_t)n);
  c->in.len -= (uint32_t)n;
  if (c->ctx->listeners[c->listener].mode == CFG_MODE_TCP) {
    uv_buf_t rest = uv_buf_init(c->in.b->data, c->in.len);
    client_start_tcp(c, &rest);
    return;
  }
  c->state = C_IDLE;
  if (c->in.len > 0)
    client_start_request(c);
  else
    client_timer(c, c->ctx->set.client_idle_ms);
}

uv_tcp_t *px_client_new(struct px_ctx *ctx) {
  struct px_client *c;

  /* While draining for a reload, connections still on their way (fds the master handed before
   * it switched) are taken: served, they are handed over after their first response. */
  if (ctx->closing || (ctx->draining && ctx->handover == NULL))
    return NULL;
  /* At the limit: the worker refuses the fd back to the master (handoff), or sheds the
   * connection it accepted; it should pause its listeners meanwhile (px_ctx_full). */
  if (ctx->set.max_connections > 0 && ctx->counters.active >= ctx->set.max_connections) {
    ctx->full = 1;
    return NULL;
  }
  c = calloc(1, sizeof(*c));
  if (c == NULL)
    return NULL;
  c->ctx = ctx;
  if (uv_tcp_init(ctx->loop, &c->tcp) != 0) {
    free(c);
    return NULL;
  }
  uv_timer_init(ctx->loop, &c->timer);
  c->tcp.data = c;
  c->timer.data = c;
  c->refs = 2;
  c->state = C_IDLE;
  ctx->nclients++;
  px_list_insert_head(&ctx->clients, &c->link);
  ctx->counters.active++;
  atomic_store_explicit(&ctx->st->active, ctx->counters.active, memory_order_relaxed);
  if (ctx->set.max_connections > 0 && ctx->counters.active >= ctx->set.max_connections)
    ctx->full = 1;
  return &c->tcp;
}

void px_client_discard(uv_tcp_t *tcp) {
  client_close(tcp->data, 0);
}

void px_client_handed_over(uv_tcp_t *tcp) {
  struct px_client *c = tcp->data;

  /* The fd lives on in another process: no FIN, no shutdown, only our handle goes. */
  c->fd_shared = 0;
  client_close(c, 0);
  if (--c->refs == 0)
    client_free(c);
}

/* Takes bytes another worker read already, as if just read. 0, or -1 if they do not fit. */
static int client_take_initial(struct px_client *c, const struct px_accept *a) {
  if (a->initial == NULL || a->initial_len == 0)
    return 0;
  if (a->initial_len > c->ctx->bufs.size || (c->in.b = px_buf_get(&c->ctx->bufs)) == NULL)
    return -1;
  memcpy(c->in.b->data, a->initial, a->initial_len);
  c->in.len = (uint32_t)a->initial_len;
  return 0;
}

void px_client_start(uv_tcp_t *tcp, const struct px_accept *a) {
  struct px_client *c = tcp->data;
  struct px_ctx *ctx = c->ctx;

  /* A connection another worker handed over between requests is the same client, idle. */
  if (!(a->flags & PX_CLIENT_HANDED)) {
    ctx->counters.accepted++;
    px_stat_add(&ctx->st->c[PX_ST_ACCEPTED], 1);
  } else {
    c->settle_until = uv_now(ctx->loop) + PX_SHED_SETTLE_MS;
  }
  c->fd_shared = (a->flags & PX_CLIENT_FD_SHARED) != 0;
  c->proxy_protocol = (a->flags & PX_CLIENT_PROXY_PROTOCOL) != 0;
  c->listener = (uint16_t)(a->listener < ctx->nlisteners ? a->listener : 0);
  if (client_take_initial(c, a) != 0) {
    client_close(c, 0);
    return;
  }
  if (c->proxy_protocol) {
    c->state = C_PROXYHDR;
    client_timer(c, ctx->set.client_header_ms);
    client_read_start(c);
    return;
  }
  if (a->peer != NULL)
    set_peer(c, (const struct sockaddr_storage *)a->peer);
  else
    peer_from_socket(c);
  if (ctx->listeners[c->listener].mode == CFG_MODE_TCP) {
    client_start_tcp(c, NULL);
    return;
  }
  if (c->in.len > 0)
    client_defer(c); /* served as if just read, from the loop */
  else
    client_timer(c, (a->flags & PX_CLIENT_HANDED) ? ctx->set.client_idle_ms
                                                  : ctx->set.client_header_ms);
  client_read_start(c);
}
