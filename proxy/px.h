/* Internal structures of the data plane, shared by ctx.c, client.c and upstream.c. */
#ifndef LBP_PX_H
#define LBP_PX_H

#include "balancer.h"
#include "config.h"
#include "http_head.h"
#include "proxy.h"

#include <llhttp.h>
#include <stdint.h>
#include <uv.h>

#define PX_BUF_MIN      (32 * 1024) /* read buffer size unless max_header_bytes needs more */
#define PX_BUF_FREE_MAX 256         /* buffers kept on the free list at most */

/* A fixed-size I/O buffer from the context's free list. */
struct px_buf {
  struct px_buf *next;
  char data[];
};

struct px_upstream;

/* One server of one pool, in this worker: its address and its idle connections. */
struct px_server {
  const struct cfg_server *cfg;
  struct px_pool *pool;
  unsigned index;           /* in pool->bal.servers */
  struct px_upstream *idle; /* most recently used first */
  unsigned nidle;
};

struct px_pool {
  const struct cfg_upstream *cfg;
  struct bal_pool bal;
  struct px_server *servers;
};

struct px_client;

struct px_ctx {
  uv_loop_t *loop;
  const struct lbp_config *cfg; /* gen.cfg */
  struct px_gen gen;
  char debug_hdr[80]; /* X-Lbproxy-Worker line (debug_header: true), or empty */
  unsigned debug_len;
  uint8_t draining;        /* px_ctx_drain was called */
  px_handover_fn handover; /* where idle connections go while draining, or NULL */
  void *handover_arg;
  struct px_pool *pools;
  size_t npools;
  size_t bufsize;
  struct px_buf *free_bufs;
  unsigned nfree;
  struct px_counters counters;
  struct px_client *clients;     /* every open client, for px_ctx_close */
  struct px_upstream *upstreams; /* every open upstream connection */
  unsigned nhandles;             /* client + upstream structs not yet freed */
  int closing;
  void (*done)(void *);
  void *done_arg;
};

enum px_cstate {
  PX_C_IDLE,     /* between requests, no buffer held */
  PX_C_HEAD,     /* reading a request head */
  PX_C_PROXYHDR, /* reading a PROXY protocol header */
  PX_C_CONNECT,  /* head parsed, waiting for an upstream connection */
  PX_C_BODY,     /* forwarding the request (head then body) */
  PX_C_WAIT,     /* request forwarded; the response is still coming */
  PX_C_LINGER,   /* response sent, FIN sent: reading and discarding until the client's FIN */
  PX_C_HANDOVER, /* given to the master (draining): waiting for the fd to leave */
  PX_C_CLOSING,
};

/* A client connection. Freed when its handles are closed and no upstream holds it. */
struct px_client {
  uv_tcp_t tcp;
  uv_timer_t timer; /* keep-alive idle, then request head deadline */
  uv_write_t wreq;  /* the one write to the client in flight */
  llhttp_t parser;
  struct px_head head;
  struct px_ctx *ctx;
  struct px_client *prev, *next;    /* ctx->clients */
  struct px_upstream *up;           /* attached upstream connection */
  struct px_buf *in;                /* request bytes */
  struct px_buf *out;               /* response bytes (the upstream reads into it) */
  uint32_t in_len, in_pos, fwd_pos; /* filled, parsed, forwarded */
  uint32_t out_len, out_pos, out_fwd;
  struct bal_tried tried;
  struct bal_pick pick; /* the selected server, for bal_release */
  struct px_pool *pool;
  int server; /* selected server index (pick.idx), -1 if none */
  uint8_t state;
  uint8_t refs;         /* closes still to come + attached upstream */
  uint8_t writing;      /* wreq in use */
  uint8_t keep_alive;   /* the client wants another request after this one */
  uint8_t head_pending; /* the rewritten head still has to go before body bytes */
  uint8_t req_done;     /* the whole request reached the upstream parser */
  uint8_t resp_started; /* response bytes went to the client: no error page any more */
  uint8_t resp_done;
  uint8_t after_write; /* what to do when the write in flight completes */
  uint8_t http10;
  uint8_t retried;
  uint8_t eof; /* the client half-closed */
  uint8_t reading;
  uint8_t linger;           /* close with a lingering close (the client may still be sending) */
  uint8_t host_from_target; /* absolute-form target: its authority replaces the Host line */
  struct px_span authority; /* ... that authority, in the request buffer */
  uint32_t lingered;        /* bytes discarded while lingering */
  uint8_t fd_shared;        /* the master may still hold this socket (handoff) */
  uint8_t private_port;     /* came through the master's relay: cannot be handed over */
  uint16_t listener;        /* index into cfg->listeners */
  uint8_t nodelay;          /* TCP_NODELAY is set (only once a response takes several writes
                             * or a second request comes: one small write needs no Nagle off) */
  char peer[52];            /* ", " + client address, for X-Forwarded-For */
  uint8_t peer_len;
};

