/* lbp-backend, the libuv HTTP/1.1 test upstream: connection I/O, the server and startup. */

/* The backend names itself, streams, echoes and misbehaves on request. backend.h describes how
 * a connection works; backend_http.c holds the endpoints, request parsing and llhttp callbacks.
 * For smuggling tests it can record every byte each connection sends and every request it
 * parses (--record 1, or GET /mode?record=1; read back with GET /recorded), and parse like a
 * CR-tolerant server (--cr-tolerant 1, or GET /mode?cr_tolerant=1). */

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <llhttp.h>
#include <uv.h>

#include "backend.h"
#include "pattern.h"

#define COPY_MAX  512
#define LINGER_MS 3000

struct options g_opt = {.listen = "127.0.0.1:0", .name = "backend", .size = -1, .procs = 1};
struct root_response g_root;
uint64_t g_accepted;

static uv_loop_t *g_loop;
static uv_tcp_t g_server;
static uv_signal_t g_sig[2];
static struct conn *g_conns;

static void *xrealloc(void *p, size_t n) {
  p = realloc(p, n);
  if (p == NULL) {
    fprintf(stderr, "lbp-backend: out of memory\n");
    abort();
  }
  return p;
}

/* ---- Output batches ---- */

size_t be_queued(const struct conn *c) {
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

/* Returns room for n bytes at the end of the fill buffer; be_out_commit() appends them. */
char *be_out_reserve(struct conn *c, size_t n) {
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

void be_out_commit(struct conn *c, size_t n) {
  struct batch *b = c->fill;
  if (b->n > 0 && b->iov[b->n - 1].base == NULL) {
    b->iov[b->n - 1].len += n;
    b->bytes += n;
  } else {
    batch_push(b, NULL, n);
  }
  b->len += n;
}

void be_out_bytes(struct conn *c, const void *data, size_t n) {
  if (n == 0)
    return;
  memcpy(be_out_reserve(c, n), data, n);
  be_out_commit(c, n);
}

/* Static bytes are referenced, not copied, unless small enough that copying is cheaper. */
void be_out_static(struct conn *c, const char *data, size_t n) {
  if (n <= COPY_MAX) {
    be_out_bytes(c, data, n);
    return;
  }
  batch_push(c->fill, data, n);
}

void be_out_fmt(struct conn *c, const char *fmt, ...) {
  va_list ap;
  size_t room = 256;
  for (;;) {
    char *p = be_out_reserve(c, room);
    va_start(ap, fmt);
    int n = vsnprintf(p, room, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < room) {
      be_out_commit(c, (size_t)n);
      return;
    }
    room = (size_t)n + 1;
  }
}

/* ---- Recording ---- */

#define REC_MAX (4 << 20)

struct rec_entry {
  uint64_t conn;
  int type;
  size_t off, len, kept;
};

static struct rec_entry *g_rec;
static size_t g_nrec, g_caprec;
static char *g_recbuf;
static size_t g_reclen;

void be_record_add(uint64_t conn, int type, const void *p, size_t n) {
  if (!g_opt.record || n == 0)
    return;
  if (g_nrec == g_caprec) {
    g_caprec = g_caprec ? 2 * g_caprec : 256;
    g_rec = xrealloc(g_rec, g_caprec * sizeof(*g_rec));
  }
  size_t kept = g_reclen + n <= REC_MAX ? n : 0;
  if (kept > 0) {
    g_recbuf = xrealloc(g_recbuf, g_reclen + n);
    memcpy(g_recbuf + g_reclen, p, n);
  }
  g_rec[g_nrec++] = (struct rec_entry){conn, type, g_reclen, n, kept};
  g_reclen += kept;
}

static uint64_t g_control[64];
static size_t g_ncontrol;

void be_record_control(uint64_t conn) {
  if (g_ncontrol < sizeof(g_control) / sizeof(g_control[0]))
    g_control[g_ncontrol++] = conn;
}

static int is_control(uint64_t conn) {
  for (size_t i = 0; i < g_ncontrol; i++)
    if (g_control[i] == conn)
      return 1;
  return 0;
}

char *be_record_render(int type, size_t *len, uint64_t *total, uint64_t *nconns) {
  size_t cap = 64, n = 0;
  char *out = xrealloc(NULL, cap);
  *total = *nconns = 0;
  for (size_t i = 0; i < g_nrec; i++) {
    const struct rec_entry *e = &g_rec[i];
    int first = 1;
    if (e->type != type || is_control(e->conn))
      continue;
    for (size_t j = 0; j < i; j++) /* its connection's first entry of this type? */
      if (g_rec[j].conn == e->conn && g_rec[j].type == type)
        first = 0;
    if (!first)
      continue;
    (*nconns)++;
    for (size_t j = i; j < g_nrec; j++) {
      const struct rec_entry *f = &g_rec[j];
      if (f->conn != e->conn || f->type != type)
        continue;
      if (cap < n + f->kept + 64) {
        cap = 2 * (n + f->kept + 64);
        out = xrealloc(out, cap);
      }
      if (j == i)
        n += (size_t)snprintf(out + n, cap - n, "=== conn %" PRIu64 "\n", e->conn);
      memcpy(out + n, g_recbuf + f->off, f->kept);
      n += f->kept;
      *total += f->len;
    }
  }
  *len = n;
  return out;
}

/* CR-tolerant mode (--cr-tolerant, /mode?cr_tolerant=1): like Python's http.server, a CR that
 * no LF follows ends a line. The LF llhttp wants is inserted after it, in place, into the n
 * bytes just read at p (room permitting); a CR ending a read gets its LF, if due, at the start
 * of the next one. Returns the new length. */
static size_t cr_tolerate(struct conn *c, char *p, size_t n, size_t room) {
  int held = c->cr_last, prev = held;
  size_t add = 0, w;
  for (size_t i = 0; i < n; i++) {
    add += prev && p[i] != '\n';
    prev = p[i] == '\r';
  }
  c->cr_last = prev;
  if (add == 0 || add > room - n)
    return n;
  /* Backwards, so every byte moves once; positions before i are still unmoved when read. */
  w = n + add;
  for (size_t i = n; i-- > 0;) {
    int after_cr = i > 0 ? p[i - 1] == '\r' : held;
    p[--w] = p[i];
    if (after_cr && p[w] != '\n')
      p[--w] = '\n';
  }
  return n + add;
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

void be_conn_close(struct conn *c) {
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

/* --raw: the client's bytes come back as they are; its EOF gets what was received, counted and
 * checksummed, and then ours (a half-close both ways, as a raw protocol test needs). */
static void raw_input(struct conn *c, const char *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    c->raw_fnv = (c->raw_fnv ^ (unsigned char)p[i]) * 0x100000001b3ULL;
  c->raw_len += n;
  be_out_bytes(c, p, n);
  be_conn_progress(c);
}

static void raw_eof(struct conn *c) {
  be_out_fmt(c, "name=%s len=%" PRIu64 " fnv=%016" PRIx64 "\n", g_opt.name, c->raw_len, c->raw_fnv);
  c->close_after_flush = 1;
  c->peer_eof = 1;
  be_conn_progress(c);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  struct conn *c = s->data;
  if (c->closing || nread == 0)
    return;
  if (g_opt.raw && !c->discard) {
    if (nread > 0)
      raw_input(c, buf->base, (size_t)nread);
    else if (nread == UV_EOF)
      raw_eof(c);
    else
      be_conn_close(c);
    return;
  }
  if (nread == UV_EOF && !c->discard) {
    c->peer_eof = 1;
    be_conn_progress(c);
    return;
  }
  if (nread < 0) {
    be_conn_close(c);
    return;
  }
  if (c->discard)
    return;
  if (c->ka_armed) {
    c->ka_armed = 0;
    uv_timer_stop(&c->timer);
  }
  be_record_add(c->id, REC_RAW, buf->base, (size_t)nread);
  if (g_opt.cr_tolerant)
    nread = (ssize_t)cr_tolerate(c, buf->base, (size_t)nread, IN_CAP - c->in_off - c->in_len);
  c->in_len += (size_t)nread;
  be_conn_parse(c);
}

/* Reads only when the parser may run, its buffer is empty and output is not piling up; a
 * discarding connection (hang, linger) always reads, to notice the peer's close. */
static void update_reading(struct conn *c) {
  int want = !c->closing && !c->peer_eof &&
             (c->discard || (!c->blocked && !c->close_after_flush && c->in_len == 0 &&
                             be_queued(c) < HIGH_WATER));
  if (want && !c->reading) {
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0) {
      be_conn_close(c);
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
    be_conn_close(c);
    return;
  }
  c->discard = 1;
  c->in_len = c->in_off = 0;
  uv_timer_start(&c->timer, be_on_timer, LINGER_MS, 0);
  update_reading(c);
}

static void on_write(uv_write_t *req, int status) {
  struct conn *c = req->data;
  if (status < 0 || c->closing) {
    be_conn_close(c);
    return;
  }
  batch_reset(&c->b[c->fill == &c->b[0]]);
  c->writing = 0;
  c->flight_bytes = 0;
  be_conn_progress(c);
}

/* Starts writing the fill batch unless a write is in flight. While streaming it always goes
 * through uv_write, so the write callback keeps the stream going. */
void be_conn_flush(struct conn *c) {
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
      be_conn_close(c);
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
    be_conn_close(c);
    return;
  }
  c->writing = 1;
  c->flight_bytes = left;
  c->fill = &c->b[b == &c->b[0]];
}

void be_conn_fin(struct conn *c) {
  uv_os_fd_t fd;
  int on = 1;

  /* Corked, the response waits in the kernel and leaves with the FIN in one segment: the peer
   * reads the response and finds the EOF right behind it, whatever the scheduler does. */
  if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0)
    setsockopt(fd, IPPROTO_TCP, TCP_CORK, &on, sizeof(on));
  be_conn_flush(c);
  if (c->writing || uv_fileno((uv_handle_t *)&c->tcp, &fd) != 0) {
    c->close_after_flush = c->blocked = 1; /* did not fit at once: an ordinary close */
    return;
  }
  shutdown(fd, SHUT_WR);
  c->shutting = c->discard = c->blocked = 1;
  c->in_len = c->in_off = 0;
  uv_timer_start(&c->timer, be_on_timer, LINGER_MS, 0);
}

/* --keepalive-timeout: a connection idle between requests is closed after that long, as real
 * servers do (Node.js 5 s, Apache 5 s, gunicorn 2 s). */
static void keepalive_update(struct conn *c) {
  int idle = g_opt.keepalive_ms > 0 && !c->ws && !g_opt.raw && !c->blocked && !c->discard &&
             !c->shutting && !c->close_after_flush && !c->writing && c->fill->bytes == 0 &&
             c->in_len == 0 && !c->req.open && !c->st.active && !c->peer_eof;

  if (idle && !c->ka_armed) {
    c->ka_armed = 1;
    uv_timer_start(&c->timer, be_on_timer, g_opt.keepalive_ms, 0);
  } else if (!idle && c->ka_armed) {
    c->ka_armed = 0;
    uv_timer_stop(&c->timer);
  }
}

/* Called whenever output drained or the peer finished sending: keeps streams going, closes
 * connections that are done, and re-evaluates reading. */
void be_conn_progress(struct conn *c) {
  if (c->closing)
    return;
  be_conn_flush(c);
  if (c->st.active && be_queued(c) < HIGH_WATER)
    be_stream_drive(c);
  if (c->closing)
    return;
  int drained = !c->writing && c->fill->bytes == 0;
  if (c->close_after_flush && drained && !c->shutting) {
    c->shutting = 1;
    if (c->peer_eof) {
      be_conn_close(c);
      return;
    }
    if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, on_shutdown) < 0) {
      be_conn_close(c);
      return;
    }
  } else if (c->peer_eof && drained && !c->blocked && !c->close_after_flush && c->in_len == 0) {
    be_conn_close(c);
    return;
  }
  update_reading(c);
  keepalive_update(c);
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
    be_conn_close(c);
    return;
  }
  c->id = ++g_accepted;
  c->raw_fnv = 0xcbf29ce484222325ULL;
  uv_tcp_nodelay(&c->tcp, 1);
  llhttp_init(&c->parser, HTTP_REQUEST, &g_settings);
  c->parser.data = c;
  update_reading(c);
}

