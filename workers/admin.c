/* The admin listener: a strict, small HTTP/1.1 server on the master's loop (llhttp and the data
 * plane's strict head check), one request per connection, dispatched by tables of routes. */

/*
 * 1. Listening: admin.listen (default 127.0.0.1:9900, "off" to disable). A non-loopback
 *    address needs admin.allow_public (and logs a warning). A bind that fails is logged and
 *    the admin API stays off (the proxy serves on), except in the new master of a binary
 *    upgrade: the old master holds the port until it leaves, so the bind is retried every
 *    ADMIN_RETRY_MS until it works.
 * 2. Limits, so that no client can hurt the master: ADMIN_MAX_CONNS connections at once (more
 *    get a 503 and are closed), the whole head within ADMIN_HEAD_MS (else 408) and
 *    ADMIN_HEAD_MAX bytes (else 431), a target of at most ADMIN_URL_MAX bytes (414), a body only
 *    with POST and at most ADMIN_BODY_MAX bytes (413), the response taken within
 *    ADMIN_WRITE_MS. Anything llhttp or px_strict_head refuses is a 400 that says why.
 * 3. One request per connection: the answer carries Connection: close; then FIN, and the
 *    connection reads and discards until the client's FIN (at most ADMIN_LINGER_MS), so that
 *    unread bytes never turn the close into a reset that destroys the answer.
 * 4. Routing: the tables in `route_tables`, each a list of {method, pattern, handler}; a path
 *    that matches with another method is a 405 with Allow, no match a 404.
 */
#include "admin.h"

#include "http_strict.h"
#include "log.h"
#include "master.h"

#include <arpa/inet.h>
#include <llhttp.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ADMIN_MAX_CONNS 64
#define ADMIN_HEAD_MAX  8192
#define ADMIN_URL_MAX   2048
#define ADMIN_BODY_MAX  65536
#define ADMIN_MAX_SEGS  16
#define ADMIN_HEAD_MS   5000
#define ADMIN_WRITE_MS  10000
#define ADMIN_LINGER_MS 1000
#define ADMIN_RETRY_MS  1000

/* Every table of routes. Admin actions (issue 10) add theirs here, one line. */
static const struct admin_route *const route_tables[] = {admin_read_routes, admin_server_routes};

struct alisten {
  uv_tcp_t tcp;
  struct admin *a;
};

struct admin {
  struct master *m;
  struct alisten *ls; /* NULL when not listening */
  uv_timer_t retry;
  char want[300]; /* admin.listen as configured ("" or "off": disabled) */
  int allow_public;
  char name[80]; /* the bound address */
  struct aconn *conns;
  unsigned nconns;
};

enum { AC_READ, AC_WRITE, AC_LINGER, AC_CLOSING };

struct aconn {
  uv_tcp_t tcp;
  uv_timer_t timer;
  uv_write_t wreq;
  uv_shutdown_t sreq;
  struct admin *a;
  struct aconn *next, **pprev;
  llhttp_t parser;
  uint8_t state, refs, head_done, url_long, body_long;
  uint32_t len, parsed, url_len;
  struct abuf body;
  struct admin_resp resp;
  char url[ADMIN_URL_MAX + 1];
  char head[512];
  char buf[ADMIN_HEAD_MAX];
};

static void conn_close(struct aconn *c);

/* ---- answering ---- */

void admin_error(struct admin_resp *resp, int status, const char *fmt, ...) {
  va_list ap;
  char line[512];

  va_start(ap, fmt);
  vsnprintf(line, sizeof(line), fmt, ap);
  va_end(ap);
  resp->status = status;
  resp->type = "text/plain; charset=utf-8";
  resp->body.len = 0;
  abuf_printf(&resp->body, "%d %s\n", status, line);
}

