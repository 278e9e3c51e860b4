/* An HTTP/1 client: a connection to one server, its response parser and buffer, a keep-alive
 * pool per server; it reports to its user through callbacks only. */
#ifndef LBP_UPSTREAM_H
#define LBP_UPSTREAM_H

#include "http_head.h"
#include "io.h"
#include "list.h"
#include "stats.h"

#include <llhttp.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

/* Why an exchange failed. The user decides what each means (request.c's funnel). */
enum px_up_fail {
  PX_UP_CONNECT,         /* the connection could not be made (refused, unreachable, no fd) */
  PX_UP_CONNECT_TIMEOUT, /* ... within connect_ms */
  PX_UP_WRITE,           /* writing the request failed before any response byte came */
  PX_UP_CLOSED,          /* EOF or reset before any response byte */
  PX_UP_TIMEOUT,      /* no response byte within response_ms (of the request, or the last read) */
  PX_UP_BAD_RESPONSE, /* not an HTTP/1 response we can pass on */
  PX_UP_TRUNCATED,    /* EOF, reset or timeout in the middle of a response */
};
#define PX_UP_NFAIL 7

/* Returns the name of a failure type, for logs ("connect failed", ...). */
const char *px_up_fail_name(enum px_up_fail ft);

/* A pooled connection beyond the server's max_idle is closed after this long idle. */
#define PX_UP_SURPLUS_MS 1000

/* A server as the client sees it: where it is, and its idle keep-alive connections. Each one
 * is allocated on its own and reference-counted, because its pool may drop it (the master's
 * server list changed) while connections to it are still busy: the pool holds a reference
 * while the server is in it, every connection to it holds one while the connection exists
 * (pooled or busy), and a user may hold its own (a request between attempts). Freed when the
 * last reference goes. */
struct px_server {
  struct px_server_stats own; /* its counters when the generation has no block for it */
  struct px_server_slot sst;  /* where its counters go: a shared-memory block, or `own` */
  _Atomic uint32_t own_mine;
  uint8_t shared; /* sst is a block every worker of the generation counts in */
  struct sockaddr_storage addr;
  char name[64];       /* "host:port" or "ip:port", for logs */
  struct px_list idle; /* idle connections, most recently used first */
  unsigned nidle;
  unsigned max_idle; /* idle connections kept for idle_ms (0: none are pooled); more are kept
                        PX_UP_SURPLUS_MS only */
  uint64_t idle_ms;  /* an idle connection is closed after this long (keepalive_timeout) */
  unsigned refs;
  uint8_t gone; /* px_server_retire ran: no connection to it is pooled any more */
};

/* A server for `sa` (copied; AF_INET or AF_INET6) named `name` (cut to 63 bytes), with one
 * reference, the caller's. NULL when out of memory. */
struct px_server *px_server_new(const struct sockaddr *sa, const char *name, unsigned max_idle,
                                uint64_t idle_ms);
void px_server_ref(struct px_server *srv);
/* Drops a reference; the last one frees the server (it has no idle connection by then: each
 * holds a reference). */
void px_server_unref(struct px_server *srv);
/* The server left its pool: its idle connections are closed now, and connections busy with it
 * finish their exchange and are closed after it instead of pooled. References are untouched
 * (the pool drops its own). */
void px_server_retire(struct px_server *srv);

/* What every connection shares: the loop, the buffer pool, the deadlines, the open set. */
struct px_upenv {
  uv_loop_t *loop;
  struct px_bufpool *bufs;
  uint64_t connect_ms;  /* connect deadline */
  uint64_t response_ms; /* response deadline, from the request's last byte and between reads */
  struct px_list conns; /* every connection not yet freed */
  unsigned nconns;
  int closing;                        /* px_upenv_close_all ran: nothing is pooled any more */
  void (*gone)(struct px_upenv *env); /* optional: a connection was freed */
  void *data;
};

void px_upenv_init(struct px_upenv *env, uv_loop_t *loop, struct px_bufpool *bufs,
                   uint64_t connect_ms, uint64_t response_ms);
/* Closes every connection, busy or idle (busy ones report nothing more). */
void px_upenv_close_all(struct px_upenv *env);

/* A response head: interim (1xx) or final. */
struct px_up_response {
  struct px_head *head; /* spans over the client's buffer; valid until the bytes are released
                         * (the user may add drops before building its iovecs) */
  int status;
  uint8_t http_minor; /* the server's version, 1.x */
  uint8_t keep_alive; /* the server keeps the connection after this response */
  uint8_t until_eof;  /* the body ends when the server closes (no length, not chunked) */
};