static void on_signal(uv_signal_t *s, int signum) {
  if (!uv_is_closing((uv_handle_t *)&g_server))
    uv_close((uv_handle_t *)&g_server, NULL);
  while (g_conns != NULL)
    be_conn_close(g_conns);
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

static void usage(void) {
  fprintf(stderr, "usage: lbp-backend [--listen HOST:PORT] [--name NAME|-] [--size BYTES] "
                  "[--raw 1] [--keepalive-timeout MS] "
                  "[--delay MS] [--procs N] [--record 0|1] [--cr-tolerant 0|1]\n");
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
    else if (klen == 5 && strncmp(a, "--raw", 5) == 0)
      g_opt.raw = atoi(v);
    else if (klen == 19 && strncmp(a, "--keepalive-timeout", 19) == 0)
      g_opt.keepalive_ms = strtoull(v, NULL, 10);
    else if (klen == 8 && strncmp(a, "--record", 8) == 0)
      g_opt.record = atoi(v);
    else if (klen == 13 && strncmp(a, "--cr-tolerant", 13) == 0)
      g_opt.cr_tolerant = atoi(v);
    else
      usage();
  }
  /* --name -: the host name, so that each replica of a scaled container service names itself
   * (a container's host name is its short id). */
  static char host[256];
  if (strcmp(g_opt.name, "-") == 0) {
    if (gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0')
      snprintf(host, sizeof(host), "backend");
    g_opt.name = host;
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
  be_init_settings();
  int fd = open_listener();
  int rc = g_opt.procs > 1 ? run_procs(fd) : serve(fd);
  free(g_root.prefix);
  free(g_root.body);
  return rc;
}
