/* lbp-idle-conns: opens N keep-alive HTTP connections, one request each, then holds them idle. */

/*
 * What bench/run.sh relies on:
 *
 * 1. Usage: lbp-idle-conns --connect HOST:PORT --conns N [--path /] [--parallel 256]
 *    [--timeout-ms 60000]. At most --parallel connections are being set up at once, so the
 *    target's listen backlog never overflows.
 * 2. Each connection sends one "GET PATH HTTP/1.1" (keep-alive) and reads the whole response
 *    (status line, head, Content-Length body). Anything else (refused, reset, a non-2xx status,
 *    a chunked or unframed body, the deadline) is an error: the program says which and exits 1,
 *    so a dead or overloaded target fails the bench loudly.
 * 3. Once every connection is idle it prints "ready conns=N" on stdout (flushed) and holds them.
 *    A connection the peer closes while held is reported at once ("lost conns=K") and counted.
 * 4. SIGTERM, SIGINT or SIGUSR1: prints "done conns=N lost=K", closes everything, exits 0
 *    (1 if any connection was lost while held).
 */
#include <arpa/inet.h>
#include <errno.h>
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
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RESP_CAP 8192
#define SIG_TAG  UINT32_MAX

enum cstate { C_CONNECTING, C_SENDING, C_READING, C_IDLE, C_CLOSED };

struct conn {
  int fd;
  enum cstate state;
  size_t sent;   /* request bytes written */
  size_t got;    /* bytes of the response read while its head was incomplete */
  size_t expect; /* once the head is parsed: the response bytes still due (0 before) */
  char *resp;    /* response buffer while reading, NULL once idle */
};

struct opts {
  struct sockaddr_in addr;
  const char *target;
  const char *path;
  unsigned conns, parallel;
  long timeout_ms;
};

static char request[1024];
static size_t request_len;

/* Reports a fatal error (with strerror(err) when err != 0) and exits 1. */
__attribute__((format(printf, 2, 3), noreturn)) static void die(int err, const char *fmt, ...) {
  va_list ap;

  fprintf(stderr, "lbp-idle-conns: ");
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  if (err)
    fprintf(stderr, ": %s", strerror(err));
  fputc('\n', stderr);
  exit(1);
}

static void usage(void) {
  fprintf(stderr, "usage: lbp-idle-conns --connect HOST:PORT --conns N [--path /] "
                  "[--parallel 256] [--timeout-ms 60000]\n");
  exit(2);
}

static void parse_args(int argc, char **argv, struct opts *o) {
  char host[64];
  const char *colon;

  memset(o, 0, sizeof(*o));
  o->path = "/";
  o->parallel = 256;
  o->timeout_ms = 60000;
  for (int i = 1; i + 1 < argc; i += 2) {
    const char *k = argv[i], *v = argv[i + 1];
    if (strcmp(k, "--connect") == 0)
      o->target = v;
    else if (strcmp(k, "--conns") == 0)
      o->conns = (unsigned)strtoul(v, NULL, 10);
    else if (strcmp(k, "--path") == 0)
      o->path = v;
    else if (strcmp(k, "--parallel") == 0)
      o->parallel = (unsigned)strtoul(v, NULL, 10);
    else if (strcmp(k, "--timeout-ms") == 0)
      o->timeout_ms = strtol(v, NULL, 10);
    else
      usage();
  }
  if (argc % 2 == 0 || o->target == NULL || o->conns == 0 || o->parallel == 0 ||
      o->timeout_ms <= 0 || o->path[0] != '/')
    usage();
  colon = strrchr(o->target, ':');
  if (colon == NULL || (size_t)(colon - o->target) >= sizeof(host))
    usage();
  memcpy(host, o->target, (size_t)(colon - o->target));
  host[colon - o->target] = '\0';
  o->addr.sin_family = AF_INET;
  o->addr.sin_port = htons((uint16_t)atoi(colon + 1));
  if (inet_pton(AF_INET, host, &o->addr.sin_addr) != 1)
    die(0, "not an IPv4 address: %s", host);
  request_len = (size_t)snprintf(
      request, sizeof(request), "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: lbp-idle-conns\r\n\r\n",
      o->path, o->target);
  if (request_len >= sizeof(request))
    usage();
}

