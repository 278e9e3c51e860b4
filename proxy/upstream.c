/* An HTTP/1 client: connections to servers, a keep-alive pool per server, response parsing,
 * and callbacks to its user. It knows nothing of who asked (a client's request, a health check). */

/*
 * 1. px_up_get hands out a pooled connection (most recently used first; with PX_UP_CHECK a
 *    non-blocking peek skips one whose server already sent FIN or RST) or connects a new one.
 * 2. The user sends the request with px_up_send (a direct writev, else one uv_write in flight)
 *    and says px_up_request_done at its end.
 * 3. Responses are read into a buffer from the pool and parsed by llhttp only to find where the
 *    heads and the message end. Each read is delivered in one on_data call: a final head (as a
 *    px_head over the buffer, so the user can forward it as iovecs), the body bytes after it,
 *    and whether the response is complete. Interim 1xx heads are delivered on their own. A
 *    user that cannot take the bytes now holds them: reading stops until px_up_resume.
 * 4. A complete response on a connection the server keeps, with nothing after it and the whole
 *    request written, returns the connection to its server's idle list; anything else closes
 *    it. Idle connections keep reading into a scratch buffer: a byte or EOF from an idle server
 *    means it is gone, and the connection is dropped before anyone reuses it.
 * 5. One timer measures, in turn: the connect deadline; the response deadline (while a request
 *    write is pending, once the request is written, and between reads; not while the user
 *    holds bytes: a slow client is not the server's fault); the idle time in the pool.
 * 6. A failure closes the connection and reports its type once (on_error); the user decides
 *    what it means.
 */
#include "upstream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { U_CONNECTING, U_BUSY, U_IDLE, U_TAKEN, U_CLOSING };

struct px_up {
  uv_tcp_t tcp;
  uv_timer_t timer;
  uv_connect_t creq;
  uv_write_t wreq;
  llhttp_t parser;
  struct px_head head;
  struct px_upenv *env;
  struct px_server *srv;
  const struct px_up_cbs *cbs;
  void *data;
  struct px_list link;      /* env->conns */
  struct px_list idle_link; /* srv->idle */
  struct px_buf *b;
  uint32_t len, pos, fwd; /* bytes read, parsed, delivered */
  uint8_t state;
  uint8_t refs; /* handles not closed yet */
  uint8_t flags;
  uint8_t writing;
  uint8_t reused;
  uint8_t got_bytes;   /* a response byte arrived in this exchange */
  uint8_t head_new;    /* the final head is parsed and not yet delivered */
  uint8_t holding;     /* the user holds delivered bytes */
  uint8_t complete;    /* the response is complete */
  uint8_t reusable;    /* ... and the server keeps the connection, nothing followed it */
  uint8_t req_done;    /* the user gave the whole request */
  uint8_t send_failed; /* a write failed after the response started */
};

static const char *const fail_names[PX_UP_NFAIL] = {
    "connect failed",     "connect timed out", "write failed",       "closed before responding",
    "response timed out", "bad response",      "response truncated",
};

const char *px_up_fail_name(enum px_up_fail ft) {
  return (unsigned)ft < PX_UP_NFAIL ? fail_names[ft] : "failed";
}

static void up_timer_cb(uv_timer_t *t);
static void up_parse(struct px_up *u);

/* ---- lifetime ---- */

static void up_close_cb(uv_handle_t *h) {
  struct px_up *u = h->data;
  struct px_upenv *env = u->env;

  if (--u->refs > 0)
    return;
  if (u->cbs != NULL && u->cbs->on_closed != NULL)
    u->cbs->on_closed(u);
  px_buf_put(env->bufs, u->b);
  px_list_remove(&u->link);
  env->nconns--;
  px_server_unref(u->srv);
  free(u);
  if (env->gone != NULL)
    env->gone(env);
}

void px_up_close(struct px_up *u, int reset) {
  if (u->state == U_CLOSING)
    return;
  if (u->state == U_IDLE) {
    px_list_remove(&u->idle_link);
    u->srv->nidle--;
  }
  u->state = U_CLOSING;
  if (!reset || uv_tcp_close_reset(&u->tcp, up_close_cb) != 0)
    uv_close((uv_handle_t *)&u->tcp, up_close_cb);
  uv_close((uv_handle_t *)&u->timer, up_close_cb);
}

