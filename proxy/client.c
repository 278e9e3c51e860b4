/* Client connections: read and parse requests, route them, forward them upstream, error pages. */

/*
 * Life of a client connection (states in px.h):
 *
 * 1. IDLE: no request bytes yet; no buffer is held, so an idle keep-alive connection costs
 *    only this struct. The first byte moves it to HEAD and arms the header deadline.
 * 2. HEAD: bytes accumulate in one buffer and go through llhttp; px_head records which lines
 *    to drop. More than max_header_bytes before the blank line: 431. Bad syntax: 400.
 * 3. Headers complete: route, pick a server (the balancer skips servers already tried), then
 *    CONNECT: stop reading the client until an upstream connection is ready (pooled or new).
 * 4. BODY: the rewritten head goes out with one writev together with whatever body bytes were
 *    already read; further body bytes are forwarded raw as they arrive (chunked or not: llhttp
 *    only tells us where the message ends). While a write to the upstream is pending, the
 *    client is not read: backpressure with one buffer per direction.
 * 5. WAIT: the request is complete; bytes of a pipelined next request stay unread until the
 *    response is done. upstream.c streams the response back.
 * 6. Response done: keep-alive -> IDLE again (a pipelined request already buffered is served
 *    at once), otherwise FIN and close.
 *
 * Failures before any response byte reached the client get an error page: 502 (cannot connect
 * to any server, or a broken response), 503 (no server available), 504 (timeout). A request
 * that hit a stale pooled connection is retried once on a fresh one when that is safe.
 */
#include "px.h"

#include "log.h"
#include "proxy_protocol.h"
#include "router.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define LINGER_MS  2000      /* a lingering close waits this long for more client bytes */
#define LINGER_MAX (1 << 20) /* and discards at most this many */

static void client_process(struct px_client *c);
static void client_next(struct px_client *c);
static void parse_head(struct px_client *c);
static void parse_proxy_header(struct px_client *c);
static void client_forward(struct px_client *c);

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

static void read_start(struct px_client *c) {
  if (!c->reading && (!c->eof || c->state == PX_C_LINGER) &&
      uv_read_start((uv_stream_t *)&c->tcp, client_alloc, client_read_cb) == 0)
    c->reading = 1;
}

static void read_stop(struct px_client *c) {
  if (c->reading) {
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = 0;
  }
}

static void timer_start(struct px_client *c, uint64_t ms);
static void release_server(struct px_client *c, int failed);

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
    release_server(c, 1);
  uv_close((uv_handle_t *)&c->tcp, client_close_cb);
  uv_close((uv_handle_t *)&c->timer, client_close_cb);
}

/* Ends a connection after its last response: FIN first, so the peer sees the end of the
 * response at once even if another process still holds a copy of this socket. If the client
 * may still be sending (an error page, an early response, bytes we did not read), closing now
 * would make the kernel answer its next segment with RST and throw away the unread tail of our
 * response in the client's receive path: linger instead, as nginx's lingering_close does,
 * reading and discarding until its FIN, LINGER_MS of silence or LINGER_MAX bytes. */
static void client_finish(struct px_client *c) {
  uv_os_fd_t fd;

  if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0)
    shutdown(fd, SHUT_WR);
  if (!(c->linger || c->in_pos < c->in_len || !c->req_done) || c->eof || c->ctx->closing) {
    px_client_close(c);
    return;
  }
  c->state = PX_C_LINGER;
  c->in_len = c->in_pos = c->fwd_pos = 0;
  c->lingered = 0;
  timer_start(c, LINGER_MS);
  read_start(c);
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
    client_next(c);
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
      timer_start(c, c->ctx->cfg->timeouts.client_idle_ms);
    return 0;
  }
  return 1;
}

/* ---- error responses ---- */

/* The selected server is done with this request (failed: it could not serve it). */
static void release_server(struct px_client *c, int failed) {
  if (c->server >= 0)
    bal_release(&c->pool->bal, (unsigned)c->server, failed);
  c->server = -1;
}

/* Completes a request that has no body (an empty execute runs llhttp to message complete), so
 * an error page can keep the connection. Returns 1 if the request is now complete. */
