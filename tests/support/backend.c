/* lbp-backend: libuv HTTP/1.1 test upstream that names itself, streams, echoes and misbehaves. */

/*
 * How one connection works:
 *
 * 1. Bytes are read into the connection's own input buffer and fed to llhttp, which is made to
 *    pause at the end of every request head and at the end of every request. The driver
 *    (conn_parse) acts on those two events outside the parser callbacks.
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

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <llhttp.h>
#include <uv.h>

#include "pattern.h"

#define IN_CAP        (64 * 1024)
#define HEAD_CAP      (32 * 1024)
#define URL_CAP       8192
#define STEP          (64 * 1024)
#define HIGH_WATER    (512 * 1024)
#define COPY_MAX      512
#define LINGER_MS     3000
#define DEFAULT_CHUNK 8192
#define CL_CHUNKED    (-1)
#define CL_NONE       (-2)

// clang-format off
enum ep { EP_ROOT, EP_BYTES, EP_CHUNKED, EP_EOF, EP_SUM, EP_ECHO, EP_HEADERS, EP_DELAY, EP_CONNS,
          EP_CLOSE, EP_DROP, EP_STATUS, EP_HANG, EP_NOTFOUND };
// clang-format on

enum { EV_NONE, EV_HEADERS, EV_MESSAGE };

static const struct {
  const char *path;
  enum ep ep;
} routes[] = {
    {"/", EP_ROOT},       {"/bytes", EP_BYTES}, {"/chunked", EP_CHUNKED}, {"/eof", EP_EOF},
    {"/sum", EP_SUM},     {"/echo", EP_ECHO},   {"/headers", EP_HEADERS}, {"/delay", EP_DELAY},
    {"/conns", EP_CONNS}, {"/close", EP_CLOSE}, {"/drop", EP_DROP},       {"/status", EP_STATUS},
    {"/hang", EP_HANG},
};

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
  uint64_t n, chunk, ms, cl, body_len, body_fnv;
  int code;
};

/* A generated pattern body: raw (Content-Length or EOF framing) or chunked. */
struct stream {
  int active, chunked;
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
  int shutting, in_parse, need_exec, event, capturing, head_overflow;
  struct req req;
  struct stream st;
  struct batch b[2];
  struct batch *fill;
  size_t flight_bytes, in_off, in_len, url_len, head_len;
  const char *cap_from;
  char url[URL_CAP];
  char head[HEAD_CAP];
  char in[IN_CAP];
};

static struct {
  const char *listen, *name;
  long long size;
  uint64_t delay_ms;
  int procs;
} g_opt = {"127.0.0.1:0", "backend", -1, 0, 1};

static uv_loop_t *g_loop;
static uv_tcp_t g_server;
static uv_signal_t g_sig[2];
static struct conn *g_conns;
static uint64_t g_accepted;
static llhttp_settings_t g_settings;
static struct {
  char *prefix, *body;
  size_t prefix_len, body_len;
} g_root;

static void conn_parse(struct conn *c);
static void conn_progress(struct conn *c);
static void stream_drive(struct conn *c);
static void on_timer(uv_timer_t *t);

static void *xrealloc(void *p, size_t n) {
  p = realloc(p, n);
  if (p == NULL) {
    fprintf(stderr, "lbp-backend: out of memory\n");
    abort();
  }
  return p;
}

/* ---- Output batches ---- */

static size_t queued(const struct conn *c) {
  return c->flight_bytes + c->fill->bytes;
}

static void batch_reset(struct batch *b) {
  b->len = b->bytes = 0;
  b->n = 0;
}

static void batch_push(struct batch *b, const char *base, size_t len) {
  if (b->n == b->ncap) {
    b->ncap = b->ncap ? b->ncap * 2 : 16;
    b->iov = xrealloc(b->iov, b->ncap * sizeof(*b->iov));
  }
  b->iov[b->n++] = uv_buf_init((char *)base, (unsigned)len);
  b->bytes += len;
}

