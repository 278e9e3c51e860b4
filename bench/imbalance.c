/* lbp-imbalance: keep-alive load where the busy connections all land on one worker of a dealer. */

/*
 * What bench/run.sh relies on (the "imbalanced" workload):
 *
 * 1. Usage: lbp-imbalance --connect HOST:PORT [--path /] [--conns 50] [--heavy 0.5]
 *    [--ratio 10] [--warmup 1] [--duration 3] [--timeout-ms 10000] [--hold]
 * 2. Set-up, one connection at a time: connection i opens only once connection i-1 has its
 *    first response. The heavy ones are spread evenly over that order, the first one heavy
 *    (--heavy 0.5: heavy, light, heavy, light, ...), so a dispatcher that deals connections to
 *    two workers in turn gives every heavy connection to the same worker.
 * 3. Load, one request in flight per connection: a heavy connection sends its next request as
 *    soon as its response is complete (closed loop); a light one sends its next only once the
 *    heavy connections' average count of completed requests is at least RATIO times its own.
 *    So a heavy connection makes about RATIO times the requests of a light one, whatever the
 *    target's speed.
 * 4. Periods: --warmup seconds, then no new request until those in flight are answered; with
 *    --hold it prints "warm requests=N ..." and waits for SIGUSR1, so that the bench can read
 *    the target's counters while nothing is in flight. Then --duration seconds are measured:
 *    every request sent in them counts, answered in them or in the drain after them (no new
 *    request then), so the target's own counters read around them match these figures.
 * 5. Output: one line with wrk-report.lua's keys plus the heavy/light split:
 *    "LBP_RESULT requests= duration_us= bytes= rps= p50_us= p90_us= p99_us= p999_us= max_us=
 *    heavy= light= connect_err= read_err= write_err= timeout_err= status_err= errors=";
 *    latency runs from a request's first write to its response's last byte. With --hold the
 *    connections then stay open until SIGTERM, SIGINT or SIGUSR1.
 * 6. Errors. In the set-up any failure ends the program (exit 1). After it, a reset or EOF, a
 *    failed write, a malformed, non-2xx, chunked or unframed response, a "Connection: close",
 *    or no whole response within --timeout-ms is said on stderr, counted by kind, and its
 *    connection closed for good (a new one would land on another worker); the run goes on
 *    and the exit status is 1. SIGTERM or SIGINT before the result: exit 1.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HEAD_CAP 8192
#define SIG_TAG  UINT32_MAX
#define TICK_MS  100

enum cstate { C_CONNECTING, C_SENDING, C_READING, C_IDLE, C_DEAD };

/* Error kinds, as wrk counts them (a connect error only ever happens in the set-up). */
enum ekind { E_READ, E_WRITE, E_TIMEOUT, E_STATUS, E_KINDS };

enum phase { P_SETUP, P_WARM, P_WARM_DRAIN, P_PAUSED, P_MEASURE, P_DRAIN, P_HELD, P_DONE };

struct conn {
  int fd;
  enum cstate state;
  int heavy;
  int counted;      /* sent during the measured period */
  uint64_t done;    /* responses completed */
  uint64_t t_sent;  /* ns: when the request (or, in the set-up, the connect) started */
  size_t sent;      /* request bytes written */
  size_t got;       /* bytes read while the head is incomplete */
  size_t expect;    /* once the head is parsed: the response bytes still due */
  size_t resp_size; /* head + body of the current response */
  char buf[HEAD_CAP];
};

struct opts {
  struct sockaddr_in addr;
  const char *target, *path;
  unsigned conns;
  double heavy, ratio, warmup_s, duration_s;
  long timeout_ms;
  int hold;
};

struct run {
  struct opts o;
  struct conn *cs;
  int ep;
  enum phase phase;
  unsigned nheavy, opened, in_flight;
  uint64_t heavy_done, completed;
  uint64_t t_end, t_start, t_stop, t_tick; /* ns */
  uint64_t *lat;                           /* measured latencies, ns */
  size_t nlat, cap;
  uint64_t bytes, m_heavy, m_light;
  uint64_t err[E_KINDS];
};