static int finish_bodyless(struct px_client *c) {
  llhttp_errno_t err;

  if (c->req_done)
    return 1;
  if (c->state != PX_C_CONNECT)
    return 0;
  err = llhttp_execute(&c->parser, c->in->data + c->in_pos, 0);
  if (err == HPE_PAUSED) {
    llhttp_resume(&c->parser);
    c->req_done = 1;
    return 1;
  }
  return 0;
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
  release_server(c, status >= 500);
  ka = (status == 404 || status == 502 || status == 503 || status == 504) && c->keep_alive &&
       !c->ctx->closing && finish_bodyless(c) && !(c->eof && c->in_pos >= c->in_len);
  c->keep_alive = (uint8_t)ka;
  c->linger = !ka;
  c->resp_started = 1;
  c->state = PX_C_WAIT;
  read_stop(c);
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

static void timer_start(struct px_client *c, uint64_t ms) {
  uv_timer_start(&c->timer, client_timer_cb, ms, 0);
}

/* ---- routing and upstream selection ---- */

static void select_and_connect(struct px_client *c, int fresh) {
  int idx;

  if (fresh) { /* retry on a new connection to the same server */
    px_upstream_acquire(c, &c->pool->servers[c->server], 1);
    return;
  }
  idx = bal_select(&c->pool->bal, &c->tried);
  if (idx < 0) {
    int any_tried = 0;
    for (size_t i = 0; i < BAL_MAX_SERVERS / 64; i++)
      any_tried |= c->tried.bits[i] != 0;
    c->server = -1;
    px_client_send_error(c, any_tried ? 502 : 503);
    return;
  }
  c->server = idx;
  bal_tried_add(&c->tried, (unsigned)idx);
  px_upstream_acquire(c, &c->pool->servers[idx], 0);
}

/* An absolute-form target ("http://host:port/path", RFC 9112 3.2.2): route by its authority,
 * forward the origin form, and replace the Host line with the authority, as a proxy must.
 * 0, or -1 for a target we will not forward (no path, userinfo). */
static int absolute_target(struct px_client *c) {
  const char *b = c->in->data, *u = b + c->head.url.off, *auth, *slash;
  uint32_t ulen = c->head.url.len;
  const char *sep = memmem(u, ulen, "://", 3);

  if (sep == NULL)
    return -1;
  auth = sep + 3;
  slash = memchr(auth, '/', (size_t)(u + ulen - auth));
  if (slash == NULL || slash == auth || memchr(auth, '@', (size_t)(slash - auth)) != NULL)
    return -1;
  c->authority.off = (uint32_t)(auth - b);
  c->authority.len = (uint32_t)(slash - auth);
  c->host_from_target = 1;
  px_head_drop(&c->head, c->head.url.off, (uint32_t)(slash - u));
  if (c->head.flags & PX_HEAD_HAS_HOST)
    px_head_drop(&c->head, c->head.host_line.off, c->head.host_line.len);
  return (c->head.flags & PX_HEAD_OVERFLOW) ? -1 : 0;
}

/* Checks a complete request head; the status of the error page to send, or 0. */
static int check_request(struct px_client *c, uint32_t end) {
  const char *u = c->in->data + c->head.url.off;

  if (px_head_complete(&c->head, end) < 0 || (c->head.flags & PX_HEAD_DUP_HOST))
    return 400; /* obs-fold, too many hop-by-hop lines, two Host lines */
  c->http10 = c->parser.http_major == 1 && c->parser.http_minor == 0;
  if (c->parser.method == HTTP_CONNECT)
    return 405;
  if (c->head.url.len > 0 && u[0] != '/' && !(c->head.url.len == 1 && u[0] == '*') &&
      absolute_target(c) < 0)
    return 400;
  if (!(c->head.flags & PX_HEAD_HAS_HOST) && !c->http10 && !c->host_from_target)
    return 400; /* RFC 9112 3.2: HTTP/1.1 requires Host */
  if (c->http10 && (c->parser.flags & (F_CHUNKED | F_TRANSFER_ENCODING)))
    return 400; /* RFC 9112 6.1: Transfer-Encoding in HTTP/1.0 is faulty framing */
  return 0;
}

static void on_request_head(struct px_client *c, uint32_t end) {
  const struct lbp_config *cfg = c->ctx->cfg;
  const char *b = c->in->data;
  const struct px_span *host;
  int r, bad;

  uv_timer_stop(&c->timer);
  bad = check_request(c, end);
  if (bad) {
    px_client_send_error(c, bad);
    return;
  }
  host = c->host_from_target ? &c->authority : &c->head.host;
  c->keep_alive = (uint8_t)llhttp_should_keep_alive(&c->parser);
  c->state = PX_C_CONNECT;
  finish_bodyless(c);
  r = px_route(cfg,
               (c->host_from_target || (c->head.flags & PX_HEAD_HAS_HOST)) ? b + host->off : NULL,
               host->len, b + c->head.url.off, c->head.url.len);
  if (r < 0) {
    px_client_send_error(c, 404);
    return;
  }
  c->pool = &c->ctx->pools[cfg->routes[r].upstream];
  bal_tried_clear(&c->tried);
  c->retried = 0;
  c->head_pending = 1;
  c->fwd_pos = c->head.end;
  c->ctx->counters.requests++;
  select_and_connect(c, 0);
}

/* ---- parsing ---- */

static void parse_head(struct px_client *c) {
  const char *b = c->in->data;
  uint64_t limit = c->ctx->cfg->limits.max_header_bytes;
  llhttp_errno_t err;
  uint32_t pos;

  if (c->state == PX_C_IDLE) {
    c->state = PX_C_HEAD;
    px_head_reset(&c->head, b, 1, c->in_pos);
    c->req_done = 0;
    c->resp_started = 0;
    c->head_pending = 0;
    timer_start(c, c->ctx->cfg->timeouts.client_header_ms);
  }
  c->head.base = b;
  err = llhttp_execute(&c->parser, b + c->in_pos, c->in_len - c->in_pos);
  if (err == HPE_OK) {
    c->in_pos = c->in_len;
    if (c->in_len - c->head.start > limit)
      px_client_send_error(c, 431);
    else if (c->eof)
      px_client_close(c); /* half a head, and the client has said it is done */
    else
      read_start(c);
    return;
  }
  if (err != HPE_PAUSED) {
    px_client_send_error(c, 400);
    return;
  }
  pos = (uint32_t)(llhttp_get_error_pos(&c->parser) - b);
  llhttp_resume(&c->parser);
  c->in_pos = pos;
  if (pos - c->head.start > limit) {
    px_client_send_error(c, 431);
    return;
  }
  on_request_head(c, pos);
}

/* Runs the parser over body bytes; sets req_done at the end of the message. 0 or -1. */
static int parse_body(struct px_client *c) {
  const char *b = c->in->data;
  llhttp_errno_t err;

  if (c->req_done || c->in_pos == c->in_len)
    return 0;
  err = llhttp_execute(&c->parser, b + c->in_pos, c->in_len - c->in_pos);
  if (err == HPE_OK) {
    c->in_pos = c->in_len;
    return 0;
  }
  if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
    c->in_pos = (uint32_t)(llhttp_get_error_pos(&c->parser) - b);
    if (err == HPE_PAUSED)
      llhttp_resume(&c->parser);
    else
      llhttp_resume_after_upgrade(&c->parser);
    c->req_done = 1;
    return 0;
  }
  return -1;
}

