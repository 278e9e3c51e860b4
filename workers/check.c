/* Active health checks, run by the master: a TCP connect or an HTTP GET per server, jittered. */
#include "master.h"

#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Each checked server has a struct ucheck: a timer until its next check and a deadline timer.
 * A check is one struct attempt (its own TCP handle, freed when closed), so a check that ends
 * never waits for the previous socket to close. The result goes through bal_check_record
 * (rise/fall); a flip changes the server's health and is pushed to every worker. The settings
 * are read from the upstream's newest config at every check, so a reload changes them at once.
 */

#define CHECK_BUF 512 /* an HTTP status line must fit */

struct attempt {
  uv_tcp_t tcp;
  uv_connect_t connect;
  uv_write_t write;
  struct ucheck *k; /* NULL once the check ended */
  char req[768];
  char buf[CHECK_BUF];
  size_t len;
};

struct ucheck {
  struct userver *u; /* NULL once stopped: freed when both timers are closed */
  uv_timer_t next;
  uv_timer_t deadline;
  struct attempt *cur; /* the check in progress, or NULL */
  uint64_t started;    /* uv_now */
  unsigned open_timers;
  uint8_t http;
};

static uint64_t rng_next(struct master *m) {
  /* xorshift64*: jitter only needs to spread checks, not to be unpredictable */
  uint64_t x = m->rng != 0 ? m->rng : (uint64_t)uv_hrtime() | 1;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  m->rng = x;
  return x * 0x2545f4914f6cdd1dull;
}

static void attempt_closed(uv_handle_t *h) {
  free(h->data);
}

static void attempt_end(struct ucheck *k) {
  struct attempt *a = k->cur;

  if (a == NULL)
    return;
  k->cur = NULL;
  a->k = NULL;
  uv_close((uv_handle_t *)&a->tcp, attempt_closed);
}

static void on_next(uv_timer_t *t);

