/* The failure funnel's decision (nginx's ngx_http_upstream_next as a table): retry, error page,
 * cut or pass, by failure type, safety and the upstream's retry policy. Pure but for the retry
 * budget it is given, so it is tested alone; request.c acts on it. */
#include "request.h"

int px_method_idempotent(uint8_t m) {
  return m == HTTP_GET || m == HTTP_HEAD || m == HTTP_OPTIONS || m == HTTP_PUT ||
         m == HTTP_DELETE || m == HTTP_TRACE;
}

/* The failure in the retry_on vocabulary (-1: none, never retried) and the answer if there is
 * no retry. */
static int classify(const struct px_next_in *in, int *status) {
  *status = 502;
  switch (in->ft) {
  case PX_UP_CONNECT:
    return BAL_FAIL_CONNECT;
  case PX_UP_CONNECT_TIMEOUT:
    *status = 504;
    return BAL_FAIL_CONNECT;
  case PX_UP_WRITE:
  case PX_UP_CLOSED:
    return BAL_FAIL_RESET;
  case PX_UP_TIMEOUT:
    *status = 504;
    return BAL_FAIL_TIMEOUT;
  case PX_NEXT_HTTP_5XX:
    *status = in->http_status;
    return BAL_FAIL_HTTP_502 + (in->http_status - 502);
  default: /* a bad or truncated response: the server did answer */
    return -1;
  }
}

enum px_next_do px_request_decide(const struct px_next_in *in, int *status) {
  int f = classify(in, status);
  struct bal_retry_facts facts;

  if (in->resp_started)
    return PX_DO_CUT; /* part of the response is out: all we can do is cut it */
  if (f == BAL_FAIL_RESET && in->reused && !in->retried_fresh && in->replayable &&
      (!in->sent_any || in->idempotent))
    return PX_DO_RETRY_FRESH; /* most likely a pooled connection the server had just closed */
  if (f >= 0) {
    facts = (struct bal_retry_facts){.failure = (enum bal_failure)f,
                                     .attempts = in->attempts,
                                     .idempotent = in->idempotent,
                                     .request_sent = in->sent_any,
                                     .body_gone = !in->replayable,
                                     .response_started = in->resp_started};
    if (bal_retry_decide(&facts, in->retries, in->retry_on, in->budget, in->budget_pct,
                         in->now_ms) == BAL_RETRY)
      return PX_DO_RETRY_NEXT;
  }
  return in->ft == PX_NEXT_HTTP_5XX ? PX_DO_PASS : PX_DO_ERROR;
}