enum px_ustate {
  PX_U_CONNECTING,
  PX_U_BUSY,
  PX_U_IDLE,
  PX_U_CLOSING,
};

/* An upstream connection: attached to one client, or idle in its server's list. */
struct px_upstream {
  uv_tcp_t tcp;
  uv_connect_t creq;
  uv_timer_t timer; /* connect, response, then keep-alive idle */
  uv_write_t wreq;  /* the one write to the upstream in flight */
  llhttp_t parser;
  struct px_head head;
  struct px_ctx *ctx;
  struct px_server *srv;
  struct px_client *c;
  struct px_upstream *idle_next;   /* srv->idle list */
  struct px_upstream *prev, *next; /* ctx->upstreams */
  uint8_t state;
  uint8_t refs;
  uint8_t writing;
  uint8_t reused;       /* served a request before: a failure may be a stale keep-alive */
  uint8_t got_bytes;    /* response bytes arrived for the current request */
  uint8_t head_sent;    /* the final response head was parsed */
  uint8_t head_pending; /* ... and still has to be written to the client */
};

/* ctx.c */
struct px_buf *px_buf_get(struct px_ctx *ctx);
void px_buf_put(struct px_ctx *ctx, struct px_buf *b);
void px_ctx_handle_gone(struct px_ctx *ctx);

/* Writes bufs to s: first a direct writev; what does not fit goes to uv_write with `req`.
 * Returns 1 if everything was written now, 0 if `cb` will run later, or a negative error. */
int px_write(uv_stream_t *s, uv_write_t *req, uv_buf_t *bufs, unsigned n, uv_write_cb cb);

/* What a client does when its write in flight completes (px_client.after_write). */
enum px_after_write {
  AW_NONE,
  AW_RESUME_UPSTREAM, /* a response write finished: read the upstream again */
  AW_RESPONSE_DONE,   /* the last response write finished: next request */
  AW_CLOSE,           /* an error page went out: close */
};

/* client.c: called by upstream.c */
/* Writes to the client with its one write request; `then` runs when the write completes
 * later. Returns 1 if written now (the caller continues itself), 0 if pending, <0 if the
 * client failed (it is closed). */
int px_client_write(struct px_client *c, uv_buf_t *bufs, unsigned n, uint8_t then);
void px_client_request_written(struct px_client *c, int status);
void px_client_response_complete(struct px_client *c);
void px_client_upstream_ready(struct px_client *c, struct px_upstream *u);
/* The upstream failed (connect, write, read, timeout): retry, error page, or cut. */
void px_client_upstream_failed(struct px_client *c, int err);
void px_client_send_error(struct px_client *c, int status);
void px_client_unref(struct px_client *c);
void px_client_close(struct px_client *c);

/* client.c, for request.c (internal: double underscore) */
void px__client_read_start(struct px_client *c);
void px__client_read_stop(struct px_client *c);
void px__client_timer(struct px_client *c, uint64_t ms);
void px__client_release_server(struct px_client *c, enum bal_outcome outcome);
void px__client_next(struct px_client *c);
void px__client_nodelay(struct px_client *c);
/* The context started draining: hand the client over or close it if it is between requests. */
void px__client_drain(struct px_client *c);
/* While draining: will this client's connection end after its response (it cannot be handed
 * over)? */
int px__client_drain_closes(const struct px_client *c);

/* request.c, for client.c */
void px__request_head(struct px_client *c);
void px__request_body(struct px_client *c);
int px__request_finish_bodyless(struct px_client *c);

/* upstream.c */
/* Gets a connection to srv for c: a pooled idle one (unless `fresh`) or a new one. Sets c->up
 * at once; later calls px_client_upstream_ready or px_client_upstream_failed. */
void px_upstream_acquire(struct px_client *c, struct px_server *srv, int fresh);
/* Sends request bytes. 1 = written now, 0 = px_client_request_written follows, <0 = failed
 * (px_client_upstream_failed was called). */
int px_upstream_send(struct px_upstream *u, uv_buf_t *bufs, unsigned n);
/* Closes an upstream in the middle of an exchange (it cannot be reused). */
void px_upstream_abort(struct px_upstream *u);
/* Closes an upstream (any state) and unlinks it from the context. */
void px_upstream_close(struct px_upstream *u);
/* The client finished writing what the upstream gave it: parse and read on. */
void px_upstream_resume_read(struct px_upstream *u);

#endif