/* The exchange failed: close, then tell the user (who must forget u). */
static void up_fail(struct px_up *u, enum px_up_fail ft, int err) {
  const struct px_up_cbs *cbs = u->cbs;

  px_up_close(u, 0);
  cbs->on_error(u, ft, err);
}

static void up_timer_update(struct px_up *u) {
  int want = !u->holding && (u->writing || u->req_done || u->got_bytes);

  if (want)
    uv_timer_start(&u->timer, up_timer_cb, u->env->response_ms, 0);
  else
    uv_timer_stop(&u->timer);
}

/* The user released a complete response: pool the connection or close it. Beyond max_idle
 * (keepalive) it is pooled as surplus, closed after PX_UP_SURPLUS_MS idle: under more
 * concurrent requests than keepalive (500 clients on a slow server) closing it now would mean
 * a new connect for the very next request (connect churn, TIME_WAIT, latency); HAProxy keeps
 * them too and purges idle ones. At most keepalive connections are kept for keepalive_timeout,
 * as before. */
static void up_finish(struct px_up *u) {
  struct px_server *srv = u->srv;
  int keep = u->reusable && u->req_done && !u->writing && !u->send_failed && !u->env->closing &&
             !srv->gone && srv->max_idle > 0;
  uint64_t idle_ms = srv->idle_ms;

  u->cbs = NULL;
  u->data = NULL;
  if (!keep) {
    px_up_close(u, 0);
    return;
  }
  u->state = U_IDLE;
  px_buf_put(u->env->bufs, u->b);
  u->b = NULL;
  u->len = u->pos = u->fwd = 0;
  if (srv->nidle >= srv->max_idle && idle_ms > PX_UP_SURPLUS_MS)
    idle_ms = PX_UP_SURPLUS_MS;
  px_list_insert_head(&srv->idle, &u->idle_link);
  srv->nidle++;
  uv_timer_start(&u->timer, up_timer_cb, idle_ms, 0);
}

/* ---- delivering responses ---- */

/* Everything read went to the user: the buffer starts over. */
static void up_rebase(struct px_up *u) {
  if (u->fwd != u->len)
    return;
  u->len = u->pos = u->fwd = 0;
  if (!(u->head.flags & PX_HEAD_DONE))
    px_head_reset(&u->head, u->b->data, 0, 0);
}

/* Gives the user what was parsed since the last delivery. 0 to go on, 1 if the user holds
 * the bytes, -1 if the user closed or took the connection. */
static int up_deliver(struct px_up *u, int complete) {
  const char *b = u->b->data;
  struct px_up_response resp, *rp = NULL;
  uint32_t from = u->fwd;
  int rc;

  if (u->head_new) {
    resp.head = &u->head;
    resp.status = llhttp_get_status_code(&u->parser);
    resp.http_minor = u->parser.http_minor;
    resp.keep_alive = (uint8_t)llhttp_should_keep_alive(&u->parser);
    resp.until_eof = (uint8_t)(resp.status >= 200 && llhttp_message_needs_eof(&u->parser));
    rp = &resp;
    from = u->head.end;
    u->head_new = 0;
  }
  if (rp == NULL && from == u->pos && !complete)
    return 0;
  u->fwd = u->pos;
  u->complete = (uint8_t)complete;
  rc = u->cbs->on_data(u, rp, b + from, u->pos - from, complete);
  if (u->state != U_BUSY)
    return -1;
  if (rc == 1) {
    u->holding = 1;
    uv_read_stop((uv_stream_t *)&u->tcp);
    uv_timer_stop(&u->timer);
    return 1;
  }
  if (complete) {
    up_finish(u);
    return -1;
  }
  up_rebase(u);
  return 0;
}

/* A head ended at `pos`: interim heads are delivered at once, a final one after its body
 * bytes. 0 to go on parsing, else stop. */
static int up_head(struct px_up *u, uint32_t pos) {
  int status = llhttp_get_status_code(&u->parser);

  u->pos = pos;
  if (px_head_complete(&u->head, pos) < 0 || status < 100) {
    up_fail(u, PX_UP_BAD_RESPONSE, UV_EPROTO);
    return -1;
  }
  u->head_new = 1;
  if (status == 101) {
    /* Only a request that asked for an upgrade may get one; the user takes the connection. */
    if (!(u->flags & PX_UP_UPGRADE)) {
      up_fail(u, PX_UP_BAD_RESPONSE, UV_EPROTO);
      return -1;
    }
    up_deliver(u, 1);
    return -1;
  }
  if (status < 200)
    return up_deliver(u, 0);
  if (u->flags & PX_UP_HEAD)
    u->parser.flags |= F_SKIPBODY; /* a HEAD response has no body, whatever it announces */
  return 0;
}