/* Returns room for n bytes at the end of the fill buffer; out_commit() appends them. */
static char *out_reserve(struct conn *c, size_t n) {
  struct batch *b = c->fill;
  if (b->cap - b->len < n) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap - b->len < n)
      cap *= 2;
    b->buf = xrealloc(b->buf, cap);
    b->cap = cap;
  }
  return b->buf + b->len;
}

static void out_commit(struct conn *c, size_t n) {
  struct batch *b = c->fill;
  if (b->n > 0 && b->iov[b->n - 1].base == NULL) {
    b->iov[b->n - 1].len += n;
    b->bytes += n;
  } else {
    batch_push(b, NULL, n);
  }
  b->len += n;
}

static void out_bytes(struct conn *c, const void *data, size_t n) {
  if (n == 0)
    return;
  memcpy(out_reserve(c, n), data, n);
  out_commit(c, n);
}

/* Static bytes are referenced, not copied, unless small enough that copying is cheaper. */
static void out_static(struct conn *c, const char *data, size_t n) {
  if (n <= COPY_MAX) {
    out_bytes(c, data, n);
    return;
  }
  batch_push(c->fill, data, n);
}

__attribute__((format(printf, 2, 3))) static void out_fmt(struct conn *c, const char *fmt, ...) {
  va_list ap;
  size_t room = 256;
  for (;;) {
    char *p = out_reserve(c, room);
    va_start(ap, fmt);
    int n = vsnprintf(p, room, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < room) {
      out_commit(c, (size_t)n);
      return;
    }
    room = (size_t)n + 1;
  }
}

/* ---- Connection lifetime ---- */

static void on_close(uv_handle_t *h) {
  struct conn *c = h->data;
  if (--c->pending_closes > 0)
    return;
  for (int i = 0; i < 2; i++) {
    free(c->b[i].buf);
    free(c->b[i].iov);
  }
  free(c);
}

static void conn_close(struct conn *c) {
  if (c->closing)
    return;
  c->closing = 1;
  if (c->prev)
    c->prev->next = c->next;
  else
    g_conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  c->pending_closes = 2;
  uv_close((uv_handle_t *)&c->tcp, on_close);
  uv_close((uv_handle_t *)&c->timer, on_close);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  struct conn *c = h->data;
  if (c->discard)
    *buf = uv_buf_init(c->in, IN_CAP);
  else
    *buf = uv_buf_init(c->in + c->in_off + c->in_len, IN_CAP - c->in_off - c->in_len);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  struct conn *c = s->data;
  if (c->closing || nread == 0)
    return;
  if (nread == UV_EOF && !c->discard) {
    c->peer_eof = 1;
    conn_progress(c);
    return;
  }
  if (nread < 0) {
    conn_close(c);
    return;
  }
  if (c->discard)
    return;
  c->in_len += (size_t)nread;
  conn_parse(c);
}

/* Reads only when the parser may run, its buffer is empty and output is not piling up; a
 * discarding connection (hang, linger) always reads, to notice the peer's close. */
static void update_reading(struct conn *c) {
  int want = !c->closing && !c->peer_eof &&
             (c->discard ||
              (!c->blocked && !c->close_after_flush && c->in_len == 0 && queued(c) < HIGH_WATER));
  if (want && !c->reading) {
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0) {
      conn_close(c);
      return;
    }
    c->reading = 1;
  } else if (!want && c->reading) {
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = 0;
  }
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  struct conn *c = req->data;
  if (c->closing)
    return;
  if (status < 0) {
    conn_close(c);
    return;
  }
  c->discard = 1;
  c->in_len = c->in_off = 0;
  uv_timer_start(&c->timer, on_timer, LINGER_MS, 0);
  update_reading(c);
}

static void on_write(uv_write_t *req, int status) {
  struct conn *c = req->data;
  if (status < 0 || c->closing) {
    conn_close(c);
    return;
  }
  batch_reset(&c->b[c->fill == &c->b[0]]);
  c->writing = 0;
  c->flight_bytes = 0;
  conn_progress(c);
}

/* Starts writing the fill batch unless a write is in flight. While streaming it always goes
 * through uv_write, so the write callback keeps the stream going. */