static void client_process(struct px_client *c) {
  switch (c->state) {
  case PX_C_PROXYHDR:
    parse_proxy_header(c);
    break;
  case PX_C_IDLE:
  case PX_C_HEAD:
    parse_head(c);
    break;
  case PX_C_BODY:
    uv_timer_stop(&c->timer);
    if (parse_body(c) < 0) {
      px_client_send_error(c, 400);
      return;
    }
    client_forward(c);
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
      timer_start(c, LINGER_MS);
    return;
  }
  if (nread > 0) {
    c->in_len += (uint32_t)nread;
    if (c->state == PX_C_CONNECT || c->state == PX_C_WAIT) {
      /* Not our turn yet (body bytes before the upstream is ready, or a pipelined request):
       * keep them, and stop reading only once the buffer is full. Not stopping otherwise
       * saves two epoll_ctl calls per request. */
      if (c->in_len >= c->ctx->bufsize)
        read_stop(c);
      return;
    }
    client_process(c);
    return;
  }
  if (nread == UV_ENOBUFS) {
    /* The buffer is full: wait until it drains (or reject a head that cannot fit). */
    read_stop(c);
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
    read_stop(c);
    return;
  }
  px_client_close(c);
}

/* ---- forwarding the request ---- */

static const char xff_prefix[] = "X-Forwarded-For: ";
static const char host_prefix[] = "Host: ";
static const char crlf[] = "\r\n";
static const char conn_ka[] = "Connection: keep-alive\r\n";

