/* The master: binds the public socket, spawns and supervises workers, relays their status. */

/*
 * Supervision, as in Node's cluster module:
 *
 * 1. Each slot's worker is this executable started by uv_spawn with LBPROXY_CHANNEL_FD=3 (an
 *    IPC socketpair) and the shared-memory fd as fd 4. Lifecycle events are logged one per
 *    line: fork, online (HELLO), ready (READY), exit (code or signal).
 * 2. A worker that exits while the master is not stopping is started again in the same slot
 *    after RESTART_DELAY_MS; what it had not acknowledged is handed to other workers.
 * 3. SIGINT/SIGTERM: stop accepting, send STOP to every worker, SIGKILL whoever is still there
 *    after STOP_DEADLINE_MS, and exit 0 once every child has been reaped.
 * 4. Signal handlers only record the signal (libuv's uv_signal_t); the loop acts on it.
 */
#include "master.h"

#include "dispatch.h"
#include "log.h"
#include "shm.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RESTART_DELAY_MS 250
#define STOP_DEADLINE_MS 10000

extern char **environ;

static void slot_spawn(struct slot *s);

int master_slot_serving(const struct slot *s) {
  return s->state == SLOT_READY && s->ch_open && !s->ch.failed;
}

void master_log_stats(struct master *m) {
  char acc[1024], act[1024], hand[1024];
  size_t a = 0, b = 0, h = 0;

  acc[0] = act[0] = hand[0] = '\0';
  for (unsigned i = 0; i < m->nslots && a < 900 && b < 900 && h < 900; i++) {
    const struct slot *s = &m->slots[i];
    const char *sep = i ? "," : "";
    a += (size_t)snprintf(acc + a, sizeof(acc) - a, "%s%llu", sep, (unsigned long long)s->accepted);
    b += (size_t)snprintf(act + b, sizeof(act) - b, "%s%u", sep, s->active);
    h += (size_t)snprintf(hand + h, sizeof(hand) - h, "%s%llu", sep, (unsigned long long)s->handed);
  }
  LBP_INFO("stats dispatch=%s accepted=%s active=%s handed=%s", m->dispatch->name, acc, act, hand);
}

/* ---- stopping ---- */

static int all_gone(struct master *m) {
  for (unsigned i = 0; i < m->nslots; i++)
    if (m->slots[i].proc_open || m->slots[i].ch_open)
      return 0;
  return 1;
}

static void close_if_open(uv_handle_t *h) {
  if (!uv_is_closing(h))
    uv_close(h, NULL);
}

static void free_handle_cb(uv_handle_t *h) {
  free(h);
}

static void walk_close_cb(uv_handle_t *h, void *arg) {
  close_if_open(h);
}

/* Every worker is gone: close what keeps the loop alive so master_run returns. */
static void master_finish(struct master *m) {
  for (unsigned i = 0; i < m->nslots; i++) {
    uv_tcp_t *l = m->slots[i].listen_sock;
    close_if_open((uv_handle_t *)&m->slots[i].restart);
    if (l != NULL && l != &m->listener && !uv_is_closing((uv_handle_t *)l))
      uv_close((uv_handle_t *)l, free_handle_cb);
    m->slots[i].listen_sock = NULL;
  }
  close_if_open((uv_handle_t *)&m->listener);
  close_if_open((uv_handle_t *)&m->sigint);
  close_if_open((uv_handle_t *)&m->sigterm);
  close_if_open((uv_handle_t *)&m->stats_timer);
  close_if_open((uv_handle_t *)&m->kill_timer);
}

static void kill_timer_cb(uv_timer_t *t) {
  struct master *m = t->data;
  for (unsigned i = 0; i < m->nslots; i++)
    if (m->slots[i].proc_open && !m->slots[i].exited) {
      LBP_WARN("worker %u pid=%ld did not stop in time: SIGKILL", i + 1, (long)m->slots[i].pid);
      uv_process_kill(&m->slots[i].proc, SIGKILL);
    }
}

