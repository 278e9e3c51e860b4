/* One-line-per-event logging to stderr (or the error_log file), shared by master, workers and data
 * plane. */
#ifndef LBP_LOG_H
#define LBP_LOG_H

enum lbp_log_level { LBP_LOG_DEBUG = 0, LBP_LOG_INFO, LBP_LOG_WARN, LBP_LOG_ERROR };

/* Sets the role printed in every line ("master", "worker 2") and the minimum level printed.
 * Call once per process before logging; again when either changes. */
void lbp_log_init(const char *role, enum lbp_log_level min);

/* Changes only the minimum level. */
void lbp_log_set_level(enum lbp_log_level min);

/* True if a message of `level` would be written (to skip building expensive ones). */
int lbp_log_enabled(enum lbp_log_level level);

/* Opens `path` for appending (created 0640 when missing) and makes it this process's stderr
 * (fd 2), so everything written to stderr, children's included, goes there. "stderr" keeps fd 2
 * as it is. On failure fd 2 is unchanged. 0 or a negative UV error. */
int lbp_log_open(const char *path);

/* Writes "TIME lbproxy[PID] ROLE LEVEL: message\n" with a single write(2), so lines from
 * several processes sharing stderr never interleave. */
void lbp_log(enum lbp_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* As lbp_log, for lines that may repeat at the rate of requests (a dead server, a scanner's bad
 * requests): the first of identical lines is written; the ones that follow within
 * LBP_LOG_REPEAT_MS are counted, and one line "<the line> (repeated N times)" is written when
 * that window is over (at the next lbp_log_flush, or at an identical line after it). */
void lbp_log_limited(enum lbp_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
#define LBP_LOG_REPEAT_MS 10000

/* Writes the "(repeated N times)" lines whose window is over; all of them when `all` (at exit).
 * Cheap when there is nothing to write: call it from a timer. */
void lbp_log_flush(int all);

#define LBP_DEBUG(...)    lbp_log(LBP_LOG_DEBUG, __VA_ARGS__)
#define LBP_INFO(...)     lbp_log(LBP_LOG_INFO, __VA_ARGS__)
#define LBP_WARN(...)     lbp_log(LBP_LOG_WARN, __VA_ARGS__)
#define LBP_ERROR(...)    lbp_log(LBP_LOG_ERROR, __VA_ARGS__)
#define LBP_INFO_RL(...)  lbp_log_limited(LBP_LOG_INFO, __VA_ARGS__)
#define LBP_WARN_RL(...)  lbp_log_limited(LBP_LOG_WARN, __VA_ARGS__)
#define LBP_ERROR_RL(...) lbp_log_limited(LBP_LOG_ERROR, __VA_ARGS__)

#endif