/* Raises the open-file limit to the hard limit: N connections need N descriptors. */
static void raise_nofile(unsigned need) {
  struct rlimit rl;

  if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
    die(errno, "getrlimit");
  rl.rlim_cur = rl.rlim_max;
  if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
    die(errno, "setrlimit");
  if (rl.rlim_cur < (rlim_t)need + 16)
    die(0, "the open-file limit (%llu) is too low for %u connections",
        (unsigned long long)rl.rlim_cur, need);
}

static long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* Parses a complete head in c->resp: sets c->expect, or fails the run. */
static void parse_head(struct conn *c, size_t head_len) {
  const char *p = c->resp, *end = c->resp + head_len;
  long status = 0;
  long long clen = -1;

  if (head_len < 12 || strncmp(p, "HTTP/1.", 7) != 0)
    die(0, "malformed response");
  status = strtol(p + 9, NULL, 10);
  if (status < 200 || status > 299)
    die(0, "response status %ld", status);
  while ((p = memchr(p, '\n', (size_t)(end - p))) != NULL && ++p < end) {
    if (end - p > 15 && strncasecmp(p, "content-length:", 15) == 0)
      clen = strtoll(p + 15, NULL, 10);
    else if (end - p > 18 && strncasecmp(p, "transfer-encoding:", 18) == 0)
      die(0, "chunked responses are not supported (use a path with Content-Length)");
  }
  if (clen < 0)
    die(0, "response without Content-Length");
  c->expect = head_len + (size_t)clen;
}

/* Reads what is there; returns 1 when the whole response has arrived. While the head is
 * incomplete, bytes accumulate in c->resp; after it, c->expect counts the body bytes still due
 * and the buffer is only scratch space. */
static int conn_read(struct conn *c) {
  for (;;) {
    int in_head = c->expect == 0;
    ssize_t n;
    if (in_head && c->got == RESP_CAP)
      die(0, "response head larger than %d bytes", RESP_CAP);
    n = read(c->fd, c->resp + (in_head ? c->got : 0), in_head ? RESP_CAP - c->got : RESP_CAP);
    if (n == 0)
      die(0, "the target closed a connection before its response was complete");
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR)
        return 0;
      die(errno, "read");
    }
    if (in_head) {
      char *h;
      c->got += (size_t)n;
      h = memmem(c->resp, c->got, "\r\n\r\n", 4);
      if (h == NULL)
        continue;
      parse_head(c, (size_t)(h - c->resp) + 4);
      if (c->got > c->expect)
        die(0, "the target sent more than the response");
      c->expect -= c->got; /* from here on: the bytes still due */
      if (c->expect == 0)
        return 1;
      continue;
    }
    if ((size_t)n > c->expect)
      die(0, "the target sent more than the response");
    c->expect -= (size_t)n;
    if (c->expect == 0)
      return 1;
  }
}

static void conn_open(struct conn *c, int ep, const struct opts *o, uint32_t idx) {
  struct epoll_event ev;
  int one = 1;

  c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (c->fd < 0)
    die(errno, "socket");
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  c->resp = malloc(RESP_CAP);
  if (c->resp == NULL)
    die(0, "out of memory");
  c->state = C_CONNECTING;
  if (connect(c->fd, (const struct sockaddr *)&o->addr, sizeof(o->addr)) != 0 &&
      errno != EINPROGRESS)
    die(errno, "connect to %s", o->target);
  ev.events = EPOLLOUT | EPOLLIN | EPOLLRDHUP;
  ev.data.u32 = idx;
  if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) != 0)
    die(errno, "epoll_ctl");
}