static void master_stop(struct master *m, int signum) {
  if (m->stopping)
    return;
  m->stopping = 1;
  LBP_INFO("%s: stopping %u workers", strsignal(signum), m->nslots);
  m->dispatch->stop(m);
  uv_timer_stop(&m->stats_timer);
  for (unsigned i = 0; i < m->nslots; i++) {
    struct slot *s = &m->slots[i];
    uv_timer_stop(&s->restart);
    /* STOP over the channel; a signal only for a worker that cannot hear it (a signal right
     * after STOP would race with its orderly exit). */
    if (!(s->ch_open && !s->ch.failed && ipc_send(&s->ch, IPC_STOP, NULL, 0) == 0) &&
        s->proc_open && !s->exited)
      uv_process_kill(&s->proc, SIGTERM);
    if (s->state != SLOT_EMPTY)
      s->state = SLOT_STOPPING;
  }
  uv_timer_start(&m->kill_timer, kill_timer_cb, STOP_DEADLINE_MS, 0);
  if (all_gone(m))
    master_finish(m);
}

static void signal_cb(uv_signal_t *h, int signum) {
  master_stop(h->data, signum);
}

/* ---- slot lifecycle ---- */

static void restart_cb(uv_timer_t *t) {
  slot_spawn(t->data);
}

static void slot_maybe_restart(struct slot *s) {
  struct master *m = s->m;

  if (s->proc_open || s->ch_open)
    return; /* wait for both handles to close */
  s->state = SLOT_EMPTY;
  if (m->stopping) {
    if (all_gone(m))
      master_finish(m);
    return;
  }
  uv_timer_start(&s->restart, restart_cb, RESTART_DELAY_MS, 0);
}

static void proc_close_cb(uv_handle_t *h) {
  struct slot *s = h->data;
  s->proc_open = 0;
  slot_maybe_restart(s);
}

static void ch_close_cb(uv_handle_t *h) {
  struct slot *s = ((struct ipc_channel *)h->data)->data;
  s->ch_open = 0;
  /* Cancelled sends have reported by now: hand what the worker never took to others. */
  s->m->dispatch->slot_down(s->m, s);
  slot_maybe_restart(s);
}

static void slot_channel_close(struct slot *s) {
  if (s->ch_open && !uv_is_closing((uv_handle_t *)&s->ch.pipe))
    ipc_channel_close(&s->ch, ch_close_cb);
}

static void exit_cb(uv_process_t *p, int64_t status, int sig) {
  struct slot *s = p->data;
  struct master *m = s->m;

  s->exited = 1;
  if (sig)
    LBP_INFO("worker %u exit pid=%ld signal=%d (%s)", s->id + 1, (long)s->pid, sig, strsignal(sig));
  else
    LBP_INFO("worker %u exit pid=%ld code=%lld", s->id + 1, (long)s->pid, (long long)status);
  if (!m->stopping)
    LBP_WARN("worker %u exited unexpectedly: restarting in %d ms", s->id + 1, RESTART_DELAY_MS);
  /* The channel is not closed here: what the worker wrote before dying (a last STATUS that
   * acknowledges connections) is still in the socket. It reads to EOF and closes itself, and
   * only then are the unacknowledged connections handed on. */
  uv_close((uv_handle_t *)&s->proc, proc_close_cb);
}

static void ch_error(struct ipc_channel *ch, int err) {
  struct slot *s = ch->data;
  if (err != UV_EOF)
    LBP_WARN("worker %u channel: %s", s->id + 1, uv_strerror(err));
  slot_channel_close(s);
}

static void announce_if_ready(struct master *m) {
  if (m->announced)
    return;
  for (unsigned i = 0; i < m->nslots; i++)
    if (m->slots[i].state != SLOT_READY)
      return;
  m->announced = 1;
  LBP_INFO("ready listen=%s workers=%u dispatch=%s pid=%ld", m->listen_addr, m->nslots,
           m->dispatch->name, (long)getpid());
}

