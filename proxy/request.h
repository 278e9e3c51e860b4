/* One HTTP request's journey, between a client connection (client.c, through callbacks) and an
 * upstream exchange (upstream.c): the only part of the data plane that knows both sides. */
#ifndef LBP_REQUEST_H
#define LBP_REQUEST_H

#include "px.h"

/* Request bytes read from the client; owned by the connection, parsed by the request. */
struct px_inbuf {
  struct px_buf *b;
  uint32_t len; /* bytes read */
  uint32_t pos; /* parsed: when a request is over, the next one starts here */
  uint32_t fwd; /* sent upstream (the current request's head and body) */
};

/* What the request waits for from the client (the connection's timer follows it). */
enum px_wait {
  PX_WAIT_NONE, /* nothing: the upstream is working, or the response is being written */
  PX_WAIT_HEAD, /* the rest of a head: client_header from the first byte, then 408 */
  PX_WAIT_BODY, /* more body bytes: client_idle between reads, then the request is cut */
};

/* How the connection goes on after a request (px_request_ops.end). */
enum px_next {
  PX_NEXT_KEEP,   /* keep-alive: the next request starts at in->pos */
  PX_NEXT_CLOSE,  /* close after what is written (FIN; linger if bytes are still unread) */
  PX_NEXT_LINGER, /* close, and the client may still be sending: read and discard first */
  PX_NEXT_CUT,    /* close at once: the response could not be completed */
  PX_NEXT_TUNNEL, /* the connection is a tunnel now; `end` comes again when the tunnel ends */
};

struct px_request;
struct px_tunnel;

/* What a request needs from its connection. */
struct px_request_ops {
  /* Writes response bytes (valid until written). 1 = written, 0 = pending (px_request_written
   * follows; write nothing more meanwhile), <0 = the client is gone (nothing pending). */
  int (*write)(struct px_request *r, uv_buf_t *bufs, unsigned n);
  /* Room was made in the input buffer: read on if reading stopped. */
  void (*read_more)(struct px_request *r);
  void (*wait)(struct px_request *r, enum px_wait w);
  /* The request is over (logged); the connection goes on as `next` says. */
  void (*end)(struct px_request *r, enum px_next next);
};

/* Flags of a request's connection. */
enum px_request_flags {
  PX_REQ_HANDOVER = 1 << 0, /* the connection can be handed over when the context drains */
};

/* One request; the connection holds one at a time (px_request_new when a request starts,
 * px_request_free when it is over and no bytes of a next one are there). */
struct px_request {
  /* Set by the connection. */
  struct px_ctx *ctx;
  const struct px_request_ops *ops;
  void *conn;          /* the connection's own pointer, for its callbacks */
  uv_tcp_t *tcp;       /* the client's stream (a tunnel borrows it) */
  struct px_inbuf *in; /* the connection's input buffer */
  const char *peer;    /* the client's address, as text */
  uint8_t peer_len;
  uint8_t conn_flags; /* enum px_request_flags */
  uint8_t client_eof; /* the client half-closed (px_request_eof) */
  unsigned listener;

  /* request.c's own. */
  uint8_t phase; /* PX_PHASE_*: a connection may test for IDLE and HEAD */
  uint8_t http10;
  uint8_t keep_alive;       /* the client gets another request after this one */
  uint8_t upgrade;          /* a GET asking for an Upgrade: a 101 opens a tunnel */
  uint8_t req_done;         /* the whole request was parsed */
  uint8_t head_pending;     /* the rewritten head has not gone upstream yet */
  uint8_t replayable;       /* everything sent upstream is still in the buffer */
  uint8_t sent_any;         /* a byte of the request reached an upstream socket */
  uint8_t retried_fresh;    /* a stale pooled connection was already retried */
  uint8_t server_failed;    /* the selected server failed this request (the balancer is told) */
  uint8_t resp_started;     /* response bytes went to the client: no error page any more */
  uint8_t writing;          /* a write to the client is pending */
  uint8_t after_write;      /* what to do when it completes (request.c) */
  uint8_t up_holding;       /* the upstream holds bytes until the write completes */
  uint8_t up_sending;       /* a write to the upstream is pending */
  uint8_t host_from_target; /* absolute-form target: its authority replaces the Host line */
  uint8_t tries;            /* servers tried */
  uint64_t t_start_ns;      /* uv_hrtime at the request's first byte */
  uint64_t t_attempt_ns;    /* uv_hrtime when the current attempt started */
  const char *why;          /* why we answer the client with a 4xx, for the error log */
  struct px_server *srv;    /* the attempt's server, referenced while `pick` is held; NULL if
                               none (the pool may drop the server meanwhile: it lives on) */
  struct bal_pick pick;     /* the attempt, for px_pool_release */
  struct px_span authority; /* the absolute-form target's authority */
  uint32_t strip;           /* path prefix bytes dropped (route strip_prefix) */
  llhttp_t parser;
  struct px_head head;
  struct bal_tried tried;
  struct px_pool *pool;
  const struct px_route *route;
  struct px_up *up;
  struct px_tunnel *tunnel;
  struct px_request_log log;
  char upstream[64];            /* the last server tried, for log.upstream (it may be freed
                                   before the request is logged) */
  struct px_request *next_free; /* the context's free list */
};

