/* One request's journey: parse and check its head, route it, get an upstream exchange, forward
 * both ways, decide what a failure means, and end, in one place. The only file that knows both
 * the client connection (through px_request_ops) and the HTTP/1 client (upstream.h). */

/*
 * 1. HEAD: the head is parsed by llhttp in the connection's buffer; px_head (http_head.c) marks
 *    the lines to drop. More than max_header_bytes: 431. Bad syntax, obs-fold, two Host lines,
 *    no Host in HTTP/1.1, Transfer-Encoding in HTTP/1.0: 400. CONNECT: 405. A Content-Length
 *    over max_body_bytes: 413 at once (a chunked body gets it when it crosses the limit).
 * 2. CONNECT: route by Host (or the authority of an absolute-form target) and path; the pool's
 *    balancer picks a server not tried yet; px_up_get gives a pooled or new connection.
 * 3. SEND: the rewritten head (rewrite.c) as iovecs over the received bytes, in one writev with
 *    the body bytes already read; then body bytes raw as they arrive, llhttp saying where the
 *    message ends. One write to the server at a time; meanwhile the connection reads on into
 *    its buffer until it is full.
 * 4. WAIT: response bytes come through on_data and go to the client as they are (the final head
 *    rewritten); while a client write is pending the upstream holds its bytes.
 * 5. Every failure of the exchange enters request_next (nginx's ngx_http_upstream_next): the
 *    table in px_request_decide says retry (same server on a fresh connection after a stale
 *    pooled one, or the next server within the budget, only when it is safe), answer with an
 *    error page, or cut the client.
 * 6. Every request ends in request_end, which logs it (px_ctx_on_request) and tells the
 *    connection how to go on. A 101 turns the connection into a tunnel (tunnel.c).
 */
#include "request.h"

#include "errpage.h"
#include "log.h"
#include "rewrite.h"
#include "router.h"
#include "tunnel.h"

#include <stdlib.h>
#include <string.h>

/* What to do when the pending write to the client completes (px_request.after_write). */
enum { AW_NONE, AW_RESUME, AW_RESPONSE_DONE, AW_ERROR_DONE, AW_TUNNEL };

static void request_error(struct px_request *r, int status);
static int request_next(struct px_request *r, int ft, int err, int http_status);
static void forward(struct px_request *r);
static void connect_server(struct px_request *r, int fresh);

/* ---- the free list ---- */

struct px_request *px_request_new(struct px_ctx *ctx) {
  struct px_request *r = ctx->free_reqs;

  if (r != NULL) {
    ctx->free_reqs = r->next_free;
    ctx->nfree_reqs--;
  } else if ((r = malloc(sizeof(*r))) == NULL) {
    return NULL;
  }
  /* The parser, head, tried set and log are set up when a request starts (start_head): only
   * the connection's fields and what a free must see are cleared here, once per request of
   * a keep-alive connection that went idle in between. */
  memset(r, 0, offsetof(struct px_request, parser));
  r->tunnel = NULL;
  r->up = NULL;
  r->pool = NULL;
  r->ctx = ctx;
  return r;
}

void px_request_free(struct px_request *r) {
  struct px_ctx *ctx = r->ctx;

  if (r->tunnel != NULL)
    px_tunnel_release(r->tunnel);
  if (ctx->nfree_reqs >= PX_REQ_FREE_MAX) {
    free(r);
    return;
  }
  r->next_free = ctx->free_reqs;
  ctx->free_reqs = r;
  ctx->nfree_reqs++;
}

/* ---- the end ---- */

/* How the attempt on the selected server ended, for the balancer's passive health. */
static enum bal_outcome server_outcome(const struct px_request *r) {
  if (r->server_failed)
    return BAL_FAILED;
  return r->log.upstream_status != 0 ? BAL_OK : BAL_CANCELLED; /* answered, or the client's doing */
}

