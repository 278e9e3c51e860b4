/* lbp-backend HTTP: routing, query parsing, endpoint responses and streams, llhttp callbacks. */

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <llhttp.h>
#include <uv.h>

#include "backend.h"
#include "pattern.h"

#define STEP          (64 * 1024)
#define DEFAULT_CHUNK 8192
#define CL_CHUNKED    (-1)
#define CL_NONE       (-2)

static const struct {
  const char *path;
  enum ep ep;
} routes[] = {
    {"/", EP_ROOT},           {"/bytes", EP_BYTES},
    {"/chunked", EP_CHUNKED}, {"/eof", EP_EOF},
    {"/sum", EP_SUM},         {"/echo", EP_ECHO},
    {"/headers", EP_HEADERS}, {"/delay", EP_DELAY},
    {"/conns", EP_CONNS},     {"/close", EP_CLOSE},
    {"/drop", EP_DROP},       {"/status", EP_STATUS},
    {"/hang", EP_HANG},       {"/early", EP_EARLY},
    {"/mode", EP_MODE},       {"/recorded", EP_RECORDED},
    {"/raw", EP_RAW},         {"/ws", EP_WS},
    {"/cut", EP_CUT},         {"/fin", EP_FIN},
};

/* /raw?kind=NAME: malformed or ambiguous responses, written as is, for the proxy to refuse. */
#define RAW(name, text, close)                                                                     \
  { name, text, sizeof(text) - 1, close }
