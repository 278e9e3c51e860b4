/* Lifecycle events of the master and its workers: kept in a ring for the admin API, logged. */
#include "master.h"

#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>

static const char *const names[] = {
    [EV_FORK] = "fork",
    [EV_ONLINE] = "online",
    [EV_READY] = "ready",
    [EV_DISCONNECT] = "disconnect",
    [EV_EXIT] = "exit",
    [EV_ERRORED] = "errored",
    [EV_DRAIN] = "drain",
    [EV_BYE] = "bye",
    [EV_RELOAD] = "reload",
    [EV_RELOAD_FAILED] = "reload-failed",
    [EV_GENERATION] = "generation",
    [EV_UPGRADE] = "upgrade",
    [EV_UPGRADE_FAILED] = "upgrade-failed",
    [EV_SERVER] = "server",
    [EV_DNS] = "dns",
    [EV_REBALANCE] = "rebalance",
};

const char *event_name(enum event_type t) {
  return (unsigned)t < sizeof(names) / sizeof(names[0]) && names[t] ? names[t] : "?";
}

/* Problems say so in the log's level too. */
static enum lbp_log_level level_of(enum event_type t) {
  switch (t) {
  case EV_ERRORED:
  case EV_RELOAD_FAILED:
  case EV_UPGRADE_FAILED:
    return LBP_LOG_ERROR;
  default:
    return LBP_LOG_INFO;
  }
}

void event_add(struct master *m, enum event_type type, int slot, long pid, uint32_t gen,
               const char *fmt, ...) {
  struct event *e = &m->events[m->events_pos];
  struct timeval tv;
  va_list ap;

  gettimeofday(&tv, NULL);
  memset(e, 0, sizeof(*e));
  e->time_ms = (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
  e->type = type;
  e->slot = slot;
  e->pid = pid;
  e->generation = gen;
  va_start(ap, fmt);
  vsnprintf(e->detail, sizeof(e->detail), fmt, ap);
  va_end(ap);
  m->events_pos = (m->events_pos + 1) % EVENTS_MAX;
  if (m->nevents < EVENTS_MAX)
    m->nevents++;
  /* One line, in the shape existing tools grep for: "worker N <event> pid=P gen=G ...". */
  if (slot > 0)
    lbp_log(level_of(type), "worker %d %s pid=%ld gen=%u%s%s", slot, names[type], pid, gen,
            e->detail[0] ? " " : "", e->detail);
  else
    lbp_log(level_of(type), "%s: %s", names[type], e->detail);
}