static void release_server(struct px_request *r, enum bal_outcome outcome) {
  if (r->srv == NULL)
    return;
  px_pool_release(r->pool, &r->pick, r->srv, outcome, uv_now(r->ctx->loop));
  px_server_unref(r->srv);
  r->srv = NULL;
}

static void release_upstream(struct px_request *r) {
  if (r->up != NULL) {
    px_up_close(r->up, 0);
    r->up = NULL;
  }
  release_server(r, server_outcome(r));
}

/* The one place a request ends: it lets go of the upstream, is logged, and tells the
 * connection how to go on. */
static void request_end(struct px_request *r, enum px_next next) {
  const struct px_request_ops *ops = r->ops;

  release_upstream(r);
  px__request_log(r, next != PX_NEXT_CUT);
  r->phase = next == PX_NEXT_TUNNEL ? PX_PHASE_TUNNEL : PX_PHASE_DONE;
  ops->end(r, next);
}

void px_request_abort(struct px_request *r) {
  uint8_t phase = r->phase;

  if (r->tunnel != NULL)
    px_tunnel_stop(r->tunnel);
  r->phase = PX_PHASE_DONE;
  if (phase == PX_PHASE_IDLE || phase == PX_PHASE_DONE || phase == PX_PHASE_TUNNEL)
    return;
  release_upstream(r);
  if (phase != PX_PHASE_HEAD) /* a head never completed is nothing to log (or handed over) */
    px__request_log(r, 0);
}

/* ---- writing to the client ---- */

/* 1 written, 0 pending (`then` runs when it completes), -1 the client is gone (ended). */
static int client_write(struct px_request *r, uv_buf_t *iov, unsigned n, uint8_t then) {
  int rc;

  r->log.bytes_out += px_iov_len(iov, n);
  rc = r->ops->write(r, iov, n);
  if (rc < 0) {
    request_end(r, PX_NEXT_CUT);
    return -1;
  }
  if (rc == 0) {
    r->writing = 1;
    r->after_write = then;
  }
  return rc;
}

/* Completes a request that has no body (an empty execute runs llhttp to message complete), so
 * an early answer can keep the connection. Returns 1 if the request is now complete. */
static int finish_bodyless(struct px_request *r) {
  llhttp_errno_t err;

  if (r->req_done)
    return 1;
  if (r->phase != PX_PHASE_CONNECT)
    return 0;
  err = px_head_execute(&r->parser, &r->head, r->in->b->data + r->in->pos, 0);
  if (err == HPE_PAUSED) {
    llhttp_resume(&r->parser);
    r->req_done = 1;
    return 1;
  }
  return 0;
}

/* The connection may carry another request after this one. */
static int may_keep(const struct px_request *r) {
  const struct px_ctx *ctx = r->ctx;

  return r->keep_alive && !ctx->closing &&
         !(ctx->draining && (ctx->handover == NULL || !(r->conn_flags & PX_REQ_HANDOVER))) &&
         !(r->client_eof && r->in->pos >= r->in->len);
}

/* Answers with an error page of our own, or cuts the client if a response already started. */
static void request_error(struct px_request *r, int status) {
  uv_buf_t b;
  int ka, rc;

  if (r->resp_started || r->writing) {
    request_end(r, PX_NEXT_CUT);
    return;
  }
  if (status < 500)
    px__request_log_client(r, status);
  release_upstream(r);
  ka = (status == 404 || status == 502 || status == 503 || status == 504) && may_keep(r) &&
       finish_bodyless(r);
  r->keep_alive = (uint8_t)ka;
  r->phase = PX_PHASE_ERROR;
  r->resp_started = 1;
  r->log.status = status;
  r->ops->wait(r, PX_WAIT_NONE);
  b = px_errpage(status, ka);
  rc = client_write(r, &b, 1, AW_ERROR_DONE);
  if (rc == 1)
    request_end(r, ka ? PX_NEXT_KEEP : PX_NEXT_LINGER);
}

/* ---- the failure funnel ---- */