/* Phases (px_request.phase). */
enum px_phase {
  PX_PHASE_IDLE,    /* no request yet */
  PX_PHASE_HEAD,    /* reading a head (nothing answered) */
  PX_PHASE_CONNECT, /* head done, getting an upstream connection */
  PX_PHASE_SEND,    /* forwarding the request */
  PX_PHASE_WAIT,    /* request sent; waiting for or streaming the response */
  PX_PHASE_ERROR,   /* writing an error page */
  PX_PHASE_TUNNEL,  /* the connection is a tunnel */
  PX_PHASE_DONE,    /* over (ops->end ran) */
};

/* A request for a connection of ctx (from the context's free list); NULL when out of memory.
 * The connection fills the fields marked for it. */
struct px_request *px_request_new(struct px_ctx *ctx);
/* Gives back a request that is over (PX_PHASE_DONE or IDLE) or aborted. */
void px_request_free(struct px_request *r);

/* New bytes are in r->in (or a new request starts with bytes already there). */
void px_request_input(struct px_request *r);
/* The connection's pending write completed (status < 0: the client is gone). */
void px_request_written(struct px_request *r, int status);
/* The client half-closed. */
void px_request_eof(struct px_request *r);
/* The deadline of what the request waits for (px_request_ops.wait) passed. */
void px_request_timeout(struct px_request *r);
/* The connection is closing under the request (reset, send timeout, shutdown): the request
 * releases what it holds, is logged if it started, and calls nothing of the connection any
 * more. */
void px_request_abort(struct px_request *r);

/* ---- the failure funnel's decision, a pure function (next.c; unit-tested) ---- */

/* A failure that is no failure of the exchange: the server answered 502, 503 or 504 (its head
 * held back), which the upstream's retry_on may ask to retry (px_next_in.http_status). */
#define PX_NEXT_HTTP_5XX PX_UP_NFAIL

/* What happened, as the funnel sees it, and the upstream's retry policy. */
struct px_next_in {
  int ft;                /* enum px_up_fail, or PX_NEXT_HTTP_5XX */
  int http_status;       /* PX_NEXT_HTTP_5XX: the server's status */
  uint8_t resp_started;  /* response bytes already reached the client */
  uint8_t sent_any;      /* a request byte reached the failed connection */
  uint8_t idempotent;    /* GET, HEAD, PUT, DELETE, OPTIONS, TRACE */
  uint8_t replayable;    /* every byte sent is still at hand to send again */
  uint8_t reused;        /* the failed connection came from the pool */
  uint8_t retried_fresh; /* a fresh connection was already tried after a stale pooled one */
  unsigned attempts;     /* attempts on servers so far, the failed one included */
  unsigned retries;      /* the upstream's policy: retries, retry_on (1 << enum bal_failure), */
  unsigned retry_on;     /* retry_budget over `budget` (charged only for a retry) */
  unsigned budget_pct;
  struct bal_budget *budget;
  uint64_t now_ms;
};

enum px_next_do {
  PX_DO_RETRY_FRESH, /* the same server, on a new connection (a stale pooled one) */
  PX_DO_RETRY_NEXT,  /* another server (the balancer's next untried one) */
  PX_DO_ERROR,       /* an error page: status in *status */
  PX_DO_CUT,         /* close the client connection */
  PX_DO_PASS,        /* PX_NEXT_HTTP_5XX not retried: pass the server's answer on */
};

/* nginx's ngx_http_upstream_next as a table: what a failure leads to (next.c). A retry on
 * another server is the balancer's decision (bal_retry_decide: retry_on, retries, safety,
 * budget); a stale pooled connection is retried once on a fresh one first, outside it. */
enum px_next_do px_request_decide(const struct px_next_in *in, int *status);

/* GET, HEAD, PUT, DELETE, OPTIONS, TRACE: a request that may run twice (RFC 9110 9.2.2). */
int px_method_idempotent(uint8_t method);

/* ---- the end, as counters and logs see it (reqlog.c) ---- */

/* Counts a request that ends and gives its record to the access log hook. */
void px__request_log(struct px_request *r, int complete);
/* Counts a failed attempt (connect errors, timeouts) and a retry the funnel decided on. */
void px__request_count_failure(struct px_stats *st, int ft, enum px_next_do what);
/* The error log's line for a failed attempt on `server`: what failed (ft, the server's status
 * for PX_NEXT_HTTP_5XX, `why`) and what follows (`what`, the status sent). */
void px__request_log_failure(const struct px_request *r, const char *server, int ft,
                             int http_status, const char *why, enum px_next_do what, int status);
/* ... for a request no server of its pool could take (rc of px_pool_select). */
void px__request_log_unserved(const struct px_request *r, int rc, int status);
/* ... for a 4xx of our own (r->why says why, when it is known). */
void px__request_log_client(const struct px_request *r, int status);

#endif