static const char *const kind_names[E_KINDS] = {"read", "write", "timeout", "response"};

static char request[1024];
static size_t request_len;

/* Reports a fatal error (with strerror(err) when err != 0) and exits 1. */
__attribute__((format(printf, 2, 3), noreturn)) static void die(int err, const char *fmt, ...) {
  va_list ap;

  fprintf(stderr, "lbp-imbalance: ");
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  if (err)
    fprintf(stderr, ": %s", strerror(err));
  fputc('\n', stderr);
  exit(1);
}

static void usage(void) {
  fprintf(stderr, "usage: lbp-imbalance --connect HOST:PORT [--path /] [--conns 50] "
                  "[--heavy 0.5] [--ratio 10] [--warmup 1] [--duration 3] "
                  "[--timeout-ms 10000] [--hold]\n");
  exit(2);
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void set_target(struct opts *o) {
  char host[64];
  const char *colon = strrchr(o->target, ':');

  if (colon == NULL || (size_t)(colon - o->target) >= sizeof(host))
    usage();
  memcpy(host, o->target, (size_t)(colon - o->target));
  host[colon - o->target] = '\0';
  o->addr.sin_family = AF_INET;
  o->addr.sin_port = htons((uint16_t)atoi(colon + 1));
  if (inet_pton(AF_INET, host, &o->addr.sin_addr) != 1)
    die(0, "not an IPv4 address: %s", host);
  request_len = (size_t)snprintf(request, sizeof(request),
                                 "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: lbp-imbalance\r\n\r\n",
                                 o->path, o->target);
  if (request_len >= sizeof(request))
    usage();
}

static void parse_args(int argc, char **argv, struct opts *o) {
  memset(o, 0, sizeof(*o));
  o->path = "/";
  o->conns = 50;
  o->heavy = 0.5;
  o->ratio = 10;
  o->warmup_s = 1;
  o->duration_s = 3;
  o->timeout_ms = 10000;
  for (int i = 1; i < argc; i++) {
    const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(k, "--hold") == 0) {
      o->hold = 1;
      continue;
    }
    if (v == NULL)
      usage();
    i++;
    if (strcmp(k, "--connect") == 0)
      o->target = v;
    else if (strcmp(k, "--path") == 0)
      o->path = v;
    else if (strcmp(k, "--conns") == 0)
      o->conns = (unsigned)strtoul(v, NULL, 10);
    else if (strcmp(k, "--heavy") == 0)
      o->heavy = strtod(v, NULL);
    else if (strcmp(k, "--ratio") == 0)
      o->ratio = strtod(v, NULL);
    else if (strcmp(k, "--warmup") == 0)
      o->warmup_s = strtod(v, NULL);
    else if (strcmp(k, "--duration") == 0)
      o->duration_s = strtod(v, NULL);
    else if (strcmp(k, "--timeout-ms") == 0)
      o->timeout_ms = strtol(v, NULL, 10);
    else
      usage();
  }
  if (o->target == NULL || o->conns == 0 || o->conns > 100000 || !(o->heavy >= 0) || o->heavy > 1 ||
      !(o->ratio > 0) || !(o->warmup_s >= 0) || !(o->duration_s > 0) || o->timeout_ms <= 0 ||
      o->path[0] != '/')
    usage();
  set_target(o);
}

/* Connection i of n is heavy when the running count of heavy ones, rounded up, steps at i:
 * h of n spread evenly, the first one heavy. */
static int is_heavy(unsigned i, unsigned n, unsigned h) {
  return ((uint64_t)(i + 1) * h + n - 1) / n > ((uint64_t)i * h + n - 1) / n;
}

static void watch(struct run *r, struct conn *c, uint32_t events) {
  struct epoll_event ev = {.events = events, .data.u32 = (uint32_t)(c - r->cs)};
  if (epoll_ctl(r->ep, EPOLL_CTL_MOD, c->fd, &ev) != 0)
    die(errno, "epoll_ctl");
}

