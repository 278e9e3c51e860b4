/* Upstream connections: connect, keep-alive pool per server, and streaming responses back. */

/*
 * An upstream connection is attached to one client for one exchange, then either goes back
 * to its server's idle list (the response was complete, framed, and nothing followed it) or
 * is closed. Idle connections keep reading into a scratch buffer: any byte or EOF from an idle
 * server means it is gone or broken, and the connection is dropped before anyone reuses it.
 *
 * Responses are read into the client's `out` buffer and parsed with llhttp only to find where
 * the head and the message end. The final head is forwarded minus hop-by-hop lines, plus our
 * own Connection line when the client connection will close (or is HTTP/1.0 keep-alive);
 * interim 1xx heads and all body bytes go out as received. While a write to the client is
 * pending the upstream is not read (backpressure with one buffer).
 *
 * The upstream timer measures, in turn: the connect deadline, the response deadline (restarted
 * by every read and every completed write), and the keep-alive idle time.
 */
#include "px.h"

#include "log.h"

#include <stdlib.h>
#include <string.h>

static const char conn_close[] = "Connection: close\r\n";
static const char conn_keep[] = "Connection: keep-alive\r\n";

static void up_timer_cb(uv_timer_t *t);

/* ---- lifetime ---- */

static void up_close_cb(uv_handle_t *h) {
  struct px_upstream *u = h->data;
  struct px_ctx *ctx = u->ctx;

  if (--u->refs > 0)
    return;
  if (u->c != NULL) {
    struct px_client *c = u->c;
    u->c = NULL;
    px_client_unref(c);
  }
  free(u);
  px_ctx_handle_gone(ctx);
}

static void idle_remove(struct px_upstream *u) {
  struct px_upstream **pp = &u->srv->idle;

  while (*pp != NULL && *pp != u)
    pp = &(*pp)->idle_next;
  if (*pp == u) {
    *pp = u->idle_next;
    u->srv->nidle--;
  }
  u->idle_next = NULL;
}

void px_upstream_close(struct px_upstream *u) {
  struct px_ctx *ctx = u->ctx;

  if (u->state == PX_U_CLOSING)
    return;
  if (u->state == PX_U_IDLE)
    idle_remove(u);
  u->state = PX_U_CLOSING;
  if (u->prev)
    u->prev->next = u->next;
  else
    ctx->upstreams = u->next;
  if (u->next)
    u->next->prev = u->prev;
  uv_close((uv_handle_t *)&u->tcp, up_close_cb);
  uv_close((uv_handle_t *)&u->timer, up_close_cb);
}

void px_upstream_abort(struct px_upstream *u) {
  px_upstream_close(u);
}

/* Ends the exchange: the client is let go, the connection pooled or closed. */
static void up_detach(struct px_upstream *u, int reusable) {
  struct px_client *c = u->c;
  struct px_server *srv = u->srv;

  c->up = NULL;
  u->c = NULL;
  px_client_unref(c);
  uv_timer_stop(&u->timer);
  if (!reusable || u->writing || u->ctx->closing || srv->nidle >= srv->pool->cfg->keepalive) {
    px_upstream_close(u);
    return;
  }
  u->state = PX_U_IDLE;
  u->idle_next = srv->idle;
  srv->idle = u;
  srv->nidle++;
  uv_timer_start(&u->timer, up_timer_cb, u->ctx->cfg->timeouts.client_idle_ms, 0);
}

static void attach(struct px_upstream *u, struct px_client *c) {
  u->c = c;
  c->refs++;
  c->up = u;
  u->got_bytes = 0;
  u->head_sent = 0;
  u->head_pending = 0;
  llhttp_init(&u->parser, HTTP_RESPONSE, &px_response_settings);
  u->parser.data = &u->head;
  px_head_reset(&u->head, NULL, 0, 0);
}

/* ---- reading responses ---- */

