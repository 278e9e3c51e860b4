/* One-line-per-event logging to stderr (see log.h). */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static char log_role[32] = "lbproxy";
static enum lbp_log_level log_min = LBP_LOG_INFO;

void lbp_log_init(const char *role, enum lbp_log_level min) {
  snprintf(log_role, sizeof(log_role), "%s", role);
  log_min = min;
}

void lbp_log_set_level(enum lbp_log_level min) {
  log_min = min;
}

int lbp_log_enabled(enum lbp_log_level level) {
  return level >= log_min;
}

int lbp_log_open(const char *path) {
  int fd, rc = 0;

  if (path == NULL || strcmp(path, "stderr") == 0)
    return 0;
  fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0)
    return -errno;
  if (fd != STDERR_FILENO && dup2(fd, STDERR_FILENO) < 0)
    rc = -errno;
  if (fd != STDERR_FILENO)
    close(fd);
  return rc;
}

/* Writes one line: the prefix, then `msg`. */
static void emit(enum lbp_log_level level, const char *msg) {
  static const char *names[] = {"debug", "info", "warn", "error"};
  char line[1024];
  struct timeval tv;
  struct tm tm;
  int n;

  gettimeofday(&tv, NULL);
  gmtime_r(&tv.tv_sec, &tm);
  n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ lbproxy[%ld] %s %s: %s",
               tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
               (long)(tv.tv_usec / 1000), (long)getpid(), log_role, names[level], msg);
  if (n < 0)
    return;
  if ((size_t)n > sizeof(line) - 2)
    n = sizeof(line) - 2;
  line[n++] = '\n';
  /* A single write keeps lines whole: stderr is unbuffered and lines are < PIPE_BUF. */
  if (write(STDERR_FILENO, line, (size_t)n) < 0) {
    /* Nowhere left to report a failure to report. */
  }
}

void lbp_log(enum lbp_log_level level, const char *fmt, ...) {
  char msg[1024];
  va_list ap;

  if (level < log_min)
    return;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  emit(level, msg);
}

/* ---- repeated lines ---- */

#define RL_SLOTS 16

/* A line written recently, and how many identical ones were held back since. */
struct repeat {
  char msg[512];
  uint64_t since_ms; /* its window's start */
  unsigned held;
  uint8_t used;
  uint8_t level;
};

static struct repeat repeats[RL_SLOTS];
static unsigned repeats_held; /* slots with held > 0: lbp_log_flush is free when 0 */

static uint64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Writes the summary of slot r if it held lines back, and starts a new window at now. */
static void summarize(struct repeat *r, uint64_t now) {
  char line[600];

  if (r->held > 0) {
    snprintf(line, sizeof(line), "%s (repeated %u %s)", r->msg, r->held,
             r->held == 1 ? "time" : "times");
    emit((enum lbp_log_level)r->level, line);
    r->held = 0;
    repeats_held--;
  }
  r->since_ms = now;
}

void lbp_log_limited(enum lbp_log_level level, const char *fmt, ...) {
  struct repeat *r = NULL, *oldest = &repeats[0];
  uint64_t now = mono_ms();
  char msg[512];
  va_list ap;

  if (level < log_min)
    return;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  for (unsigned i = 0; i < RL_SLOTS && r == NULL; i++) {
    if (repeats[i].used && repeats[i].level == level && strcmp(repeats[i].msg, msg) == 0)
      r = &repeats[i];
    else if (!repeats[i].used || (oldest->used && repeats[i].since_ms < oldest->since_ms))
      oldest = &repeats[i];
  }
  if (r != NULL && now - r->since_ms < LBP_LOG_REPEAT_MS) {
    repeats_held += r->held++ == 0;
    return;
  }
  if (r != NULL) {
    summarize(r, now); /* the window is over: its summary, then this one as a new first */
  } else {
    r = oldest;
    if (r->used)
      summarize(r, now);
    snprintf(r->msg, sizeof(r->msg), "%s", msg);
    r->used = 1;
    r->level = (uint8_t)level;
    r->since_ms = now;
  }
  emit(level, msg);
}

void lbp_log_flush(int all) {
  uint64_t now;

  if (repeats_held == 0)
    return;
  now = mono_ms();
  for (unsigned i = 0; i < RL_SLOTS; i++)
    if (repeats[i].held > 0 && (all || now - repeats[i].since_ms >= LBP_LOG_REPEAT_MS))
      summarize(&repeats[i], now);
}