static void send_config(struct slot *s) {
  struct master *m = s->m;
  size_t namelen = strlen(m->cfg_path) + 1;
  size_t len = 4 + 2 + 1 + namelen + m->cfg_len;
  uv_tcp_t *socks[4];
  uint8_t kinds[4];
  int nsock = m->dispatch->slot_listeners(m, s, socks, kinds, 4);
  unsigned char *p = malloc(len);

  if (p == NULL) {
    LBP_ERROR("worker %u: out of memory for its config", s->id + 1);
    uv_process_kill(&s->proc, SIGKILL);
    return;
  }
  /* The socket count goes first, the sockets after, so the worker knows when it has them. */
  ipc_put_u32(p, m->generation);
  ipc_put_u16(p + 4, (uint16_t)s->id);
  p[6] = (unsigned char)nsock;
  memcpy(p + 7, m->cfg_path, namelen);
  memcpy(p + 7 + namelen, m->cfg_bytes, m->cfg_len);
  if (ipc_send(&s->ch, IPC_CONFIG, p, (uint32_t)len) == 0)
    for (int i = 0; i < nsock; i++)
      if (ipc_send_handle(&s->ch, IPC_LISTEN, &kinds[i], 1, (uv_stream_t *)socks[i]) != 0)
        break; /* the channel failed: exit_cb follows */
  free(p);
}

static void on_frame(struct ipc_channel *ch, uint8_t type, const char *payload, uint32_t len) {
  struct slot *s = ch->data;
  struct master *m = s->m;

  switch (type) {
  case IPC_HELLO:
    if (s->state != SLOT_STARTING)
      break;
    s->state = SLOT_ONLINE;
    LBP_INFO("worker %u online pid=%ld", s->id + 1, (long)s->pid);
    send_config(s);
    break;
  case IPC_READY:
    if (s->state != SLOT_ONLINE || len < 2)
      break;
    s->state = SLOT_READY;
    s->private_port = ipc_get_u16(payload);
    if (s->private_port)
      LBP_INFO("worker %u ready pid=%ld port=%u", s->id + 1, (long)s->pid, s->private_port);
    else
      LBP_INFO("worker %u ready pid=%ld", s->id + 1, (long)s->pid);
    announce_if_ready(m);
    m->dispatch->slot_free(m, s);
    break;
  case IPC_STATUS:
    if (len < 16)
      break;
    s->acked_seq = ipc_get_u32(payload);
    s->active = ipc_get_u32(payload + 4);
    s->accepted = ipc_get_u64(payload + 8);
    s->m->dispatch->slot_free(m, s); /* acks ride on STATUS */
    break;
  case IPC_REFUSE:
    if (len >= 4 && m->dispatch->refused != NULL)
      m->dispatch->refused(m, s, ipc_get_u32(payload));
    break;
  default:
    LBP_WARN("worker %u sent an unexpected %s frame", s->id + 1, ipc_type_name(type));
    break;
  }
}

/* The worker's environment: the master's own plus where its channel and shared memory are. */
static char **worker_env(char bufs[3][64]) {
  size_t n = 0;
  char **env;

  while (environ[n] != NULL)
    n++;
  env = calloc(n + 4, sizeof(*env));
  if (env == NULL)
    return NULL;
  memcpy(env, environ, n * sizeof(*env));
  snprintf(bufs[0], 64, "LBPROXY_CHANNEL_FD=3");
  snprintf(bufs[1], 64, "LBPROXY_MASTER_PID=%ld", (long)getpid());
  snprintf(bufs[2], 64, "LBPROXY_SHM_FD=4");
  env[n] = bufs[0];
  env[n + 1] = bufs[1];
  env[n + 2] = bufs[2];
  env[n + 3] = NULL;
  return env;
}

