/* Load generator for stability tests: client threads, outcome counters, a bounded stop. */
#include "load.h"

#include "client.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

/*
 * Each thread runs one connection at a time on blocking sockets: connect (with io_timeout_ms
 * as SO_SNDTIMEO, which bounds connect() on Linux), hc_send_all, hc_read_response (client.c),
 * then either keeps the connection (keep-alive asked and granted) or closes it. Counters are
 * C11 atomics, so load_snapshot can read them while threads run; the header values and the
 * first errors are under the state's mutex, taken once per response at most. Pauses (pace_us,
 * connect_retry_ms) are timed waits on a condition variable that load_stop signals, so a stop
 * never waits for a pause to run out.
 */

struct load_thread {
  struct load_state *st;
  pthread_t tid;
  int index, created;
  pthread_mutex_t fd_mu; /* fd may be shut down by load_stop while the thread blocks on it */
  int fd;
};

struct load_state {
  struct load_opts o;
  char *request;
  size_t request_len;
  int64_t start_us;
  pthread_mutex_t mu;
  pthread_cond_t cond; /* CLOCK_MONOTONIC; signalled on stop and when a thread ends */
  int stop, running;   /* under mu */
  atomic_int stopping, forced;
  atomic_uint_fast64_t requests, ok, non2xx, connections, max_latency_us;
  atomic_uint_fast64_t status[600], kinds[LOAD_NKINDS];
  struct load_value values[LOAD_MAX_VALUES]; /* under mu, as the three below */
  size_t nvalues;
  uint64_t values_other, values_missing;
  struct load_error errors[LOAD_MAX_ERRORS];
  size_t nerrors;
  int nthreads;
  struct load_thread th[LOAD_MAX_THREADS];
};

static const char *const kind_names[LOAD_NKINDS] = {
    "refused",   "connect-error", "reset-fresh", "reset-reused",
    "truncated", "timeout",       "protocol",    "cut-at-stop",
};

const char *load_kind_name(enum load_kind kind) {
  return (unsigned)kind < LOAD_NKINDS ? kind_names[kind] : "?";
}

static int64_t now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Waits on st->cond until `deadline_us` (monotonic) or a signal; call with st->mu held. */
static void wait_until(struct load_state *st, int64_t deadline_us) {
  struct timespec ts = {.tv_sec = deadline_us / 1000000,
                        .tv_nsec = (long)(deadline_us % 1000000) * 1000};
  pthread_cond_timedwait(&st->cond, &st->mu, &ts);
}

/* A thread's pause between requests: returns early when the load stops. */
static void pause_us(struct load_state *st, int64_t us) {
  int64_t deadline = now_us() + us;

  pthread_mutex_lock(&st->mu);
  while (!st->stop && now_us() < deadline)
    wait_until(st, deadline);
  pthread_mutex_unlock(&st->mu);
}

/* Connects to 127.0.0.1:port with io_timeout_ms on connect, send and receive. fd or -errno. */
static int load_connect(const struct load_state *st) {
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(st->o.port)};
  struct timeval tv = {st->o.io_timeout_ms / 1000, (st->o.io_timeout_ms % 1000) * 1000};
  int one = 1, err;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

  if (fd < 0)
    return -errno;
  if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
      setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0 ||
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
    goto fail;
  if (st->o.bind_ip != NULL) {
    struct sockaddr_in local = {.sin_family = AF_INET};
    /* Pick the source port at connect time, per destination: no bind-time port exhaustion. */
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
    if (inet_pton(AF_INET, st->o.bind_ip, &local.sin_addr) != 1) {
      errno = EINVAL;
      goto fail;
    }
    if (bind(fd, (struct sockaddr *)&local, sizeof(local)) < 0)
      goto fail;
  }
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  while (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
    if (errno == EINTR)
      continue;
    if (errno == EINPROGRESS) /* SO_SNDTIMEO ran out */
      errno = ETIMEDOUT;
    goto fail;
  }
  return fd;

fail:
  err = -errno;
  close(fd);
  return err;
}

static void set_fd(struct load_thread *t, int fd) {
  pthread_mutex_lock(&t->fd_mu);
  t->fd = fd;
  pthread_mutex_unlock(&t->fd_mu);
}

static void close_fd(struct load_thread *t) {
  pthread_mutex_lock(&t->fd_mu);
  if (t->fd >= 0)
    close(t->fd);
  t->fd = -1;
  pthread_mutex_unlock(&t->fd_mu);
}

static void note_error(struct load_thread *t, enum load_kind kind, int err) {
  struct load_state *st = t->st;

  atomic_fetch_add_explicit(&st->kinds[kind], 1, memory_order_relaxed);
  pthread_mutex_lock(&st->mu);
  if (st->nerrors < LOAD_MAX_ERRORS) {
    struct load_error *e = &st->errors[st->nerrors++];
    e->kind = kind;
    e->err = err;
    e->at_ms = (now_us() - st->start_us) / 1000;
    e->thread = t->index;
  }
  pthread_mutex_unlock(&st->mu);
}