static const struct {
  const char *name, *text;
  size_t len;
  int close; /* close after it (the framing needs EOF) */
} raw_responses[] = {
    RAW("barecr", "HTTP/1.1 200 OK\r\nX-A: \rX-Smuggled: 1\r\nContent-Length: 2\r\n\r\nok", 0),
    RAW("barelf", "HTTP/1.1 200 OK\r\nX-A: b\nContent-Length: 2\r\n\r\nok", 0),
    RAW("clte",
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n"
        "2\r\nok\r\n0\r\n\r\n",
        0),
    RAW("cl2", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok!", 0),
    RAW("fold",
        "HTTP/1.1 200 OK\r\nX-A:\r\n Transfer-Encoding: chunked\r\nContent-Length: 2\r\n"
        "\r\nok",
        0),
    RAW("spname", "HTTP/1.1 200 OK\r\nX-A : b\r\nContent-Length: 2\r\n\r\nok", 0),
    RAW("http2", "HTTP/2.0 200 OK\r\nContent-Length: 2\r\n\r\nok", 0),
    RAW("status2", "HTTP/1.1 20 OK\r\nContent-Length: 2\r\n\r\nok", 0),
    RAW("ctlreason", "HTTP/1.1 200 O\x01K\r\nContent-Length: 2\r\n\r\nok", 0),
    RAW("lead", "\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 0),
    RAW("nul", "HTTP/1.1 200 OK\r\nX-A: a\0b\r\nContent-Length: 2\r\n\r\nok", 0),
    RAW("chunkcrlf", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokXX0\r\n\r\n", 0),
    RAW("chunkcr", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\rXok\r\n0\r\n\r\n", 0),
    RAW("chunksp", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2 \r\nok\r\n0\r\n\r\n", 0),
    RAW("tegzip", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nok", 1),
    RAW("good", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 0),
};

llhttp_settings_t g_settings;

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
  be_out_fmt(c,
             "HTTP/1.%d %d %s\r\nX-Backend: %s\r\nX-Conn-Id: %" PRIu64
             "\r\nX-Conn-Requests: %" PRIu64 "\r\n%s",
             c->req.v10 ? 0 : 1, status, reason(status), g_opt.name, c->id, c->requests,
             extra ? extra : "");
  if (clen >= 0)
    be_out_fmt(c, "Content-Length: %" PRId64 "\r\n", clen);
  else if (clen == CL_CHUNKED)
    be_out_bytes(c, "Transfer-Encoding: chunked\r\n", 28);
  be_out_fmt(c, "Connection: %s\r\n\r\n", c->req.keep_alive ? "keep-alive" : "close");
}

/* The current response is fully queued: continue with the next request or close. */
static void response_done(struct conn *c) {
  c->req.open = 0;
  if (c->req.keep_alive)
    c->blocked = 0;
  else
    c->close_after_flush = c->blocked = 1;
  if (!c->in_parse)
    be_conn_parse(c);
}

static void respond_simple(struct conn *c, int status, const char *extra, const char *body,
                           size_t len) {
  out_head(c, status, (int64_t)len, extra);
  if (!c->req.head)
    be_out_bytes(c, body, len);
  response_done(c);
}

/* The hot path: prebuilt prefix and body, only the per-connection numbers are formatted. */
static void respond_root(struct conn *c) {
  be_out_static(c, g_root.prefix, g_root.prefix_len);
  be_out_fmt(c, "%" PRIu64 "\r\nX-Conn-Requests: %" PRIu64 "\r\nConnection: %s\r\n\r\n", c->id,
             c->requests, c->req.keep_alive ? "keep-alive" : "close");
  if (!c->req.head)
    be_out_static(c, g_root.body, g_root.body_len);
  response_done(c);
}

static int query_chunked(const struct conn *c) {
  const char *q = strchr(c->url, '?');
  return q != NULL && strstr(q, "chunked=1") != NULL;
}

static void stream_start(struct conn *c, int chunked, uint64_t total, uint64_t chunk) {
  if (c->req.head) {
    response_done(c);
    return;
  }
  c->st = (struct stream){.active = 1,
                          .chunked = chunked,
                          .cut = c->req.ep == EP_CUT,
                          .total = total,
                          .chunk = chunk ? chunk : DEFAULT_CHUNK};
  c->blocked = 1;
  be_stream_drive(c);
}

/* Generates pattern bytes (and chunk framing) while output is below HIGH_WATER. */
void be_stream_drive(struct conn *c) {
  struct stream *s = &c->st;
  while (s->active && be_queued(c) < HIGH_WATER) {
    if (s->chunked && s->chunk_left == 0) {
      if (s->off == s->total && s->cut) {
        s->active = 0;
        break;
      }
      if (s->off == s->total) {
        be_out_bytes(c, "0\r\n\r\n", 5);
        s->active = 0;
        break;
      }
      s->chunk_left = s->total - s->off < s->chunk ? s->total - s->off : s->chunk;
      be_out_fmt(c, "%" PRIx64 "\r\n", s->chunk_left);
    }
    uint64_t want = s->chunked ? s->chunk_left : s->total - s->off;
    if (want == 0) {
      s->active = 0;
      break;
    }
    if (want > STEP)
      want = STEP;
    unsigned char *p = (unsigned char *)be_out_reserve(c, (size_t)want + 2);
    pattern_fill(s->off, p, (size_t)want);
    s->off += want;
    if (s->chunked && (s->chunk_left -= want) == 0) {
      memcpy(p + want, "\r\n", 2);
      want += 2;
    }
    be_out_commit(c, (size_t)want);
  }
  be_conn_flush(c);
  if (!s->active)
    response_done(c);
}

static const char *query_str(const char *q, const char *key, size_t *len);
static uint64_t query_u64(const char *q, const char *key, uint64_t def);

/* The endpoints smuggling tests use: /mode?record=0|1&cr_tolerant=0|1 switches recording and
 * CR tolerance, /recorded?what=raw|requests returns what connections sent (or which requests
 * were parsed) since recording began, leaving out the connections that asked for /mode or
 * /recorded (the test's own), and /raw?kind=NAME sends a malformed response. */
static void respond_test(struct conn *c) {
  struct req *q = &c->req;
  const char *query = strchr(c->url, '?'), *v;
  char extra[160];
  size_t len, n;
  uint64_t total, nconns;

  query = query ? query + 1 : NULL;
  if (q->ep != EP_RAW)
    be_record_control(c->id);
  if (q->ep == EP_MODE) {
    g_opt.record = (int)query_u64(query, "record", (uint64_t)g_opt.record);
    g_opt.cr_tolerant = (int)query_u64(query, "cr_tolerant", (uint64_t)g_opt.cr_tolerant);
    respond_simple(c, 200, NULL, "ok\n", 3);
  } else if (q->ep == EP_RECORDED) {
    v = query_str(query, "what", &len);
    int type = v && len == 8 && memcmp(v, "requests", 8) == 0 ? REC_REQUEST : REC_RAW;
    char *body = be_record_render(type, &n, &total, &nconns);
    snprintf(extra, sizeof(extra),
             "X-Recorded-Bytes: %" PRIu64 "\r\nX-Recorded-Conns: %" PRIu64 "\r\n", total, nconns);
    respond_simple(c, 200, extra, body, n);
    free(body);
  } else {
    v = query_str(query, "kind", &len);
    for (size_t i = 0; v != NULL && i < sizeof(raw_responses) / sizeof(raw_responses[0]); i++) {
      if (strlen(raw_responses[i].name) != len || memcmp(raw_responses[i].name, v, len) != 0)
        continue;
      be_out_bytes(c, raw_responses[i].text, raw_responses[i].len);
      if (raw_responses[i].close)
        q->keep_alive = 0;
      response_done(c);
      return;
    }
    respond_simple(c, 400, NULL, "unknown kind\n", 13);
  }
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
  case EP_EARLY: /* at the head, like a 413: n pattern bytes, then close (lingering) */
    q->keep_alive = 0;
    out_head(c, 200, (int64_t)q->n, NULL);
    stream_start(c, 0, q->n, 0);
    break;
  case EP_CUT: /* announces n bytes (or chunked), sends `at` of them, then closes */
    q->keep_alive = 0;
    out_head(c, 200, query_chunked(c) ? CL_CHUNKED : (int64_t)q->n, NULL);
    stream_start(c, query_chunked(c), q->at, 0);
    break;
  case EP_FIN:
    respond_root(c);
    be_conn_fin(c);
    break;
  case EP_HANG:
    c->blocked = c->discard = 1;
    c->in_len = c->in_off = 0;
    break;
  case EP_MODE:
  case EP_RECORDED:
  case EP_RAW:
    respond_test(c);
    break;
  case EP_WS:
    if (be_ws_respond(c) != 0)
      respond_simple(c, 400, NULL, "not a websocket handshake\n", 26);
    break;
  case EP_NOTFOUND:
    respond_simple(c, 404, NULL, "not found\n", 10);
    break;
  }
}

/* The delay before a response ran out, or a lingering close gave up waiting for the peer. */
void be_on_timer(uv_timer_t *t) {
  struct conn *c = t->data;
  if (c->shutting || c->ka_armed) {
    be_conn_close(c); /* a lingering close gave up, or the keep-alive timeout fired */
    return;
  }
  c->blocked = 0;
  c->in_parse = 1;
  respond(c);
  c->in_parse = 0;
  be_conn_parse(c);
}

/* Responds now, or after --delay (plus ?ms= for /delay) with the parser blocked meanwhile. */
static void respond_later(struct conn *c) {
  uint64_t ms = g_opt.delay_ms + (c->req.ep == EP_DELAY ? c->req.ms : 0);
  if (ms == 0) {
    respond(c);
    return;
  }
  c->blocked = 1;
  uv_timer_start(&c->timer, be_on_timer, ms, 0);
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

/* The value of `key` in a query string (not NUL-terminated: its length goes to *len), or NULL. */
static const char *query_str(const char *q, const char *key, size_t *len) {
  size_t kl = strlen(key);
  while (q != NULL && *q != '\0') {
    if (strncmp(q, key, kl) == 0 && q[kl] == '=') {
      *len = strcspn(q + kl + 1, "&");
      return q + kl + 1;
    }
    q = strchr(q, '&');
    if (q != NULL)
      q++;
  }
  return NULL;
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
  q->v10 = query_u64(query, "v", 11) == 10;
  q->at = query_u64(query, "at", 0);
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
  if (g_opt.record) {
    char line[URL_CAP + 64];
    int n = snprintf(line, sizeof(line), "%s %s\n", llhttp_method_name(c->parser.method), c->url);
    be_record_add(c->id, REC_REQUEST, line, n < (int)sizeof(line) ? (size_t)n : sizeof(line) - 1);
  }
  if ((q->body_chunked || q->cl > 0) && expects_continue(c))
    be_out_bytes(c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
  if (q->ep == EP_ECHO || q->ep == EP_EARLY) /* both answer before the body has arrived */
    respond_later(c);
}

static void on_request_end(struct conn *c) {
  if (c->req.ep == EP_EARLY)
    return; /* answered at the head */
  if (c->req.ep != EP_ECHO) {
    respond_later(c);
    return;
  }
  if (c->req.echo_chunked)
    be_out_bytes(c, "0\r\n\r\n", 5);
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
void be_conn_parse(struct conn *c) {
  if (c->ws) {
    be_ws_input(c);
    return;
  }
  c->in_parse = 1;
  while (!c->ws && !c->blocked && !c->closing && (c->need_exec || c->in_len > 0)) {
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
  if (c->ws) {
    be_ws_input(c); /* frames the client sent right behind its handshake */
    return;
  }
  be_conn_progress(c);
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
      be_out_fmt(c, "%zx\r\n", n);
    be_out_bytes(c, at, n);
    if (q->echo_chunked)
      be_out_bytes(c, "\r\n", 2);
  }
  return 0;
}

static int cb_message_complete(llhttp_t *p) {
  struct conn *c = p->data;
  c->event = EV_MESSAGE;
  return HPE_PAUSED;
}

void be_init_settings(void) {
  llhttp_settings_init(&g_settings);
  g_settings.on_message_begin = cb_message_begin;
  g_settings.on_method = cb_method;
  g_settings.on_url = cb_url;
  g_settings.on_headers_complete = cb_headers_complete;
  g_settings.on_body = cb_body;
  g_settings.on_message_complete = cb_message_complete;
}
