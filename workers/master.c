/* The master: generations, reload, graceful and fast stop, signals; the one loop that acts on them.
 */

/*
 * 1. Signals (nginx's conventions) only record what was asked (libuv's uv_signal_t runs the
 *    callbacks from the loop): HUP reload, QUIT graceful stop, TERM/INT fast stop, USR1 reopen
 *    the error log, USR2 binary upgrade. Signals with nothing to do are ignored, never fatal.
 * 2. Reload: read and validate the file; invalid -> the log says file:line:col, the running
 *    generation is untouched. Valid -> build the new generation (its sockets: existing ones are
 *    shared, never closed and reopened), start its workers, and only when every one of them is
 *    READY switch: the new generation becomes current (its workers get their listening sockets
 *    now, the master's accepting goes to it), the old one gets DRAIN. A worker of the new
 *    generation that exits first, or a start that takes longer than START_TIMEOUT_MS, aborts the
 *    reload (its workers drain back) and the old generation goes on.
 * 3. Draining: old workers finish requests in flight and hand idle keep-alive connections back
 *    (HANDOVER); the master gives them to the new generation's workers, which serve the next
 *    request on the same TCP connection. At shutdown_timeout a worker closes what is left; the
 *    master SIGKILLs one that is still there KILL_GRACE_MS later.
 * 4. Graceful stop (QUIT): stop accepting, drain every worker without handover (idle
 *    connections are closed, requests in flight finish), exit 0 when all are gone. Fast stop
 *    (TERM, INT): STOP every worker, SIGKILL after KILL_GRACE_MS, exit 0 once all are reaped.
 */
#include "master.h"

#include "admin.h"
#include "dispatch.h"
#include "log.h"
#include "relay.h"
#include "totals.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define START_TIMEOUT_MS     60000 /* a reload whose workers are not all ready by then is abandoned */
#define KILL_GRACE_MS        5000  /* after a deadline, a worker still there is killed */
#define FAST_STOP_MS         10000 /* fast stop: SIGKILL after this */
#define WATCHDOG_MS          1000
#define UNRESPONSIVE_KILL_MS 30000 /* a worker that acknowledges nothing this long is killed */

extern char **environ;

static void master_finish(struct master *m);

/* ---- small helpers ---- */

char **master_env(const char *const *extra) {
  size_t n = 0, k = 0;
  char **env;

  while (environ[n] != NULL)
    n++;
  while (extra[k] != NULL)
    k++;
  if ((env = calloc(n + k + 1, sizeof(*env))) == NULL)
    return NULL;
  for (size_t i = 0, j = 0; i < n; i++) {
    /* Our own variables are set fresh for each child, never inherited from our parent. */
    if (strncmp(environ[i], "LBPROXY_CHANNEL_FD=", 19) == 0 ||
        strncmp(environ[i], "LBPROXY_SHM_FD=", 15) == 0 ||
        strncmp(environ[i], "LBPROXY_MASTER_PID=", 19) == 0 ||
        strncmp(environ[i], "LBPROXY_INHERIT=", 16) == 0 ||
        strncmp(environ[i], "LBPROXY_UPGRADE_FD=", 19) == 0)
      continue;
    env[j++] = environ[i];
    env[j] = NULL;
  }
  for (size_t i = 0, j = 0; i < k; i++) {
    while (env[j] != NULL)
      j++;
    env[j] = (char *)extra[i];
  }
  return env;
}

static const char *plural(unsigned n, const char *one, const char *many) {
  return n == 1 ? one : many;
}

static struct slot *slot_get(struct master *m, unsigned id) {
  while (m->nslots_made <= id) {
    struct slot *s = &m->slots[m->nslots_made];
    s->m = m;
    s->id = m->nslots_made;
    uv_timer_init(m->loop, &s->restart);
    s->restart.data = s;
    m->nslots_made++;
  }
  return &m->slots[id];
}