/* Advances one connection on an epoll event; returns 1 when it has just become idle. */
static int conn_event(struct conn *c, uint32_t events, const struct opts *o) {
  if (c->state == C_CONNECTING) {
    int err = 0;
    socklen_t len = sizeof(err);
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0)
      die(err, "connect to %s", o->target);
    if (!(events & EPOLLOUT))
      return 0;
    c->state = C_SENDING;
  }
  if (c->state == C_SENDING) {
    ssize_t n = write(c->fd, request + c->sent, request_len - c->sent);
    if (n < 0 && errno != EAGAIN)
      die(errno, "write");
    if (n > 0)
      c->sent += (size_t)n;
    if (c->sent < request_len)
      return 0;
    c->state = C_READING; /* the caller stops watching EPOLLOUT */
  }
  if (c->state == C_READING && (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))) {
    if (!conn_read(c))
      return 0;
    free(c->resp);
    c->resp = NULL;
    c->state = C_IDLE;
    return 1;
  }
  return 0;
}

/* Sets up every connection, at most o->parallel at a time; fails the run on any error. */
static void open_all(struct conn *cs, int ep, const struct opts *o) {
  struct epoll_event evs[256];
  unsigned opened = 0, idle = 0;
  long deadline = now_ms() + o->timeout_ms;

  while (idle < o->conns) {
    while (opened < o->conns && opened - idle < o->parallel) {
      conn_open(&cs[opened], ep, o, opened);
      opened++;
    }
    long left = deadline - now_ms();
    if (left <= 0)
      die(0, "deadline: only %u of %u connections idle after %ld ms", idle, o->conns,
          o->timeout_ms);
    int n = epoll_wait(ep, evs, 256, (int)(left < 1000 ? left : 1000));
    if (n < 0 && errno != EINTR)
      die(errno, "epoll_wait");
    for (int i = 0; i < n; i++) {
      struct conn *c;
      if (evs[i].data.u32 == SIG_TAG)
        die(0, "interrupted while connecting");
      c = &cs[evs[i].data.u32];
      if (c->state == C_IDLE)
        continue;
      if (conn_event(c, evs[i].events, o)) {
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.u32 = evs[i].data.u32};
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
        idle++;
      } else if (c->state == C_READING) {
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.u32 = evs[i].data.u32};
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
      }
    }
  }
}

/* Holds the idle connections until a signal; returns how many the peer closed meanwhile. */
static unsigned hold(struct conn *cs, int ep) {
  struct epoll_event evs[256];
  unsigned lost = 0;

  for (;;) {
    int n = epoll_wait(ep, evs, 256, -1);
    if (n < 0 && errno != EINTR)
      die(errno, "epoll_wait");
    for (int i = 0; i < n; i++) {
      struct conn *c;
      if (evs[i].data.u32 == SIG_TAG)
        return lost;
      c = &cs[evs[i].data.u32];
      if (c->state != C_IDLE)
        continue;
      epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
      close(c->fd);
      c->state = C_CLOSED;
      lost++;
      printf("lost conns=%u\n", lost);
      fflush(stdout);
    }
  }
}

int main(int argc, char **argv) {
  struct opts o;
  struct conn *cs;
  struct epoll_event ev;
  sigset_t set;
  int ep, sfd;
  unsigned lost;

  parse_args(argc, argv, &o);
  raise_nofile(o.conns);
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGUSR1);
  sigprocmask(SIG_BLOCK, &set, NULL);
  signal(SIGPIPE, SIG_IGN);
  sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
  ep = epoll_create1(EPOLL_CLOEXEC);
  cs = calloc(o.conns, sizeof(*cs));
  if (sfd < 0 || ep < 0 || cs == NULL)
    die(errno, "setup");
  ev.events = EPOLLIN;
  ev.data.u32 = SIG_TAG;
  epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &ev);
  open_all(cs, ep, &o);
  printf("ready conns=%u\n", o.conns);
  fflush(stdout);
  lost = hold(cs, ep);
  printf("done conns=%u lost=%u\n", o.conns, lost);
  fflush(stdout);
  for (unsigned i = 0; i < o.conns; i++)
    if (cs[i].state != C_CLOSED)
      close(cs[i].fd);
  free(cs);
  return lost ? 1 : 0;
}