/* One check is over: count it, maybe flip the server's health, plan the next. */
static void check_done(struct ucheck *k, int ok, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void check_done(struct ucheck *k, int ok, const char *fmt, ...) {
  struct userver *u = k->u;
  struct master *m = u->m;
  const struct cfg_upstream *up = servers_upstream_conf(m, u->upstream);
  const struct cfg_health_check *hc;
  char why[200];
  va_list ap;

  attempt_end(k);
  uv_timer_stop(&k->deadline);
  va_start(ap, fmt);
  vsnprintf(u->detail, sizeof(u->detail), fmt, ap);
  va_end(ap);
  u->checks++;
  u->checks_failed += !ok;
  u->last_check_ms = uv_now(m->loop);
  if (up == NULL || !up->health_check.enabled)
    return; /* check_sync stops it */
  hc = &up->health_check;
  if (bal_check_record(&u->chk, ok, hc->rise, hc->fall)) {
    u->st.health = u->chk.health;
    if (u->st.health == BAL_HEALTH_UP) {
      u->st.up_since_ms = uv_now(m->loop);
      u->st.failing_until_ms = 0; /* workers forget its passive failures too */
    }
    snprintf(why, sizeof(why), "%s by the active check after %u %s in a row (%s)",
             u->st.health == BAL_HEALTH_UP ? "up" : "down",
             u->st.health == BAL_HEALTH_UP ? hc->rise : hc->fall,
             u->st.health == BAL_HEALTH_UP ? "passes" : "failures", u->detail);
    servers_state_changed(u, why);
  }
  uv_timer_start(&k->next, on_next, bal_check_delay(hc->interval_ms, hc->jitter_pct, rng_next(m)),
                 0);
}

static uint64_t elapsed(const struct ucheck *k) {
  return uv_now(k->u->m->loop) - k->started;
}

/* "HTTP/1.x NNN" at the start of the bytes read so far: the status, 0 if more bytes are
 * needed, -1 if it is not an HTTP/1 status line. */
static int status_line(const char *b, size_t len) {
  static const char pre[] = "HTTP/1.";
  const char *eol = memchr(b, '\n', len);
  size_t n = eol != NULL ? (size_t)(eol - b) : len;

  if (memcmp(b, pre, n < 7 ? n : 7) != 0)
    return -1;
  if (eol == NULL)
    return 0;
  if (n < 12 || b[7] < '0' || b[7] > '9' || b[8] != ' ')
    return -1;
  for (int i = 9; i < 12; i++)
    if (b[i] < '0' || b[i] > '9')
      return -1;
  if (n > 12 && b[12] != ' ' && b[12] != '\r')
    return -1;
  return (b[9] - '0') * 100 + (b[10] - '0') * 10 + (b[11] - '0');
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  struct attempt *a = h->data;
  (void)hint;
  *buf = uv_buf_init(a->buf + a->len, (unsigned)(sizeof(a->buf) - a->len));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  struct attempt *a = s->data;
  struct ucheck *k = a->k;
  const struct cfg_upstream *up;
  int status;

  (void)buf;
  if (k == NULL || n == 0)
    return;
  if (n < 0) {
    check_done(k, 0, "http: %s before a status line after %llu ms",
               n == UV_EOF ? "closed" : uv_strerror((int)n), (unsigned long long)elapsed(k));
    return;
  }
  a->len += (size_t)n;
  if ((status = status_line(a->buf, a->len)) == 0 && a->len < sizeof(a->buf))
    return;
  if (status <= 0) {
    check_done(k, 0, "http: not an HTTP/1 response");
    return;
  }
  up = servers_upstream_conf(k->u->m, k->u->upstream);
  if (up != NULL && status >= up->health_check.status_lo && status <= up->health_check.status_hi)
    check_done(k, 1, "http %d in %llu ms", status, (unsigned long long)elapsed(k));
  else
    check_done(k, 0, "http status %d (expected %u-%u)", status,
               up != NULL ? up->health_check.status_lo : 0,
               up != NULL ? up->health_check.status_hi : 0);
}

static void on_written(uv_write_t *req, int status) {
  struct attempt *a = req->data;

  if (a->k != NULL && status < 0)
    check_done(a->k, 0, "http: sending the request: %s", uv_strerror(status));
}

/* The HTTP check's request: GET path, Host the configured one or the server's own name. */
static void build_request(struct attempt *a, const struct userver *u,
                          const struct cfg_health_check *hc) {
  char host[300];

  if (hc->host != NULL)
    snprintf(host, sizeof(host), "%s", hc->host);
  else if (u->host[0] != '\0')
    snprintf(host, sizeof(host), "%s:%u", u->host, u->port);
  else
    snprintf(host, sizeof(host), "%s", u->name);
  snprintf(a->req, sizeof(a->req),
           "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: lbproxy-health-check\r\n"
           "Connection: close\r\n\r\n",
           hc->path != NULL ? hc->path : "/", host);
}

static void on_connect(uv_connect_t *req, int status) {
  struct attempt *a = req->data;
  struct ucheck *k = a->k;
  const struct cfg_upstream *up;
  uv_buf_t b;
  int rc;

  if (k == NULL)
    return;
  if (status < 0) {
    check_done(k, 0, "connect: %s", uv_strerror(status));
    return;
  }
  up = servers_upstream_conf(k->u->m, k->u->upstream);
  if (!k->http || up == NULL) {
    check_done(k, 1, "tcp connect in %llu ms", (unsigned long long)elapsed(k));
    return;
  }
  build_request(a, k->u, &up->health_check);
  b = uv_buf_init(a->req, (unsigned)strlen(a->req));
  a->write.data = a;
  if ((rc = uv_write(&a->write, (uv_stream_t *)&a->tcp, &b, 1, on_written)) != 0 ||
      (rc = uv_read_start((uv_stream_t *)&a->tcp, on_alloc, on_read)) != 0)
    check_done(k, 0, "http: %s", uv_strerror(rc));
}

static void on_deadline(uv_timer_t *t) {
  struct ucheck *k = t->data;

  if (k->cur != NULL)
    check_done(k, 0, "timeout after %llu ms", (unsigned long long)elapsed(k));
}

static void check_start(struct ucheck *k) {
  struct userver *u = k->u;
  const struct cfg_upstream *up = servers_upstream_conf(u->m, u->upstream);
  struct attempt *a;
  int rc;

  if (up == NULL || !up->health_check.enabled || k->cur != NULL)
    return;
  k->http = up->health_check.type == CFG_CHECK_HTTP;
  k->started = uv_now(u->m->loop);
  uv_timer_start(&k->deadline, on_deadline, up->health_check.timeout_ms, 0);
  if ((a = calloc(1, sizeof(*a))) == NULL) {
    check_done(k, 0, "out of memory");
    return;
  }
  if ((rc = uv_tcp_init(u->m->loop, &a->tcp)) != 0) {
    free(a);
    check_done(k, 0, "socket: %s", uv_strerror(rc));
    return;
  }
  a->k = k;
  a->tcp.data = a;
  a->connect.data = a;
  k->cur = a;
  if ((rc = uv_tcp_connect(&a->connect, &a->tcp, (const struct sockaddr *)&u->addr, on_connect)) !=
      0)
    check_done(k, 0, "connect: %s", uv_strerror(rc));
}

static void on_next(uv_timer_t *t) {
  check_start(t->data);
}

static void timer_closed(uv_handle_t *h) {
  struct ucheck *k = h->data;

  if (--k->open_timers == 0)
    free(k);
}

void check_stop(struct userver *u) {
  struct ucheck *k = u->probe;

  if (k == NULL)
    return;
  u->probe = NULL;
  k->u = NULL;
  attempt_end(k);
  uv_close((uv_handle_t *)&k->next, timer_closed);
  uv_close((uv_handle_t *)&k->deadline, timer_closed);
}

void check_sync(struct userver *u) {
  const struct cfg_upstream *up = servers_upstream_conf(u->m, u->upstream);
  int want = up != NULL && up->health_check.enabled && !u->m->stopping;
  struct ucheck *k;

  if (!want) {
    check_stop(u);
    if (u->st.health != BAL_HEALTH_UP && !u->m->stopping) {
      /* No checks any more (a reload removed them): nothing says it is down. */
      u->st.health = u->chk.health = BAL_HEALTH_UP;
      u->chk.streak = 0;
      u->st.up_since_ms = uv_now(u->m->loop);
      servers_state_changed(u, "up: its upstream has no health_check any more");
    }
    return;
  }
  if (u->probe != NULL || (k = calloc(1, sizeof(*k))) == NULL)
    return;
  k->u = u;
  uv_timer_init(u->m->loop, &k->next);
  uv_timer_init(u->m->loop, &k->deadline);
  k->next.data = k->deadline.data = k;
  k->open_timers = 2;
  u->probe = k;
  /* The first check comes within one interval, at a random point, so that servers (and a
   * reload's new ones) do not all check at once. */
  uv_timer_start(&k->next, on_next, rng_next(u->m) % (up->health_check.interval_ms + 1), 0);
}