static void up_parse(struct px_up *u) {
  const char *b = u->b->data;

  u->head.base = b;
  while (u->state == U_BUSY && !u->holding) {
    llhttp_errno_t err = px_head_execute(&u->parser, &u->head, b + u->pos, u->len - u->pos);
    uint32_t pos;

    if (err == HPE_OK) {
      u->pos = u->len;
      if (u->head.flags & PX_HEAD_DONE)
        up_deliver(u, 0);
      else if (u->len >= u->env->bufs->size)
        up_fail(u, PX_UP_BAD_RESPONSE, UV_E2BIG); /* a head that does not fit */
      return;
    }
    if (err != HPE_PAUSED) {
      if (u->head.why == NULL)
        u->head.why = px_hpe_why(err); /* the strict checks did not say: llhttp's code */
      up_fail(u, PX_UP_BAD_RESPONSE, UV_EPROTO);
      return;
    }
    pos = (uint32_t)(llhttp_get_error_pos(&u->parser) - b);
    llhttp_resume(&u->parser);
    if (!(u->head.flags & PX_HEAD_DONE)) {
      if (up_head(u, pos) != 0)
        return;
      continue;
    }
    u->pos = pos;
    if (llhttp_get_status_code(&u->parser) < 200) {
      px_head_reset(&u->head, b, 0, pos); /* an interim response ended: the next head */
      continue;
    }
    /* Message complete. Keep-alive is read before the parser moves on. */
    u->reusable = llhttp_should_keep_alive(&u->parser) && pos == u->len;
    up_deliver(u, 1);
    return;
  }
}

/* ---- reading ---- */

static void up_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  static char scratch[64]; /* idle connections: any byte read is a reason to close */
  struct px_up *u = h->data;
  size_t size = u->env->bufs->size;

  if (u->state != U_BUSY) {
    *buf = uv_buf_init(scratch, sizeof(scratch));
    return;
  }
  if (u->b == NULL)
    u->b = px_buf_get(u->env->bufs);
  if (u->b == NULL || u->len >= size) {
    *buf = uv_buf_init(NULL, 0); /* UV_ENOBUFS */
    return;
  }
  *buf = uv_buf_init(u->b->data + u->len, (unsigned)(size - u->len));
}

/* EOF or an error while busy. */
static void up_eof(struct px_up *u, int err) {
  if (err == UV_EOF && (u->head.flags & PX_HEAD_DONE) && llhttp_message_needs_eof(&u->parser)) {
    /* A response delimited by the close: it is complete now (and not reusable). */
    llhttp_errno_t e = llhttp_finish(&u->parser);
    if (e == HPE_OK || e == HPE_PAUSED) {
      u->reusable = 0;
      up_deliver(u, 1);
      return;
    }
  }
  if (err == UV_ENOBUFS && u->b == NULL)
    err = UV_ENOMEM;
  if (!u->got_bytes)
    up_fail(u, PX_UP_CLOSED, err == UV_EOF ? UV_ECONNRESET : err);
  else
    up_fail(u, PX_UP_TRUNCATED, err);
}

static void up_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  struct px_up *u = s->data;

  if (u->state == U_IDLE) {
    if (nread != 0)
      px_up_close(u, 0);
    return;
  }
  if (u->state != U_BUSY || nread == 0)
    return;
  if (nread < 0) {
    up_eof(u, (int)nread);
    return;
  }
  u->got_bytes = 1;
  u->len += (uint32_t)nread;
  uv_timer_start(&u->timer, up_timer_cb, u->env->response_ms, 0);
  up_parse(u);
}

