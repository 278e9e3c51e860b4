/* Limits through the real proxy: request body size (413), and a worker at its open-file limit
 * (it keeps serving, sheds new connections without spinning, and recovers). */
#include "itest.h"
#include "pattern.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

static struct hc_resp R;

static int connect_proxy(void) {
  int fd = hc_connect(T.px.port, NULL);
  cr_assert_geq(fd, 0, "connect: %s", strerror(-fd));
  return fd;
}

static void header_is(const char *name, const char *want) {
  char v[256];
  cr_assert_eq(hc_header(&R, name, v, sizeof(v)), 0, "no %s header in:\n%s", name, R.head);
  cr_assert_str_eq(v, want, "%s", name);
}

/* ---- max_body_bytes ---- */

struct body {
  int fd;
  uint64_t len;
  int chunked;
};

/* Sends a body (pattern bytes, chunked or not) and stops as soon as an answer is there to read
 * (a 413 comes before the body is all sent; sending on would only make the proxy's lingering
 * close discard more) or the proxy stops taking it. */
static void *send_body(void *arg) {
  struct body *b = arg;
  static unsigned char buf[16384];

  for (uint64_t off = 0; off < b->len;) {
    struct pollfd pf = {.fd = b->fd, .events = POLLIN};
    if (poll(&pf, 1, 0) != 0)
      return NULL;
    size_t k = b->len - off < sizeof(buf) ? (size_t)(b->len - off) : sizeof(buf);
    char ch[32];
    pattern_fill(off, buf, k);
    if (b->chunked && hc_send_all(b->fd, ch, (size_t)snprintf(ch, sizeof(ch), "%zx\r\n", k)))
      return NULL;
    if (hc_send_all(b->fd, buf, k) != 0 || (b->chunked && hc_send_all(b->fd, "\r\n", 2) != 0))
      return NULL;
    off += k;
  }
  if (b->chunked)
    hc_send_all(b->fd, "0\r\n\r\n", 5);
  return NULL;
}

/* POSTs a body of `len` bytes to /sum while reading the answer; with `head_only` only the head
 * goes (a Content-Length over the limit must be answered without its body). */