static void apply_user(struct master *m, uv_process_options_t *o) {
  struct passwd *pw;

  if (m->cfg->user == NULL || geteuid() != 0)
    return;
  pw = getpwnam(m->cfg->user);
  if (pw == NULL) {
    LBP_WARN("user '%s' not found: workers keep running as root", m->cfg->user);
    return;
  }
  o->flags |= UV_PROCESS_SETUID | UV_PROCESS_SETGID;
  o->uid = pw->pw_uid;
  o->gid = pw->pw_gid;
}

static void slot_spawn(struct slot *s) {
  struct master *m = s->m;
  uv_process_options_t o;
  uv_stdio_container_t stdio[5];
  char envbufs[3][64], idbuf[16];
  char *args[4];
  int rc;

  if (m->stopping)
    return;
  memset(&o, 0, sizeof(o));
  snprintf(idbuf, sizeof(idbuf), "%u", s->id + 1);
  args[0] = m->exe;
  args[1] = "worker";
  args[2] = idbuf;
  args[3] = NULL;
  ipc_channel_init(m->loop, &s->ch, on_frame, ch_error, s);
  stdio[0].flags = UV_IGNORE;
  stdio[1].flags = UV_INHERIT_FD;
  stdio[1].data.fd = 1;
  stdio[2].flags = UV_INHERIT_FD;
  stdio[2].data.fd = 2;
  stdio[3].flags = UV_CREATE_PIPE | UV_READABLE_PIPE | UV_WRITABLE_PIPE;
  stdio[3].data.stream = (uv_stream_t *)&s->ch.pipe;
  stdio[4].flags = UV_INHERIT_FD;
  stdio[4].data.fd = m->shm_fd;
  o.file = m->exe;
  o.args = args;
  o.env = worker_env(envbufs);
  o.stdio = stdio;
  o.stdio_count = 5;
  o.exit_cb = exit_cb;
  apply_user(m, &o);
  s->proc.data = s;
  s->exited = 0;
  s->ch_open = 1;
  rc = o.env ? uv_spawn(m->loop, &s->proc, &o) : UV_ENOMEM;
  free(o.env);
  if (rc != 0) {
    LBP_ERROR("worker %u: spawn failed: %s", s->id + 1, uv_strerror(rc));
    slot_channel_close(s);
    if (o.env != NULL) { /* uv_spawn initialized the handle even though it failed */
      s->proc_open = 1;
      s->exited = 1;
      uv_close((uv_handle_t *)&s->proc, proc_close_cb);
    }
    return; /* the close callbacks schedule the next attempt */
  }
  s->proc_open = 1;
  s->pid = s->proc.pid;
  s->starts++;
  s->state = SLOT_STARTING;
  s->next_seq = 0;
  s->acked_seq = 0;
  LBP_INFO("worker %u fork pid=%ld", s->id + 1, (long)s->pid);
  rc = ipc_channel_start(&s->ch);
  if (rc != 0) {
    LBP_ERROR("worker %u: channel: %s", s->id + 1, uv_strerror(rc));
    uv_process_kill(&s->proc, SIGKILL);
  }
}

/* ---- start-up ---- */

static int bind_public(struct master *m) {
  int rc = dispatch_listen_socket(m->loop, (const struct sockaddr *)&m->cfg->listen.sa,
                                  m->dispatch->reuseport, &m->listener);
  if (rc != 0) {
    LBP_ERROR("listen %s:%u: %s", m->cfg->listen.host, m->cfg->listen.port, uv_strerror(rc));
    return rc;
  }
  m->listener.data = m;
  dispatch_sockname(&m->listener, m->listen_addr, sizeof(m->listen_addr));
  return 0;
}

static void stats_cb(uv_timer_t *t) {
  master_log_stats(t->data);
}