void master_log_stats(struct master *m) {
  char acc[1024], act[1024], hand[1024];
  size_t a = 0, b = 0, h = 0;
  struct generation *g = m->cur;

  if (g == NULL)
    return;
  acc[0] = act[0] = hand[0] = '\0';
  for (unsigned i = 0; i < g->nslots && a < 900 && b < 900 && h < 900; i++) {
    const struct worker *w = g->by_slot[i];
    const char *sep = i ? "," : "";
    a += (size_t)snprintf(acc + a, sizeof(acc) - a, "%s%llu", sep,
                          (unsigned long long)(w ? w->accepted : 0));
    b += (size_t)snprintf(act + b, sizeof(act) - b, "%s%u", sep, w ? w->active : 0);
    h += (size_t)snprintf(hand + h, sizeof(hand) - h, "%s%llu", sep,
                          (unsigned long long)(w ? w->hp.handed : 0));
  }
  LBP_INFO("stats dispatch=%s generation=%u accepted=%s active=%s handed=%s", g->dispatch->name,
           g->id, acc, act, hand);
}

static void stats_cb(uv_timer_t *t) {
  master_log_stats(t->data);
}

static void apply_settings(struct master *m, const struct lbp_config *cfg) {
  lbp_log_set_level((enum lbp_log_level)cfg->log_level);
  admin_apply(m, cfg);
  if (cfg->stats_interval_ms > 0)
    uv_timer_start(&m->stats_timer, stats_cb, cfg->stats_interval_ms, cfg->stats_interval_ms);
  else
    uv_timer_stop(&m->stats_timer);
}

static void log_warnings(const struct lbp_config *cfg) {
  for (size_t i = 0; i < cfg->nwarnings; i++)
    LBP_WARN("%s", cfg->warnings[i]);
  if (cfg->user != NULL && geteuid() != 0)
    LBP_WARN("user '%s' is set but the master is not root: workers run as this user", cfg->user);
}

/* ---- stopping ---- */

static void close_if_open(uv_handle_t *h) {
  if (h->type != UV_UNKNOWN_HANDLE && !uv_is_closing(h))
    uv_close(h, NULL);
}

/* Every worker is gone: close what keeps the loop alive so master_run returns. */
static void master_finish(struct master *m) {
  for (unsigned i = 0; i < m->nslots_made; i++)
    close_if_open((uv_handle_t *)&m->slots[i].restart);
  /* The pid file goes (or its lock, after an upgrade) before the upgrade channel closes: a new
   * master takes the file over when it sees that channel's end. */
  pidfile_remove(m->pidfile, m->pidfile_fd);
  m->pidfile_fd = -1;
  if (m->starting != NULL) {
    struct generation *g = m->starting;
    m->starting = NULL;
    gen_unref(g);
  }
  if (m->cur != NULL) {
    struct generation *g = m->cur;
    m->cur = NULL;
    gen_unref(g); /* its sockets close with it (the master is stopping) */
  }
  lsock_close_all(m); /* what no generation holds any more (retiring ones) */
  servers_close_all(m);
  upgrade_close(m);
  admin_stop(m);
  for (size_t i = 0; i < sizeof(m->sig) / sizeof(m->sig[0]); i++)
    close_if_open((uv_handle_t *)&m->sig[i]);
  close_if_open((uv_handle_t *)&m->stats_timer);
  close_if_open((uv_handle_t *)&m->kill_timer);
  close_if_open((uv_handle_t *)&m->start_timer);
  close_if_open((uv_handle_t *)&m->accept_retry);
  close_if_open((uv_handle_t *)&m->retire_timer);
  close_if_open((uv_handle_t *)&m->watchdog);
  close_if_open((uv_handle_t *)&m->pending_timer);
  close_if_open(rebalance_handle(m));
}

static void kill_cb(uv_timer_t *t) {
  struct master *m = t->data;
  for (struct worker *w = m->workers; w != NULL; w = w->next)
    if (w->proc_open && !w->exited) {
      LBP_WARN("worker %u pid=%ld did not stop in time: SIGKILL", w->slot->id + 1, (long)w->pid);
      uv_process_kill(&w->proc, SIGKILL);
    }
}

