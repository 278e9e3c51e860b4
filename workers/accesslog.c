/* A worker's access log: the combined log format plus upstream fields, buffered in the worker and
 * written to the fd the master opened (workers never open files). */

/*
 * 1. The line (nginx's "combined" plus four fields):
 *      client - - [time] "request line" status bytes "referer" "user-agent" upstream
 *      upstream_status upstream_time request_time
 *    time is UTC ("10/Oct/2000:13:55:36 +0000"); status is what the client got, 499 when it
 *    left before any answer; bytes are all bytes sent (head and body); upstream is the last
 *    server tried; the two times are seconds with millisecond precision. A missing field is
 *    "-". Quoted fields escape '"', '\' and bytes outside printable ASCII as \xHH, so a line is
 *    always one line and parses the same way (a 400's raw request line included).
 * 2. Lines go into one buffer; it is written when past ALOG_FLUSH_AT and otherwise within
 *    ALOG_FLUSH_MS (a timer), so a request costs no syscall. Writes are blocking write(2)
 *    calls, as nginx does, on a file opened O_APPEND by the master: workers' lines never mix.
 * 3. Reopen (SIGUSR1): the master opens the file again and sends the new fd (IPC LOGFD, which 1);
 *    what is buffered goes to the old file, then the new fd takes over.
 */
#include "accesslog.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* Appends s[0..n) escaped for a quoted field, within out[*o..cap). */
static void put_escaped(char *out, size_t cap, size_t *o, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";

  for (size_t i = 0; i < n && *o + 4 < cap; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
      out[(*o)++] = (char)c;
    } else {
      out[(*o)++] = '\\';
      out[(*o)++] = 'x';
      out[(*o)++] = hex[c >> 4];
      out[(*o)++] = hex[c & 15];
    }
  }
}

static void put(char *out, size_t cap, size_t *o, const char *s) {
  size_t n = strlen(s);

  if (*o + 1 >= cap)
    return;
  if (*o + n >= cap)
    n = cap - *o - 1;
  memcpy(out + *o, s, n);
  *o += n;
}

/* The value of header `name` in the request head, or NULL (the first line is the request's). */
static const char *header(const struct px_request_log *l, const char *name, size_t *len) {
  const char *p = l->head, *end = l->head + l->head_len, *eol;
  size_t nl = strlen(name);

  if (l->method == NULL || p == NULL)
    return NULL;
  for (p = memchr(p, '\n', l->head_len); p != NULL && p + 1 < end; p = eol) {
    const char *v;
    p++;
    if ((eol = memchr(p, '\n', (size_t)(end - p))) == NULL)
      return NULL;
    if ((size_t)(eol - p) <= nl || p[nl] != ':' || strncasecmp(p, name, nl) != 0)
      continue;
    for (v = p + nl + 1; v < eol && (*v == ' ' || *v == '\t'); v++)
      ;
    *len = (size_t)(eol - v);
    while (*len > 0 && (v[*len - 1] == '\r' || v[*len - 1] == ' ' || v[*len - 1] == '\t'))
      (*len)--;
    return v;
  }
  return NULL;
}

static void put_quoted_header(char *out, size_t cap, size_t *o, const struct px_request_log *l,
                              const char *name) {
  size_t n = 0;
  const char *v = header(l, name, &n);

  put(out, cap, o, " \"");
  if (v != NULL)
    put_escaped(out, cap, o, v, n);
  else
    put(out, cap, o, "-");
  put(out, cap, o, "\"");
}

/* "METHOD target HTTP/1.x", or the raw first line of a request that did not parse. */
static void put_request_line(char *out, size_t cap, size_t *o, const struct px_request_log *l) {
  char proto[16];

  put(out, cap, o, "\"");
  if (l->method != NULL) {
    put(out, cap, o, l->method);
    put(out, cap, o, " ");
    /* room is kept for the version and the closing quote */
    put_escaped(out, cap - 16, o, l->target != NULL ? l->target : "", l->target_len);
    snprintf(proto, sizeof(proto), " HTTP/1.%u", l->http_minor);
    put(out, cap, o, proto);
  } else if (l->head != NULL && l->head_len > 0) {
    size_t n = 0;
    while (n < l->head_len && l->head[n] != '\r' && l->head[n] != '\n')
      n++;
    put_escaped(out, cap - 2, o, l->head, n);
  } else {
    put(out, cap, o, "-");
  }
  put(out, cap, o, "\"");
}