/* Back to sending the request from its head, on another connection. */
static void rewind_request(struct px_request *r) {
  r->phase = PX_PHASE_CONNECT;
  r->head_pending = 1;
  r->in->fwd = r->head.end;
  r->sent_any = 0;
  r->up_sending = 0;
  r->ops->wait(r, PX_WAIT_NONE);
}

/* nginx's ngx_http_upstream_next: every failure of an exchange comes here (and a 502, 503 or 504
 * the upstream's retry_on names, as PX_NEXT_HTTP_5XX with its status). The connection that
 * failed is the caller's to close (upstream.c closed it already for a failure). Returns 0 if
 * the server's answer is to be passed on after all (PX_DO_PASS), else 1. */
static int request_next(struct px_request *r, int ft, int err, int http_status) {
  struct px_pool *pool = r->pool;
  struct px_next_in in = {
      .ft = ft,
      .http_status = http_status,
      .resp_started = r->resp_started,
      .sent_any = r->sent_any,
      .idempotent = (uint8_t)px_method_idempotent(r->parser.method),
      .replayable = r->replayable,
      .reused = r->up != NULL && px_up_reused(r->up),
      .retried_fresh = r->retried_fresh,
      .attempts = r->tries,
      .retries = pool->retries,
      .retry_on = pool->retry_on,
      .budget_pct = pool->retry_budget_pct,
      .budget = &pool->budget,
      .now_ms = uv_now(r->ctx->loop),
  };
  const char *why = r->up != NULL ? px_up_why(r->up) : NULL;
  int status;
  enum px_next_do what = px_request_decide(&in, &status);

  px__request_count_failure(r->ctx->st, ft, what);
  if (what == PX_DO_PASS)
    return 0;
  r->up = NULL;
  r->server_failed = what != PX_DO_RETRY_FRESH;
  /* uv_strerror allocates (and leaks) a string for a code it does not know, 0 included. */
  if (why == NULL)
    why = err < 0 ? uv_strerror(err) : "no error code";
  px__request_log_failure(r, r->upstream, ft, http_status, why, what, status);
  switch (what) {
  case PX_DO_RETRY_FRESH:
    r->retried_fresh = 1;
    rewind_request(r);
    connect_server(r, 1);
    break;
  case PX_DO_RETRY_NEXT:
    r->log.status = status; /* the answer if no server is left */
    r->log.upstream_status = 0;
    release_server(r, BAL_FAILED);
    r->server_failed = 0;
    rewind_request(r);
    connect_server(r, 0);
    break;
  case PX_DO_ERROR:
    request_error(r, status);
    break;
  default:
    request_end(r, PX_NEXT_CUT);
    break;
  }
  return 1;
}

/* ---- the response ---- */

static void response_done(struct px_request *r) {
  r->up = NULL; /* released: pooled or closed by upstream.c */
  if (!r->req_done) {
    /* The server answered before the whole request came: the rest of it is left to the
     * lingering close. */
    request_end(r, PX_NEXT_LINGER);
    return;
  }
  request_end(r, r->keep_alive ? PX_NEXT_KEEP : PX_NEXT_CLOSE);
}

/* Decides the Connection line of the final response once its head is known. */
static enum px_conn_line response_connection(struct px_request *r, const struct px_up_response *p) {
  r->keep_alive = (uint8_t)(may_keep(r) && r->req_done && !p->until_eof);
  if (!r->keep_alive)
    return PX_CONN_CLOSE;
  return (r->http10 || p->http_minor == 0) ? PX_CONN_KEEP_ALIVE : PX_CONN_NONE;
}

static void tunnel_done(void *arg, int reset) {
  struct px_request *r = arg;

  r->ops->end(r, reset ? PX_NEXT_CUT : PX_NEXT_CLOSE);
}