static const char *reason(int status) {
  switch (status) {
  case 200:
    return "OK";
  case 400:
    return "Bad Request";
  case 403:
    return "Forbidden";
  case 404:
    return "Not Found";
  case 405:
    return "Method Not Allowed";
  case 408:
    return "Request Timeout";
  case 413:
    return "Content Too Large";
  case 414:
    return "URI Too Long";
  case 431:
    return "Request Header Fields Too Large";
  case 500:
    return "Internal Server Error";
  case 503:
    return "Service Unavailable";
  default:
    return status < 300 ? "OK" : status < 500 ? "Client Error" : "Server Error";
  }
}

/* What a client sends after its request is read into the connection's own buffer (the head
 * is answered) and dropped. */
static void linger_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b) {
  struct aconn *c = h->data;
  *b = uv_buf_init(c->buf, sizeof(c->buf));
}

static void linger_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  if (n < 0)
    conn_close(s->data);
}

static void timer_cb(uv_timer_t *t);

static void shutdown_cb(uv_shutdown_t *req, int status) {
  struct aconn *c = req->data;

  if (c->state == AC_CLOSING)
    return;
  c->state = AC_LINGER;
  uv_timer_start(&c->timer, timer_cb, ADMIN_LINGER_MS, 0);
  if (status < 0 || uv_read_start((uv_stream_t *)&c->tcp, linger_alloc, linger_read) != 0)
    conn_close(c);
}

static void write_cb(uv_write_t *req, int status) {
  struct aconn *c = req->data;

  if (c->state == AC_CLOSING)
    return;
  c->sreq.data = c;
  if (status < 0 || uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, shutdown_cb) != 0)
    conn_close(c);
}

/* Sends c->resp (without its body for HEAD) and ends the connection. */
static void respond(struct aconn *c, int head_only) {
  struct admin_resp *r = &c->resp;
  uv_buf_t bufs[2];
  int n;

  if (r->body.failed)
    admin_error(r, 500, "out of memory");
  n = snprintf(c->head, sizeof(c->head),
               "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
               "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n%s"
               "Connection: close\r\n\r\n",
               r->status, reason(r->status), r->type, r->body.len,
               r->headers != NULL ? r->headers : "");
  if (n < 0 || (size_t)n >= sizeof(c->head)) {
    conn_close(c);
    return;
  }
  uv_read_stop((uv_stream_t *)&c->tcp);
  c->state = AC_WRITE;
  uv_timer_start(&c->timer, timer_cb, ADMIN_WRITE_MS, 0);
  bufs[0] = uv_buf_init(c->head, (unsigned)n);
  bufs[1] = uv_buf_init(r->body.data, (unsigned)r->body.len);
  c->wreq.data = c;
  if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, bufs, head_only || r->body.len == 0 ? 1 : 2,
               write_cb) != 0)
    conn_close(c);
}

static void fail(struct aconn *c, int status, const char *why) {
  admin_error(&c->resp, status, "%s", why);
  respond(c, 0);
}

/* ---- routing ---- */

