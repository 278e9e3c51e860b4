/* The failure funnel's decision (nginx's ngx_http_upstream_next as a table): retry, error page or
 * cut, by failure type, safety and budget. Pure, so it is tested alone; request.c acts on it. */
#include "request.h"

int px_method_idempotent(uint8_t m) {
  return m == HTTP_GET || m == HTTP_HEAD || m == HTTP_OPTIONS || m == HTTP_PUT ||
         m == HTTP_DELETE || m == HTTP_TRACE;
}

enum px_next_do px_request_decide(const struct px_next_in *in, int *status) {
  int safe = 0;

  *status = 502;
  if (in->resp_started)
    return PX_DO_CUT; /* part of the response is out: all we can do is cut it */
  switch (in->ft) {
  case PX_UP_CONNECT:
    safe = 1; /* nothing reached the server */
    break;
  case PX_UP_CONNECT_TIMEOUT:
    *status = 504;
    safe = 1;
    break;
  case PX_UP_WRITE:
  case PX_UP_CLOSED:
    /* Sent, but the server said nothing: only a request that may run twice (or that never
     * reached it) may go again, and only if we can still send all of it. */
    safe = (!in->sent_any || in->idempotent) && in->replayable;
    if (safe && in->reused && !in->retried_fresh)
      return PX_DO_RETRY_FRESH; /* most likely a pooled connection the server had just closed */
    break;
  case PX_UP_TIMEOUT:
    *status = 504; /* a slow server stays slow: retrying would double its load */
    break;
  default: /* a bad or truncated response: the server did answer */
    break;
  }
  return safe && in->tries_left ? PX_DO_RETRY_NEXT : PX_DO_ERROR;
}