static void conn_flush(struct conn *c) {
  struct batch *b = c->fill;
  if (c->writing || c->closing || b->bytes == 0)
    return;
  char *next = b->buf;
  for (unsigned i = 0; i < b->n; i++) {
    if (b->iov[i].base == NULL) {
      b->iov[i].base = next;
      next += b->iov[i].len;
    }
  }
  uv_buf_t *bufs = b->iov;
  unsigned n = b->n;
  size_t left = b->bytes;
  if (!c->st.active) {
    int r = uv_try_write((uv_stream_t *)&c->tcp, bufs, n);
    if (r < 0 && r != UV_EAGAIN) {
      conn_close(c);
      return;
    }
    size_t done = r > 0 ? (size_t)r : 0;
    left -= done;
    while (n > 0 && done >= bufs->len) {
      done -= bufs->len;
      bufs++;
      n--;
    }
    if (n == 0) {
      batch_reset(b);
      return;
    }
    bufs->base += done;
    bufs->len -= done;
  }
  if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, bufs, n, on_write) < 0) {
    conn_close(c);
    return;
  }
  c->writing = 1;
  c->flight_bytes = left;
  c->fill = &c->b[b == &c->b[0]];
}

/* Called whenever output drained or the peer finished sending: keeps streams going, closes
 * connections that are done, and re-evaluates reading. */
static void conn_progress(struct conn *c) {
  if (c->closing)
    return;
  conn_flush(c);
  if (c->st.active && queued(c) < HIGH_WATER)
    stream_drive(c);
  if (c->closing)
    return;
  int drained = !c->writing && c->fill->bytes == 0;
  if (c->close_after_flush && drained && !c->shutting) {
    c->shutting = 1;
    if (c->peer_eof) {
      conn_close(c);
      return;
    }
    if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, on_shutdown) < 0) {
      conn_close(c);
      return;
    }
  } else if (c->peer_eof && drained && !c->blocked && !c->close_after_flush && c->in_len == 0) {
    conn_close(c);
    return;
  }
  update_reading(c);
}

/* ---- Responses ---- */

// clang-format off
static const struct {
  int code;
  const char *text;
} reasons[] = {
  {200, "OK"}, {201, "Created"}, {202, "Accepted"}, {204, "No Content"}, {301, "Moved Permanently"},
  {302, "Found"}, {304, "Not Modified"}, {400, "Bad Request"}, {403, "Forbidden"},
  {404, "Not Found"}, {405, "Method Not Allowed"}, {408, "Request Timeout"},
  {413, "Content Too Large"}, {414, "URI Too Long"}, {429, "Too Many Requests"},
  {431, "Request Header Fields Too Large"}, {500, "Internal Server Error"}, {502, "Bad Gateway"},
  {503, "Service Unavailable"}, {504, "Gateway Timeout"},
};
// clang-format on

static const char *reason(int code) {
  for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++) {
    if (reasons[i].code == code)
      return reasons[i].text;
  }
  return "Status";
}

/* Status line and headers; clen is a length, CL_CHUNKED or CL_NONE. `extra` lines end in CRLF. */
static void out_head(struct conn *c, int status, int64_t clen, const char *extra) {
  out_fmt(c,
          "HTTP/1.1 %d %s\r\nX-Backend: %s\r\nX-Conn-Id: %" PRIu64 "\r\nX-Conn-Requests: %" PRIu64
          "\r\n%s",
          status, reason(status), g_opt.name, c->id, c->requests, extra ? extra : "");
  if (clen >= 0)
    out_fmt(c, "Content-Length: %" PRId64 "\r\n", clen);
  else if (clen == CL_CHUNKED)
    out_bytes(c, "Transfer-Encoding: chunked\r\n", 28);
  out_fmt(c, "Connection: %s\r\n\r\n", c->req.keep_alive ? "keep-alive" : "close");
}

/* The current response is fully queued: continue with the next request or close. */
static void response_done(struct conn *c) {
  c->req.open = 0;
  if (c->req.keep_alive)
    c->blocked = 0;
  else
    c->close_after_flush = c->blocked = 1;
  if (!c->in_parse)
    conn_parse(c);
}

