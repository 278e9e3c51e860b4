/* lbp-backend internals shared by backend.c (connections, server, startup) and backend_http.c. */

/*
 * How one connection works:
 *
 * 1. Bytes are read into the connection's own input buffer and fed to llhttp, which is made to
 *    pause at the end of every request head and at the end of every request. The driver
 *    (be_conn_parse) acts on those two events outside the parser callbacks.
 * 2. The raw request head is copied from the first byte of the method to the head-complete pause,
 *    so /headers can return it exactly as received.
 * 3. A request whose response cannot be finished at once (a delay, a stream, /hang) "blocks" the
 *    parser: reading stops and the rest of the input waits in the buffer, so pipelined requests
 *    are answered strictly in order and input buffering is bounded by one read.
 * 4. Responses are appended to a fill batch: copied bytes plus references to the prebuilt static
 *    pieces of the "/" response. At most one batch is being written at a time; when nothing is
 *    streaming the batch is first offered to uv_try_write, so the "/" hot path never allocates.
 * 5. Output above HIGH_WATER stops reading (echo, pipelining) and pauses streams, which resume
 *    from the write callback; nothing is ever buffered without bound.
 * 6. A connection that must close flushes, shuts down its write side and discards input until EOF
 *    or LINGER_MS, so a peer never loses the last response to a reset.
 */

#ifndef LBP_TEST_BACKEND_H
#define LBP_TEST_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include <llhttp.h>
#include <uv.h>

#include "ws.h"

#define IN_CAP     (64 * 1024)
#define HEAD_CAP   (32 * 1024)
#define URL_CAP    8192
#define HIGH_WATER (512 * 1024)

// clang-format off
enum ep { EP_ROOT, EP_BYTES, EP_CHUNKED, EP_EOF, EP_SUM, EP_ECHO, EP_HEADERS, EP_DELAY, EP_CONNS,
          EP_CLOSE, EP_DROP, EP_STATUS, EP_HANG, EP_EARLY, EP_MODE, EP_RECORDED, EP_RAW,
          EP_WS, EP_CUT, EP_FIN, EP_NOTFOUND };
// clang-format on

/* What the last llhttp_execute paused at (struct conn's `event`). */
enum { EV_NONE, EV_HEADERS, EV_MESSAGE };

/* Output for one write, in order: iov entries with base == NULL stand for the next `len` bytes
 * of buf (resolved only when written, because buf moves as it grows); others are static bytes. */
struct batch {
  char *buf;
  size_t len, cap, bytes;
  uv_buf_t *iov;
  unsigned n, ncap;
};

struct req {
  enum ep ep;
  int head, keep_alive, has_cl, body_chunked, counted, echo_chunked, open;
  int v10; /* ?v=10: answer with an HTTP/1.0 status line */
  uint64_t n, chunk, ms, cl, body_len, body_fnv, at;
  int code;
};

/* A generated pattern body: raw (Content-Length or EOF framing) or chunked. */
struct stream {
  int active, chunked;
  int cut; /* stop short: no last chunk (the connection then closes) */
  uint64_t off, total, chunk, chunk_left;
};

struct conn {
  uv_tcp_t tcp;
  uv_timer_t timer;
  uv_write_t wreq;
  uv_shutdown_t sreq;
  struct conn *prev, *next;
  llhttp_t parser;
  uint64_t id, requests;
  int closing, pending_closes, writing, reading, blocked, discard, peer_eof, close_after_flush;
  int ka_armed; /* the timer measures --keepalive-timeout (idle between requests) */
  int shutting, in_parse, need_exec, event, capturing, head_overflow;
  struct req req;
  struct stream st;
  struct batch b[2];
  struct batch *fill;
  size_t flight_bytes, in_off, in_len, url_len, head_len;
  const char *cap_from;
  int cr_last;               /* CR-tolerant mode: the last byte read was a CR */
  int ws;                    /* the connection speaks WebSocket (after /ws's 101): be_ws_input */
  uint64_t raw_len, raw_fnv; /* --raw: bytes received and their FNV-1a */
  int ws_payload;            /* in a frame's payload */
  struct ws_head wsh;
  uint64_t ws_left, ws_off;
  char url[URL_CAP];
  char head[HEAD_CAP];
  char in[IN_CAP];
};