static void up_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  static char scratch[64]; /* idle connections: any byte read is a reason to close */
  struct px_upstream *u = h->data;
  struct px_client *c = u->c;

  if (u->state != PX_U_BUSY || c == NULL) {
    *buf = uv_buf_init(scratch, sizeof(scratch));
    return;
  }
  if (c->out == NULL)
    c->out = px_buf_get(u->ctx);
  if (c->out == NULL || c->out_len >= u->ctx->bufsize) {
    *buf = uv_buf_init(NULL, 0);
    return;
  }
  *buf = uv_buf_init(c->out->data + c->out_len, (unsigned)(u->ctx->bufsize - c->out_len));
}

/* Resets the response buffer once everything in it went to the client. */
static void out_rebase(struct px_upstream *u) {
  struct px_client *c = u->c;

  if (c->out_fwd != c->out_len || c->out_pos != c->out_len)
    return;
  if (u->head.flags & PX_HEAD_DONE) {
    c->out_len = c->out_pos = c->out_fwd = 0;
  } else if (u->head.start == c->out_len) {
    c->out_len = c->out_pos = c->out_fwd = 0;
    px_head_reset(&u->head, c->out->data, 0, 0);
  }
}

/* Decides what the client is told about the connection, once the final head is known. */
static int resp_head(struct px_upstream *u, uint32_t end) {
  struct px_client *c = u->c;
  int status;

  if (px_head_complete(&u->head, end) < 0)
    return -1;
  status = llhttp_get_status_code(&u->parser);
  if (status < 200)
    return status == 101 ? -1 : 0; /* interim: forwarded as is; 101: we never ask for it */
  if (c->parser.method == HTTP_HEAD)
    u->parser.flags |= F_SKIPBODY; /* a HEAD response has no body, whatever it announces */
  /* A half-closed client keeps its connection while pipelined requests remain to answer. */
  c->keep_alive = c->keep_alive && c->req_done && !(c->eof && c->in_pos >= c->in_len) &&
                  !u->ctx->closing && !llhttp_message_needs_eof(&u->parser) &&
                  !px__client_drain_closes(c);
  if (c->http10 && px_head_for_http10(&u->head, &c->keep_alive) < 0)
    return -1; /* a chunked response goes to an HTTP/1.0 client de-chunked, then close */
  u->head_sent = 1;
  u->head_pending = 1;
  return 0;
}

static void resp_bad(struct px_upstream *u, const char *why) {
  const struct cfg_addr *a = &u->srv->cfg->addr;
  LBP_WARN("upstream %s:%u: bad response: %s", a->host, a->port, why);
  px_client_send_error(u->c, 502); /* or cuts the response if it already started */
}

/* Writes what is ready: raw bytes, the rewritten head, body bytes up to the parse position. */
static void resp_flush(struct px_upstream *u, int complete, int reusable) {
  struct px_client *c = u->c;
  const char *b = c->out->data;
  uint32_t limit = (u->head.flags & PX_HEAD_DONE) ? c->out_pos : u->head.start;
  uint32_t from = u->head_pending ? u->head.end : c->out_fwd;
  uint32_t body_end =
      (u->head.flags & PX_HEAD_DONE) ? px_head_body(&u->head, (char *)b, from, limit) : limit;
  uv_buf_t iov[PX_HEAD_MAX_IOV + 1];
  int n = 0, rc;

  if (u->head_pending) {
    uv_buf_t tail[2];
    int nt = 0, m;
    if (u->ctx->debug_len)
      tail[nt++] = uv_buf_init(u->ctx->debug_hdr, u->ctx->debug_len);
    /* An HTTP/1.0 client, or an HTTP/1.0 status line, means close unless we say otherwise. */
    if (!c->keep_alive)
      tail[nt++] = uv_buf_init((char *)conn_close, sizeof(conn_close) - 1);
    else if (c->http10 || (u->parser.http_major == 1 && u->parser.http_minor == 0))
      tail[nt++] = uv_buf_init((char *)conn_keep, sizeof(conn_keep) - 1);
    if (u->head.start > c->out_fwd)
      iov[n++] = uv_buf_init((char *)b + c->out_fwd, u->head.start - c->out_fwd);
    m = px_head_iov(&u->head, NULL, tail, nt, body_end - u->head.end, iov + n, PX_HEAD_MAX_IOV - n);
    if (m < 0) {
      resp_bad(u, "head too complex");
      return;
    }
    n += m;
    u->head_pending = 0;
  } else if (body_end > c->out_fwd) {
    iov[n++] = uv_buf_init((char *)b + c->out_fwd, body_end - c->out_fwd);
  }
  c->out_fwd = limit;
  rc = 1;
  if (!complete)
    px__client_nodelay(c); /* more writes will follow this one */
  if (n > 0) {
    c->resp_started = 1;
    rc = px_client_write(c, iov, (unsigned)n, complete ? AW_RESPONSE_DONE : AW_RESUME_UPSTREAM);
    if (rc < 0)
      return; /* the client is closed, and this upstream with it */
  }
  if (complete) {
    up_detach(u, reusable);
    px_client_response_complete(c);
  } else if (rc == 0) {
    /* The client is slow: wait for it, and do not blame the upstream meanwhile. */
    uv_read_stop((uv_stream_t *)&u->tcp);
    uv_timer_stop(&u->timer);
  } else {
    out_rebase(u);
  }
}