static void respond_simple(struct conn *c, int status, const char *extra, const char *body,
                           size_t len) {
  out_head(c, status, (int64_t)len, extra);
  if (!c->req.head)
    out_bytes(c, body, len);
  response_done(c);
}

/* The hot path: prebuilt prefix and body, only the per-connection numbers are formatted. */
static void respond_root(struct conn *c) {
  out_static(c, g_root.prefix, g_root.prefix_len);
  out_fmt(c, "%" PRIu64 "\r\nX-Conn-Requests: %" PRIu64 "\r\nConnection: %s\r\n\r\n", c->id,
          c->requests, c->req.keep_alive ? "keep-alive" : "close");
  if (!c->req.head)
    out_static(c, g_root.body, g_root.body_len);
  response_done(c);
}

static void stream_start(struct conn *c, int chunked, uint64_t total, uint64_t chunk) {
  if (c->req.head) {
    response_done(c);
    return;
  }
  c->st = (struct stream){1, chunked, 0, total, chunk ? chunk : DEFAULT_CHUNK, 0};
  c->blocked = 1;
  stream_drive(c);
}

/* Generates pattern bytes (and chunk framing) while output is below HIGH_WATER. */
static void stream_drive(struct conn *c) {
  struct stream *s = &c->st;
  while (s->active && queued(c) < HIGH_WATER) {
    if (s->chunked && s->chunk_left == 0) {
      if (s->off == s->total) {
        out_bytes(c, "0\r\n\r\n", 5);
        s->active = 0;
        break;
      }
      s->chunk_left = s->total - s->off < s->chunk ? s->total - s->off : s->chunk;
      out_fmt(c, "%" PRIx64 "\r\n", s->chunk_left);
    }
    uint64_t want = s->chunked ? s->chunk_left : s->total - s->off;
    if (want == 0) {
      s->active = 0;
      break;
    }
    if (want > STEP)
      want = STEP;
    unsigned char *p = (unsigned char *)out_reserve(c, (size_t)want + 2);
    pattern_fill(s->off, p, (size_t)want);
    s->off += want;
    if (s->chunked && (s->chunk_left -= want) == 0) {
      memcpy(p + want, "\r\n", 2);
      want += 2;
    }
    out_commit(c, (size_t)want);
  }
  conn_flush(c);
  if (!s->active)
    response_done(c);
}

/* Writes the response of the current request; a few endpoints leave it open (stream, hang). */
static void respond(struct conn *c) {
  struct req *q = &c->req;
  char extra[160], body[160];
  int n;
  int64_t clen;
  switch (q->ep) {
  case EP_ROOT:
  case EP_DELAY:
    respond_root(c);
    break;
  case EP_BYTES:
    out_head(c, 200, (int64_t)q->n, NULL);
    stream_start(c, 0, q->n, 0);
    break;
  case EP_CHUNKED:
    out_head(c, 200, CL_CHUNKED, NULL);
    stream_start(c, 1, q->n, q->chunk);
    break;
  case EP_EOF:
    q->keep_alive = 0;
    out_head(c, 200, CL_NONE, NULL);
    stream_start(c, 0, q->n, 0);
    break;
  case EP_SUM:
    snprintf(extra, sizeof(extra), "X-Body-Len: %" PRIu64 "\r\nX-Body-Fnv: %016" PRIx64 "\r\n",
             q->body_len, q->body_fnv);
    n = snprintf(body, sizeof(body), "len=%" PRIu64 " fnv=%016" PRIx64 "\n", q->body_len,
                 q->body_fnv);
    respond_simple(c, 200, extra, body, (size_t)n);
    break;
  case EP_ECHO: /* headers now; cb_body streams the body back as it arrives */
    clen = q->has_cl ? (int64_t)q->cl : q->body_chunked ? CL_CHUNKED : 0;
    q->echo_chunked = clen == CL_CHUNKED && !q->head;
    q->open = 1;
    out_head(c, 200, clen, NULL);
    break;
  case EP_HEADERS:
    if (c->head_overflow)
      respond_simple(c, 431, NULL, "head too large\n", 15);
    else
      respond_simple(c, 200, NULL, c->head, c->head_len);
    break;
  case EP_CONNS:
    snprintf(extra, sizeof(extra), "X-Conns: %" PRIu64 "\r\n", g_accepted);
    n = snprintf(body, sizeof(body), "conns=%" PRIu64 "\n", g_accepted);
    respond_simple(c, 200, extra, body, (size_t)n);
    break;
  case EP_CLOSE:
    q->keep_alive = 0;
    respond_simple(c, 200, NULL, "closing\n", 8);
    break;
  case EP_DROP:
    q->keep_alive = 0;
    response_done(c);
    break;
  case EP_STATUS:
    if (q->code < 200 || q->code > 599) {
      respond_simple(c, 400, NULL, "bad code\n", 9);
    } else if (q->code == 204 || q->code == 304) {
      out_head(c, q->code, CL_NONE, NULL);
      response_done(c);
    } else {
      n = snprintf(body, sizeof(body), "status %d\n", q->code);
      respond_simple(c, q->code, NULL, body, (size_t)n);
    }
    break;
  case EP_HANG:
    c->blocked = c->discard = 1;
    c->in_len = c->in_off = 0;
    break;
  case EP_NOTFOUND:
    respond_simple(c, 404, NULL, "not found\n", 10);
    break;
  }
}