/* Which kind of failure a request that got no complete response was. */
static enum load_kind classify(struct load_state *st, int rc, int reused, int got_bytes) {
  if (atomic_load(&st->forced))
    return LOAD_CUT_AT_STOP;
  if (rc == -ETIMEDOUT || rc == -EAGAIN)
    return LOAD_TIMEOUT;
  if (rc == -EPROTO)
    return LOAD_PROTOCOL;
  if (rc == -ECONNABORTED || got_bytes)
    return LOAD_TRUNCATED;
  return reused ? LOAD_RESET_REUSED : LOAD_RESET_FRESH;
}

static void note_value(struct load_state *st, const struct hc_resp *r) {
  char v[sizeof(st->values[0].value)];
  int64_t at = (now_us() - st->start_us) / 1000;
  size_t i;

  if (st->o.header == NULL)
    return;
  if (hc_header(r, st->o.header, v, sizeof(v)) != 0) {
    pthread_mutex_lock(&st->mu);
    st->values_missing++;
    pthread_mutex_unlock(&st->mu);
    return;
  }
  pthread_mutex_lock(&st->mu);
  for (i = 0; i < st->nvalues && strcmp(st->values[i].value, v) != 0; i++) {
  }
  if (i < st->nvalues) {
    st->values[i].count++;
    st->values[i].last_ms = at;
  } else if (i < LOAD_MAX_VALUES) {
    memcpy(st->values[i].value, v, sizeof(v));
    st->values[i].count = 1;
    st->values[i].first_ms = st->values[i].last_ms = at;
    st->nvalues++;
  } else {
    st->values_other++;
  }
  pthread_mutex_unlock(&st->mu);
}

static void note_response(struct load_state *st, const struct hc_resp *r, int64_t t0) {
  uint64_t lat = (uint64_t)(now_us() - t0), max;

  if (r->status >= 200 && r->status < 300)
    atomic_fetch_add_explicit(&st->ok, 1, memory_order_relaxed);
  else
    atomic_fetch_add_explicit(&st->non2xx, 1, memory_order_relaxed);
  if (r->status >= 0 && r->status < 600)
    atomic_fetch_add_explicit(&st->status[r->status], 1, memory_order_relaxed);
  max = atomic_load_explicit(&st->max_latency_us, memory_order_relaxed);
  while (lat > max && !atomic_compare_exchange_weak(&st->max_latency_us, &max, lat)) {
  }
  note_value(st, r);
}

/* One request on t's connection (made first if needed). Returns 1 to keep the connection. */
static int one_request(struct load_thread *t, struct hc_resp *r, int *fd, int *reused) {
  struct load_state *st = t->st;
  int64_t t0 = now_us();
  int rc;

  atomic_fetch_add_explicit(&st->requests, 1, memory_order_relaxed);
  if (*fd < 0) {
    *fd = load_connect(st);
    if (*fd < 0) {
      note_error(t, *fd == -ECONNREFUSED ? LOAD_REFUSED : LOAD_CONNECT, *fd);
      *fd = -1;
      pause_us(st, (int64_t)st->o.connect_retry_ms * 1000);
      return 0;
    }
    set_fd(t, *fd);
    atomic_fetch_add_explicit(&st->connections, 1, memory_order_relaxed);
    *reused = 0;
  }
  r->head_len = 0; /* "any byte of a response received" below */
  rc = hc_send_all(*fd, st->request, st->request_len);
  if (rc == 0)
    rc = hc_read_response(*fd, r, 0);
  if (rc != 0) {
    note_error(t, classify(st, rc, *reused, r->head_len > 0), rc);
    return 0;
  }
  note_response(st, r, t0);
  return st->o.keepalive && r->keep_alive;
}

static void *thread_main(void *arg) {
  struct load_thread *t = arg;
  struct load_state *st = t->st;
  struct hc_resp *r = malloc(sizeof(*r));
  int fd = -1, reused = 0;
  uint64_t n = 0;

  while (r != NULL && !atomic_load(&st->stopping) &&
         (st->o.max_requests == 0 || n < st->o.max_requests)) {
    n++;
    if (one_request(t, r, &fd, &reused)) {
      reused = 1;
    } else if (fd >= 0) {
      close_fd(t);
      fd = -1;
    }
    if (st->o.pace_us > 0)
      pause_us(st, st->o.pace_us);
  }
  close_fd(t);
  free(r);
  pthread_mutex_lock(&st->mu);
  st->running--;
  pthread_cond_broadcast(&st->cond);
  pthread_mutex_unlock(&st->mu);
  return NULL;
}