void px_up_resume(struct px_up *u) {
  if (u->state != U_BUSY || !u->holding)
    return;
  u->holding = 0;
  if (u->complete) {
    up_finish(u);
    return;
  }
  up_rebase(u);
  if (uv_read_start((uv_stream_t *)&u->tcp, up_alloc, up_read_cb) != 0) {
    up_fail(u, u->got_bytes ? PX_UP_TRUNCATED : PX_UP_CLOSED, UV_EPIPE);
    return;
  }
  up_timer_update(u);
  if (u->pos < u->len)
    up_parse(u); /* what an interim head left in the buffer */
}

/* ---- writing ---- */

static void up_write_cb(uv_write_t *req, int status) {
  struct px_up *u = req->data;

  u->writing = 0;
  if (u->state != U_BUSY)
    return;
  if (status < 0) {
    if (!u->got_bytes) {
      up_fail(u, PX_UP_WRITE, status);
      return;
    }
    u->send_failed = 1;
  }
  up_timer_update(u);
  u->cbs->on_sent(u, status);
}

int px_up_send(struct px_up *u, uv_buf_t *bufs, unsigned n) {
  int rc = px_write((uv_stream_t *)&u->tcp, &u->wreq, bufs, n, up_write_cb);

  if (rc < 0) {
    if (u->got_bytes)
      u->send_failed = 1;
    else
      px_up_close(u, 0);
    return rc;
  }
  if (rc == 0) {
    u->writing = 1;
    up_timer_update(u);
  }
  return rc;
}

void px_up_request_done(struct px_up *u) {
  u->req_done = 1;
  if (u->state == U_BUSY && !u->holding)
    up_timer_update(u);
}

/* ---- connecting and the pool ---- */

static void up_timer_cb(uv_timer_t *t) {
  struct px_up *u = t->data;

  switch (u->state) {
  case U_IDLE:
    px_up_close(u, 0);
    break;
  case U_CONNECTING:
    up_fail(u, PX_UP_CONNECT_TIMEOUT, UV_ETIMEDOUT);
    break;
  case U_BUSY:
    up_fail(u, u->got_bytes ? PX_UP_TRUNCATED : PX_UP_TIMEOUT, UV_ETIMEDOUT);
    break;
  default:
    break;
  }
}

/* Prepares a connection for a new exchange. */
static void up_begin(struct px_up *u, unsigned flags, const struct px_up_cbs *cbs, void *data) {
  u->cbs = cbs;
  u->data = data;
  u->flags = (uint8_t)flags;
  u->got_bytes = u->head_new = u->holding = u->complete = u->reusable = 0;
  u->req_done = u->send_failed = 0;
  u->len = u->pos = u->fwd = 0;
  if (!(flags & PX_UP_RAW)) {
    llhttp_init(&u->parser, HTTP_RESPONSE, &px_response_settings);
    u->parser.data = &u->head;
    px_head_reset(&u->head, NULL, 0, 0);
  }
}

static void up_connect_cb(uv_connect_t *req, int status) {
  struct px_up *u = req->data;

  if (u->state != U_CONNECTING)
    return;
  if (status == 0 && !(u->flags & PX_UP_RAW))
    status = uv_read_start((uv_stream_t *)&u->tcp, up_alloc, up_read_cb);
  if (status < 0) {
    up_fail(u, PX_UP_CONNECT, status);
    return;
  }
  uv_tcp_nodelay(&u->tcp, 1);
  uv_timer_stop(&u->timer);
  u->state = U_BUSY;
  u->cbs->on_ready(u);
}

/* A pooled connection that is still good, or NULL. */
static struct px_up *up_pooled(struct px_server *srv, unsigned flags) {
  struct px_list *e;

  while ((e = px_list_first(&srv->idle)) != NULL) {
    struct px_up *u = px_container_of(e, struct px_up, idle_link);
    px_list_remove(e);
    srv->nidle--;
    u->state = U_BUSY;
    /* The server may have closed it since the loop last polled: a FIN waiting in the socket
     * is no reason to send a request that cannot be retried into a dying connection. */
    if ((flags & PX_UP_CHECK) && px_peek_closed((uv_stream_t *)&u->tcp) != 0) {
      px_up_close(u, 0);
      continue;
    }
    uv_timer_stop(&u->timer);
    u->reused = 1;
    return u;
  }
  return NULL;
}