/* The delay before a response ran out, or a lingering close gave up waiting for the peer. */
static void on_timer(uv_timer_t *t) {
  struct conn *c = t->data;
  if (c->shutting) {
    conn_close(c);
    return;
  }
  c->blocked = 0;
  c->in_parse = 1;
  respond(c);
  c->in_parse = 0;
  conn_parse(c);
}

/* Responds now, or after --delay (plus ?ms= for /delay) with the parser blocked meanwhile. */
static void respond_later(struct conn *c) {
  uint64_t ms = g_opt.delay_ms + (c->req.ep == EP_DELAY ? c->req.ms : 0);
  if (ms == 0) {
    respond(c);
    return;
  }
  c->blocked = 1;
  uv_timer_start(&c->timer, on_timer, ms, 0);
}

/* ---- Requests ---- */

static uint64_t query_u64(const char *q, const char *key, uint64_t def) {
  size_t kl = strlen(key);
  while (q != NULL && *q != '\0') {
    if (strncmp(q, key, kl) == 0 && q[kl] == '=')
      return strtoull(q + kl + 1, NULL, 10);
    q = strchr(q, '&');
    if (q != NULL)
      q++;
  }
  return def;
}

static void route(struct conn *c) {
  struct req *q = &c->req;
  const char *path = c->url;
  c->url[c->url_len] = '\0';
  if (strncasecmp(path, "http://", 7) == 0) /* absolute-form: skip the authority */
    path = strchr(path + 7, '/') ? strchr(path + 7, '/') : "/";
  const char *query = strchr(path, '?');
  size_t plen = query ? (size_t)(query - path) : strlen(path);
  q->ep = EP_NOTFOUND;
  for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
    if (strlen(routes[i].path) == plen && memcmp(routes[i].path, path, plen) == 0)
      q->ep = routes[i].ep;
  }
  query = query ? query + 1 : NULL;
  q->n = query_u64(query, "n", 0);
  q->chunk = query_u64(query, "chunk", DEFAULT_CHUNK);
  q->ms = query_u64(query, "ms", 0);
  q->code = (int)query_u64(query, "code", 200);
}

/* Whether the request head asks for "Expect: 100-continue" (only asked when a body follows). */
static int expects_continue(const struct conn *c) {
  const char *p = c->head, *end = c->head + c->head_len;
  if (c->head_overflow)
    return 0;
  while ((p = memchr(p, '\n', (size_t)(end - p))) != NULL && ++p < end) {
    if (strncasecmp(p, "expect:", 7) == 0) {
      for (p += 7; *p == ' ' || *p == '\t'; p++) {
      }
      return strncasecmp(p, "100-continue", 12) == 0; /* the head ends in CRLF: stays inside */
    }
  }
  return 0;
}