/* The 101 went out: the client connection and the upstream one become a tunnel. */
static void start_tunnel(struct px_request *r) {
  struct px_ctx *ctx = r->ctx;
  struct px_up *u = r->up;
  struct px_inbuf *in = r->in;
  uv_buf_t rest, early = uv_buf_init(in->b->data + in->pos, in->len - in->pos);
  int rc;

  r->up = NULL;
  release_server(r, BAL_OK);
  request_end(r, PX_NEXT_TUNNEL); /* logged; the connection stops reading and timing */
  px_up_takeover(u, &rest);
  /* Bytes the client sent after its request belong to the tunnel already. */
  rc =
      px_tunnel_start(ctx->loop, &ctx->bufs, (uv_stream_t *)r->tcp, u, &early, &rest,
                      ctx->set.tunnel_idle_ms, ctx->set.client_send_ms, tunnel_done, r, &r->tunnel);
  in->pos = in->len;
  if (rc != 0) {
    r->tunnel = NULL;
    r->ops->end(r, PX_NEXT_CUT);
  }
}

/* A final response head (or a 101): what the client is told about its connection. An HTTP/1.0
 * client gets a chunked body de-chunked and close-delimited (it cannot read the framing).
 * -1 if the head cannot be rewritten. */
static int response_final(struct px_request *r, const struct px_up_response *p,
                          enum px_conn_line *conn) {
  r->log.upstream_status = p->status;
  r->log.upstream_ms = uv_now(r->ctx->loop);
  r->log.upstream_time_us = (uv_hrtime() - r->t_attempt_ns) / 1000;
  r->log.status = p->status;
  if (p->status == 101) {
    *conn = PX_CONN_UPGRADE;
    return 0;
  }
  *conn = response_connection(r, p);
  if (r->http10 && px_head_for_http10(p->head, &r->keep_alive) < 0)
    return -1;
  if (!r->keep_alive)
    *conn = PX_CONN_CLOSE;
  return 0;
}

/* The iovecs of what the upstream delivered: a head (interim ones as they are, the final one
 * rewritten) and body bytes. The count, or -1 for a head that cannot be forwarded. */
static int response_iov(struct px_request *r, struct px_up *u, const struct px_up_response *p,
                        const char *body, size_t len, uv_buf_t *iov) {
  struct px_ctx *ctx = r->ctx;
  uv_buf_t dbg = uv_buf_init(ctx->debug_hdr, ctx->debug_len);
  enum px_conn_line conn;

  if (p != NULL && p->status < 200 && p->status != 101) {
    struct px_head *h = p->head;
    if (r->http10)
      return 0; /* RFC 9110 15.2: no 1xx to an HTTP/1.0 client */
    iov[0] = uv_buf_init((char *)h->base + h->start, h->end - h->start);
    return 1;
  }
  if (p != NULL && response_final(r, p, &conn) < 0)
    return -1;
  if (len > 0) /* de-chunked in place for an HTTP/1.0 client; else as it came */
    len = px_head_body(px_up_head(u), (char *)body, 0, (uint32_t)len);
  if (p != NULL)
    return px_rewrite_response(p->head, conn, ctx->debug_len ? &dbg : NULL, (uint32_t)len, iov,
                               PX_HEAD_MAX_IOV);
  if (len == 0)
    return 0;
  iov[0] = uv_buf_init((char *)body, (unsigned)len);
  return 1;
}

static int up_data(struct px_up *u, const struct px_up_response *p, const char *body, size_t len,
                   int complete) {
  struct px_request *r = px_up_data(u);
  uv_buf_t iov[PX_HEAD_MAX_IOV + 1];
  int n, rc, upgrade = p != NULL && p->status == 101;

  /* A 502, 503 or 504 the upstream's retry_on names is held back: another server may answer. */
  if (p != NULL && p->status >= 502 && p->status <= 504 && !r->resp_started &&
      (r->pool->retry_on & (1u << (BAL_FAIL_HTTP_502 + p->status - 502))) &&
      request_next(r, PX_NEXT_HTTP_5XX, 0, p->status)) {
    px_up_close(u, 0);
    return 0;
  }
  n = response_iov(r, u, p, body, len, iov);
  if (n < 0) {
    request_next(r, PX_UP_BAD_RESPONSE, UV_EPROTO, 0);
    px_up_close(u, 0);
    return 0;
  }
  if (n == 0) {
    if (complete)
      response_done(r);
    return 0;
  }
  r->resp_started = 1;
  rc = client_write(r, iov, (unsigned)n,
                    upgrade    ? AW_TUNNEL
                    : complete ? AW_RESPONSE_DONE
                               : AW_RESUME);
  if (rc < 0)
    return 0; /* ended: the upstream is closed */
  if (rc == 0) {
    r->up_holding = 1;
    return 1;
  }
  if (upgrade)
    start_tunnel(r);
  else if (complete)
    response_done(r);
  return 0;
}