static void stop_common(struct master *m) {
  uv_timer_stop(&m->stats_timer);
  uv_timer_stop(&m->start_timer);
  for (unsigned i = 0; i < m->nslots_made; i++) {
    uv_timer_stop(&m->slots[i].restart);
    m->slots[i].restart_pending = 0;
  }
  lsock_update_polling(m); /* stopping: the master accepts nothing more */
  handoff_close_pending(m);
}

static void fast_stop(struct master *m, const char *why) {
  if (m->stopping == 1)
    return;
  m->stopping = 1;
  LBP_INFO("%s: stopping", why);
  stop_common(m);
  upgrade_close(m);
  for (struct generation *g = m->gens; g != NULL; g = g->next)
    g->dispatch->stop(g);
  for (struct worker *w = m->workers; w != NULL; w = w->next)
    worker_stop(w);
  uv_timer_start(&m->kill_timer, kill_cb, FAST_STOP_MS, 0);
  if (m->workers == NULL)
    master_finish(m);
}

static void graceful_stop(struct master *m) {
  uint64_t deadline;
  unsigned n = 0;

  if (m->stopping)
    return;
  m->stopping = 2;
  deadline = m->cur != NULL ? m->cur->cfg->shutdown_timeout_ms : 30000;
  for (struct worker *w = m->workers; w != NULL; w = w->next)
    n++;
  LBP_INFO("SIGQUIT: graceful stop: %u %s finish their requests (shutdown_timeout %llu ms)", n,
           plural(n, "worker", "workers"), (unsigned long long)deadline);
  stop_common(m);
  /* New clients are refused at once, not queued to be reset at the end; but never the sockets
   * of a new master we are handing over to (they are the same sockets). */
  if (!m->retired && !upgrade_active(m))
    lsock_shut_all(m);
  upgrade_close(m);
  for (struct worker *w = m->workers; w != NULL; w = w->next)
    worker_drain(w, deadline, 0);
  uv_timer_start(&m->kill_timer, kill_cb, deadline + KILL_GRACE_MS, 0);
  if (m->workers == NULL)
    master_finish(m);
}

void master_give_up(struct master *m) {
  struct generation *g = m->cur;

  for (unsigned i = 0; g != NULL && i < g->nslots; i++)
    if (!m->slots[i].errored)
      return;
  snprintf(m->fatal, sizeof(m->fatal), "every worker slot is errored (last: %s)",
           g != NULL && g->nslots > 0 ? m->slots[g->nslots - 1].last_cause : "?");
  LBP_ERROR("giving up: %s", m->fatal);
  m->exit_code = 1;
  fast_stop(m, "no worker can run");
}

/* ---- generations ---- */

static void drain_generation(struct master *m, struct generation *g, int handover) {
  for (struct worker *w = m->workers; w != NULL; w = w->next)
    if (w->gen == g)
      worker_drain(w, g->cfg->shutdown_timeout_ms, handover);
}

/* Sends each worker of g the listening sockets its strategy gives it (LISTEN frames). */
static void give_sockets(struct generation *g) {
  for (struct worker *w = g->m->workers; w != NULL; w = w->next)
    if (w->gen == g)
      worker_give_sockets(w);
}

static void switch_generation(struct master *m) {
  struct generation *old = m->cur, *g = m->starting;

  m->starting = NULL;
  uv_timer_stop(&m->start_timer);
  m->cur = g;
  g->state = GEN_CURRENT;
  g->t_current = uv_now(m->loop);
  for (unsigned i = 0; i < g->nslots; i++) {
    m->slots[i].errored = 0; /* every slot has a ready worker of the new generation */
    m->slots[i].restart_pending = 0;
    uv_timer_stop(&m->slots[i].restart);
    m->slots[i].delay_ms = 0;
  }
  give_sockets(g);
  apply_settings(m, g->cfg);
  if (old != NULL && strcmp(old->cfg->error_log, g->cfg->error_log) != 0)
    master_reopen_logs(m); /* the new generation's error_log, here and in every worker */
  if (old != NULL) {
    old->state = GEN_DRAINING;
    old->t_draining = uv_now(m->loop);
    event_add(m, EV_GENERATION, 0, (long)getpid(), g->id,
              "%u active: %u %s, dispatch %s, ready in %llu ms; generation %u draining", g->id,
              g->nslots, plural(g->nslots, "worker", "workers"), g->dispatch->name,
              (unsigned long long)(g->t_current - g->t_created), old->id);
    drain_generation(m, old, 1);
    gen_unref(old); /* its workers keep it until they are gone */
  }
  handoff_flush(m);
  if (m->reload_again) {
    m->reload_again = 0;
    master_reload(m);
  }
}

