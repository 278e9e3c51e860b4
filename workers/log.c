/* One-line-per-event logging to stderr (see log.h). */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
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

void lbp_log(enum lbp_log_level level, const char *fmt, ...) {
  static const char *names[] = {"debug", "info", "warn", "error"};
  char line[1024];
  struct timeval tv;
  struct tm tm;
  va_list ap;
  int n, m;

  if (level < log_min)
    return;
  gettimeofday(&tv, NULL);
  gmtime_r(&tv.tv_sec, &tm);
  n = snprintf(line, sizeof(line),
               "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ lbproxy[%ld] %s %s: ", tm.tm_year + 1900,
               tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
               (long)(tv.tv_usec / 1000), (long)getpid(), log_role, names[level]);
  va_start(ap, fmt);
  m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
  va_end(ap);
  if (m < 0)
    m = 0;
  n += m;
  if ((size_t)n > sizeof(line) - 2)
    n = sizeof(line) - 2;
  line[n++] = '\n';
  /* A single write keeps lines whole: stderr is unbuffered and lines are < PIPE_BUF. */
  if (write(STDERR_FILENO, line, (size_t)n) < 0) {
    /* Nowhere left to report a failure to report. */
  }
}