static void on_request_head(struct conn *c) {
  struct req *q = &c->req;
  c->requests++;
  q->counted = 1;
  q->keep_alive = llhttp_should_keep_alive(&c->parser);
  q->head = c->parser.method == HTTP_HEAD;
  q->body_chunked = (c->parser.flags & F_CHUNKED) != 0;
  q->has_cl = (c->parser.flags & F_CONTENT_LENGTH) != 0;
  q->cl = q->has_cl ? c->parser.content_length : 0;
  route(c);
  if ((q->body_chunked || q->cl > 0) && expects_continue(c))
    out_bytes(c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
  if (q->ep == EP_ECHO) /* the echo streams the body back as it arrives */
    respond_later(c);
}

static void on_request_end(struct conn *c) {
  if (c->req.ep != EP_ECHO) {
    respond_later(c);
    return;
  }
  if (c->req.echo_chunked)
    out_bytes(c, "0\r\n\r\n", 5);
  response_done(c);
}

/* A request llhttp rejects gets a 400 (unless a response to it already started) and a close. */
static void bad_request(struct conn *c) {
  c->req.keep_alive = 0;
  if (c->req.open) {
    response_done(c);
    return;
  }
  if (!c->req.counted)
    c->requests++;
  c->req.head = 0;
  respond_simple(c, 400, NULL, "bad request\n", 12);
}

static void head_capture(struct conn *c, const char *end) {
  if (c->cap_from == NULL)
    return;
  size_t n = (size_t)(end - c->cap_from);
  if (c->head_len + n > HEAD_CAP) {
    c->head_overflow = 1;
    n = HEAD_CAP - c->head_len;
  }
  memcpy(c->head + c->head_len, c->cap_from, n);
  c->head_len += n;
  c->cap_from = NULL;
}

/* Feeds buffered input to llhttp and acts on its pauses, until input runs out or the current
 * response blocks the parser; then flushes output and re-evaluates reading. */
static void conn_parse(struct conn *c) {
  c->in_parse = 1;
  while (!c->blocked && !c->closing && (c->need_exec || c->in_len > 0)) {
    const char *p = c->in + c->in_off;
    size_t n = c->in_len;
    c->need_exec = 0;
    c->event = EV_NONE;
    c->cap_from = c->capturing ? p : NULL;
    llhttp_errno_t err = llhttp_execute(&c->parser, p, n);
    size_t used = err == HPE_OK ? n : (size_t)(llhttp_get_error_pos(&c->parser) - p);
    head_capture(c, p + used);
    c->in_off += used;
    c->in_len -= used;
    if (err == HPE_PAUSED) {
      llhttp_resume(&c->parser);
      c->need_exec = 1; /* llhttp finishes a bodiless request on an empty execute */
      if (c->event == EV_HEADERS)
        on_request_head(c);
      else if (c->event == EV_MESSAGE)
        on_request_end(c);
    } else if (err == HPE_PAUSED_UPGRADE) {
      c->close_after_flush = c->blocked = 1;
    } else if (err != HPE_OK) {
      bad_request(c);
    }
  }
  if (c->in_len == 0)
    c->in_off = 0;
  c->in_parse = 0;
  conn_progress(c);
}

/* ---- llhttp callbacks: collect, and pause at the two events the driver acts on ---- */

static int cb_message_begin(llhttp_t *p) {
  struct conn *c = p->data;
  c->req = (struct req){.body_fnv = 0xcbf29ce484222325ULL};
  c->url_len = 0;
  return 0;
}

static int cb_method(llhttp_t *p, const char *at, size_t n) {
  struct conn *c = p->data;
  if (!c->capturing) {
    c->capturing = 1;
    c->head_len = 0;
    c->head_overflow = 0;
    c->cap_from = at;
  }
  return 0;
}

static int cb_url(llhttp_t *p, const char *at, size_t n) {
  struct conn *c = p->data;
  if (c->url_len + n >= URL_CAP)
    return HPE_USER; /* answered with 400 */
  memcpy(c->url + c->url_len, at, n);
  c->url_len += n;
  return 0;
}

static int cb_headers_complete(llhttp_t *p) {
  struct conn *c = p->data;
  c->capturing = 0;
  c->event = EV_HEADERS;
  return HPE_PAUSED;
}

static int cb_body(llhttp_t *p, const char *at, size_t n) {
  struct conn *c = p->data;
  struct req *q = &c->req;
  q->body_len += n;
  if (q->ep == EP_SUM) {
    uint64_t h = q->body_fnv;
    for (size_t i = 0; i < n; i++)
      h = (h ^ (unsigned char)at[i]) * 0x100000001b3ULL;
    q->body_fnv = h;
  } else if (q->ep == EP_ECHO && !q->head) {
    if (q->echo_chunked)
      out_fmt(c, "%zx\r\n", n);
    out_bytes(c, at, n);
    if (q->echo_chunked)
      out_bytes(c, "\r\n", 2);
  }
  return 0;
}

static int cb_message_complete(llhttp_t *p) {
  struct conn *c = p->data;
  c->event = EV_MESSAGE;
  return HPE_PAUSED;
}

/* ---- Server ---- */

static void on_connection(uv_stream_t *server, int status) {
  if (status < 0)
    return;
  struct conn *c = calloc(1, sizeof(*c));
  if (c == NULL)
    return;
  uv_tcp_init(g_loop, &c->tcp);
  uv_timer_init(g_loop, &c->timer);
  c->tcp.data = c->timer.data = c->wreq.data = c->sreq.data = c;
  c->fill = &c->b[0];
  c->next = g_conns;
  if (g_conns)
    g_conns->prev = c;
  g_conns = c;
  if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0) {
    conn_close(c);
    return;
  }
  c->id = ++g_accepted;
  uv_tcp_nodelay(&c->tcp, 1);
  llhttp_init(&c->parser, HTTP_REQUEST, &g_settings);
  c->parser.data = c;
  update_reading(c);
}

