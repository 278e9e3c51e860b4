/* Test HTTP/1.1 client: blocking sockets, responses parsed with llhttp one at a time. */
#include "client.h"
#include "pattern.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <llhttp.h>

/*
 * Reading responses without over-reading: every read is a recv(MSG_PEEK); llhttp pauses at the
 * end of each response head and each response, and only the bytes it consumed are then taken
 * off the socket. Whatever follows (a pipelined response) stays in the kernel for the next
 * hc_read_response, so no per-fd leftover state exists and one fd can be reused freely.
 *
 * Errors of hc_read_response: -ECONNRESET when the peer closed or reset before any byte of a
 * response, -ECONNABORTED when it closed in the middle of one, -EPROTO for bytes that are not
 * HTTP, -ETIMEDOUT after the 30 s socket timeout.
 */

#define IO_TIMEOUT_S 30
#define READ_CHUNK   65536

enum { EV_NONE, EV_HEADERS, EV_MESSAGE };

struct rstate {
  struct hc_resp *r;
  int head_request, event, in_head, any;
  size_t body_kept;
};

uint64_t hc_fnv(uint64_t h, const void *data, size_t len) {
  const unsigned char *p = data;
  for (size_t i = 0; i < len; i++)
    h = (h ^ p[i]) * 0x100000001b3ULL;
  return h;
}

int hc_connect(uint16_t port, const char *bind_ip) {
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
  struct timeval tv = {IO_TIMEOUT_S, 0};
  int one = 1, err;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -errno;
  if (bind_ip != NULL) {
    struct sockaddr_in local = {.sin_family = AF_INET};
    if (inet_pton(AF_INET, bind_ip, &local.sin_addr) != 1) {
      err = -EINVAL;
      goto fail;
    }
    if (bind(fd, (struct sockaddr *)&local, sizeof(local)) < 0)
      goto fail_errno;
  }
  if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
      setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0 ||
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
    goto fail_errno;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
    goto fail_errno;
  return fd;

fail_errno:
  err = -errno;
fail:
  close(fd);
  return err;
}

