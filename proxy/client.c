/* Client connections: accepting, reading, writing, timers, error pages, closing. */

/*
 * Life of a client connection (states in px.h; request.c handles one request's journey):
 *
 * 1. IDLE: no request bytes yet; no buffer is held, so an idle keep-alive connection costs
 *    only this struct. The first byte moves it to HEAD and arms the header deadline.
 * 2. HEAD: bytes accumulate in one buffer and go through llhttp (request.c).
 * 3. CONNECT: the head is complete and routed; an upstream connection is being obtained. The
 *    client is still read (body bytes, pipelined requests) until the buffer is full: stopping
 *    and restarting reads costs two epoll_ctl calls a request.
 * 4. BODY: the request goes upstream (request.c). While a write to the upstream is pending,
 *    the client is not read: backpressure with one buffer per direction.
 * 5. WAIT: the request is complete; the response streams back (upstream.c).
 * 6. Response done: keep-alive -> IDLE again (a pipelined request already buffered is served
 *    next), otherwise FIN and close, or LINGER: FIN, then read and discard until the client's
 *    own FIN when it may still be sending, so that a close never turns into an RST that
 *    destroys the end of our response in the client's kernel.
 */
#include "px.h"

#include "log.h"
#include "proxy_protocol.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define LINGER_MS  2000      /* a lingering close waits this long for more client bytes */
#define LINGER_MAX (1 << 20) /* and discards at most this many */

static void client_process(struct px_client *c);
static void parse_proxy_header(struct px_client *c);

/* ---- error pages ---- */

struct errpage {
  int status;
  const char *reason;
  char text[2][256]; /* [0] Connection: close, [1] keep-alive */
  unsigned len[2];
};

static struct errpage errpages[] = {
    {400, "Bad Request", {{0}}, {0}},
    {404, "Not Found", {{0}}, {0}},
    {405, "Method Not Allowed", {{0}}, {0}},
    {408, "Request Timeout", {{0}}, {0}},
    {431, "Request Header Fields Too Large", {{0}}, {0}},
    {500, "Internal Server Error", {{0}}, {0}},
    {502, "Bad Gateway", {{0}}, {0}},
    {503, "Service Unavailable", {{0}}, {0}},
    {504, "Gateway Timeout", {{0}}, {0}},
};

static const struct errpage *errpage_get(int status) {
  struct errpage *e = NULL;

  for (size_t i = 0; i < sizeof(errpages) / sizeof(errpages[0]); i++)
    if (errpages[i].status == status)
      e = &errpages[i];
  if (e == NULL)
    return errpage_get(500);
  if (e->len[0] == 0) {
    for (int ka = 0; ka < 2; ka++) {
      char body[96];
      int blen = snprintf(body, sizeof(body), "%d %s\n", e->status, e->reason);
      int n = snprintf(e->text[ka], sizeof(e->text[ka]),
                       "HTTP/1.1 %d %s\r\nServer: lbproxy\r\nContent-Type: text/plain\r\n"
                       "Content-Length: %d\r\nConnection: %s\r\n\r\n%s",
                       e->status, e->reason, blen, ka ? "keep-alive" : "close", body);
      e->len[ka] = (unsigned)n;
    }
  }
  return e;
}

/* ---- reading ---- */

static void client_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void client_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  struct px_client *c = h->data;

  if (c->in == NULL)
    c->in = px_buf_get(c->ctx);
  if (c->in == NULL || c->in_len >= c->ctx->bufsize) {
    *buf = uv_buf_init(NULL, 0); /* -> UV_ENOBUFS in the read callback */
    return;
  }
  *buf = uv_buf_init(c->in->data + c->in_len, (unsigned)(c->ctx->bufsize - c->in_len));
}

void px__client_read_start(struct px_client *c) {
  if (!c->reading && (!c->eof || c->state == PX_C_LINGER) &&
      uv_read_start((uv_stream_t *)&c->tcp, client_alloc, client_read_cb) == 0)
    c->reading = 1;
}

void px__client_read_stop(struct px_client *c) {
  if (c->reading) {
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = 0;
  }
}

/* ---- closing ---- */