struct px_up;

/* How a connection reports. Callbacks run from the loop, except that on_data (and on_error for
 * what it finds) may run inside px_up_resume when bytes read earlier are still to be parsed.
 * The user may call px_up_close from any of them. */
struct px_up_cbs {
  /* Connected (px_up_get returned 0): send the request. */
  void (*on_ready)(struct px_up *u);
  /* A pending px_up_send completed. status < 0: the rest of the request cannot be sent, but the
   * response has started and keeps coming (a server answering early). */
  void (*on_sent)(struct px_up *u, int status);
  /* Response bytes: `resp` is a head just parsed (NULL if none), followed by `len` body bytes
   * (chunk framing included: what the server sent); `complete` = the response is over.
   * Returns 0 when done with the bytes, or 1 to hold them (the buffer is not reused and
   * nothing more is delivered until px_up_resume). After a complete response is released
   * (returned 0, or px_up_resume), the connection is pooled or closed: forget it. */
  int (*on_data)(struct px_up *u, const struct px_up_response *resp, const char *body, size_t len,
                 int complete);
  /* The exchange failed; the connection is closed already: forget it. */
  void (*on_error)(struct px_up *u, enum px_up_fail ft, int err);
  /* Optional: the connection's handles are closed (memory its requests used may go now). */
  void (*on_closed)(struct px_up *u);
};

/* Flags for px_up_get. */
enum px_up_flags {
  PX_UP_FRESH = 1 << 0,   /* a new connection, never a pooled one */
  PX_UP_CHECK = 1 << 1,   /* peek at a pooled one first: skip it if the server closed it */
  PX_UP_HEAD = 1 << 2,    /* the request is HEAD: the response has no body */
  PX_UP_UPGRADE = 1 << 3, /* the request asks for an upgrade: a 101 is welcome */
  PX_UP_RAW = 1 << 4,     /* no HTTP: only a connection (TCP mode); px_up_takeover it */
};

/* A connection to srv for one exchange: a pooled one (returns 1: ready now, send) or a new
 * one (returns 0: on_ready or on_error follows). A negative UV error if none could be
 * started (nothing to close). *out is set in both success cases. The connection holds a
 * reference to srv until it is freed (px_up_server stays valid as long as the connection). */
int px_up_get(struct px_upenv *env, struct px_server *srv, unsigned flags,
              const struct px_up_cbs *cbs, void *data, struct px_up **out);

/* Sends request bytes (they must stay valid until sent). 1 = written now, 0 = pending (on_sent
 * follows; send nothing more meanwhile), or a negative error: if px_up_response_started, the
 * response keeps coming; else the connection is unusable (close it). */
int px_up_send(struct px_up *u, uv_buf_t *bufs, unsigned n);

/* The whole request was given to px_up_send: the response deadline starts once it is written,
 * and only then can the connection be reused. */
void px_up_request_done(struct px_up *u);

/* The user is done with bytes it held (on_data returned 1): parsing and reading go on. */
void px_up_resume(struct px_up *u);

/* After a 101 (or for a PX_UP_RAW connection): stop reading and timing; the caller relays on
 * the returned stream and ends with px_up_close. `rest` (may be NULL) gets the bytes read past
 * the 101 head (valid until px_up_close). */
uv_stream_t *px_up_takeover(struct px_up *u, uv_buf_t *rest);

/* Replaces the callbacks and user data (a tunnel taking a connection over). */
void px_up_set_user(struct px_up *u, const struct px_up_cbs *cbs, void *data);

/* Closes a connection in any state (with RST when `reset`); only on_closed follows. */
void px_up_close(struct px_up *u, int reset);

void *px_up_data(const struct px_up *u);
/* The head of the response being delivered (body bytes are passed through px_head_body). */
struct px_head *px_up_head(struct px_up *u);
/* Why the last response was refused (a strict-HTTP rule), or NULL. */
const char *px_up_why(const struct px_up *u);
struct px_server *px_up_server(const struct px_up *u);
/* 1 if the connection served an exchange before this one (a failure may be a stale pool). */
int px_up_reused(const struct px_up *u);
/* 1 once a response byte arrived for the current exchange. */
int px_up_response_started(const struct px_up *u);

#endif