static int hexval(char ch) {
  if (ch >= '0' && ch <= '9')
    return ch - '0';
  ch = (char)(ch | 0x20);
  return ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

/* Splits the path (after its first '/') into percent-decoded segments in `store`. The number
 * of segments, or -1 for a bad escape, a NUL, or too many. */
static int split_path(const char *path, char *store, size_t cap, char **segs) {
  int n = 0;
  size_t o = 0;

  for (const char *p = path + 1;; p++) {
    if (n == ADMIN_MAX_SEGS || o >= cap)
      return -1;
    segs[n] = store + o;
    for (; *p != '\0' && *p != '/'; p++) {
      int hi, lo;
      if (*p == '%') {
        if ((hi = hexval(p[1])) < 0 || (lo = hexval(p[2])) < 0 || (hi | lo) == 0)
          return -1;
        store[o++] = (char)(hi * 16 + lo);
        p += 2;
      } else {
        store[o++] = *p;
      }
    }
    store[o++] = '\0';
    n++;
    if (*p == '\0')
      return n;
  }
}

/* Does `pattern` match the segments? Fills args with what its '*'s matched. */
static int match(const char *pattern, char **segs, int n, struct admin_req *req) {
  const char *p = pattern + 1;
  int i = 0;

  req->nargs = 0;
  for (; i < n; i++) {
    size_t len = strcspn(p, "/");
    if (len == 1 && *p == '*') {
      if (segs[i][0] == '\0' || req->nargs == ADMIN_MAX_ARGS)
        return 0;
      req->args[req->nargs++] = segs[i];
    } else if (strlen(segs[i]) != len || strncmp(p, segs[i], len) != 0) {
      return 0;
    }
    p += len;
    if (*p == '\0')
      return i == n - 1;
    p++;
  }
  return 0;
}

static void route(struct aconn *c, struct admin_req *req, char **segs, int n) {
  char allow[128] = "";
  static char allow_line[160];
  int head = strcmp(req->method, "HEAD") == 0;

  for (size_t t = 0; t < sizeof(route_tables) / sizeof(route_tables[0]); t++) {
    for (const struct admin_route *r = route_tables[t]; r->method != NULL; r++) {
      if (!match(r->pattern, segs, n, req))
        continue;
      if (strcmp(r->method, req->method) == 0 || (head && strcmp(r->method, "GET") == 0)) {
        r->fn(req, &c->resp);
        respond(c, head);
        return;
      }
      if (strstr(allow, r->method) == NULL && strlen(allow) + strlen(r->method) + 8 < sizeof(allow))
        snprintf(allow + strlen(allow), sizeof(allow) - strlen(allow), "%s%s%s",
                 allow[0] ? ", " : "", r->method, strcmp(r->method, "GET") == 0 ? ", HEAD" : "");
    }
  }
  if (allow[0] != '\0') {
    snprintf(allow_line, sizeof(allow_line), "Allow: %s\r\n", allow);
    admin_error(&c->resp, 405, "%s is not allowed on %s (allowed: %s)", req->method, req->path,
                allow);
    c->resp.headers = allow_line;
  } else {
    admin_error(&c->resp, 404, "no such path: %s (try /, /stats, /metrics, /events, /upstreams)",
                req->path);
  }
  respond(c, head);
}

/* The whole request is in: find its route and answer. */
static void dispatch(struct aconn *c) {
  struct admin_req req;
  char store[ADMIN_URL_MAX + ADMIN_MAX_SEGS + 1], *segs[ADMIN_MAX_SEGS], *q;
  int n;

  memset(&req, 0, sizeof(req));
  req.m = c->a->m;
  req.method = llhttp_method_name((llhttp_method_t)c->parser.method);
  c->url[c->url_len] = '\0';
  if (c->url[0] != '/') {
    fail(c, 400, "the target must be a path (origin-form, like /stats)");
    return;
  }
  q = strchr(c->url, '?');
  req.query = q != NULL ? q + 1 : "";
  if (q != NULL)
    *q = '\0';
  req.path = c->url;
  if ((n = split_path(c->url, store, sizeof(store), segs)) < 0) {
    fail(c, 400, "bad path: a bad or NUL percent-escape, or too many segments");
    return;
  }
  abuf_add(&c->body, "", 0); /* NUL-terminated, even when empty */
  req.body = c->body.data != NULL ? c->body.data : "";
  req.body_len = c->body.len;
  route(c, &req, segs, n);
}

/* ---- parsing ---- */

static int on_url(llhttp_t *p, const char *at, size_t len) {
  struct aconn *c = p->data;

  if (c->url_len + len > ADMIN_URL_MAX) {
    c->url_long = 1;
    return HPE_USER;
  }
  memcpy(c->url + c->url_len, at, len);
  c->url_len += (uint32_t)len;
  return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len) {
  struct aconn *c = p->data;

  if (c->body.len + len > ADMIN_BODY_MAX) {
    c->body_long = 1;
    return HPE_USER;
  }
  abuf_add(&c->body, at, len);
  return 0;
}

static int on_pause(llhttp_t *p) {
  return HPE_PAUSED;
}

static const llhttp_settings_t settings = {
    .on_url = on_url,
    .on_body = on_body,
    .on_headers_complete = on_pause,
    .on_message_complete = on_pause,
};

/* The head is complete (c->buf[..c->parsed)): 0 to go on, else answered. */
/* Does the head (request line and header lines, CRLF-terminated) carry an Origin header? */
static int has_origin(const char *p, size_t n) {
  const char *end = p + n;

  while (p < end) {
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    if (eol == NULL)
      break;
    p = eol + 1;
    if ((size_t)(end - p) >= 7 && strncasecmp(p, "origin:", 7) == 0)
      return 1;
  }
  return 0;
}

static int check_head(struct aconn *c) {
  struct px_strict_head sh;
  uint32_t start = 0;
  int m = c->parser.method;

  while (start < c->parsed && (c->buf[start] == '\r' || c->buf[start] == '\n'))
    start++;
  if (px_strict_head(c->buf, start, c->parsed, 1, &sh) != 0) {
    admin_error(&c->resp, 400, "malformed request head: %s", sh.why);
    respond(c, 0);
    return -1;
  }
  if (m == HTTP_POST && has_origin(c->buf + start, c->parsed - start)) {
    /* A web page's form or fetch (a browser always sends Origin with a POST): the API is
     * loopback-only, but a page the operator visits must not change servers through it. */
    fail(c, 403, "a request from a web page (Origin header) cannot change state here");
    return -1;
  }
  if (m == HTTP_CONNECT || c->parser.upgrade) {
    fail(c, 400, "no CONNECT or Upgrade here");
    return -1;
  }
  if ((c->parser.flags & F_CHUNKED) ||
      ((c->parser.flags & F_CONTENT_LENGTH) && c->parser.content_length > 0)) {
    if (m != HTTP_POST) {
      fail(c, 400, "only a POST request carries a body here");
      return -1;
    }
    if ((c->parser.flags & F_CONTENT_LENGTH) && c->parser.content_length > ADMIN_BODY_MAX) {
      fail(c, 413, "the body is over 64 KiB");
      return -1;
    }
  }
  return 0;
}

static void parse_error(struct aconn *c, llhttp_errno_t err) {
  if (c->url_long)
    fail(c, 414, "the target is over 2048 bytes");
  else if (c->body_long)
    fail(c, 413, "the body is over 64 KiB");
  else
    admin_error(&c->resp, 400, "malformed request: %s (%s)", llhttp_errno_name(err),
                llhttp_get_error_reason(&c->parser));
  if (!c->url_long && !c->body_long)
    respond(c, 0);
}

/* Runs the parser over what was read: the head stays in c->buf (for the strict check); body
 * bytes are copied out, so the buffer is reused for them. */
static void feed(struct aconn *c) {
  for (;;) {
    llhttp_errno_t err = llhttp_execute(&c->parser, c->buf + c->parsed, c->len - c->parsed);
    if (err == HPE_OK) {
      if (c->head_done)
        c->len = c->parsed = 0;
      else if ((c->parsed = c->len) == sizeof(c->buf))
        fail(c, 431, "the request head is over 8 KiB");
      return;
    }
    if (err != HPE_PAUSED) {
      parse_error(c, err);
      return;
    }
    c->parsed = (uint32_t)(llhttp_get_error_pos(&c->parser) - c->buf);
    llhttp_resume(&c->parser);
    if (c->head_done) {
      dispatch(c);
      return;
    }
    c->head_done = 1;
    if (check_head(c) != 0)
      return;
  }
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *b) {
  struct aconn *c = h->data;
  *b = uv_buf_init(c->buf + c->len, (unsigned)(sizeof(c->buf) - c->len));
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  struct aconn *c = s->data;

  if (n < 0) {
    conn_close(c); /* gone before a whole request: nothing to answer */
    return;
  }
  if (n == 0 || c->state != AC_READ)
    return;
  c->len += (uint32_t)n;
  feed(c);
}

/* ---- connections ---- */

static void timer_cb(uv_timer_t *t) {
  struct aconn *c = t->data;

  if (c->state == AC_READ)
    fail(c, 408, "the request did not arrive within 5 s");
  else
    conn_close(c); /* a client that does not read its answer, or lingers */
}

static void conn_free(uv_handle_t *h) {
  struct aconn *c = h->data;

  if (--c->refs > 0)
    return;
  abuf_free(&c->body);
  abuf_free(&c->resp.body);
  free(c);
}

static void conn_close(struct aconn *c) {
  if (c->state == AC_CLOSING)
    return;
  c->state = AC_CLOSING;
  if (c->next != NULL)
    c->next->pprev = c->pprev;
  *c->pprev = c->next;
  c->a->nconns--;
  uv_close((uv_handle_t *)&c->tcp, conn_free);
  uv_close((uv_handle_t *)&c->timer, conn_free);
}

/* Over the connection cap: a short 503, then the socket goes. */
static void refuse(uv_stream_t *server) {
  static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                             "Connection: close\r\n\r\n";
  uv_tcp_t *sink = malloc(sizeof(*sink));
  uv_buf_t b = uv_buf_init((char *)busy, sizeof(busy) - 1);

  if (sink == NULL || uv_tcp_init(server->loop, sink) != 0) {
    free(sink);
    return; /* libuv keeps polling; the next accept takes it */
  }
  if (uv_accept(server, (uv_stream_t *)sink) == 0)
    uv_try_write((uv_stream_t *)sink, &b, 1);
  uv_close((uv_handle_t *)sink, (uv_close_cb)free);
}

static void on_conn(uv_stream_t *server, int status) {
  struct admin *a = ((struct alisten *)server->data)->a;
  struct aconn *c;

  if (status < 0) {
    LBP_WARN("admin: accept: %s", uv_strerror(status));
    return;
  }
  if (a->nconns >= ADMIN_MAX_CONNS || (c = calloc(1, sizeof(*c))) == NULL) {
    refuse(server);
    return;
  }
  c->a = a;
  uv_tcp_init(server->loop, &c->tcp);
  uv_timer_init(server->loop, &c->timer);
  c->tcp.data = c->timer.data = c;
  c->refs = 2;
  c->resp.status = 200;
  c->resp.type = "application/json";
  llhttp_init(&c->parser, HTTP_REQUEST, &settings);
  c->parser.data = c;
  c->next = a->conns;
  if (a->conns != NULL)
    a->conns->pprev = &c->next;
  c->pprev = &a->conns;
  a->conns = c;
  a->nconns++;
  if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0 ||
      uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb) != 0) {
    conn_close(c);
    return;
  }
  uv_timer_start(&c->timer, timer_cb, ADMIN_HEAD_MS, 0);
}