int hc_send_all(int fd, const void *buf, size_t len) {
  const char *p = buf;
  while (len > 0) {
    ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return errno == EAGAIN || errno == EWOULDBLOCK ? -ETIMEDOUT : -errno;
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

/* ---- llhttp callbacks ---- */

static void resp_reset(struct rstate *st) {
  struct hc_resp *r = st->r;
  r->status = r->keep_alive = r->chunked = 0;
  r->head_len = 0;
  r->head[0] = '\0';
  r->body_len = 0;
  r->body_fnv = HC_FNV_INIT;
  r->body[0] = '\0';
  st->body_kept = 0;
  st->in_head = 1;
}

static int cb_headers_complete(llhttp_t *p) {
  struct rstate *st = p->data;
  st->r->status = p->status_code;
  st->r->chunked = (p->flags & F_CHUNKED) != 0;
  if (st->head_request)
    p->flags |= F_SKIPBODY; /* what returning 1 would do; we return HPE_PAUSED instead */
  st->event = EV_HEADERS;
  return HPE_PAUSED;
}

static int cb_body(llhttp_t *p, const char *at, size_t n) {
  struct rstate *st = p->data;
  struct hc_resp *r = st->r;
  r->body_len += n;
  r->body_fnv = hc_fnv(r->body_fnv, at, n);
  size_t room = sizeof(r->body) - 1 - st->body_kept;
  size_t keep = n < room ? n : room;
  memcpy(r->body + st->body_kept, at, keep);
  st->body_kept += keep;
  r->body[st->body_kept] = '\0';
  return 0;
}

static int cb_message_complete(llhttp_t *p) {
  struct rstate *st = p->data;
  st->r->keep_alive = llhttp_should_keep_alive(p);
  st->event = EV_MESSAGE;
  return HPE_PAUSED;
}

static void head_append(struct hc_resp *r, const char *from, size_t n) {
  size_t room = sizeof(r->head) - 1 - r->head_len;
  if (n > room)
    n = room;
  memcpy(r->head + r->head_len, from, n);
  r->head_len += n;
  r->head[r->head_len] = '\0';
}

/* Takes n already peeked bytes off the socket. */
static int consume(int fd, size_t n) {
  char sink[4096];
  while (n > 0) {
    ssize_t r = recv(fd, sink, n < sizeof(sink) ? n : sizeof(sink), 0);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      return r == 0 ? -ECONNRESET : -errno;
    n -= (size_t)r;
  }
  return 0;
}

/* Parses the peeked bytes buf[0..n); returns 1 when a final response completed (*used = bytes
 * belonging to it), 0 when all n bytes were used, or a negative error. */
static int parse_some(llhttp_t *p, struct rstate *st, const char *buf, size_t n, size_t *used) {
  size_t off = 0;
  int need_exec = 1;
  while (off < n || need_exec) {
    const char *from = buf + off;
    st->event = EV_NONE;
    llhttp_errno_t err = llhttp_execute(p, from, n - off);
    size_t k = err == HPE_OK ? n - off : (size_t)(llhttp_get_error_pos(p) - from);
    if (st->in_head)
      head_append(st->r, from, k);
    off += k;
    need_exec = 0;
    if (err == HPE_OK)
      continue;
    if (err != HPE_PAUSED)
      return -EPROTO;
    llhttp_resume(p);
    need_exec = 1; /* llhttp finishes a bodiless message on an empty execute */
    if (st->event == EV_HEADERS) {
      st->in_head = 0;
    } else if (st->event == EV_MESSAGE) {
      int interim = st->r->status >= 100 && st->r->status < 200 && st->r->status != 101;
      if (!interim) {
        *used = off;
        return 1;
      }
      resp_reset(st); /* 100 Continue and friends: the real response follows */
    }
  }
  *used = n;
  return 0;
}

int hc_read_response(int fd, struct hc_resp *r, int head_request) {
  llhttp_settings_t settings;
  llhttp_t p;
  struct rstate st = {.r = r, .head_request = head_request};
  char local[READ_CHUNK];
  llhttp_settings_init(&settings);
  settings.on_headers_complete = cb_headers_complete;
  settings.on_body = cb_body;
  settings.on_message_complete = cb_message_complete;
  llhttp_init(&p, HTTP_RESPONSE, &settings);
  p.data = &st;
  resp_reset(&st);
  for (;;) {
    ssize_t n = recv(fd, local, sizeof(local), MSG_PEEK);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return errno == EAGAIN || errno == EWOULDBLOCK ? -ETIMEDOUT : -errno;
    if (n == 0) {
      if (!st.any)
        return -ECONNRESET;
      st.event = EV_NONE;
      llhttp_finish(&p);
      return st.event == EV_MESSAGE ? 0 : -ECONNABORTED;
    }
    st.any = 1;
    size_t used = 0;
    int done = parse_some(&p, &st, local, (size_t)n, &used);
    int err = consume(fd, done < 0 ? (size_t)n : used);
    if (done < 0)
      return done;
    if (err < 0)
      return err;
    if (done == 1)
      return 0;
  }
}

int hc_roundtrip(int fd, const char *req, struct hc_resp *r) {
  int err = hc_send_all(fd, req, strlen(req));
  if (err < 0)
    return err;
  return hc_read_response(fd, r, strncmp(req, "HEAD ", 5) == 0);
}

int hc_get(uint16_t port, const char *path, struct hc_resp *r) {
  char req[4096];
  int n = snprintf(req, sizeof(req),
                   "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%u\r\nConnection: close\r\n\r\n", path,
                   (unsigned)port);
  if (n < 0 || (size_t)n >= sizeof(req))
    return -ENAMETOOLONG;
  int fd = hc_connect(port, NULL);
  if (fd < 0)
    return fd;
  int err = hc_roundtrip(fd, req, r);
  close(fd);
  return err;
}

int hc_header(const struct hc_resp *r, const char *name, char *out, size_t cap) {
  size_t nl = strlen(name);
  const char *p = r->head, *end = r->head + r->head_len;
  const char *eol = memchr(p, '\n', (size_t)(end - p)); /* skip the status line */
  while (eol != NULL && eol + 1 < end) {
    p = eol + 1;
    eol = memchr(p, '\n', (size_t)(end - p));
    const char *le = eol ? eol : end;
    if ((size_t)(le - p) <= nl || p[nl] != ':' || strncasecmp(p, name, nl) != 0)
      continue;
    const char *v = p + nl + 1;
    while (v < le && (*v == ' ' || *v == '\t'))
      v++;
    while (le > v && (le[-1] == '\r' || le[-1] == ' ' || le[-1] == '\t'))
      le--;
    if ((size_t)(le - v) >= cap)
      return -1;
    memcpy(out, v, (size_t)(le - v));
    out[le - v] = '\0';
    return 0;
  }
  return -1;
}

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int hc_wait_closed(int fd, int timeout_ms) {
  char sink[4096];
  int64_t deadline = now_ms() + timeout_ms;
  for (;;) {
    int64_t left = deadline - now_ms();
    if (left <= 0)
      return 0;
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    int r = poll(&pfd, 1, (int)left);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      return r == 0 ? 0 : 1;
    ssize_t n = recv(fd, sink, sizeof(sink), MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
      return 1;
  }
}

uint64_t hc_pattern_fnv(uint64_t n) {
  unsigned char buf[65536];
  uint64_t h = HC_FNV_INIT;
  for (uint64_t off = 0; off < n; off += sizeof(buf)) {
    size_t k = n - off < sizeof(buf) ? (size_t)(n - off) : sizeof(buf);
    pattern_fill(off, buf, k);
    h = hc_fnv(h, buf, k);
  }
  return h;
}