/* The request reached the upstream socket (or is queued there): keep reading or wait. */
static void request_written(struct px_client *c) {
  if (c->req_done) {
    c->state = PX_C_WAIT;
    if (c->in_len < c->ctx->bufsize)
      read_start(c);
    else
      read_stop(c); /* no room for a pipelined request until this one is answered */
    return;
  }
  if (c->in_pos == c->in_len && c->fwd_pos == c->in_len) {
    /* Everything read so far is out: reuse the buffer from its start. The head is gone from
     * it now, so this request can no longer be retried. */
    c->in_len = c->in_pos = c->fwd_pos = 0;
    c->retried = 1;
  }
  read_start(c);
  timer_start(c, c->ctx->cfg->timeouts.client_idle_ms);
}

void px_client_request_written(struct px_client *c, int status) {
  if (c->state == PX_C_CLOSING || c->up == NULL)
    return;
  if (status < 0) {
    px_client_upstream_failed(c, status);
    return;
  }
  if (c->state == PX_C_BODY)
    request_written(c);
}

static void client_forward(struct px_client *c) {
  uv_buf_t iov[PX_HEAD_MAX_IOV];
  uint32_t end = c->in_pos;
  int n, rc;

  if (c->up == NULL)
    return; /* the exchange ended early (px_client_response_complete) */
  if (c->head_pending) {
    uv_buf_t tail[8], xff = uv_buf_init(c->peer, c->peer_len);
    int nt = 0;
    if (c->host_from_target) {
      tail[nt++] = uv_buf_init((char *)host_prefix, sizeof(host_prefix) - 1);
      tail[nt++] = uv_buf_init(c->in->data + c->authority.off, c->authority.len);
      tail[nt++] = uv_buf_init((char *)crlf, 2);
    }
    if (!(c->head.flags & PX_HEAD_HAS_XFF)) {
      tail[nt++] = uv_buf_init((char *)xff_prefix, sizeof(xff_prefix) - 1);
      tail[nt++] = uv_buf_init(c->peer + 2, c->peer_len - 2u);
      tail[nt++] = uv_buf_init((char *)crlf, 2);
    }
    if (c->http10)
      tail[nt++] = uv_buf_init((char *)conn_ka, sizeof(conn_ka) - 1);
    n = px_head_iov(&c->head, &xff, tail, nt, end - c->head.end, iov, PX_HEAD_MAX_IOV);
    if (n < 0) {
      px_client_send_error(c, 400);
      return;
    }
    c->head_pending = 0;
  } else if (end > c->fwd_pos) {
    iov[0] = uv_buf_init(c->in->data + c->fwd_pos, end - c->fwd_pos);
    n = 1;
  } else {
    request_written(c);
    return;
  }
  c->fwd_pos = end;
  rc = px_upstream_send(c->up, iov, (unsigned)n);
  if (rc == 1)
    request_written(c);
  else if (rc == 0)
    read_stop(c); /* the buffer is in use until px_client_request_written */
  /* rc < 0: the upstream already reported the failure. */
}

/* ---- upstream events ---- */

void px_client_upstream_ready(struct px_client *c, struct px_upstream *u) {
  c->up = u;
  if (c->out == NULL)
    c->out = px_buf_get(c->ctx);
  if (c->out == NULL) {
    px_client_send_error(c, 502);
    return;
  }
  c->out_len = c->out_pos = c->out_fwd = 0;
  c->state = PX_C_BODY;
  client_process(c);
}