void master_abort_reload(struct master *m, const char *why) {
  struct generation *g = m->starting;

  if (g == NULL)
    return;
  m->starting = NULL;
  uv_timer_stop(&m->start_timer);
  event_add(m, EV_RELOAD_FAILED, 0, (long)getpid(), g->id,
            "generation %u: %s; generation %u keeps serving", g->id, why,
            m->cur != NULL ? m->cur->id : 0);
  g->state = GEN_DRAINING;
  g->t_draining = uv_now(m->loop);
  drain_generation(m, g, 1); /* what it may have accepted already goes back */
  gen_unref(g);
  if (m->reload_again) { /* a HUP that came meanwhile: the file may be fixed by now */
    m->reload_again = 0;
    master_reload(m);
  }
}

static void start_timeout_cb(uv_timer_t *t) {
  master_abort_reload(t->data, "the new workers were not all ready in time");
}

static int all_ready(const struct generation *g) {
  if (!servers_settled(g))
    return 0; /* its server names are not answered yet: its lists are not complete */
  for (unsigned i = 0; i < g->nslots; i++)
    if (g->by_slot[i] == NULL || !worker_serving(g->by_slot[i]))
      return 0;
  return 1;
}

static void announce(struct master *m) {
  struct generation *g = m->cur;
  char names[1024] = "";
  size_t off = 0;
  unsigned ready = 0, errored = 0;

  /* Ready once every slot has settled: serving, errored, or failed once and restarting (a
   * crash-looping slot must not keep the others from being announced; the master accepts on
   * its sockets meanwhile). */
  for (unsigned i = 0; i < g->nslots; i++) {
    ready += g->by_slot[i] != NULL && worker_serving(g->by_slot[i]);
    errored += m->slots[i].errored || m->slots[i].restart_pending || m->slots[i].nexits > 0;
  }
  if (ready == 0 || ready + errored < g->nslots || !servers_settled(g))
    return;
  m->announced = 1;
  for (size_t i = 1; i < g->cfg->nlisteners && off < sizeof(names) - 100; i++)
    off += (size_t)snprintf(names + off, sizeof(names) - off, "%s%s",
                            i > 1 ? "," : " listeners=", g->listeners[i]->name);
  /* admin= stays last: scripts read listen= and admin= from this line. */
  LBP_INFO("ready listen=%s workers=%u dispatch=%s pid=%ld generation=%u%s%s admin=%s",
           g->listeners[0]->name, g->nslots, g->dispatch->name, (long)getpid(), g->id, names,
           ready < g->nslots ? " (some workers are failing: see above)" : "", admin_address(m));
  upgrade_child_ready(m);
}

void master_workers_changed(struct master *m) {
  if (m->stopping)
    return;
  if (m->starting != NULL && all_ready(m->starting))
    switch_generation(m);
  if (!m->announced && m->cur != NULL)
    announce(m);
  if (m->announced)
    upgrade_child_ready(m);
  handoff_flush(m);
}

void master_worker_gone(struct master *m, struct worker *w) {
  struct generation *g = w->gen;
  unsigned left = 0;

  totals_worker_gone(m, w);
  for (struct worker *o = m->workers; o != NULL; o = o->next)
    left += o->gen == g;
  if (g->state == GEN_DRAINING && left == 0)
    event_add(m, EV_GENERATION, 0, (long)getpid(), g->id, "%u retired: drained in %llu ms", g->id,
              (unsigned long long)(uv_now(m->loop) - g->t_draining));
}