/* "GET path HTTP/1.1", Host, Connection: close unless keep-alive, the extra lines. */
static int build_request(struct load_state *st) {
  const struct load_opts *o = &st->o;
  int n = snprintf(NULL, 0, "GET %s HTTP/1.1\r\nHost: %s\r\n%s%s\r\n", o->path, o->host,
                   o->keepalive ? "" : "Connection: close\r\n", o->extra);

  if (n < 0 || (st->request = malloc((size_t)n + 1)) == NULL)
    return -ENOMEM;
  snprintf(st->request, (size_t)n + 1, "GET %s HTTP/1.1\r\nHost: %s\r\n%s%s\r\n", o->path, o->host,
           o->keepalive ? "" : "Connection: close\r\n", o->extra);
  st->request_len = (size_t)n;
  return 0;
}

static int state_init(struct load_state *st, const struct load_opts *o) {
  pthread_condattr_t ca;

  st->o = *o;
  if (st->o.threads <= 0)
    st->o.threads = 1;
  if (st->o.path == NULL)
    st->o.path = "/";
  if (st->o.host == NULL)
    st->o.host = "127.0.0.1";
  if (st->o.extra == NULL)
    st->o.extra = "";
  if (st->o.io_timeout_ms <= 0)
    st->o.io_timeout_ms = 5000;
  if (st->o.connect_retry_ms <= 0)
    st->o.connect_retry_ms = 10;
  if (st->o.port == 0 || st->o.threads > LOAD_MAX_THREADS)
    return -EINVAL;
  pthread_mutex_init(&st->mu, NULL);
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&st->cond, &ca);
  pthread_condattr_destroy(&ca);
  return build_request(st);
}

static void state_free(struct load_state *st) {
  pthread_cond_destroy(&st->cond);
  pthread_mutex_destroy(&st->mu);
  for (int i = 0; i < st->nthreads; i++)
    pthread_mutex_destroy(&st->th[i].fd_mu);
  free(st->request);
  free(st);
}

int load_start(struct load *l, const struct load_opts *o) {
  struct load_state *st = calloc(1, sizeof(*st));
  int rc;

  l->st = NULL;
  if (st == NULL)
    return -ENOMEM;
  if ((rc = state_init(st, o)) != 0) {
    free(st->request);
    free(st);
    return rc;
  }
  st->start_us = now_us();
  for (int i = 0; i < st->o.threads; i++) {
    struct load_thread *t = &st->th[i];
    t->st = st;
    t->index = i;
    t->fd = -1;
    pthread_mutex_init(&t->fd_mu, NULL);
    st->nthreads = i + 1;
    pthread_mutex_lock(&st->mu);
    st->running++;
    pthread_mutex_unlock(&st->mu);
    if ((rc = pthread_create(&t->tid, NULL, thread_main, t)) != 0) {
      pthread_mutex_lock(&st->mu);
      st->running--;
      pthread_mutex_unlock(&st->mu);
      l->st = st;
      load_stop(l, NULL);
      return -rc;
    }
    t->created = 1;
  }
  l->st = st;
  return 0;
}

void load_snapshot(struct load *l, struct load_stats *out) {
  struct load_state *st = l->st;

  memset(out, 0, sizeof(*out));
  out->requests = atomic_load(&st->requests);
  out->ok = atomic_load(&st->ok);
  out->non2xx = atomic_load(&st->non2xx);
  out->connections = atomic_load(&st->connections);
  out->max_latency_us = atomic_load(&st->max_latency_us);
  for (int i = 0; i < 600; i++)
    out->status[i] = atomic_load(&st->status[i]);
  for (int k = 0; k < LOAD_NKINDS; k++)
    out->kinds[k] = atomic_load(&st->kinds[k]);
  out->elapsed_ms = (now_us() - st->start_us) / 1000;
  pthread_mutex_lock(&st->mu);
  memcpy(out->values, st->values, sizeof(out->values));
  out->nvalues = st->nvalues;
  out->values_other = st->values_other;
  out->values_missing = st->values_missing;
  memcpy(out->errors, st->errors, sizeof(out->errors));
  out->nerrors = st->nerrors;
  pthread_mutex_unlock(&st->mu);
}

/* Polls `counter` until it reaches n, every thread ended, or timeout_ms passed. */
static int wait_counter(struct load_state *st, atomic_uint_fast64_t *counter, uint64_t n,
                        int timeout_ms) {
  int64_t deadline = now_us() + (int64_t)timeout_ms * 1000;
  int reached;

  pthread_mutex_lock(&st->mu);
  for (;;) {
    int64_t next = now_us() + 5000; /* threads do not signal progress: look every 5 ms */
    reached = atomic_load(counter) >= n;
    if (reached || st->running == 0 || now_us() >= deadline)
      break;
    wait_until(st, next < deadline ? next : deadline);
  }
  pthread_mutex_unlock(&st->mu);
  return reached;
}