static void on_signal(uv_signal_t *s, int signum) {
  if (!uv_is_closing((uv_handle_t *)&g_server))
    uv_close((uv_handle_t *)&g_server, NULL);
  while (g_conns != NULL)
    conn_close(g_conns);
  for (int i = 0; i < 2; i++) {
    if (!uv_is_closing((uv_handle_t *)&g_sig[i]))
      uv_close((uv_handle_t *)&g_sig[i], NULL);
  }
}

/* Runs one event loop serving the already listening socket `fd` until SIGTERM or SIGINT. */
static int serve(int fd) {
  int err;
  g_loop = uv_default_loop();
  uv_signal_init(g_loop, &g_sig[0]);
  uv_signal_init(g_loop, &g_sig[1]);
  uv_signal_start(&g_sig[0], on_signal, SIGTERM);
  uv_signal_start(&g_sig[1], on_signal, SIGINT);
  uv_tcp_init(g_loop, &g_server);
  if ((err = uv_tcp_open(&g_server, fd)) < 0 ||
      (err = uv_listen((uv_stream_t *)&g_server, 1024, on_connection)) < 0) {
    fprintf(stderr, "lbp-backend: listen: %s\n", uv_strerror(err));
    on_signal(NULL, 0);
  }
  uv_run(g_loop, UV_RUN_DEFAULT);
  uv_loop_close(g_loop);
  return err < 0 ? 1 : 0;
}

/* ---- Startup ---- */

static void build_root(void) {
  g_root.body_len = g_opt.size >= 0 ? (size_t)g_opt.size : strlen(g_opt.name) + 1;
  g_root.body = xrealloc(NULL, g_root.body_len + 1);
  if (g_opt.size >= 0)
    pattern_fill(0, (unsigned char *)g_root.body, g_root.body_len);
  else
    snprintf(g_root.body, g_root.body_len + 1, "%s\n", g_opt.name);
  const char *fmt = "HTTP/1.1 200 OK\r\nX-Backend: %s\r\nContent-Type: text/plain\r\n"
                    "Content-Length: %zu\r\nX-Conn-Id: ";
  int n = snprintf(NULL, 0, fmt, g_opt.name, g_root.body_len);
  g_root.prefix = xrealloc(NULL, (size_t)n + 1);
  g_root.prefix_len =
      (size_t)snprintf(g_root.prefix, (size_t)n + 1, fmt, g_opt.name, g_root.body_len);
}