static void resp_process(struct px_upstream *u) {
  struct px_client *c = u->c;
  const char *b = c->out->data;
  int complete = 0, reusable = 0;

  u->head.base = b;
  for (;;) {
    llhttp_errno_t err =
        px_head_execute(&u->parser, &u->head, b + c->out_pos, c->out_len - c->out_pos);
    uint32_t pos;

    if (err == HPE_OK) {
      c->out_pos = c->out_len;
      break;
    }
    if (err != HPE_PAUSED) {
      resp_bad(u, u->head.why ? u->head.why : llhttp_errno_name(err));
      return;
    }
    pos = (uint32_t)(llhttp_get_error_pos(&u->parser) - b);
    c->out_pos = pos;
    if (!(u->head.flags & PX_HEAD_DONE)) {
      llhttp_resume(&u->parser);
      if (resp_head(u, pos) < 0) {
        resp_bad(u, u->head.why ? u->head.why : "unusable head");
        return;
      }
      continue;
    }
    /* Message complete. Keep-alive must be read before the parser moves on. */
    if (llhttp_get_status_code(&u->parser) < 200) {
      llhttp_resume(&u->parser);
      px_head_reset(&u->head, b, 0, pos); /* the final head follows */
      continue;
    }
    reusable = llhttp_should_keep_alive(&u->parser) && pos == c->out_len && c->req_done;
    llhttp_resume(&u->parser);
    complete = 1;
    break;
  }
  if (!complete && !(u->head.flags & PX_HEAD_DONE) && c->out_len >= u->ctx->bufsize) {
    resp_bad(u, "head too large");
    return;
  }
  resp_flush(u, complete, reusable);
}

static void up_eof(struct px_upstream *u, int err) {
  struct px_client *c = u->c;

  if (err == UV_EOF && u->head_sent && llhttp_message_needs_eof(&u->parser)) {
    /* A response delimited by the close: it is complete now. */
    llhttp_errno_t e = llhttp_finish(&u->parser);
    if (e == HPE_OK || e == HPE_PAUSED) {
      c->out_pos = c->out_len;
      resp_flush(u, 1, 0);
      return;
    }
  }
  px_client_upstream_failed(c, err == UV_EOF ? UV_ECONNRESET : err);
}

static void up_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  struct px_upstream *u = s->data;

  if (u->state == PX_U_IDLE) {
    if (nread != 0)
      px_upstream_close(u);
    return;
  }
  if (u->state != PX_U_BUSY || nread == 0)
    return;
  if (nread < 0) {
    up_eof(u, (int)nread);
    return;
  }
  u->got_bytes = 1;
  u->c->out_len += (uint32_t)nread;
  uv_timer_start(&u->timer, up_timer_cb, u->ctx->cfg->timeouts.upstream_response_ms, 0);
  resp_process(u);
}