void master_maybe_finish(struct master *m) {
  if ((m->stopping || m->retired) && m->workers == NULL) {
    if (m->retired) {
      LBP_INFO("handed over to the new master: exiting");
      /* The pid file becomes the new master's when our channel closes: our lock must be gone
       * by then, and the file is its to rewrite. */
      free(m->pidfile);
      m->pidfile = NULL;
      if (m->pidfile_fd >= 0)
        close(m->pidfile_fd);
      m->pidfile_fd = -1;
    }
    master_finish(m);
  }
}

void master_handover(struct master *m, struct mconn *c) {
  if (upgrade_forward(m, c))
    return;
  dispatch_take(m, c);
}

/* ---- reload ---- */

/* Starts generation from a loaded config: its sockets, then every slot's worker. */
static void start_generation(struct master *m, struct lbp_config *cfg, char *bytes, size_t len) {
  uint32_t cur = m->cur != NULL ? m->cur->id : 0;
  struct generation *g;
  char why[512];

  log_warnings(cfg);
  if (gen_build(m, cfg, bytes, len, &g, why, sizeof(why)) != 0) {
    event_add(m, EV_RELOAD_FAILED, 0, (long)getpid(), cur, "%s; generation %u keeps serving", why,
              cur);
    return;
  }
  g->state = GEN_STARTING;
  m->starting = g;
  uv_timer_start(&m->start_timer, start_timeout_cb, START_TIMEOUT_MS, 0);
  for (unsigned i = 0; i < g->nslots && m->starting == g; i++)
    worker_spawn(m, g, slot_get(m, i));
}

void master_reload(struct master *m) {
  struct lbp_config *cfg;
  struct cfg_error err;
  char *bytes = NULL;
  size_t len = 0;
  uint32_t cur = m->cur != NULL ? m->cur->id : 0;

  if (m->stopping)
    return;
  if (m->retired) {
    LBP_WARN("reload refused: this master is handing over to a new one (binary upgrade); "
             "signal the new master");
    return;
  }
  if (m->starting != NULL || upgrade_active(m)) {
    LBP_INFO("reload requested while a reload or upgrade is in progress: it runs after that");
    m->reload_again = 1;
    return;
  }
  event_add(m, EV_RELOAD, 0, (long)getpid(), cur, "requested: reading %s (generation %u serving)",
            m->cfg_path, cur);
  if (cfg_load_file(m->cfg_path, &cfg, &err, &bytes, &len) != 0) {
    event_add(m, EV_RELOAD_FAILED, 0, (long)getpid(), cur, "%s; generation %u keeps serving",
              err.msg, cur);
    return;
  }
  start_generation(m, cfg, bytes, len);
}

void master_restart_current(struct master *m, const char *why) {
  struct lbp_config *cfg;
  struct cfg_error err;
  char *bytes;

  if (m->stopping || m->cur == NULL || m->starting != NULL)
    return;
  LBP_WARN("%s: starting generation %u's workers again from its config in memory", why, m->cur->id);
  if ((bytes = malloc(m->cur->len + 1)) == NULL) {
    LBP_ERROR("out of memory restarting the workers");
    return;
  }
  memcpy(bytes, m->cur->bytes, m->cur->len);
  bytes[m->cur->len] = '\0';
  if (cfg_parse(m->cur->cfg->file, bytes, m->cur->len, &cfg, &err) != 0) {
    LBP_ERROR("cannot restart the workers: %s", err.msg);
    free(bytes);
    return;
  }
  start_generation(m, cfg, bytes, m->cur->len);
}

/* ---- SIGUSR1 ---- */

/* The error log is reopened here (a rotated file is left to its rotator), then its new fd goes
 * to every worker over its channel: a worker never needs the right to open the file itself. */
/* One LOGFD frame: the fd rides a handle of its own, closed once that write is done (a busy
 * channel may hold the write a while; the next USR1 must not close a handle still queued). */
struct logfd_out {
  struct ipc_out out;
  uv_pipe_t pipe;
};