/* Counts a failure of c and closes it for good; in the set-up, ends the program instead. */
__attribute__((format(printf, 4, 5))) static void conn_fail(struct run *r, struct conn *c,
                                                            enum ekind kind, const char *fmt, ...) {
  char why[256];
  va_list ap;

  va_start(ap, fmt);
  vsnprintf(why, sizeof(why), fmt, ap);
  va_end(ap);
  if (r->phase == P_SETUP)
    die(0, "set-up of connection %u of %u (to %s): %s", (unsigned)(c - r->cs) + 1, r->o.conns,
        r->o.target, why);
  fprintf(stderr, "lbp-imbalance: %s error on connection %u (%s): %s\n", kind_names[kind],
          (unsigned)(c - r->cs) + 1, c->heavy ? "heavy" : "light", why);
  r->err[kind]++;
  if (c->state == C_SENDING || c->state == C_READING)
    r->in_flight--;
  close(c->fd);
  c->fd = -1;
  c->state = C_DEAD;
}

static void conn_write(struct run *r, struct conn *c) {
  ssize_t n = write(c->fd, request + c->sent, request_len - c->sent);

  if (n < 0 && errno != EAGAIN && errno != EINTR) {
    conn_fail(r, c, E_WRITE, "write: %s", strerror(errno));
    return;
  }
  if (n > 0)
    c->sent += (size_t)n;
  if (c->sent < request_len) {
    watch(r, c, EPOLLIN | EPOLLOUT);
    return;
  }
  if (c->state == C_SENDING)
    c->state = C_READING;
  watch(r, c, EPOLLIN);
}

static void conn_send(struct run *r, struct conn *c, uint64_t now) {
  c->sent = c->got = c->expect = 0;
  c->t_sent = now;
  c->counted = r->phase == P_MEASURE;
  c->state = C_SENDING;
  r->in_flight++;
  conn_write(r, c);
}

/* The loop is open: heavy connections always; a light one while the heavy connections' average
 * count of completed requests is at least RATIO times its own (always, without heavy ones). */
static int may_send(const struct run *r, const struct conn *c) {
  if ((r->phase != P_WARM && r->phase != P_MEASURE) || c->state != C_IDLE)
    return 0;
  if (c->heavy || r->nheavy == 0)
    return 1;
  return (double)r->heavy_done >= r->o.ratio * (double)c->done * (double)r->nheavy;
}

static void send_eligible(struct run *r, int lights_only, uint64_t now) {
  for (unsigned i = 0; i < r->o.conns; i++) {
    struct conn *c = &r->cs[i];
    if ((!lights_only || !c->heavy) && may_send(r, c))
      conn_send(r, c, now);
  }
}

static void conn_open(struct run *r, struct conn *c, uint64_t now) {
  struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.u32 = (uint32_t)(c - r->cs)};
  int one = 1;

  c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (c->fd < 0)
    die(errno, "socket");
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  c->state = C_CONNECTING;
  c->t_sent = now;
  if (connect(c->fd, (const struct sockaddr *)&r->o.addr, sizeof(r->o.addr)) != 0 &&
      errno != EINPROGRESS)
    die(errno, "connect to %s", r->o.target);
  if (epoll_ctl(r->ep, EPOLL_CTL_ADD, c->fd, &ev) != 0)
    die(errno, "epoll_ctl");
  r->opened++;
}

/* Parses a complete head of head_len bytes in c->buf: sets c->expect and c->resp_size, or
 * returns a reason to fail the connection. */
static const char *parse_head(struct conn *c, size_t head_len) {
  const char *p = c->buf, *end = c->buf + head_len;
  long long clen = -1;
  long status;

  if (head_len < 16 || strncmp(p, "HTTP/1.", 7) != 0 || p[8] != ' ')
    return "malformed status line";
  status = strtol(p + 9, NULL, 10);
  if (status < 200 || status > 299) {
    static char why[48];
    snprintf(why, sizeof(why), "status %ld (not 2xx)", status);
    return why;
  }
  while ((p = memchr(p, '\n', (size_t)(end - p))) != NULL && ++p < end) {
    size_t left = (size_t)(end - p);
    if (left > 15 && strncasecmp(p, "content-length:", 15) == 0) {
      char *e;
      if (clen >= 0)
        return "two Content-Length headers";
      clen = strtoll(p + 15, &e, 10);
      if (e == p + 15 || clen < 0 || (*e != '\r' && *e != ' '))
        return "bad Content-Length";
    } else if (left > 18 && strncasecmp(p, "transfer-encoding:", 18) == 0) {
      return "Transfer-Encoding (chunked) is not supported here: every response needs a "
             "Content-Length";
    } else if (left > 11 && strncasecmp(p, "connection:", 11) == 0) {
      const char *v = p + 11;
      while (*v == ' ' || *v == '\t')
        v++;
      if (strncasecmp(v, "close", 5) == 0)
        return "Connection: close on a keep-alive connection";
    }
  }
  if (clen < 0)
    return "no Content-Length";
  c->resp_size = head_len + (size_t)clen;
  c->expect = c->resp_size;
  return NULL;
}