int px_up_get(struct px_upenv *env, struct px_server *srv, unsigned flags,
              const struct px_up_cbs *cbs, void *data, struct px_up **out) {
  struct px_up *u = NULL;
  int rc;

  if (!(flags & (PX_UP_FRESH | PX_UP_RAW)) && (u = up_pooled(srv, flags)) != NULL) {
    up_begin(u, flags, cbs, data);
    *out = u;
    return 1;
  }
  if ((u = calloc(1, sizeof(*u))) == NULL)
    return UV_ENOMEM;
  u->env = env;
  u->srv = srv;
  px_server_ref(srv);
  u->state = U_CONNECTING;
  px_list_init(&u->idle_link);
  uv_tcp_init(env->loop, &u->tcp);
  uv_timer_init(env->loop, &u->timer);
  u->tcp.data = u->timer.data = u->creq.data = u->wreq.data = u;
  u->refs = 2;
  px_list_insert_tail(&env->conns, &u->link);
  env->nconns++;
  up_begin(u, flags, cbs, data);
  rc = uv_tcp_connect(&u->creq, &u->tcp, (const struct sockaddr *)&srv->addr, up_connect_cb);
  if (rc < 0) {
    u->cbs = NULL; /* nothing to report: the caller learns it from rc */
    px_up_close(u, 0);
    return rc;
  }
  uv_timer_start(&u->timer, up_timer_cb, env->connect_ms, 0);
  *out = u;
  return 0;
}

uv_stream_t *px_up_takeover(struct px_up *u, uv_buf_t *rest) {
  uv_read_stop((uv_stream_t *)&u->tcp);
  uv_timer_stop(&u->timer);
  u->state = U_TAKEN;
  u->holding = 0;
  if (rest != NULL)
    *rest = u->b != NULL ? uv_buf_init(u->b->data + u->pos, u->len - u->pos) : uv_buf_init(NULL, 0);
  return (uv_stream_t *)&u->tcp;
}

void px_up_set_user(struct px_up *u, const struct px_up_cbs *cbs, void *data) {
  u->cbs = cbs;
  u->data = data;
}

void *px_up_data(const struct px_up *u) {
  return u->data;
}

struct px_head *px_up_head(struct px_up *u) {
  return &u->head;
}

const char *px_up_why(const struct px_up *u) {
  return u->head.why;
}

struct px_server *px_up_server(const struct px_up *u) {
  return u->srv;
}

int px_up_reused(const struct px_up *u) {
  return u->reused;
}

int px_up_response_started(const struct px_up *u) {
  return u->got_bytes;
}

/* ---- servers and the environment ---- */

struct px_server *px_server_new(const struct sockaddr *sa, const char *name, unsigned max_idle,
                                uint64_t idle_ms) {
  /* Its counters are a cache line of their own: the size is a multiple of the alignment. */
  struct px_server *srv = aligned_alloc(_Alignof(struct px_server), sizeof(*srv));

  if (srv == NULL)
    return NULL;
  memset(srv, 0, sizeof(*srv));
  srv->sst.st = &srv->own;
  srv->sst.mine = &srv->own_mine;
  memcpy(&srv->addr, sa,
         sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
  snprintf(srv->name, sizeof(srv->name), "%.63s", name);
  px_list_init(&srv->idle);
  srv->max_idle = max_idle;
  srv->idle_ms = idle_ms;
  srv->refs = 1;
  return srv;
}

void px_server_ref(struct px_server *srv) {
  srv->refs++;
}

void px_server_unref(struct px_server *srv) {
  if (--srv->refs == 0)
    free(srv);
}

void px_server_retire(struct px_server *srv) {
  struct px_list *e;

  srv->gone = 1;
  while ((e = px_list_first(&srv->idle)) != NULL)
    px_up_close(px_container_of(e, struct px_up, idle_link), 0); /* unlists it */
}

void px_upenv_init(struct px_upenv *env, uv_loop_t *loop, struct px_bufpool *bufs,
                   uint64_t connect_ms, uint64_t response_ms) {
  memset(env, 0, sizeof(*env));
  env->loop = loop;
  env->bufs = bufs;
  env->connect_ms = connect_ms;
  env->response_ms = response_ms;
  px_list_init(&env->conns);
}

void px_upenv_close_all(struct px_upenv *env) {
  env->closing = 1;
  for (struct px_list *e = env->conns.next; e != &env->conns; e = e->next) {
    struct px_up *u = px_container_of(e, struct px_up, link);
    px_up_close(u, 0); /* stays listed until its close callback */
  }
}