static void logfd_free(uv_handle_t *h) {
  free(h->data);
}

static void logfd_sent(struct ipc_out *out, int status) {
  struct logfd_out *o = (struct logfd_out *)out;
  uv_close((uv_handle_t *)&o->pipe, logfd_free); /* closes the dup; o goes with it */
}

void master_send_logfd(struct master *m, struct worker *w, unsigned which, int src) {
  struct logfd_out *o = malloc(sizeof(*o));
  unsigned char kind = (unsigned char)which;
  int fd = fcntl(src, F_DUPFD_CLOEXEC, 3);

  if (o == NULL || fd < 0 || uv_pipe_init(m->loop, &o->pipe, 0) != 0) {
    free(o);
    if (fd >= 0)
      close(fd);
    return;
  }
  o->pipe.data = o;
  if (uv_pipe_open(&o->pipe, fd) != 0) {
    close(fd);
    uv_close((uv_handle_t *)&o->pipe, logfd_free);
    return;
  }
  if (ipc_send_out(&w->ch, &o->out, IPC_LOGFD, &kind, 1, NULL, 0, (uv_stream_t *)&o->pipe,
                   logfd_sent) != 0)
    uv_close((uv_handle_t *)&o->pipe, logfd_free);
}

/* The error log is reopened here (a rotated file is left to its rotator), then its new fd goes
 * to every worker over its channel: a worker never needs the right to open the file itself. */
void master_reopen_logs(struct master *m) {
  const char *path = m->cur != NULL ? m->cur->cfg->error_log : "stderr";
  int rc;

  if (strcmp(path, "stderr") == 0) {
    LBP_INFO("reopen: error_log is stderr: nothing to reopen");
    return;
  }
  if ((rc = lbp_log_open(path)) != 0) {
    LBP_ERROR("reopen: cannot open %s: %s (logging goes on to the old file)", path,
              uv_strerror(rc));
    return;
  }
  LBP_INFO("reopen: %s reopened", path);
  for (struct worker *w = m->workers; w != NULL; w = w->next)
    if (w->ch_open && !w->ch.failed && w->state != W_STARTING)
      master_send_logfd(m, w, IPC_LOGFD_ERROR, STDERR_FILENO);
}

/* Every live generation's access log file is opened again and sent to its workers. */
static void reopen_access_logs(struct master *m) {
  for (struct generation *g = m->gens; g != NULL; g = g->next) {
    int rc = gen_reopen_access_log(g);
    if (rc != 0) {
      LBP_ERROR("reopen: cannot open %s: %s (access logging goes on to the old file)",
                g->cfg->access_log, uv_strerror(rc));
      continue;
    }
    if (g->access_fd < 0 || strcmp(g->cfg->access_log, "stdout") == 0)
      continue;
    LBP_INFO("reopen: access log %s reopened (generation %u)", g->cfg->access_log, g->id);
    for (struct worker *w = m->workers; w != NULL; w = w->next)
      if (w->gen == g && w->ch_open && !w->ch.failed && w->state != W_STARTING)
        master_send_logfd(m, w, IPC_LOGFD_ACCESS, g->access_fd);
  }
}

/* ---- signals ---- */

static void signal_cb(uv_signal_t *h, int signum) {
  struct master *m = h->data;

  switch (signum) {
  case SIGHUP:
    master_reload(m);
    break;
  case SIGQUIT:
    graceful_stop(m);
    break;
  case SIGUSR1:
    LBP_INFO("SIGUSR1: reopening the logs");
    reopen_access_logs(m);
    master_reopen_logs(m);
    break;
  case SIGUSR2:
    upgrade_start(m);
    break;
  default:
    fast_stop(m, strsignal(signum));
    break;
  }
}

/* Signals with no job here would otherwise end the master (their default action). */
static void ignore_signals(void) {
  static const int ignored[] = {SIGPIPE, SIGALRM, SIGVTALRM, SIGPROF, SIGIO,
                                SIGPWR,  SIGXFSZ, SIGSTKFLT, SIGTRAP};
  for (size_t i = 0; i < sizeof(ignored) / sizeof(ignored[0]); i++)
    signal(ignored[i], SIG_IGN);
  for (int s = SIGRTMIN; s <= SIGRTMAX; s++)
    signal(s, SIG_IGN);
}