/* The command line options (backend.c parses them). */
struct options {
  const char *listen, *name;
  long long size;
  uint64_t delay_ms;
  int procs;
  int raw;               /* --raw 1: no HTTP: echo every byte, and at EOF "name=N len=L fnv=F\n" */
  uint64_t keepalive_ms; /* --keepalive-timeout MS: close a connection idle between requests */
  int record;            /* keep what connections send (also switched on by GET /mode?record=1) */
  int cr_tolerant; /* a bare CR ends a line, as in Python's http.server (/mode?cr_tolerant=1) */
};

/* The prebuilt static pieces of the "/" response (backend.c builds them at startup). */
struct root_response {
  char *prefix, *body;
  size_t prefix_len, body_len;
};

/* Defined in backend.c. */
extern struct options g_opt;
extern struct root_response g_root;
extern uint64_t g_accepted; /* connections accepted so far; the last one's id */

/* Defined in backend_http.c, filled by be_init_settings(). */
extern llhttp_settings_t g_settings;

/* ---- backend.c: output batches and connection machinery ---- */

/* Bytes queued for output: the write in flight plus the fill batch. */
size_t be_queued(const struct conn *c);

/* Returns room for n bytes at the end of the fill buffer, valid until the next be_out_* call;
 * be_out_commit() appends the first n of them to the output. Aborts when out of memory. */
char *be_out_reserve(struct conn *c, size_t n);
void be_out_commit(struct conn *c, size_t n);

/* Appends a copy of data[0..n). */
void be_out_bytes(struct conn *c, const void *data, size_t n);

/* Appends data[0..n), which must outlive the connection: referenced, or copied when small. */
void be_out_static(struct conn *c, const char *data, size_t n);

/* Appends printf-formatted text. */
__attribute__((format(printf, 2, 3))) void be_out_fmt(struct conn *c, const char *fmt, ...);

/* Starts writing the fill batch unless a write is in flight; may close the connection. */
void be_conn_flush(struct conn *c);

/* /fin: the response, then a FIN in the same segment (TCP_CORK), as a server whose keep-alive
 * timeout fires right after answering; then discards input until the peer closes. */
void be_conn_fin(struct conn *c);

/* Re-evaluates a connection after output drained or the peer finished sending: flushes, drives
 * the stream, shuts down or closes a finished connection, starts or stops reading. */
void be_conn_progress(struct conn *c);

/* Unlinks the connection and closes its handles; it is freed once both close callbacks ran.
 * Idempotent; the struct stays valid until the loop runs the callbacks. */
void be_conn_close(struct conn *c);

/* ---- backend.c: recording (for smuggling tests) ---- */

/* What a record entry holds: bytes as read from a connection, or one parsed request line. */
enum { REC_RAW, REC_REQUEST };

/* Appends an entry for connection `conn` while g_opt.record is on (up to REC_MAX bytes are kept;
 * later ones are only counted). */
void be_record_add(uint64_t conn, int type, const void *p, size_t n);

/* Marks connection `conn` as the test's own (it asked for /mode or /recorded): never rendered. */
void be_record_control(uint64_t conn);

/* Renders every entry of `type` from connections other than the test's own into a malloc'd buffer:
 * per connection, "=== conn ID\n" then its bytes in order (for REC_REQUEST one line each).
 * *total gets the bytes those entries held (counted even when not kept), *nconns the number
 * of connections. Returns the buffer (free it), its length in *len. */
char *be_record_render(int type, size_t *len, uint64_t *total, uint64_t *nconns);

/* ---- backend_http.c: requests and responses ---- */

/* Installs the llhttp callbacks into g_settings; call once before the first connection. */
void be_init_settings(void);

/* Feeds buffered input to llhttp and answers what it finds, until input runs out or a response
 * blocks the parser; ends with be_conn_progress(), so it may close the connection. */
void be_conn_parse(struct conn *c);

/* Generates more of the streaming response while output is below HIGH_WATER. */
void be_stream_drive(struct conn *c);

/* ---- backend_ws.c: the WebSocket echo ---- */

/* Answers GET /ws: a 101 (and the connection speaks WebSocket from then on), or -1 if the
 * request is not a WebSocket handshake. */
int be_ws_respond(struct conn *c);

/* Echoes the frames in the input buffer (from be_conn_parse once c->ws is set). */
void be_ws_input(struct conn *c);

/* The connection timer's callback: a delayed response is due, or a lingering close gave up. */
void be_on_timer(uv_timer_t *t);

#endif