static void client_close_cb(uv_handle_t *h) {
  px_client_unref(h->data);
}

void px_client_unref(struct px_client *c) {
  if (--c->refs > 0)
    return;
  px_buf_put(c->ctx, c->in);
  px_buf_put(c->ctx, c->out);
  struct px_ctx *ctx = c->ctx;
  free(c);
  px_ctx_handle_gone(ctx);
}

void px_client_close(struct px_client *c) {
  struct px_ctx *ctx = c->ctx;

  if (c->state == PX_C_CLOSING)
    return;
  LBP_DEBUG("client %p close: state=%d req_done=%d resp_started=%d ka=%d eof=%d", (void *)c,
            c->state, c->req_done, c->resp_started, c->keep_alive, c->eof);
  c->state = PX_C_CLOSING;
  if (c->prev)
    c->prev->next = c->next;
  else
    ctx->clients = c->next;
  if (c->next)
    c->next->prev = c->prev;
  ctx->counters.active--;
  if (c->up != NULL) {
    struct px_upstream *u = c->up;
    c->up = NULL;
    px_upstream_abort(u);
  }
  if (c->pool != NULL)
    px__client_release_server(c, BAL_CANCELLED);
  uv_close((uv_handle_t *)&c->tcp, client_close_cb);
  uv_close((uv_handle_t *)&c->timer, client_close_cb);
}

/* Ends a connection after its last response. A socket the master handed over may still be
 * open in the master (until it reads our acknowledgement), and then close() alone would not
 * send the FIN: shut down first. If the client
 * may still be sending (an error page, an early response, bytes we did not read), closing now
 * would make the kernel answer its next segment with RST and throw away the unread tail of our
 * response in the client's receive path: linger instead, as nginx's lingering_close does,
 * reading and discarding until its FIN, LINGER_MS of silence or LINGER_MAX bytes. */
static void client_finish(struct px_client *c) {
  int linger = (c->linger || c->in_pos < c->in_len || !c->req_done) && !c->eof && !c->ctx->closing;
  uv_os_fd_t fd;

  if ((linger || c->fd_shared) && uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0)
    shutdown(fd, SHUT_WR);
  if (!linger) {
    px_client_close(c);
    return;
  }
  c->state = PX_C_LINGER;
  c->in_len = c->in_pos = c->fwd_pos = 0;
  c->lingered = 0;
  px__client_timer(c, LINGER_MS);
  px__client_read_start(c);
}

/* ---- writing to the client ---- */

static void after_write(struct px_client *c) {
  uint8_t what = c->after_write;

  c->after_write = AW_NONE;
  switch (what) {
  case AW_RESUME_UPSTREAM:
    if (c->up != NULL)
      px_upstream_resume_read(c->up);
    break;
  case AW_RESPONSE_DONE:
    px__client_next(c);
    break;
  case AW_CLOSE:
    client_finish(c);
    break;
  default:
    break;
  }
}

static void px_client_write_cb(uv_write_t *req, int status) {
  struct px_client *c = req->data;

  c->writing = 0;
  if (c->state == PX_C_CLOSING)
    return;
  if (c->state == PX_C_WAIT)
    uv_timer_stop(&c->timer);
  if (status < 0) {
    px_client_close(c);
    return;
  }
  after_write(c);
}

int px_client_write(struct px_client *c, uv_buf_t *bufs, unsigned n, uint8_t then) {
  int rc;

  c->wreq.data = c;
  rc = px_write((uv_stream_t *)&c->tcp, &c->wreq, bufs, n, px_client_write_cb);
  if (rc < 0) {
    px_client_close(c);
    return rc;
  }
  c->after_write = then;
  if (rc == 0) {
    /* The socket is full: the client has client_idle to take more (nginx's send_timeout). */
    c->writing = 1;
    if (c->state == PX_C_WAIT)
      px__client_timer(c, c->ctx->cfg->timeouts.client_idle_ms);
    return 0;
  }
  return 1;
}

/* ---- error responses ---- */

/* The selected server is done with this request (BAL_FAILED: it could not serve it). */
void px__client_release_server(struct px_client *c, enum bal_outcome outcome) {
  if (c->server >= 0)
    bal_release(&c->pool->bal, &c->pick, outcome, uv_now(c->ctx->loop));
  c->server = -1;
}