static void start_signals(struct master *m) {
  static const int handled[] = {SIGINT, SIGTERM, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2};

  for (size_t i = 0; i < sizeof(handled) / sizeof(handled[0]); i++) {
    uv_signal_init(m->loop, &m->sig[i]);
    m->sig[i].data = m;
    uv_signal_start(&m->sig[i], signal_cb, handled[i]);
  }
}

/* ---- the watchdog: deadlines nobody else watches ---- */

static void watchdog_cb(uv_timer_t *t) {
  struct master *m = t->data;
  uint64_t now = uv_now(m->loop);

  lbp_log_flush(0);
  for (struct worker *w = m->workers; w != NULL; w = w->next) {
    uint64_t limit = w->drain_limit_ms + KILL_GRACE_MS;
    struct mconn *oldest = w->hp.unacked.head;
    if (!w->proc_open || w->exited)
      continue;
    if (w->state == W_DRAINING && now - w->t_drain > limit) {
      LBP_WARN("worker %u pid=%ld still draining after %llu ms: SIGKILL", w->slot->id + 1,
               (long)w->pid, (unsigned long long)limit);
      uv_process_kill(&w->proc, SIGKILL);
    } else if (oldest != NULL && now - oldest->t_sent > UNRESPONSIVE_KILL_MS) {
      /* It takes no connection for this long (stopped, stuck): what it holds goes to the
       * others once it is gone, rather than waiting with it. */
      LBP_ERROR("worker %u pid=%ld has not taken a connection for %llu ms: SIGKILL",
                w->slot->id + 1, (long)w->pid, (unsigned long long)(now - oldest->t_sent));
      uv_process_kill(&w->proc, SIGKILL);
    }
  }
}

/* ---- start-up ---- */

static int load_first(struct master *m, struct lbp_config **cfg, char **bytes, size_t *len) {
  struct cfg_error err;

  if (cfg_load_file(m->cfg_path, cfg, &err, bytes, len) != 0) {
    fprintf(stderr, "lbproxy: %s\n", err.msg);
    return -1;
  }
  if (lbp_log_open((*cfg)->error_log) != 0) {
    fprintf(stderr, "lbproxy: error_log %s: %s\n", (*cfg)->error_log, strerror(errno));
    cfg_free(*cfg);
    free(*bytes);
    return -1;
  }
  lbp_log_set_level((enum lbp_log_level)(*cfg)->log_level);
  log_warnings(*cfg);
  return 0;
}

/* The master's secret: the previous master's (binary upgrade, read by upgrade_child_init),
 * else new random bytes. */
static int make_secret(struct master *m) {
  if (m->have_secret)
    return 0;
  return getrandom(m->secret, sizeof(m->secret), 0) == (ssize_t)sizeof(m->secret) ? 0 : UV_EIO;
}