void px_request_written(struct px_request *r, int status) {
  uint8_t then = r->after_write;

  r->writing = 0;
  r->after_write = AW_NONE;
  if (r->phase == PX_PHASE_DONE || r->phase == PX_PHASE_IDLE)
    return;
  if (status < 0) {
    request_end(r, PX_NEXT_CUT);
    return;
  }
  if (r->up_holding && then != AW_TUNNEL) {
    r->up_holding = 0;
    if (then == AW_RESPONSE_DONE) {
      struct px_up *u = r->up;
      r->up = NULL;
      px_up_resume(u); /* pools or closes it */
      response_done(r);
      return;
    }
    px_up_resume(r->up); /* may deliver more at once, and end the request */
    return;
  }
  switch (then) {
  case AW_ERROR_DONE:
    request_end(r, r->keep_alive ? PX_NEXT_KEEP : PX_NEXT_LINGER);
    break;
  case AW_TUNNEL:
    r->up_holding = 0;
    start_tunnel(r);
    break;
  default:
    break;
  }
}

/* ---- the upstream exchange ---- */

static void up_ready(struct px_up *u) {
  struct px_request *r = px_up_data(u);

  r->phase = PX_PHASE_SEND;
  forward(r);
}

static void up_sent(struct px_up *u, int status) {
  struct px_request *r = px_up_data(u);

  r->up_sending = 0;
  if (status < 0) {
    /* The server stopped reading (it answers early): send nothing more; the rest of the
     * request is left to the lingering close after the response. */
    r->keep_alive = 0;
    r->phase = PX_PHASE_WAIT;
    return;
  }
  forward(r);
}

static void up_error(struct px_up *u, enum px_up_fail ft, int err) {
  request_next(px_up_data(u), ft, err, 0);
}

static const struct px_up_cbs request_up_cbs = {
    .on_ready = up_ready,
    .on_sent = up_sent,
    .on_data = up_data,
    .on_error = up_error,
};

/* Gets a connection: the same server on a fresh one (`fresh`), or the next untried server. */
static void connect_server(struct px_request *r, int fresh) {
  unsigned flags = 0;
  struct px_up *u;
  int rc;

  if (!fresh) {
    uint64_t now = uv_now(r->ctx->loop);
    uint64_t key = px_pool_uses_key(r->pool)
                       ? px_pool_key(r->pool, r->peer + 2, r->peer_len - 2u, &r->head)
                       : BAL_NO_KEY;
    rc = px_pool_select(r->pool, &r->tried, key, now, &r->pick, &r->srv);
    if (rc < 0) {
      /* None usable: 503; all tried: the last failure's answer. */
      int status = rc == UV_EALREADY && r->log.status != 0 ? r->log.status
                   : rc == UV_EALREADY                     ? 502
                                                           : 503;
      px__request_log_unserved(r, rc, status);
      request_error(r, status);
      return;
    }
    px_server_ref(r->srv); /* held with the pick: a retry on a fresh connection needs it */
    memcpy(r->upstream, r->srv->name, sizeof(r->upstream));
    r->log.upstream = r->upstream;
    if (r->tries++ == 0)
      bal_budget_request(&r->pool->budget, now); /* the budget counts requests, not attempts */
  }
  r->t_attempt_ns = uv_hrtime();
  flags |= fresh ? PX_UP_FRESH : 0;
  /* A request that could not be sent twice only goes on a connection not known to be
   * closing. */
  if (!px_method_idempotent(r->parser.method) || !r->replayable)
    flags |= PX_UP_CHECK;
  flags |= r->parser.method == HTTP_HEAD ? PX_UP_HEAD : 0;
  flags |= r->upgrade ? PX_UP_UPGRADE : 0;
  rc = px_up_get(&r->ctx->up, r->srv, flags, &request_up_cbs, r, &u);
  if (rc < 0) {
    request_next(r, PX_UP_CONNECT, rc, 0);
    return;
  }
  r->up = u;
  if (rc == 1)
    up_ready(u);
}

