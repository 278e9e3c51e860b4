/* The end of a request as counters and logs see it: the worker's counters, the record for the
 * access log, and the error log's lines about failed requests (rate-limited). */
#include "request.h"

#include "log.h"

#include <stdio.h>

void px__request_log(struct px_request *r, int complete) {
  struct px_ctx *ctx = r->ctx;
  struct px_request_log *l = &r->log;
  const struct px_buf *b = r->in->b;

  l->end_ms = uv_now(ctx->loop);
  l->time_us = (uv_hrtime() - r->t_start_ns) / 1000;
  l->complete = (uint8_t)complete;
  if (!complete && r->resp_started)
    px_stat_add(&ctx->st->c[PX_ST_CUT], 1);
  px__ctx_count_request(ctx, l);
  if (ctx->log_fn == NULL)
    return;
  l->listener = r->listener;
  l->client = r->peer + 2;
  l->tries = r->tries;
  if (b != NULL && r->head.start <= r->in->len) {
    l->head = b->data + r->head.start;
    l->head_len = ((r->head.flags & PX_HEAD_DONE) ? r->head.end : r->in->len) - r->head.start;
  }
  if (r->head.flags & PX_HEAD_DONE) {
    l->method = llhttp_method_name((llhttp_method_t)r->parser.method);
    l->http_minor = r->parser.http_minor;
    l->target = b != NULL ? b->data + r->head.url.off : NULL;
    l->target_len = l->target != NULL ? r->head.url.len : 0;
  }
  ctx->log_fn(ctx->log_arg, l);
}

void px__request_count_failure(struct px_stats *st, int ft, enum px_next_do what) {
  if (ft == PX_UP_CONNECT || ft == PX_UP_CONNECT_TIMEOUT)
    px_stat_add(&st->c[PX_ST_CONNECT_ERRORS], 1);
  else if (ft == PX_UP_TIMEOUT)
    px_stat_add(&st->c[PX_ST_UPSTREAM_TIMEOUTS], 1);
  if (what == PX_DO_RETRY_NEXT)
    px_stat_add(&st->c[PX_ST_RETRIES], 1);
}

void px__request_log_failure(const struct px_request *r, const char *server, int ft,
                             int http_status, const char *why, enum px_next_do what, int status) {
  const char *pool = r->pool->name, *client = r->peer + 2;
  char then[64];

  switch (what) {
  case PX_DO_RETRY_NEXT:
    snprintf(then, sizeof(then), "retrying on another server");
    break;
  case PX_DO_ERROR:
    snprintf(then, sizeof(then), "%d sent", status);
    break;
  case PX_DO_CUT:
    snprintf(then, sizeof(then), "response cut (it had started)");
    break;
  default:
    return; /* a stale pooled connection retried, or the server's own 5xx passed on */
  }
  if (ft == PX_NEXT_HTTP_5XX)
    LBP_WARN_RL("upstream %s (pool %s): answered %d: %s; client %s", server, pool, http_status,
                then, client);
  else
    LBP_WARN_RL("upstream %s (pool %s): %s: %s; client %s: %s", server, pool,
                px_up_fail_name((enum px_up_fail)ft), why, client, then);
}

void px__request_log_unserved(const struct px_request *r, int rc, int status) {
  LBP_WARN_RL("pool %s: %s; client %s: %d sent", r->pool->name,
              rc == UV_EALREADY ? "every usable server was tried" : "no usable server", r->peer + 2,
              status);
}

void px__request_log_client(const struct px_request *r, int status) {
  static const char *const why[] = {[400 - 400] = "a malformed request",
                                    [404 - 400] = "no route for its host and path",
                                    [405 - 400] = "CONNECT is not proxied",
                                    [408 - 400] = "too slow sending its request",
                                    [413 - 400] = "its body is over max_body_bytes",
                                    [431 - 400] = "its head is over max_header_bytes"};
  const char *w = r->why;

  if (w == NULL && status >= 400 && status - 400 < (int)(sizeof(why) / sizeof(why[0])))
    w = why[status - 400];
  LBP_INFO_RL("client %s: %d sent: %s", r->peer + 2, status, w != NULL ? w : "refused");
}