/* Takes the head once it is whole: 1 done, 0 more to read, -1 failed (already counted). */
static int take_head(struct run *r, struct conn *c) {
  char *h = memmem(c->buf, c->got, "\r\n\r\n", 4);
  const char *why;

  if (h == NULL) {
    if (c->got < HEAD_CAP)
      return 0;
    conn_fail(r, c, E_STATUS, "response head larger than %d bytes", HEAD_CAP);
    return -1;
  }
  if ((why = parse_head(c, (size_t)(h - c->buf) + 4)) != NULL) {
    conn_fail(r, c, E_STATUS, "%s", why);
    return -1;
  }
  if (c->got > c->expect) {
    conn_fail(r, c, E_STATUS, "more bytes than the response (nothing was asked)");
    return -1;
  }
  c->expect -= c->got; /* from here on: the bytes still due */
  return c->expect == 0;
}

/* Reads what is there: 1 when the response is complete, 0 for more, -1 failed (counted). While
 * the head is incomplete, bytes gather in c->buf; after it, the buffer is scratch space. */
static int conn_read(struct run *r, struct conn *c) {
  for (;;) {
    int in_head = c->expect == 0, rc;
    ssize_t n =
        read(c->fd, c->buf + (in_head ? c->got : 0), in_head ? HEAD_CAP - c->got : HEAD_CAP);
    if (n == 0) {
      conn_fail(r, c, E_READ, "the target closed the connection before the response was whole");
      return -1;
    }
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR)
        return 0;
      conn_fail(r, c, E_READ, "read: %s", strerror(errno));
      return -1;
    }
    if (in_head) {
      c->got += (size_t)n;
      if ((rc = take_head(r, c)) != 0)
        return rc;
      continue;
    }
    if ((size_t)n > c->expect) {
      conn_fail(r, c, E_STATUS, "more bytes than the response (nothing was asked)");
      return -1;
    }
    if ((c->expect -= (size_t)n) == 0)
      return 1;
  }
}

static void record(struct run *r, const struct conn *c, uint64_t now) {
  if (r->nlat == r->cap) {
    r->cap = r->cap ? 2 * r->cap : 65536;
    if ((r->lat = realloc(r->lat, r->cap * sizeof(*r->lat))) == NULL)
      die(0, "out of memory");
  }
  r->lat[r->nlat++] = now - c->t_sent;
  r->bytes += c->resp_size;
  if (c->heavy)
    r->m_heavy++;
  else
    r->m_light++;
}

static void start_load(struct run *r, enum phase phase, double secs, uint64_t now) {
  r->phase = phase;
  r->t_end = now + (uint64_t)(secs * 1e9);
  if (phase == P_MEASURE)
    r->t_start = now;
  send_eligible(r, 0, now);
}

/* A response is complete: count it, then the next step of the set-up or of the load. */
static void on_response(struct run *r, struct conn *c, uint64_t now) {
  r->in_flight--;
  r->completed++;
  c->done++;
  c->state = C_IDLE;
  if (c->counted)
    record(r, c, now);
  if (c->heavy)
    r->heavy_done++;
  if (r->phase == P_SETUP) {
    if (r->opened < r->o.conns)
      conn_open(r, &r->cs[r->opened], now);
    else
      start_load(r, P_WARM, r->o.warmup_s, now);
    return;
  }
  if (may_send(r, c))
    conn_send(r, c, now);
  if (c->heavy)
    send_eligible(r, 1, now);
}