/* ---- forwarding the request ---- */

/* Runs the parser over body bytes; sets req_done at the end of the message. 0, or the status
 * to answer with (400, 413). */
static int parse_body(struct px_request *r) {
  struct px_inbuf *in = r->in;
  const char *b = in->b->data;
  llhttp_errno_t err;

  if (r->req_done || in->pos == in->len)
    return 0;
  err = px_head_execute(&r->parser, &r->head, b + in->pos, in->len - in->pos);
  if (err == HPE_OK) {
    r->log.bytes_in += in->len - in->pos;
    in->pos = in->len;
    return 0;
  }
  if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
    uint32_t pos = (uint32_t)(llhttp_get_error_pos(&r->parser) - b);
    r->log.bytes_in += pos - in->pos;
    in->pos = pos;
    if (err == HPE_PAUSED)
      llhttp_resume(&r->parser);
    r->req_done = 1;
    return 0;
  }
  r->why = r->head.why != NULL ? r->head.why : px_hpe_why(err);
  return (r->head.flags & PX_HEAD_BODY_LIMIT) ? 413 : 400;
}

/* The host the client asked for, and the fields of the forwarded head. */
static void fwd_info(struct px_request *r, struct px_fwd *f) {
  const char *b = r->in->b->data;
  const struct px_route *rt = r->route;

  memset(f, 0, sizeof(*f));
  f->peer = r->peer;
  f->peer_len = r->peer_len;
  if (r->host_from_target) {
    f->orig_host = b + r->authority.off;
    f->orig_host_len = r->authority.len;
    f->new_host = f->orig_host;
    f->new_host_len = f->orig_host_len;
    f->path_off = r->authority.off + r->authority.len;
  } else {
    if (r->head.flags & PX_HEAD_HAS_HOST) {
      f->orig_host = b + r->head.host.off;
      f->orig_host_len = r->head.host.len;
    }
    f->path_off = r->head.url.off;
  }
  if (rt->set_host != NULL) {
    f->new_host = rt->set_host;
    f->new_host_len = rt->set_host_len;
  }
  f->strip = r->strip;
  f->forwarded = r->ctx->set.forwarded;
  f->http10 = r->http10;
  f->upgrade = r->upgrade;
}

/* What went upstream so far is written: wait for more of the request, or for the response. */
static void sent(struct px_request *r) {
  struct px_inbuf *in = r->in;

  if (r->req_done) {
    px_up_request_done(r->up);
    r->phase = PX_PHASE_WAIT;
    r->ops->wait(r, PX_WAIT_NONE);
    return;
  }
  if (in->pos == in->len && in->fwd == in->len && in->len > r->head.end) {
    /* Everything read so far is out: reuse the buffer after the head (kept for the log). The
     * body bytes are gone from it, so this request can no longer be sent again. */
    in->len = in->pos = in->fwd = r->head.end;
    r->replayable = 0;
    r->ops->read_more(r);
  }
  r->ops->wait(r, PX_WAIT_BODY);
}