/* ---- the listener ---- */

/* Close callback of a handle whose data is its own malloc'ed owner. */
static void free_owner(uv_handle_t *h) {
  free(h->data);
}

static void listener_close(struct admin *a) {
  if (a->ls != NULL)
    uv_close((uv_handle_t *)&a->ls->tcp, free_owner);
  a->ls = NULL;
  a->name[0] = '\0';
}

/* 127.0.0.0/8, ::1, ::ffff:127.0.0.0/104. */
static int loopback(const struct sockaddr *sa) {
  if (sa->sa_family == AF_INET)
    return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
  if (sa->sa_family == AF_INET6) {
    const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
    return IN6_IS_ADDR_LOOPBACK(a6) || (IN6_IS_ADDR_V4MAPPED(a6) && a6->s6_addr[12] == 127);
  }
  return 0;
}

/* Formats the bound address of l into a->name. */
static void bound_name(struct admin *a, struct alisten *l) {
  struct sockaddr_storage ss;
  int len = sizeof(ss);
  char ip[64] = "?";
  unsigned port = 0;

  uv_tcp_getsockname(&l->tcp, (struct sockaddr *)&ss, &len);
  if (ss.ss_family == AF_INET6) {
    uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof(ip));
    port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    snprintf(a->name, sizeof(a->name), "[%s]:%u", ip, port);
  } else {
    uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof(ip));
    port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    snprintf(a->name, sizeof(a->name), "%s:%u", ip, port);
  }
}