/* An idle keep-alive connection became readable: the target closed it or sent what nobody
 * asked for. */
static void idle_event(struct run *r, struct conn *c) {
  char b[256];
  ssize_t n = read(c->fd, b, sizeof(b));

  if (n < 0 && (errno == EAGAIN || errno == EINTR))
    return;
  if (r->phase == P_HELD) { /* the measurement is over: nothing to count */
    close(c->fd);
    c->state = C_DEAD;
  } else if (n == 0) {
    conn_fail(r, c, E_READ, "the target closed an idle keep-alive connection");
  } else if (n > 0) {
    conn_fail(r, c, E_STATUS, "%zd bytes while no request was in flight", n);
  } else {
    conn_fail(r, c, E_READ, "read: %s", strerror(errno));
  }
}

static void on_event(struct run *r, struct conn *c, uint32_t events, uint64_t now) {
  if (c->state == C_CONNECTING) {
    int err = 0;
    socklen_t len = sizeof(err);
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0)
      die(err, "connect to %s", r->o.target);
    if (!(events & EPOLLOUT))
      return;
    conn_send(r, c, now);
    return;
  }
  if (c->state == C_SENDING && (events & (EPOLLOUT | EPOLLERR)))
    conn_write(r, c);
  if (c->state == C_IDLE && (events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
    idle_event(r, c);
  else if ((c->state == C_SENDING || c->state == C_READING) &&
           (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && conn_read(r, c) == 1)
    on_response(r, c, now);
}

static void check_timeouts(struct run *r, uint64_t now) {
  uint64_t limit = (uint64_t)r->o.timeout_ms * 1000000u;

  for (unsigned i = 0; i < r->opened; i++) {
    struct conn *c = &r->cs[i];
    if ((c->state == C_CONNECTING || c->state == C_SENDING || c->state == C_READING) &&
        now - c->t_sent > limit)
      conn_fail(r, c, E_TIMEOUT, "no whole response within %ld ms", r->o.timeout_ms);
  }
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* The nearest-rank percentile q (0..1] of the sorted latencies, in microseconds. */
static unsigned long long pct_us(const struct run *r, double q) {
  size_t k;

  if (r->nlat == 0)
    return 0;
  k = (size_t)ceil(q * (double)r->nlat);
  k = k < 1 ? 1 : k > r->nlat ? r->nlat : k;
  return (unsigned long long)(r->lat[k - 1] / 1000);
}

static uint64_t errors(const struct run *r) {
  uint64_t n = 0;
  for (unsigned k = 0; k < E_KINDS; k++)
    n += r->err[k];
  return n;
}

static void report(struct run *r) {
  uint64_t us = (r->t_stop - r->t_start) / 1000;

  qsort(r->lat, r->nlat, sizeof(*r->lat), cmp_u64);
  printf("LBP_RESULT requests=%zu duration_us=%llu bytes=%llu rps=%.1f p50_us=%llu p90_us=%llu "
         "p99_us=%llu p999_us=%llu max_us=%llu heavy=%llu light=%llu connect_err=0 read_err=%llu "
         "write_err=%llu timeout_err=%llu status_err=%llu errors=%llu\n",
         r->nlat, (unsigned long long)us, (unsigned long long)r->bytes,
         us ? (double)r->nlat * 1e6 / (double)us : 0.0, pct_us(r, 0.5), pct_us(r, 0.9),
         pct_us(r, 0.99), pct_us(r, 0.999), pct_us(r, 1), (unsigned long long)r->m_heavy,
         (unsigned long long)r->m_light, (unsigned long long)r->err[E_READ],
         (unsigned long long)r->err[E_WRITE], (unsigned long long)r->err[E_TIMEOUT],
         (unsigned long long)r->err[E_STATUS], (unsigned long long)errors(r));
  fflush(stdout);
}

/* Moves on by the clock and by the requests in flight: warm-up, drain, pause, measure, drain. */
static void tick(struct run *r, uint64_t now) {
  if (now - r->t_tick >= (uint64_t)TICK_MS * 1000000u) {
    r->t_tick = now;
    check_timeouts(r, now);
  }
  if ((r->phase == P_WARM || r->phase == P_MEASURE) && now >= r->t_end)
    r->phase = r->phase == P_WARM ? P_WARM_DRAIN : P_DRAIN;
  if (r->phase == P_WARM_DRAIN && r->in_flight == 0) {
    printf("warm requests=%llu heavy_conns=%u light_conns=%u errors=%llu\n",
           (unsigned long long)r->completed, r->nheavy, r->o.conns - r->nheavy,
           (unsigned long long)errors(r));
    fflush(stdout);
    if (r->o.hold)
      r->phase = P_PAUSED;
    else
      start_load(r, P_MEASURE, r->o.duration_s, now);
  }
  if (r->phase == P_DRAIN && r->in_flight == 0) {
    r->t_stop = now;
    report(r);
    r->phase = r->o.hold ? P_HELD : P_DONE;
  }
}

/* SIGUSR1 ends the pause (or the hold); SIGTERM and SIGINT end the hold, or the run (exit 1). */
static void on_signal(struct run *r, int sfd, uint64_t now) {
  struct signalfd_siginfo si;

  while (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
    if (r->phase == P_HELD)
      r->phase = P_DONE;
    else if (si.ssi_signo != SIGUSR1)
      die(0, "interrupted by signal %u", si.ssi_signo);
    else if (r->phase == P_PAUSED)
      start_load(r, P_MEASURE, r->o.duration_s, now);
  }
}

static int wait_ms(const struct run *r, uint64_t now) {
  uint64_t ms = TICK_MS;

  if ((r->phase == P_WARM || r->phase == P_MEASURE) && r->t_end > now)
    ms = (r->t_end - now) / 1000000u + 1;
  return (int)(ms < TICK_MS ? ms : TICK_MS);
}

static int setup_signals(void) {
  sigset_t set;
  int sfd;

  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGUSR1);
  sigprocmask(SIG_BLOCK, &set, NULL);
  signal(SIGPIPE, SIG_IGN);
  if ((sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK)) < 0)
    die(errno, "signalfd");
  return sfd;
}

int main(int argc, char **argv) {
  struct run r;
  struct epoll_event ev = {.events = EPOLLIN, .data.u32 = SIG_TAG}, evs[64];
  int sfd;

  memset(&r, 0, sizeof(r));
  parse_args(argc, argv, &r.o);
  sfd = setup_signals();
  r.ep = epoll_create1(EPOLL_CLOEXEC);
  r.cs = calloc(r.o.conns, sizeof(*r.cs));
  if (r.ep < 0 || r.cs == NULL || epoll_ctl(r.ep, EPOLL_CTL_ADD, sfd, &ev) != 0)
    die(errno, "setup");
  for (unsigned i = 0, h = (unsigned)lround(r.o.conns * r.o.heavy); i < r.o.conns; i++) {
    r.cs[i].heavy = is_heavy(i, r.o.conns, h);
    r.nheavy += (unsigned)r.cs[i].heavy;
  }
  r.t_tick = now_ns();
  conn_open(&r, &r.cs[0], r.t_tick);
  while (r.phase != P_DONE) {
    int n = epoll_wait(r.ep, evs, 64, wait_ms(&r, now_ns()));
    if (n < 0 && errno != EINTR)
      die(errno, "epoll_wait");
    /* The clock is read per event: a latency is never charged with its batch's others. */
    for (int i = 0; i < n; i++) {
      if (evs[i].data.u32 == SIG_TAG)
        on_signal(&r, sfd, now_ns());
      else if (r.cs[evs[i].data.u32].state != C_DEAD)
        on_event(&r, &r.cs[evs[i].data.u32], evs[i].events, now_ns());
    }
    tick(&r, now_ns());
  }
  for (unsigned i = 0; i < r.o.conns; i++)
    if (r.cs[i].state != C_DEAD && i < r.opened)
      close(r.cs[i].fd);
  free(r.cs);
  free(r.lat);
  return errors(&r) ? 1 : 0;
}