int load_wait(struct load *l, uint64_t ok, int timeout_ms) {
  return wait_counter(l->st, &l->st->ok, ok, timeout_ms);
}

int load_wait_kind(struct load *l, enum load_kind kind, uint64_t n, int timeout_ms) {
  if ((unsigned)kind >= LOAD_NKINDS)
    return 0;
  return wait_counter(l->st, &l->st->kinds[kind], n, timeout_ms);
}

int load_stop(struct load *l, struct load_stats *out) {
  struct load_state *st = l->st;
  int64_t deadline;
  int rc = 0;

  if (st == NULL)
    return -EINVAL;
  atomic_store(&st->stopping, 1);
  pthread_mutex_lock(&st->mu);
  st->stop = 1;
  pthread_cond_broadcast(&st->cond);
  deadline = now_us() + ((int64_t)st->o.io_timeout_ms + 1000) * 1000;
  while (st->running > 0 && now_us() < deadline)
    wait_until(st, deadline);
  if (st->running > 0) {
    /* A thread is stuck past its own socket timeout: unblock it; connect() stays bounded by
     * SO_SNDTIMEO, so the joins below still end. */
    atomic_store(&st->forced, 1);
    rc = -ETIMEDOUT;
    for (int i = 0; i < st->nthreads; i++) {
      pthread_mutex_lock(&st->th[i].fd_mu);
      if (st->th[i].fd >= 0)
        shutdown(st->th[i].fd, SHUT_RDWR);
      pthread_mutex_unlock(&st->th[i].fd_mu);
    }
  }
  pthread_mutex_unlock(&st->mu);
  for (int i = 0; i < st->nthreads; i++)
    if (st->th[i].created)
      pthread_join(st->th[i].tid, NULL);
  if (out != NULL)
    load_snapshot(l, out);
  state_free(st);
  l->st = NULL;
  return rc;
}

uint64_t load_failed(const struct load_stats *s) {
  return s->requests - s->ok;
}

uint64_t load_value_count(const struct load_stats *s, const char *value) {
  for (size_t i = 0; i < s->nvalues; i++)
    if (strcmp(s->values[i].value, value) == 0)
      return s->values[i].count;
  return 0;
}

/* Appends to buf at *len, never past cap. */
__attribute__((format(printf, 4, 5))) static void put(char *buf, size_t cap, size_t *len,
                                                      const char *fmt, ...) {
  va_list ap;
  int n;

  if (*len + 1 >= cap)
    return;
  va_start(ap, fmt);
  n = vsnprintf(buf + *len, cap - *len, fmt, ap);
  va_end(ap);
  if (n > 0)
    *len = *len + (size_t)n < cap ? *len + (size_t)n : cap - 1;
}

const char *load_format(const struct load_stats *s, char *buf, size_t cap) {
  size_t len = 0;

  if (cap == 0)
    return buf;
  buf[0] = '\0';
  put(buf, cap, &len, "load: %llu requests in %lld ms: %llu ok, %llu failed",
      (unsigned long long)s->requests, (long long)s->elapsed_ms, (unsigned long long)s->ok,
      (unsigned long long)load_failed(s));
  put(buf, cap, &len, "; %llu connections; slowest %.1f ms\n", (unsigned long long)s->connections,
      (double)s->max_latency_us / 1000.0);
  put(buf, cap, &len, "  statuses:");
  for (int i = 0; i < 600; i++)
    if (s->status[i] > 0)
      put(buf, cap, &len, " %d x%llu", i, (unsigned long long)s->status[i]);
  put(buf, cap, &len, "\n  failures:");
  for (int k = 0; k < LOAD_NKINDS; k++)
    put(buf, cap, &len, " %s %llu", kind_names[k], (unsigned long long)s->kinds[k]);
  if (s->nvalues > 0 || s->values_missing > 0) {
    put(buf, cap, &len, "\n  header values:");
    for (size_t i = 0; i < s->nvalues; i++)
      put(buf, cap, &len, " %s x%llu (+%lld..%lld ms)", s->values[i].value,
          (unsigned long long)s->values[i].count, (long long)s->values[i].first_ms,
          (long long)s->values[i].last_ms);
    put(buf, cap, &len, " (missing %llu, other %llu)", (unsigned long long)s->values_missing,
        (unsigned long long)s->values_other);
  }
  for (size_t i = 0; i < s->nerrors; i++)
    put(buf, cap, &len, "%s+%lld ms thread %d %s (%s)", i == 0 ? "\n  first errors: " : "; ",
        (long long)s->errors[i].at_ms, s->errors[i].thread, kind_names[s->errors[i].kind],
        s->errors[i].err ? strerror(-s->errors[i].err) : "-");
  put(buf, cap, &len, "\n");
  return buf;
}