static int read_start(struct px_upstream *u) {
  return uv_read_start((uv_stream_t *)&u->tcp, up_alloc, up_read_cb);
}

void px_upstream_resume_read(struct px_upstream *u) {
  if (u->state != PX_U_BUSY)
    return;
  out_rebase(u);
  uv_timer_start(&u->timer, up_timer_cb, u->ctx->cfg->timeouts.upstream_response_ms, 0);
  if (read_start(u) < 0)
    px_client_upstream_failed(u->c, UV_EPIPE);
}

/* ---- writing requests ---- */

static void up_write_cb(uv_write_t *req, int status) {
  struct px_upstream *u = req->data;

  u->writing = 0;
  if (u->state == PX_U_CLOSING || u->c == NULL)
    return;
  if (status == 0 && !u->c->writing) /* a slow client is not the upstream's fault */
    uv_timer_start(&u->timer, up_timer_cb, u->ctx->cfg->timeouts.upstream_response_ms, 0);
  px_client_request_written(u->c, status);
}

int px_upstream_send(struct px_upstream *u, uv_buf_t *bufs, unsigned n) {
  int rc;

  u->wreq.data = u;
  rc = px_write((uv_stream_t *)&u->tcp, &u->wreq, bufs, n, up_write_cb);
  if (rc < 0) {
    px_client_upstream_failed(u->c, rc);
    return rc;
  }
  if (rc == 0)
    u->writing = 1;
  uv_timer_start(&u->timer, up_timer_cb, u->ctx->cfg->timeouts.upstream_response_ms, 0);
  return rc;
}

/* ---- connecting ---- */

static void up_timer_cb(uv_timer_t *t) {
  struct px_upstream *u = t->data;

  if (u->state == PX_U_IDLE)
    px_upstream_close(u);
  else if (u->state != PX_U_CLOSING && u->c != NULL)
    px_client_upstream_failed(u->c, UV_ETIMEDOUT);
}

static void up_connect_cb(uv_connect_t *req, int status) {
  struct px_upstream *u = req->data;

  if (u->state != PX_U_CONNECTING || u->c == NULL)
    return;
  if (status == 0)
    status = read_start(u);
  if (status < 0) {
    px_client_upstream_failed(u->c, status);
    return;
  }
  uv_tcp_nodelay(&u->tcp, 1);
  uv_timer_stop(&u->timer);
  u->state = PX_U_BUSY;
  px_client_upstream_ready(u->c, u);
}

void px_upstream_acquire(struct px_client *c, struct px_server *srv, int fresh) {
  struct px_ctx *ctx = c->ctx;
  struct px_upstream *u;
  int rc;

  if (!fresh && srv->idle != NULL) {
    u = srv->idle;
    idle_remove(u);
    uv_timer_stop(&u->timer);
    u->state = PX_U_BUSY;
    u->reused = 1;
    attach(u, c);
    px_client_upstream_ready(c, u);
    return;
  }
  u = calloc(1, sizeof(*u));
  if (u == NULL) {
    px_client_send_error(c, 502);
    return;
  }
  u->ctx = ctx;
  u->srv = srv;
  u->state = PX_U_CONNECTING;
  uv_tcp_init(ctx->loop, &u->tcp);
  uv_timer_init(ctx->loop, &u->timer);
  u->tcp.data = u;
  u->timer.data = u;
  u->creq.data = u;
  u->refs = 2;
  ctx->nhandles++;
  u->next = ctx->upstreams;
  if (ctx->upstreams)
    ctx->upstreams->prev = u;
  ctx->upstreams = u;
  attach(u, c);
  rc =
      uv_tcp_connect(&u->creq, &u->tcp, (const struct sockaddr *)&srv->cfg->addr.sa, up_connect_cb);
  if (rc < 0) {
    px_client_upstream_failed(c, rc);
    return;
  }
  uv_timer_start(&u->timer, up_timer_cb, ctx->cfg->timeouts.connect_ms, 0);
}
