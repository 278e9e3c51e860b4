/* A worker's access log: one line per request in the combined format plus the upstream's address,
 * status and time and the request's time, buffered and written to an fd the master gives. */
#ifndef LBP_ACCESSLOG_H
#define LBP_ACCESSLOG_H

#include "proxy.h"

#include <stddef.h>
#include <time.h>
#include <uv.h>

#define ALOG_BUF      (64 * 1024) /* the buffer */
#define ALOG_FLUSH_AT (48 * 1024) /* written at once past this */
#define ALOG_FLUSH_MS 250         /* else within this */
#define ALOG_LINE_MAX 4096        /* a longer line is cut (its request line first) */

struct alog {
  uv_timer_t timer;
  int fd;      /* -1 until the master sends one (lines wait in the buffer meanwhile) */
  int enabled; /* access_log is not off */
  char *buf;
  size_t len;
  uint64_t dropped; /* lines lost (buffer full and nowhere to write) */
  time_t sec;       /* the second `stamp` shows */
  char stamp[32];   /* "10/Oct/2000:13:55:36 +0000" */
};

/* Sets up the log, off (alog_close may follow at any time). */
void alog_init(struct alog *a, uv_loop_t *loop);
/* Turns it on (access_log is not off): lines are kept until alog_set_fd. 0 or UV_ENOMEM. */
int alog_enable(struct alog *a);
/* px_request_log_fn: appends the request's line (arg is the struct alog). No syscall unless the
 * buffer is past ALOG_FLUSH_AT. */
void alog_request(void *arg, const struct px_request_log *l);
/* The master sent the (re)opened log: what is buffered goes to the old fd first, then the old fd
 * is closed. Takes `fd`. */
void alog_set_fd(struct alog *a, int fd);
/* Writes what is buffered. */
void alog_flush(struct alog *a);
/* Flushes, closes the fd and the timer (its handle's close callback is the loop's business). */
void alog_close(struct alog *a);

/* One line (with '\n') for l at `stamp` into out (cap >= ALOG_LINE_MAX); its length. */
size_t alog_format(char *out, size_t cap, const struct px_request_log *l, const char *stamp);

#endif