void px_client_send_error(struct px_client *c, int status) {
  const struct errpage *e;
  int ka;
  uv_buf_t b;

  if (c->state == PX_C_CLOSING)
    return;
  if (c->resp_started || c->writing) {
    px_client_close(c); /* part of a response is out: all we can do is cut it */
    return;
  }
  if (c->up != NULL) {
    struct px_upstream *u = c->up;
    c->up = NULL;
    px_upstream_abort(u);
  }
  px__client_release_server(c, status >= 500 ? BAL_FAILED : BAL_CANCELLED);
  ka = (status == 404 || status == 502 || status == 503 || status == 504) && c->keep_alive &&
       !c->ctx->closing && px__request_finish_bodyless(c) && !(c->eof && c->in_pos >= c->in_len);
  c->keep_alive = (uint8_t)ka;
  c->linger = !ka;
  c->resp_started = 1;
  c->state = PX_C_WAIT;
  px__client_read_stop(c);
  uv_timer_stop(&c->timer);
  e = errpage_get(status);
  b = uv_buf_init((char *)e->text[ka], e->len[ka]);
  if (px_client_write(c, &b, 1, ka ? AW_RESPONSE_DONE : AW_CLOSE) == 1)
    after_write(c);
}

/* ---- timers ---- */

static void client_timer_cb(uv_timer_t *t) {
  struct px_client *c = t->data;

  switch (c->state) {
  case PX_C_IDLE:
    if (c->in_len > 0) /* a deferred pipelined request */
      client_process(c);
    else
      px_client_close(c);
    break;
  case PX_C_HEAD:
  case PX_C_PROXYHDR:
    px_client_send_error(c, 408);
    break;
  case PX_C_BODY:
    px_client_close(c); /* the client stalled mid-body */
    break;
  case PX_C_WAIT:
    if (c->writing)
      px_client_close(c); /* the client stopped reading its response */
    break;
  case PX_C_LINGER:
    px_client_close(c);
    break;
  default:
    break;
  }
}

void px__client_timer(struct px_client *c, uint64_t ms) {
  uv_timer_start(&c->timer, client_timer_cb, ms, 0);
}

static void client_process(struct px_client *c) {
  switch (c->state) {
  case PX_C_PROXYHDR:
    parse_proxy_header(c);
    break;
  case PX_C_IDLE:
  case PX_C_HEAD:
    px__request_head(c);
    break;
  case PX_C_BODY:
    uv_timer_stop(&c->timer);
    px__request_body(c);
    break;
  default:
    break;
  }
}

static void client_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  struct px_client *c = s->data;

  if (c->state == PX_C_LINGER) {
    c->lingered += nread > 0 ? (uint32_t)nread : 0;
    c->in_len = 0; /* discarded */
    if (nread < 0 || c->lingered > LINGER_MAX)
      px_client_close(c);
    else if (nread > 0)
      px__client_timer(c, LINGER_MS);
    return;
  }
  if (nread > 0) {
    c->in_len += (uint32_t)nread;
    if (c->state == PX_C_CONNECT || c->state == PX_C_WAIT) {
      /* Not our turn yet (body bytes before the upstream is ready, or a pipelined request):
       * keep them, and stop reading only once the buffer is full. Not stopping otherwise
       * saves two epoll_ctl calls per request. */
      if (c->in_len >= c->ctx->bufsize)
        px__client_read_stop(c);
      return;
    }
    client_process(c);
    return;
  }
  if (nread == UV_ENOBUFS) {
    /* The buffer is full: wait until it drains (or reject a head that cannot fit). */
    px__client_read_stop(c);
    if (c->state == PX_C_HEAD || c->state == PX_C_IDLE)
      px_client_send_error(c, c->in == NULL ? 500 : 431);
    return;
  }
  if (nread == 0) {
    if (c->state == PX_C_IDLE && c->in_len == 0) {
      px_buf_put(c->ctx, c->in);
      c->in = NULL;
    }
    return;
  }
  /* EOF or error. A half-close after complete requests still gets their responses: those
   * being served, and the pipelined ones already read. */
  if (nread == UV_EOF && (((c->state == PX_C_WAIT || c->state == PX_C_CONNECT) && c->req_done) ||
                          (c->state == PX_C_IDLE && c->in_pos < c->in_len))) {
    c->eof = 1;
    px__client_read_stop(c);
    return;
  }
  px_client_close(c);
}