/* Binds a->want. 0; UV_EACCES for a public address that is not allowed; or the bind error. */
static int try_bind(struct admin *a) {
  struct cfg_addr addr;
  struct alisten *l;
  int rc;

  memset(&addr, 0, sizeof(addr));
  if ((rc = cfg_parse_hostport(a->want, &addr)) != 0 || (rc = cfg_resolve(&addr)) != 0)
    return rc;
  if ((addr.any || !loopback((struct sockaddr *)&addr.sa)) && !a->allow_public)
    return UV_EACCES;
  if ((l = calloc(1, sizeof(*l))) == NULL)
    return UV_ENOMEM;
  l->a = a;
  uv_tcp_init(a->m->loop, &l->tcp);
  l->tcp.data = l;
  if ((rc = uv_tcp_bind(&l->tcp, (struct sockaddr *)&addr.sa, 0)) != 0 ||
      (rc = uv_listen((uv_stream_t *)&l->tcp, 128, on_conn)) != 0) {
    uv_close((uv_handle_t *)&l->tcp, free_owner);
    return rc;
  }
  listener_close(a); /* the previous address, if the config changed it */
  a->ls = l;
  bound_name(a, l);
  if (!loopback((struct sockaddr *)&addr.sa))
    LBP_WARN("admin: listening on the non-loopback address %s (admin.allow_public): anyone who "
             "can reach it reads the stats",
             a->name);
  LBP_INFO("admin: http://%s/ (stats /stats, metrics /metrics, events /events)", a->name);
  return 0;
}