static int master_init(struct master *m, const char *cfg_path) {
  struct lbp_config *cfg;
  char *bytes, why[512];
  size_t len, exelen = sizeof(m->exe);
  long other = 0;
  int rc;

  memset(m, 0, sizeof(*m));
  m->loop = uv_default_loop();
  m->t_start_ms = (uint64_t)time(NULL) * 1000;
  m->cfg_path = cfg_path;
  m->pidfile_fd = -1;
  px_relay_splice_prepare(); /* proxy dispatch's relays splice: the pipe is open from the start */
  uv_timer_init(m->loop, &m->stats_timer);
  uv_timer_init(m->loop, &m->kill_timer);
  uv_timer_init(m->loop, &m->start_timer);
  uv_timer_init(m->loop, &m->accept_retry);
  uv_timer_init(m->loop, &m->retire_timer);
  uv_timer_init(m->loop, &m->watchdog);
  uv_timer_init(m->loop, &m->pending_timer);
  m->pending_timer.data = m;
  rebalance_init(m);
  m->stats_timer.data = m->kill_timer.data = m->start_timer.data = m;
  m->accept_retry.data = m->retire_timer.data = m->watchdog.data = m;
  if ((rc = uv_exepath(m->exe, &exelen)) != 0) {
    fprintf(stderr, "lbproxy: cannot find my own executable: %s\n", uv_strerror(rc));
    return rc;
  }
  if (load_first(m, &cfg, &bytes, &len) != 0)
    return UV_EINVAL;
  if ((rc = upgrade_child_init(m)) != 0) {
    LBP_ERROR("binary upgrade: cannot take the previous master's sockets: %s", uv_strerror(rc));
    cfg_free(cfg);
    free(bytes);
    return rc;
  }
  if ((rc = make_secret(m)) != 0) {
    LBP_ERROR("no random bytes for the master's secret: %s", uv_strerror(rc));
    cfg_free(cfg);
    free(bytes);
    return rc;
  }
  if (cfg->pid_file != NULL && m->upgrade == NULL) {
    m->pidfile_fd = pidfile_create(cfg->pid_file, &other);
    if (m->pidfile_fd < 0) {
      if (m->pidfile_fd == UV_EBUSY)
        LBP_ERROR("another lbproxy (pid %ld) is running with pid file %s", other, cfg->pid_file);
      else
        LBP_ERROR("pid file %s: %s", cfg->pid_file, uv_strerror(m->pidfile_fd));
      cfg_free(cfg);
      free(bytes);
      return UV_EBUSY;
    }
    m->pidfile = strdup(cfg->pid_file);
  }
  if ((rc = gen_build(m, cfg, bytes, len, &m->cur, why, sizeof(why))) != 0) {
    LBP_ERROR("%s", why);
    return rc;
  }
  lsock_drop_unused(m);
  m->cur->state = GEN_CURRENT;
  m->cur->t_current = uv_now(m->loop);
  apply_settings(m, m->cur->cfg);
  return 0;
}

static void walk_close_cb(uv_handle_t *h, void *arg) {
  if (!uv_is_closing(h))
    uv_close(h, NULL);
}

int master_run(const char *cfg_path) {
  struct master *m = calloc(1, sizeof(*m));
  int rc;

  if (m == NULL)
    return 1;
  lbp_log_init("master", LBP_LOG_INFO);
  ignore_signals();
  if (master_init(m, cfg_path) != 0) {
    if (m->cur != NULL)
      gen_unref(m->cur);
    m->cur = NULL;
    m->stopping = 1;
    lsock_close_all(m);
    uv_walk(m->loop, walk_close_cb, NULL);
    uv_run(m->loop, UV_RUN_DEFAULT);
    pidfile_remove(m->pidfile, m->pidfile_fd);
    free(m->pidfile);
    totals_free(m);
    free(m->memo);
    uv_loop_close(m->loop);
    free(m);
    return 1;
  }
  start_signals(m);
  uv_timer_start(&m->watchdog, watchdog_cb, WATCHDOG_MS, WATCHDOG_MS);
  LBP_INFO("lbproxy %s starting: %u %s, dispatch %s, config %s", LBPROXY_VERSION, m->cur->nslots,
           plural(m->cur->nslots, "worker", "workers"), m->cur->dispatch->name, cfg_path);
  for (unsigned i = 0; i < m->cur->nslots; i++)
    slot_get(m, i);
  slots_fill(m);
  uv_run(m->loop, UV_RUN_DEFAULT);
  lbp_log_flush(1);
  if (m->fatal[0])
    LBP_ERROR("stopped: %s", m->fatal);
  else
    LBP_INFO("stopped");
  pidfile_remove(m->pidfile, m->pidfile_fd);
  free(m->pidfile);
  uv_walk(m->loop, walk_close_cb, NULL);
  uv_run(m->loop, UV_RUN_DEFAULT);
  handoff_free(m);
  totals_free(m);
  free(m->memo);
  uv_loop_close(m->loop);
  rc = m->exit_code;
  free(m);
  return rc;
}