static int master_init(struct master *m, const char *cfg_path) {
  struct cfg_error err;
  size_t exelen = sizeof(m->exe);
  int rc;

  memset(m, 0, sizeof(*m));
  m->loop = uv_default_loop();
  m->cfg_path = cfg_path;
  m->generation = 1;
  m->shm_fd = -1;
  rc = cfg_load_file(cfg_path, &m->cfg, &err, &m->cfg_bytes, &m->cfg_len);
  if (rc != 0) {
    fprintf(stderr, "lbproxy: %s\n", err.msg);
    return rc;
  }
  m->dispatch = dispatch_find(m->cfg->dispatch);
  if (m->dispatch == NULL) {
    fprintf(stderr, "lbproxy: %s: dispatch '%s' is not supported yet (use handoff)\n", cfg_path,
            cfg_dispatch_name(m->cfg->dispatch));
    return UV_ENOTSUP;
  }
  rc = uv_exepath(m->exe, &exelen);
  if (rc != 0) {
    LBP_ERROR("cannot find my own executable: %s", uv_strerror(rc));
    return rc;
  }
  rc = lbp_shm_create(lbp_shm_size(m->cfg), &m->shm_fd, &m->shm);
  if (rc != 0) {
    LBP_ERROR("shared memory: %s", uv_strerror(rc));
    return rc;
  }
  m->shm_len = lbp_shm_size(m->cfg);
  m->nslots = m->cfg->workers;
  m->slots = calloc(m->nslots, sizeof(*m->slots));
  if (m->slots == NULL)
    return UV_ENOMEM;
  for (unsigned i = 0; i < m->nslots; i++) {
    m->slots[i].m = m;
    m->slots[i].id = i;
    uv_timer_init(m->loop, &m->slots[i].restart);
    m->slots[i].restart.data = &m->slots[i];
  }
  return 0;
}

static void master_free(struct master *m) {
  struct mconn *c;

  while ((c = m->free_mconns) != NULL) {
    m->free_mconns = c->next;
    free(c);
  }
  if (m->shm != NULL)
    lbp_shm_unmap(m->shm, m->shm_len);
  if (m->shm_fd >= 0)
    close(m->shm_fd);
  free(m->slots);
  free(m->cfg_bytes);
  cfg_free(m->cfg);
}

int master_run(const char *cfg_path) {
  struct master m;
  int rc;

  lbp_log_init("master", LBP_LOG_INFO);
  signal(SIGPIPE, SIG_IGN);
  rc = master_init(&m, cfg_path);
  if (rc == 0)
    rc = bind_public(&m);
  if (rc == 0)
    rc = m.dispatch->start(&m);
  if (rc != 0) {
    uv_walk(m.loop, walk_close_cb, NULL);
    uv_run(m.loop, UV_RUN_DEFAULT);
    master_free(&m);
    uv_loop_close(uv_default_loop());
    return 1;
  }
  uv_signal_init(m.loop, &m.sigint);
  uv_signal_init(m.loop, &m.sigterm);
  m.sigint.data = m.sigterm.data = &m;
  uv_signal_start(&m.sigint, signal_cb, SIGINT);
  uv_signal_start(&m.sigterm, signal_cb, SIGTERM);
  uv_timer_init(m.loop, &m.stats_timer);
  uv_timer_init(m.loop, &m.kill_timer);
  m.stats_timer.data = m.kill_timer.data = &m;
  if (m.cfg->stats_interval_ms > 0)
    uv_timer_start(&m.stats_timer, stats_cb, m.cfg->stats_interval_ms, m.cfg->stats_interval_ms);
  LBP_INFO("lbproxy %s starting: %u workers, dispatch %s, config %s", LBPROXY_VERSION, m.nslots,
           m.dispatch->name, cfg_path);
  for (unsigned i = 0; i < m.nslots; i++)
    slot_spawn(&m.slots[i]);
  uv_run(m.loop, UV_RUN_DEFAULT);
  LBP_INFO("stopped");
  master_free(&m);
  uv_loop_close(uv_default_loop());
  return m.exit_code;
}