static void post(uint64_t len, int chunked, int head_only) {
  char head[256];
  struct body b = {.len = len, .chunked = chunked};
  pthread_t th;
  int n;

  b.fd = connect_proxy();
  n = chunked ? snprintf(head, sizeof(head),
                         "POST /sum HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
              : snprintf(head, sizeof(head),
                         "POST /sum HTTP/1.1\r\nHost: t\r\nContent-Length: %llu\r\n\r\n",
                         (unsigned long long)len);
  cr_assert_eq(hc_send_all(b.fd, head, (size_t)n), 0);
  if (head_only)
    b.len = 0;
  pthread_create(&th, NULL, send_body, &b);
  cr_assert_eq(hc_read_response(b.fd, &R, 0), 0, "no answer to %llu bytes (chunked %d)",
               (unsigned long long)len, chunked);
  if (R.status == 413) {
    header_is("Connection", "close");
    cr_assert(hc_wait_closed(b.fd, 10000), "the connection stayed open after a 413");
  }
  shutdown(b.fd, SHUT_RDWR); /* unblocks the sender */
  pthread_join(th, NULL);
  close(b.fd);
}

IT_EACH_STRATEGY(limits, a_body_over_max_body_bytes_gets_413_and_the_connection_closes) {
  it_start(dispatch, 2, 1, "limits:\n  max_body_bytes: 1m\n");
  post(1 << 20, 0, 0); /* exactly the limit: passes */
  cr_assert_eq(R.status, 200);
  post(1 << 20, 1, 0);
  cr_assert_eq(R.status, 200);
  post((1 << 20) + 1, 0, 1); /* a Content-Length over it: at once, without the body */
  cr_assert_eq(R.status, 413);
  /* Chunked: when it crosses the limit. Not much more: bytes already on their way when the
   * 413 comes are discarded by the lingering close, up to 1 MiB; past that it resets. */
  post((1 << 20) + 65536, 1, 0);
  cr_assert_eq(R.status, 413);
  cr_assert_eq(it_get("/", &R), 0);
  cr_assert_eq(R.status, 200);
  it_stop();
}

/* ---- the open-file limit ---- */

/* utime + stime of a process, in clock ticks. */
static long cpu_ticks(pid_t pid) {
  char path[64], buf[1024], *p;
  unsigned long ut = 0, st = 0;
  FILE *f;

  snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
  if ((f = fopen(path, "r")) == NULL)
    return -1;
  p = fgets(buf, sizeof(buf), f);
  fclose(f);
  if (p == NULL || (p = strrchr(buf, ')')) == NULL)
    return -1;
  /* After the command: state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
   * utime stime (fields 3..15). */
  if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
    return -1;
  return (long)(ut + st);
}

/* Sets the soft open-file limit of a process (the hard one stays: raising it back needs
 * CAP_SYS_RESOURCE, which a test may not have). */
static int set_nofile(pid_t pid, rlim_t n) {
  struct rlimit rl;

  if (prlimit(pid, RLIMIT_NOFILE, NULL, &rl) != 0)
    return -1;
  rl.rlim_cur = n < rl.rlim_max ? n : rl.rlim_max;
  return prlimit(pid, RLIMIT_NOFILE, &rl, NULL);
}

IT_TEST(limits, a_worker_out_of_file_descriptors_keeps_serving_sheds_new_ones_and_recovers) {
  enum { EXTRA = 40 };
  int keep, extra[EXTRA], nextra = 0, shed = 0;
  long ticks0, ticks1;
  pid_t w;

  /* One worker accepting itself (shared): the master cannot hand it anything it lacks fds for,
   * so what the worker does at EMFILE on accept() is all that matters. */
  it_start("shared", 1, 1, NULL);
  w = it_worker_pid(1);
  cr_assert_gt(w, 0);
  keep = connect_proxy();
  cr_assert_eq(hc_roundtrip(keep, "GET / HTTP/1.1\r\nHost: t\r\n\r\n", &R), 0);
  cr_assert_eq(R.status, 200);
  /* Leave the worker a few descriptors, then take them with idle connections. */
  cr_assert_eq(set_nofile(w, (rlim_t)h_fd_count(w) + 6), 0, "prlimit: %s", strerror(errno));
  for (int i = 0; i < EXTRA; i++) {
    int fd = hc_connect(T.px.port, NULL);
    if (fd < 0)
      break;
    extra[nextra++] = fd;
  }
  /* Past the limit, new connections are accepted by the kernel and shed by the worker. */
  for (int i = 0; i < nextra; i++) {
    char c;
    struct timeval tv = {0, 200 * 1000};
    setsockopt(extra[i], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    shed += recv(extra[i], &c, 1, 0) == 0;
  }
  cr_assert_gt(shed, 0, "no connection was shed at the limit");
  /* The connection it had is still served (its upstream connection is pooled). */
  cr_assert_eq(hc_roundtrip(keep, "GET / HTTP/1.1\r\nHost: t\r\n\r\n", &R), 0,
               "an established connection was not served at the limit");
  cr_assert_eq(R.status, 200);
  /* No busy loop: a connection waiting in the backlog costs no CPU. */
  int pending = hc_connect(T.px.port, NULL);
  ticks0 = cpu_ticks(w);
  usleep(500 * 1000); /* measuring CPU over a time span, not waiting for anything */
  ticks1 = cpu_ticks(w);
  cr_assert_lt(ticks1 - ticks0, sysconf(_SC_CLK_TCK) / 5,
               "the worker spins at the limit (%ld ticks)", ticks1 - ticks0);
  close(pending);
  /* Room again: new connections are served. */
  for (int i = 0; i < nextra; i++)
    close(extra[i]);
  cr_assert_eq(set_nofile(w, 4096), 0, "prlimit: %s", strerror(errno));
  for (int i = 0; i < 3; i++) {
    int64_t deadline = h_now_ms() + 5000;
    int rc;
    while ((rc = it_get("/", &R)) != 0 && h_now_ms() < deadline)
      usleep(10 * 1000);
    cr_assert_eq(rc, 0, "no recovery");
    cr_assert_eq(R.status, 200);
  }
  close(keep);
  it_stop();
}

/* ---- max_connections ---- */

IT_EACH_STRATEGY(limits, a_worker_at_max_connections_takes_no_more_until_one_closes) {
  struct pollfd pf;
  int a, b, c;

  /* handoff: the worker refuses the fd back to the master, which holds it and tries again;
   * a worker that accepts itself (shared, reuseport, proxy's private port) stops accepting,
   * and the kernel's backlog holds the connection. Never accepted and closed. */
  it_start(dispatch, 1, 1, "limits:\n  max_connections: 2\n");
  a = connect_proxy();
  b = connect_proxy();
  cr_assert_eq(hc_roundtrip(a, "GET / HTTP/1.1\r\nHost: t\r\n\r\n", &R), 0);
  cr_assert_eq(hc_roundtrip(b, "GET / HTTP/1.1\r\nHost: t\r\n\r\n", &R), 0);
  c = connect_proxy();
  cr_assert_eq(hc_send_all(c, "GET / HTTP/1.1\r\nHost: t\r\n\r\n", 27), 0);
  pf = (struct pollfd){.fd = c, .events = POLLIN};
  cr_assert_eq(poll(&pf, 1, 500), 0, "a third connection was served past the limit");
  close(a); /* room again */
  cr_assert_eq(hc_read_response(c, &R, 0), 0, "the held connection was never served");
  cr_assert_eq(R.status, 200);
  close(b);
  close(c);
  it_stop();
}