static int method_idempotent(uint8_t m) {
  return m == HTTP_GET || m == HTTP_HEAD || m == HTTP_OPTIONS || m == HTTP_PUT ||
         m == HTTP_DELETE || m == HTTP_TRACE;
}

void px_client_upstream_failed(struct px_client *c, int err) {
  struct px_upstream *u = c->up;
  int reused = u != NULL && u->reused;
  int nothing_received = u == NULL || !u->got_bytes;
  int was_connecting = c->state == PX_C_CONNECT && !reused;

  if (c->state == PX_C_CLOSING)
    return;
  LBP_DEBUG("client %p upstream failed: %s state=%d reused=%d nothing_received=%d", (void *)c,
            uv_strerror(err), c->state, reused, nothing_received);
  if (u != NULL) {
    c->up = NULL;
    px_upstream_abort(u);
  }
  if (c->resp_started) {
    px_client_close(c); /* part of the response is out: all we can do is cut it */
    return;
  }
  c->state = PX_C_CONNECT;
  c->head_pending = 1;
  c->fwd_pos = c->head.end;
  if (reused && nothing_received && !c->retried && c->req_done &&
      (err == UV_ECONNRESET || err == UV_EPIPE || err == UV_ECONNABORTED) &&
      method_idempotent(c->parser.method)) {
    /* Most likely a pooled connection the server closed as we reused it: once more, on a
     * fresh connection to the same server (the selection stands). */
    c->retried = 1;
    select_and_connect(c, 1);
    return;
  }
  if (c->server >= 0) {
    const struct cfg_addr *a = &c->pool->servers[c->server].cfg->addr;
    LBP_WARN("upstream %s:%u %s: %s", a->host, a->port,
             was_connecting ? "connect failed" : "failed", uv_strerror(err));
    release_server(c, 1);
  }
  if (was_connecting) {
    select_and_connect(c, 0); /* the next untried server, or 502 */
    return;
  }
  px_client_send_error(c, err == UV_ETIMEDOUT ? 504 : 502);
}

void px_client_response_complete(struct px_client *c) {
  release_server(c, 0);
  if (c->state == PX_C_BODY) {
    /* The upstream answered before the whole request arrived: no more forwarding (there is
     * no upstream any more); the rest of the request is left to the lingering close. */
    c->keep_alive = 0;
    c->state = PX_C_WAIT;
    read_stop(c);
  }
  if (c->writing)
    c->after_write = AW_RESPONSE_DONE;
  else
    client_next(c);
}

/* ---- between requests ---- */

static void client_next(struct px_client *c) {
  if (!c->keep_alive || c->ctx->closing || c->state == PX_C_BODY) {
    client_finish(c);
    return;
  }
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
    timer_start(c, 0);
    read_start(c);
    return;
  }
  if (c->eof) {
    client_finish(c); /* half-closed, and every request it sent is answered */
    return;
  }
  c->in_len = c->in_pos = c->fwd_pos = 0;
  px_buf_put(c->ctx, c->in);
  c->in = NULL;
  timer_start(c, c->ctx->cfg->timeouts.client_idle_ms);
  read_start(c);
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
  parse_head(c);
}

uv_tcp_t *px_client_new(struct px_ctx *ctx) {
  struct px_client *c;

  if (ctx->closing)
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

void px_client_start(uv_tcp_t *tcp, unsigned flags) {
  struct px_client *c = tcp->data;

  c->ctx->counters.accepted++;
  uv_tcp_nodelay(&c->tcp, 1);
  llhttp_init(&c->parser, HTTP_REQUEST, &px_request_settings);
  c->parser.data = &c->head;
  if (flags & PX_CLIENT_PROXY_PROTOCOL) {
    c->state = PX_C_PROXYHDR;
  } else {
    peer_from_socket(c);
    c->state = PX_C_IDLE;
  }
  timer_start(c, c->ctx->cfg->timeouts.client_header_ms);
  read_start(c);
}