static void retry_cb(uv_timer_t *t) {
  struct admin *a = t->data;
  int rc = try_bind(a);

  if (rc != UV_EADDRINUSE)
    uv_timer_stop(&a->retry);
}

void admin_apply(struct master *m, const struct lbp_config *cfg) {
  struct admin *a = m->admin;
  const char *want = cfg->admin.listen != NULL ? cfg->admin.listen : "off";
  int rc;

  if (a == NULL) {
    if (strcmp(want, "off") == 0 || (a = calloc(1, sizeof(*a))) == NULL)
      return;
    a->m = m;
    uv_timer_init(m->loop, &a->retry);
    a->retry.data = a;
    m->admin = a;
  }
  if (strcmp(a->want, want) == 0 && a->allow_public == cfg->admin.allow_public)
    return;
  snprintf(a->want, sizeof(a->want), "%s", want);
  a->allow_public = cfg->admin.allow_public;
  uv_timer_stop(&a->retry);
  if (strcmp(want, "off") == 0) {
    listener_close(a);
    LBP_INFO("admin: off");
    return;
  }
  if ((rc = try_bind(a)) == 0)
    return;
  if (rc == UV_EACCES)
    LBP_ERROR("admin: %s is not a loopback address: set admin.allow_public: true to serve the "
              "admin API there (it stays off)",
              want);
  else if (rc == UV_EADDRINUSE && m->upgrade != NULL)
    LBP_INFO("admin: %s is still the old master's: trying again every second", want);
  else
    LBP_ERROR("admin: cannot listen on %s: %s (the admin API is off)", want, uv_strerror(rc));
  if (rc == UV_EADDRINUSE && m->upgrade != NULL)
    uv_timer_start(&a->retry, retry_cb, ADMIN_RETRY_MS, ADMIN_RETRY_MS);
}

void admin_stop(struct master *m) {
  struct admin *a = m->admin;

  if (a == NULL)
    return;
  listener_close(a);
  while (a->conns != NULL)
    conn_close(a->conns);
  uv_close((uv_handle_t *)&a->retry, free_owner);
  m->admin = NULL;
}

const char *admin_address(const struct master *m) {
  const struct admin *a = m->admin;

  if (a == NULL || strcmp(a->want, "off") == 0)
    return "off";
  return a->ls != NULL ? a->name : "unbound";
}