static void forward(struct px_request *r) {
  struct px_inbuf *in = r->in;
  uv_buf_t iov[PX_HEAD_MAX_IOV];
  int n, rc, bad;

  if (r->up == NULL || r->up_sending || r->phase != PX_PHASE_SEND)
    return;
  if ((bad = parse_body(r)) != 0) {
    request_error(r, bad);
    return;
  }
  if (r->head_pending) {
    struct px_fwd f;
    fwd_info(r, &f);
    n = px_rewrite_request(&r->head, &f, in->pos - r->head.end, iov, PX_HEAD_MAX_IOV);
    if (n < 0) {
      request_error(r, 400);
      return;
    }
    r->head_pending = 0;
  } else if (in->pos > in->fwd) {
    iov[0] = uv_buf_init(in->b->data + in->fwd, in->pos - in->fwd);
    n = 1;
  } else {
    sent(r);
    return;
  }
  in->fwd = in->pos;
  r->sent_any = 1;
  rc = px_up_send(r->up, iov, (unsigned)n);
  if (rc == 1) {
    sent(r);
  } else if (rc == 0) {
    r->up_sending = 1;
    r->ops->wait(r, PX_WAIT_NONE); /* the server is slow to take it, not the client */
  } else if (px_up_response_started(r->up)) {
    r->keep_alive = 0; /* the response keeps coming; the rest of the request is not sent */
    r->phase = PX_PHASE_WAIT;
  } else {
    request_next(r, PX_UP_WRITE, rc, 0); /* px_up_send closed it */
  }
}

/* ---- the head ---- */

/* Checks a complete request head; the status of the error page to send, or 0. */
static int check_request(struct px_request *r, uint32_t end) {
  const char *u = r->in->b->data + r->head.url.off;
  uint64_t max_body = r->ctx->set.max_body_bytes;

  if (px_head_complete(&r->head, end) < 0 || (r->head.flags & PX_HEAD_DUP_HOST)) {
    r->why = r->head.why != NULL ? r->head.why : "two Host lines";
    return 400; /* obs-fold, too many hop-by-hop lines, two Host lines */
  }
  r->http10 = r->parser.http_major == 1 && r->parser.http_minor == 0;
  if (r->parser.method == HTTP_CONNECT)
    return 405;
  if (r->head.url.len > 0 && u[0] != '/' && !(r->head.url.len == 1 && u[0] == '*')) {
    if (px_head_absolute_target(&r->head, &r->authority) < 0) {
      r->why = "a malformed absolute-form target";
      return 400;
    }
    r->host_from_target = 1;
  }
  if (!(r->head.flags & PX_HEAD_HAS_HOST) && !r->http10 && !r->host_from_target) {
    r->why = "an HTTP/1.1 request without Host";
    return 400; /* RFC 9112 3.2: HTTP/1.1 requires Host */
  }
  if (r->http10 && (r->parser.flags & (F_CHUNKED | F_TRANSFER_ENCODING))) {
    r->why = "Transfer-Encoding in an HTTP/1.0 request";
    return 400; /* RFC 9112 6.1: Transfer-Encoding in HTTP/1.0 is faulty framing */
  }
  if (max_body > 0 && (r->parser.flags & F_CONTENT_LENGTH) && r->parser.content_length > max_body)
    return 413; /* at once: no body byte is read for nothing, no 100 Continue is sent */
  r->head.body_max = max_body;
  return 0;
}

/* Routes the request; 0, or 404. */
static int route_request(struct px_request *r) {
  const struct px_listener *l = &r->ctx->listeners[r->listener];
  const char *b = r->in->b->data;
  const struct px_span *host = r->host_from_target ? &r->authority : &r->head.host;
  int has_host = r->host_from_target || (r->head.flags & PX_HEAD_HAS_HOST);
  int i = px_route_in(l->cfg_routes, l->nroutes, has_host ? b + host->off : NULL, host->len,
                      b + r->head.url.off, r->head.url.len);

  if (i < 0)
    return 404;
  r->route = &l->routes[i];
  r->pool = r->route->pool;
  r->strip = r->route->strip;
  return 0;
}