/* ---- between requests ---- */

/* Nagle's algorithm holds a small write back while earlier data is unacknowledged. A response
 * that goes out in one writev never meets it; a response in several writes, or a second
 * response on the connection (pipelined), can wait for the client's delayed ACK (40 ms).
 * So the option is set then, once, not for every connection: that saves a syscall for each
 * short-lived one. */
void px__client_nodelay(struct px_client *c) {
  if (!c->nodelay) {
    uv_tcp_nodelay(&c->tcp, 1);
    c->nodelay = 1;
  }
}

static void client_hand_over(struct px_client *c, uint32_t start);

void px__client_next(struct px_client *c) {
  if (!c->keep_alive || c->ctx->closing || c->state == PX_C_BODY) {
    client_finish(c);
    return;
  }
  if (c->ctx->draining && c->ctx->handover != NULL && !c->private_port) {
    /* Between requests while draining: the connection goes back to the master, with what was
     * read of the next request, and a new-generation worker serves it. */
    c->state = PX_C_IDLE;
    px_buf_put(c->ctx, c->out);
    c->out = NULL;
    client_hand_over(c, c->in_pos);
    return;
  }
  px__client_nodelay(c);
  c->state = PX_C_IDLE;
  c->host_from_target = 0;
  px_buf_put(c->ctx, c->out);
  c->out = NULL;
  if (c->in_pos < c->in_len) {
    /* A pipelined request is already here: serve it on the next loop turn (not recursively),
     * and read on, the buffer has room again for the rest of it. */
    memmove(c->in->data, c->in->data + c->in_pos, c->in_len - c->in_pos);
    c->in_len -= c->in_pos;
    c->in_pos = c->fwd_pos = 0;
    px__client_timer(c, 0);
    px__client_read_start(c);
    return;
  }
  if (c->eof) {
    client_finish(c); /* half-closed, and every request it sent is answered */
    return;
  }
  c->in_len = c->in_pos = c->fwd_pos = 0;
  px_buf_put(c->ctx, c->in);
  c->in = NULL;
  px__client_timer(c, c->ctx->cfg->timeouts.client_idle_ms);
  px__client_read_start(c);
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

/* A private port's connection starts with the master's PROXY v2 header naming the client. */
static void parse_proxy_header(struct px_client *c) {
  struct sockaddr_storage ss;
  int n = pp2_decode((const unsigned char *)c->in->data, c->in_len, &ss);

  if (n == 0 && c->in_len < PP2_MAX_LEN)
    return; /* more to come */
  if (n <= 0) {
    LBP_WARN("bad PROXY protocol header on a private port: closing");
    px_client_close(c);
    return;
  }
  /* Only the master speaks here: any local process could connect to a loopback port and claim
   * to be any client (X-Forwarded-For). The master's headers carry its generation's secret. */
  if (pp2_check_secret((const unsigned char *)c->in->data, (size_t)n, c->ctx->gen.secret) != 0) {
    LBP_WARN("PROXY header without the master's secret on a private port: closing");
    px_client_close(c);
    return;
  }
  if (ss.ss_family != AF_UNSPEC)
    set_peer(c, &ss);
  else
    peer_from_socket(c); /* LOCAL (the master's own connection) or no address family */
  c->state = PX_C_IDLE;
  if ((uint32_t)n == c->in_len) {
    c->in_len = 0; /* nothing after the header yet: an idle connection holds no bytes */
    return;
  }
  c->in_pos = (uint32_t)n;
  px__request_head(c);
}

uv_tcp_t *px_client_new(struct px_ctx *ctx) {
  struct px_client *c;

  if (ctx->closing || (ctx->draining && ctx->handover == NULL))
    return NULL;
  c = calloc(1, sizeof(*c));
  if (c == NULL)
    return NULL;
  c->ctx = ctx;
  c->server = -1;
  if (uv_tcp_init(ctx->loop, &c->tcp) != 0) {
    free(c);
    return NULL;
  }
  uv_timer_init(ctx->loop, &c->timer);
  c->tcp.data = c;
  c->timer.data = c;
  c->refs = 2;
  ctx->nhandles++;
  ctx->counters.active++;
  c->next = ctx->clients;
  if (ctx->clients)
    ctx->clients->prev = c;
  ctx->clients = c;
  return &c->tcp;
}

void px_client_discard(uv_tcp_t *tcp) {
  px_client_close(tcp->data);
}

/* Bytes another worker read from this connection (a handover) are served as if just read. */
static int take_initial(struct px_client *c, const struct px_accept *a) {
  if (a->initial_len == 0)
    return 0;
  if (a->initial_len >= c->ctx->bufsize || (c->in = px_buf_get(c->ctx)) == NULL)
    return -1;
  memcpy(c->in->data, a->initial, a->initial_len);
  c->in_len = (uint32_t)a->initial_len;
  return 0;
}

void px_client_start(uv_tcp_t *tcp, const struct px_accept *a) {
  struct px_client *c = tcp->data;

  c->ctx->counters.accepted++;
  c->fd_shared = (a->flags & PX_CLIENT_FD_SHARED) != 0;
  c->private_port = (a->flags & PX_CLIENT_PROXY_PROTOCOL) != 0;
  c->listener = (uint16_t)a->listener;
  llhttp_init(&c->parser, HTTP_REQUEST, &px_request_settings);
  c->parser.data = &c->head;
  if (take_initial(c, a) != 0) {
    px_client_close(c);
    return;
  }
  if (a->flags & PX_CLIENT_PROXY_PROTOCOL) {
    c->state = PX_C_PROXYHDR;
  } else {
    peer_from_socket(c);
    c->state = PX_C_IDLE;
  }
  px__client_timer(c, c->ctx->cfg->timeouts.client_header_ms);
  if (c->in_len > 0) {
    client_process(c); /* may close c */
    if (c->state == PX_C_CLOSING)
      return;
  }
  px__client_read_start(c);
}

/* ---- draining ---- */

int px__client_drain_closes(const struct px_client *c) {
  return c->ctx->draining && (c->ctx->handover == NULL || c->private_port);
}

/* Gives the connection to the context's handover function with the bytes read from `start`
 * on (the start of the next request); closes it if that is refused. */
static void client_hand_over(struct px_client *c, uint32_t start) {
  struct px_ctx *ctx = c->ctx;
  const char *bytes = c->in != NULL ? c->in->data + start : NULL;
  size_t len = c->in != NULL && c->in_len > start ? c->in_len - start : 0;

  px__client_read_stop(c);
  uv_timer_stop(&c->timer);
  if (ctx->handover(ctx->handover_arg, &c->tcp, c->listener, bytes, len) != 0) {
    client_finish(c);
    return;
  }
  c->state = PX_C_HANDOVER;
}

/* Has the client sent bytes we have not read yet? (A request on its way: not idle.) */
static int bytes_waiting(struct px_client *c) {
  uv_os_fd_t fd;
  char b;

  return uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0 &&
         recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) == 1;
}

void px__client_drain(struct px_client *c) {
  if (c->state != PX_C_IDLE && c->state != PX_C_HEAD)
    return; /* in flight: px__client_next decides once its response is complete */
  if (c->ctx->handover != NULL && !c->private_port) {
    client_hand_over(c, c->state == PX_C_HEAD ? c->head.start : c->in_pos);
    return;
  }
  /* Graceful stop: a connection that is really idle just ends (nginx does the same). One whose
   * request has started, in our buffer or still in the kernel's, is answered first (with
   * Connection: close): closing it would lose a request the client has already sent. A relayed
   * connection during a reload is answered the same way on its next request (request.c). */
  if (c->ctx->handover == NULL && c->state == PX_C_IDLE && c->in_pos >= c->in_len &&
      !bytes_waiting(c))
    px_client_close(c);
}

void px_client_handed_over(uv_tcp_t *tcp) {
  px_client_close(tcp->data);
}
