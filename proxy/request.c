/* One request's journey: parse and check its head, route it, forward it, handle upstream events. */

/*
 * 1. The head is parsed by llhttp into the client's buffer; px_head (http_head.c) marks the
 *    lines to drop. More than max_header_bytes before the blank line: 431. Bad syntax, obs-fold,
 *    two Host lines, no Host in HTTP/1.1, Transfer-Encoding in HTTP/1.0: 400. CONNECT: 405.
 * 2. Route by Host (or by the authority of an absolute-form target, which then replaces the
 *    Host line) and path; pick a server with the pool's balancer, skipping servers tried.
 * 3. Forward: the rewritten head as iovecs over the received bytes, in one writev with the body
 *    bytes already read; then body bytes raw as they arrive, llhttp saying where it ends.
 * 4. Failures before any response byte went out get an error page: 502 (no server could be
 *    reached, a broken response), 503 (no server available), 504 (timeout). An idempotent
 *    request that met a pooled connection the server had just closed is retried once.
 */
#include "px.h"

#include "log.h"
#include "router.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void client_forward(struct px_client *c);
static int parse_body(struct px_client *c);

/* Completes a request that has no body (an empty execute runs llhttp to message complete), so
 * an error page can keep the connection. Returns 1 if the request is now complete. */
int px__request_finish_bodyless(struct px_client *c) {
  llhttp_errno_t err;

  if (c->req_done)
    return 1;
  if (c->state != PX_C_CONNECT)
    return 0;
  err = px_head_execute(&c->parser, &c->head, c->in->data + c->in_pos, 0);
  if (err == HPE_PAUSED) {
    llhttp_resume(&c->parser);
    c->req_done = 1;
    return 1;
  }
  return 0;
}

/* ---- routing and upstream selection ---- */

/* The value of the first header line named `name` in the request head, trimmed and hashed;
 * BAL_NO_KEY when there is none. The head passed the strict checks: lines end with CRLF. */
static uint64_t header_key(const struct px_client *c, const char *name) {
  const char *p = c->in->data + c->head.start, *end = c->in->data + c->head.end, *eol;
  size_t nlen = strlen(name);

  eol = memchr(p, '\n', (size_t)(end - p)); /* the request line */
  for (p = eol != NULL ? eol + 1 : end; p < end; p = eol + 1) {
    const char *v, *ve;
    if ((eol = memchr(p, '\n', (size_t)(end - p))) == NULL)
      break;
    if ((size_t)(eol - p) <= nlen || p[nlen] != ':' || strncasecmp(p, name, nlen) != 0)
      continue;
    v = p + nlen + 1;
    for (ve = eol; ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'); ve--)
      ;
    while (v < ve && (*v == ' ' || *v == '\t'))
      v++;
    return bal_hash_key(v, (size_t)(ve - v));
  }
  return BAL_NO_KEY;
}

/* The request's balancing key for a pool that hashes one (hash_key), else BAL_NO_KEY. */
static uint64_t request_key(const struct px_client *c) {
  const struct cfg_upstream *up = c->pool->cfg;

  if (!(c->pool->bal.ops->flags & BAL_USES_KEY))
    return BAL_NO_KEY;
  switch (up->hash_key) {
  case CFG_HASH_KEY_CLIENT_IP:
    return c->peer_len > 2 ? bal_hash_key(c->peer + 2, c->peer_len - 2u) : BAL_NO_KEY;
  case CFG_HASH_KEY_URI:
    return bal_hash_key(c->in->data + c->head.url.off, c->head.url.len);
  case CFG_HASH_KEY_HEADER:
    return header_key(c, up->hash_header);
  default:
    return BAL_NO_KEY;
  }
}

static void select_and_connect(struct px_client *c, int fresh) {
  int rc;

  if (fresh) { /* retry on a new connection to the same server */
    px_upstream_acquire(c, &c->pool->servers[c->server], 1);
    return;
  }
  rc = bal_select(&c->pool->bal, &c->tried, request_key(c), uv_now(c->ctx->loop), &c->pick);
  if (rc < 0) {
    /* -EALREADY: every usable server failed this request; else none is usable. */
    c->server = -1;
    px_client_send_error(c, rc == -EALREADY ? 502 : 503);
    return;
  }
  c->server = c->pick.idx;
  px_upstream_acquire(c, &c->pool->servers[c->server], 0);
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
  c->keep_alive = (uint8_t)llhttp_should_keep_alive(&c->parser) && !px__client_drain_closes(c);
  c->state = PX_C_CONNECT;
  px__request_finish_bodyless(c);
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

void px__request_head(struct px_client *c) {
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
    px__client_timer(c, c->ctx->cfg->timeouts.client_header_ms);
  }
  c->head.base = b;
  err = px_head_execute(&c->parser, &c->head, b + c->in_pos, c->in_len - c->in_pos);
  if (err == HPE_OK) {
    c->in_pos = c->in_len;
    if (c->in_len - c->head.start > limit)
      px_client_send_error(c, 431);
    else if (c->eof)
      px_client_close(c); /* half a head, and the client has said it is done */
    else
      px__client_read_start(c);
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
  err = px_head_execute(&c->parser, &c->head, b + c->in_pos, c->in_len - c->in_pos);
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
      px__client_read_start(c);
    else
      px__client_read_stop(c); /* no room for a pipelined request until this one is answered */
    return;
  }
  if (c->in_pos == c->in_len && c->fwd_pos == c->in_len) {
    /* Everything read so far is out: reuse the buffer from its start. The head is gone from
     * it now, so this request can no longer be retried. */
    c->in_len = c->in_pos = c->fwd_pos = 0;
    c->retried = 1;
  }
  px__client_read_start(c);
  px__client_timer(c, c->ctx->cfg->timeouts.client_idle_ms);
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
    px__client_read_stop(c); /* the buffer is in use until px_client_request_written */
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
  uv_timer_stop(&c->timer);
  px__request_body(c);
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
    px__client_release_server(c, BAL_FAILED);
  }
  if (was_connecting) {
    select_and_connect(c, 0); /* the next untried server, or 502 */
    return;
  }
  px_client_send_error(c, err == UV_ETIMEDOUT ? 504 : 502);
}

void px_client_response_complete(struct px_client *c) {
  px__client_release_server(c, BAL_OK);
  if (c->state == PX_C_BODY) {
    /* The upstream answered before the whole request arrived: no more forwarding (there is
     * no upstream any more); the rest of the request is left to the lingering close. */
    c->keep_alive = 0;
    c->state = PX_C_WAIT;
    px__client_read_stop(c);
  }
  if (c->writing)
    c->after_write = AW_RESPONSE_DONE;
  else
    px__client_next(c);
}

void px__request_body(struct px_client *c) {
  if (parse_body(c) < 0) {
    px_client_send_error(c, 400);
    return;
  }
  client_forward(c);
}