static void init_settings(void) {
  llhttp_settings_init(&g_settings);
  g_settings.on_message_begin = cb_message_begin;
  g_settings.on_method = cb_method;
  g_settings.on_url = cb_url;
  g_settings.on_headers_complete = cb_headers_complete;
  g_settings.on_body = cb_body;
  g_settings.on_message_complete = cb_message_complete;
}

static void usage(void) {
  fprintf(stderr, "usage: lbp-backend [--listen HOST:PORT] [--name NAME] [--size BYTES] "
                  "[--delay MS] [--procs N]\n");
  exit(2);
}

static void parse_args(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = strchr(a, '=');
    size_t klen = v ? (size_t)(v - a) : strlen(a);
    if (v != NULL)
      v++;
    else if (i + 1 < argc)
      v = argv[++i];
    else
      usage();
    if (klen == 8 && strncmp(a, "--listen", 8) == 0)
      g_opt.listen = v;
    else if (klen == 6 && strncmp(a, "--name", 6) == 0)
      g_opt.name = v;
    else if (klen == 6 && strncmp(a, "--size", 6) == 0)
      g_opt.size = atoll(v);
    else if (klen == 7 && strncmp(a, "--delay", 7) == 0)
      g_opt.delay_ms = strtoull(v, NULL, 10);
    else if (klen == 7 && strncmp(a, "--procs", 7) == 0)
      g_opt.procs = atoi(v);
    else
      usage();
  }
  if (g_opt.procs < 1 || g_opt.size > (1LL << 30) || strlen(g_opt.name) > 200)
    usage();
}

/* Binds and listens on --listen (IPv4 "HOST:PORT"), then prints the ready line. */
static int open_listener(void) {
  char host[64];
  struct sockaddr_in sa;
  socklen_t len = sizeof(sa);
  const char *colon = strrchr(g_opt.listen, ':');
  size_t hl = colon ? (size_t)(colon - g_opt.listen) : 0;
  if (colon == NULL || hl == 0 || hl >= sizeof(host))
    usage();
  memcpy(host, g_opt.listen, hl);
  host[hl] = '\0';
  if (uv_ip4_addr(host, atoi(colon + 1), &sa) < 0)
    usage();
  int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
      bind(fd, (struct sockaddr *)&sa, len) < 0 || listen(fd, 1024) < 0 ||
      getsockname(fd, (struct sockaddr *)&sa, &len) < 0) {
    fprintf(stderr, "lbp-backend: cannot listen on %s: %s\n", g_opt.listen, strerror(errno));
    exit(1);
  }
  fprintf(stderr, "ready listen=%s:%d name=%s pid=%d\n", host, ntohs(sa.sin_port), g_opt.name,
          (int)getpid());
  fflush(stderr);
  return fd;
}

/* --procs N: the parent only forks, forwards SIGTERM/SIGINT and reaps; children serve. */
static int run_procs(int fd) {
  sigset_t set, old;
  pid_t parent = getpid(), kids[256];
  int nkids = 0, stopping = 0;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGCHLD);
  sigprocmask(SIG_BLOCK, &set, &old);
  for (int i = 0; i < g_opt.procs && i < 256; i++) {
    pid_t pid = fork();
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (getppid() != parent)
        _exit(0);
      sigprocmask(SIG_SETMASK, &old, NULL);
      _exit(serve(fd));
    }
    if (pid > 0)
      kids[nkids++] = pid;
  }
  int alive = nkids;
  while (alive > 0) {
    int sig = sigwaitinfo(&set, NULL);
    if ((sig == SIGTERM || sig == SIGINT) && !stopping) {
      stopping = 1;
      for (int i = 0; i < nkids; i++)
        kill(kids[i], SIGTERM);
    }
    while (waitpid(-1, NULL, WNOHANG) > 0)
      alive--;
  }
  close(fd);
  return stopping ? 0 : 1;
}

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  parse_args(argc, argv);
  build_root();
  init_settings();
  int fd = open_listener();
  int rc = g_opt.procs > 1 ? run_procs(fd) : serve(fd);
  free(g_root.prefix);
  free(g_root.body);
  return rc;
}