size_t alog_format(char *out, size_t cap, const struct px_request_log *l, const char *stamp) {
  char num[160];
  size_t o = 0;

  put(out, cap, &o, l->client != NULL && l->client[0] ? l->client : "-");
  put(out, cap, &o, " - - [");
  put(out, cap, &o, stamp);
  put(out, cap, &o, "] ");
  /* The request line may be long: it gets what is left after room for the rest. */
  put_request_line(out, cap - 1024, &o, l);
  snprintf(num, sizeof(num), " %d %llu", l->status != 0 ? l->status : 499,
           (unsigned long long)l->bytes_out);
  put(out, cap, &o, num);
  put_quoted_header(out, cap - 512, &o, l, "Referer");
  put_quoted_header(out, cap - 256, &o, l, "User-Agent");
  put(out, cap, &o, " ");
  put(out, cap, &o, l->upstream != NULL ? l->upstream : "-");
  if (l->upstream_status != 0)
    snprintf(num, sizeof(num), " %d %llu.%03llu", l->upstream_status,
             (unsigned long long)(l->upstream_time_us / 1000000),
             (unsigned long long)(l->upstream_time_us / 1000 % 1000));
  else
    snprintf(num, sizeof(num), " - -");
  put(out, cap, &o, num);
  snprintf(num, sizeof(num), " %llu.%03llu\n", (unsigned long long)(l->time_us / 1000000),
           (unsigned long long)(l->time_us / 1000 % 1000));
  put(out, cap, &o, num);
  if (out[o - 1] != '\n') /* cut: still one line */
    out[o - 1] = '\n';
  return o;
}

/* ---- the buffer ---- */

static void write_all(struct alog *a) {
  size_t off = 0;

  while (off < a->len && a->fd >= 0) {
    ssize_t n = write(a->fd, a->buf + off, a->len - off);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break; /* a full disk, a pipe nobody reads: keep what is left for later */
    off += (size_t)n;
  }
  memmove(a->buf, a->buf + off, a->len - off);
  a->len -= off;
}

void alog_flush(struct alog *a) {
  if (a->len > 0 && a->fd >= 0)
    write_all(a);
}

static void timer_cb(uv_timer_t *t) {
  alog_flush(t->data);
}

void alog_init(struct alog *a, uv_loop_t *loop) {
  memset(a, 0, sizeof(*a));
  a->fd = -1;
  a->sec = (time_t)-1;
  uv_timer_init(loop, &a->timer);
  a->timer.data = a;
  uv_unref((uv_handle_t *)&a->timer);
}

int alog_enable(struct alog *a) {
  if (a->buf == NULL && (a->buf = malloc(ALOG_BUF)) == NULL)
    return UV_ENOMEM;
  a->enabled = 1;
  return 0;
}

/* The time field, formatted once per second. */
static const char *stamp(struct alog *a) {
  struct timespec ts;
  struct tm tm;

  clock_gettime(CLOCK_REALTIME_COARSE, &ts);
  if (ts.tv_sec != a->sec) {
    a->sec = ts.tv_sec;
    gmtime_r(&ts.tv_sec, &tm);
    strftime(a->stamp, sizeof(a->stamp), "%d/%b/%Y:%H:%M:%S +0000", &tm);
  }
  return a->stamp;
}

void alog_request(void *arg, const struct px_request_log *l) {
  struct alog *a = arg;

  if (a->buf == NULL)
    return;
  if (ALOG_BUF - a->len < ALOG_LINE_MAX) {
    alog_flush(a);
    if (ALOG_BUF - a->len < ALOG_LINE_MAX) {
      a->dropped++;
      return;
    }
  }
  a->len += alog_format(a->buf + a->len, ALOG_LINE_MAX, l, stamp(a));
  if (a->len >= ALOG_FLUSH_AT)
    alog_flush(a);
  else if (!uv_is_active((uv_handle_t *)&a->timer))
    uv_timer_start(&a->timer, timer_cb, ALOG_FLUSH_MS, 0);
}

void alog_set_fd(struct alog *a, int fd) {
  alog_flush(a);
  if (a->fd >= 0)
    close(a->fd);
  a->fd = fd;
  alog_flush(a); /* lines that waited for a first fd */
}

void alog_close(struct alog *a) {
  alog_flush(a);
  if (a->fd >= 0)
    close(a->fd);
  a->fd = -1;
  free(a->buf);
  a->buf = NULL;
  if (!uv_is_closing((uv_handle_t *)&a->timer))
    uv_close((uv_handle_t *)&a->timer, NULL);
}