static void on_head(struct px_request *r, uint32_t end) {
  int bad;

  r->ops->wait(r, PX_WAIT_NONE);
  bad = check_request(r, end);
  r->keep_alive = (uint8_t)llhttp_should_keep_alive(&r->parser);
  r->upgrade = r->parser.upgrade && r->parser.method == HTTP_GET;
  r->phase = PX_PHASE_CONNECT;
  if (bad == 0)
    bad = route_request(r);
  if (bad != 0) {
    request_error(r, bad);
    return;
  }
  finish_bodyless(r);
  r->head_pending = 1;
  r->replayable = 1;
  r->in->fwd = r->head.end;
  bal_tried_clear(&r->tried);
  r->ctx->counters.requests++;
  connect_server(r, 0);
}

static void start_head(struct px_request *r) {
  struct px_inbuf *in = r->in;

  /* The connection's fields stay; the request's own start over. */
  memset(&r->phase, 0, offsetof(struct px_request, parser) - offsetof(struct px_request, phase));
  r->pool = NULL;
  r->route = NULL;
  r->up = NULL;
  memset(&r->log, 0, sizeof(r->log));
  r->log.start_ms = uv_now(r->ctx->loop);
  r->t_start_ns = uv_hrtime();
  r->phase = PX_PHASE_HEAD;
  llhttp_init(&r->parser, HTTP_REQUEST, &px_request_settings);
  r->parser.data = &r->head;
  px_head_reset(&r->head, in->b->data, 1, in->pos);
  r->ops->wait(r, PX_WAIT_HEAD);
}

static void parse_head(struct px_request *r) {
  struct px_inbuf *in = r->in;
  const char *b = in->b->data;
  uint64_t limit = r->ctx->set.max_header_bytes;
  llhttp_errno_t err;
  uint32_t pos;

  r->head.base = b;
  err = px_head_execute(&r->parser, &r->head, b + in->pos, in->len - in->pos);
  if (err == HPE_OK) {
    r->log.bytes_in += in->len - in->pos;
    in->pos = in->len;
    if (in->len - r->head.start > limit)
      request_error(r, 431);
    else if (r->client_eof)
      request_end(r, PX_NEXT_CLOSE); /* half a head, and the client has said it is done */
    return;
  }
  if (err != HPE_PAUSED) {
    r->why = r->head.why != NULL ? r->head.why : px_hpe_why(err);
    request_error(r, 400);
    return;
  }
  pos = (uint32_t)(llhttp_get_error_pos(&r->parser) - b);
  llhttp_resume(&r->parser);
  r->log.bytes_in += pos - in->pos;
  in->pos = pos;
  if (pos - r->head.start > limit) {
    request_error(r, 431);
    return;
  }
  on_head(r, pos);
}

/* ---- events from the connection ---- */

void px_request_input(struct px_request *r) {
  switch (r->phase) {
  case PX_PHASE_IDLE:
  case PX_PHASE_DONE: /* a keep-alive connection's next request */
    start_head(r);
    parse_head(r);
    break;
  case PX_PHASE_HEAD:
    parse_head(r);
    break;
  case PX_PHASE_SEND:
    forward(r);
    break;
  default:
    break; /* not our turn (a pipelined request, body bytes before the connection is ready) */
  }
}

void px_request_eof(struct px_request *r) {
  r->client_eof = 1;
  switch (r->phase) {
  case PX_PHASE_HEAD:
    request_end(r, PX_NEXT_CLOSE); /* half a head: nothing to answer */
    break;
  case PX_PHASE_CONNECT:
  case PX_PHASE_SEND:
  case PX_PHASE_WAIT:
    if (!r->req_done)
      request_end(r, PX_NEXT_CUT); /* the rest of the body will never come */
    break;
  default:
    break;
  }
}

void px_request_timeout(struct px_request *r) {
  px_stat_add(&r->ctx->st->c[PX_ST_CLIENT_TIMEOUTS], 1);
  if (r->phase == PX_PHASE_HEAD) {
    request_error(r, 408);
    return;
  }
  r->log.status = r->resp_started ? r->log.status : 408;
  request_end(r, PX_NEXT_CUT); /* a client stalled in the middle of its body */
}
