/* Retries: the budget per upstream over a sliding window, and the one decision to retry or not. */
#include "balancer.h"

#include <string.h>

/*
 * The budget keeps requests and retries in BAL_BUDGET_SLOTS slots of equal length covering
 * BAL_BUDGET_WINDOW_MS. Slots start at multiples of their length, so the window slides one
 * slot at a time and old counts leave it whole (Finagle's RetryBudget and Envoy's retry budget
 * have the same intent: when a whole pool fails, retries stop multiplying its load). A retry
 * is allowed while retries in the window stay within `percent` % of the requests in it, or
 * within BAL_BUDGET_MIN_RETRIES, whichever is larger.
 */

#define SLOT_MS (BAL_BUDGET_WINDOW_MS / BAL_BUDGET_SLOTS)

/* Moves the newest slot up to now, clearing the slots that fell out of the window. */
static void advance(struct bal_budget *b, uint64_t now_ms) {
  uint64_t start = now_ms - now_ms % SLOT_MS, steps;

  if (start <= b->slot_start_ms)
    return; /* the same slot (or a clock that went back: stay there) */
  steps = (start - b->slot_start_ms) / SLOT_MS;
  if (steps >= BAL_BUDGET_SLOTS) {
    memset(b->requests, 0, sizeof(b->requests));
    memset(b->retries, 0, sizeof(b->retries));
  } else {
    for (uint64_t k = 0; k < steps; k++) {
      b->newest = (b->newest + 1) % BAL_BUDGET_SLOTS;
      b->requests[b->newest] = 0;
      b->retries[b->newest] = 0;
    }
  }
  b->slot_start_ms = start;
}

void bal_budget_request(struct bal_budget *b, uint64_t now_ms) {
  advance(b, now_ms);
  if (b->requests[b->newest] < UINT32_MAX)
    b->requests[b->newest]++;
}

int bal_budget_retry(struct bal_budget *b, unsigned percent, uint64_t now_ms) {
  uint64_t requests = 0, retries = 0, allowed;

  advance(b, now_ms);
  for (unsigned k = 0; k < BAL_BUDGET_SLOTS; k++) {
    requests += b->requests[k];
    retries += b->retries[k];
  }
  allowed = requests * percent / 100;
  if (allowed < BAL_BUDGET_MIN_RETRIES)
    allowed = BAL_BUDGET_MIN_RETRIES;
  if (retries >= allowed || b->retries[b->newest] == UINT32_MAX)
    return 0;
  b->retries[b->newest]++;
  return 1;
}

enum bal_retry_verdict bal_retry_decide(const struct bal_retry_facts *f, unsigned retries,
                                        unsigned retry_on, struct bal_budget *budget,
                                        unsigned budget_pct, uint64_t now_ms) {
  if (f->response_started)
    return BAL_RETRY_TOO_LATE;
  if (!(retry_on & (1u << f->failure)))
    return BAL_RETRY_NOT_ON;
  if (f->attempts > retries)
    return BAL_RETRY_EXHAUSTED;
  /* A request whose body went out cannot be sent again; a non-idempotent one that reached
   * the server at all may have been acted on (nginx's rule for POST, LOCK, PATCH). */
  if (f->body_gone || (!f->idempotent && f->request_sent))
    return BAL_RETRY_UNSAFE;
  if (!bal_budget_retry(budget, budget_pct, now_ms))
    return BAL_RETRY_NO_BUDGET;
  return BAL_RETRY;
}

const char *bal_retry_verdict_name(enum bal_retry_verdict v) {
  switch (v) {
  case BAL_RETRY:
    return "retry";
  case BAL_RETRY_NOT_ON:
    return "not in retry_on";
  case BAL_RETRY_EXHAUSTED:
    return "retries exhausted";
  case BAL_RETRY_UNSAFE:
    return "not safe to send again";
  case BAL_RETRY_TOO_LATE:
    return "response already started";
  case BAL_RETRY_NO_BUDGET:
    return "retry budget spent";
  }
  return "?";
}
