/* Binary upgrade (SIGUSR2): a new master from the executable on disk takes over without a lost
 * connection. */

/*
 * 1. Old master: spawns the executable on disk (not /proc/self/exe: the point is the new
 *    binary) with the same config path, a channel as fd 3 (LBPROXY_UPGRADE_FD) and every
 *    listening socket as fds 4.. described in LBPROXY_INHERIT (nginx's NGINX variable).
 * 2. New master: adopts those sockets instead of binding (lsock_inherit), starts its workers,
 *    and once they are all ready says UP_READY. It skips the pid file meanwhile: the old master
 *    still holds it.
 * 3. Old master, on UP_READY: stops accepting and drains every worker with handover; each
 *    connection handed back goes to the new master as UP_CONN (fd, listener address, bytes
 *    already read), which gives it to one of its workers. When its workers are gone the old
 *    master exits 0, leaving the pid file; the channel's EOF tells the new master, which writes
 *    the pid file as its own.
 * 4. Rollback: a new master that exits, or is not ready within UPGRADE_TIMEOUT_MS, changes
 *    nothing: the old one logs why and goes on serving (and kills a late one).
 */
#include "master.h"

#include "dispatch.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define UPGRADE_TIMEOUT_MS 60000

enum up_state {
  UP_IDLE,
  UP_STARTING, /* old: waiting for the new master's UP_READY */
  UP_HANDING,  /* old: draining into the new master */
  UP_CHILD,    /* new: the old master is still there */
};

struct upgrade {
  struct master *m;
  enum up_state state;
  uv_process_t proc;
  struct ipc_channel ch;
  uv_timer_t timer;
  uint8_t proc_open, ch_open, timer_open, told_ready, exited;
  int pid_tries; /* new master: attempts at taking the pid file over */
  long pid;
};

static struct upgrade *up(const struct master *m) {
  return m->upgrade;
}

/* The struct goes with its last handle (m->upgrade no longer points at it by then). */
static void maybe_free(struct upgrade *u) {
  if (!u->ch_open && !u->proc_open && !u->timer_open && u->m->upgrade != u)
    free(u);
}

static void ch_closed_cb(uv_handle_t *h) {
  struct upgrade *u = ((struct ipc_channel *)h->data)->data;
  u->ch_open = 0;
  maybe_free(u);
}

static void timer_closed_cb(uv_handle_t *h) {
  struct upgrade *u = h->data;
  u->timer_open = 0;
  maybe_free(u);
}

static void channel_close(struct upgrade *u) {
  if (u->ch_open && !uv_is_closing((uv_handle_t *)&u->ch.pipe))
    ipc_channel_close(&u->ch, ch_closed_cb);
}

static void proc_closed_cb(uv_handle_t *h) {
  struct upgrade *u = h->data;
  u->proc_open = 0;
  maybe_free(u);
}

/* Old master: the new one failed; we keep serving. */
static void rollback(struct upgrade *u, const char *why) {
  struct master *m = u->m;
  int was = u->state;

  u->state = UP_IDLE;
  uv_timer_stop(&u->timer);
  channel_close(u);
  if (u->proc_open && !u->exited && !uv_is_closing((uv_handle_t *)&u->proc))
    uv_process_kill(&u->proc, SIGKILL);
  event_add(m, EV_UPGRADE_FAILED, 0, u->pid, m->cur != NULL ? m->cur->id : 0,
            "new master pid=%ld: %s; this master keeps serving", u->pid, why);
  if (was == UP_HANDING && m->retired && !m->stopping) {
    /* Our workers are draining into a master that is gone: workers again, from the config
     * this generation was built from (the file may have changed for the new binary). */
    m->retired = 0;
    master_restart_current(m, "the new master is gone");
  } else if (m->reload_again) {
    m->reload_again = 0;
    master_reload(m);
  }
}

static void exit_cb(uv_process_t *p, int64_t status, int sig) {
  struct upgrade *u = p->data;
  char why[96];

  u->exited = 1;
  if (sig)
    snprintf(why, sizeof(why), "exited with signal %d (%s)", sig, strsignal(sig));
  else
    snprintf(why, sizeof(why), "exited with code %lld", (long long)status);
  if (u->state == UP_STARTING || u->state == UP_HANDING)
    rollback(u, why);
  if (!uv_is_closing((uv_handle_t *)&u->proc))
    uv_close((uv_handle_t *)&u->proc, proc_closed_cb);
}

static void pidfile_retry_cb(uv_timer_t *t);

static void timeout_cb(uv_timer_t *t) {
  struct upgrade *u = t->data;
  if (u->state == UP_STARTING)
    rollback(u, "not ready in time");
}

/* Old master: the new one is ready. */
static void handing(struct upgrade *u) {
  struct master *m = u->m;

  uv_timer_stop(&u->timer);
  u->state = UP_HANDING;
  m->retired = 1;
  event_add(m, EV_UPGRADE, 0, u->pid, m->cur != NULL ? m->cur->id : 0,
            "new master pid=%ld is ready: handing over and leaving", u->pid);
  uv_timer_stop(&m->start_timer);
  lsock_update_polling(m); /* it accepts now; we stop */
  while (m->pending.head != NULL) {
    struct mconn *c = m->pending.head;
    m->pending.head = c->next;
    m->pending.len--;
    upgrade_forward(m, c);
  }
  m->pending.tail = NULL;
  for (struct worker *w = m->workers; w != NULL; w = w->next)
    worker_drain(w, w->gen->cfg->shutdown_timeout_ms, 1);
  master_maybe_finish(m);
}

/* New master: a connection the old master's workers handed back. */
static void child_conn(struct upgrade *u, const char *payload, uint32_t len) {
  struct master *m = u->m;
  unsigned namelen = len >= 1 ? (uint8_t)payload[0] : 0;
  char name[256];
  struct mconn *c;
  int idx;

  if (!u->ch.fd_here || len < 1 + namelen || m->cur == NULL)
    return;
  memcpy(name, payload + 1, namelen);
  name[namelen] = '\0';
  if ((idx = gen_listener_by_name(m->cur, name)) < 0 ||
      (c = mconn_new(m, m->cur->listeners[idx], -1)) == NULL)
    return; /* the channel closes the fd */
  if (mconn_accept(c, &u->ch) != 0 ||
      (len > 1 + namelen && (c->bytes = malloc(len - 1 - namelen)) == NULL)) {
    mconn_close(c);
    return;
  }
  c->nbytes = len - 1 - namelen;
  if (c->nbytes)
    memcpy(c->bytes, payload + 1 + namelen, c->nbytes);
  dispatch_take(m, c);
}

static void on_frame(struct ipc_channel *ch, uint8_t type, const char *payload, uint32_t len) {
  struct upgrade *u = ch->data;

  if (type == IPC_UP_READY && u->state == UP_STARTING)
    handing(u);
  else if (type == IPC_UP_CONN && u->state == UP_CHILD)
    child_conn(u, payload, len);
}

/* New master: the pid file is ours once the old master has let go of it. Its lock goes before
 * its channel closes, but a master that died leaves it to the kernel: try a few times. */
static void take_pidfile(struct upgrade *u) {
  struct master *m = u->m;
  long other = 0;

  if (m->cur == NULL || m->cur->cfg->pid_file == NULL || m->pidfile_fd >= 0 || m->stopping)
    return;
  m->pidfile_fd = pidfile_create(m->cur->cfg->pid_file, &other);
  if (m->pidfile_fd >= 0) {
    m->pidfile = strdup(m->cur->cfg->pid_file);
    return;
  }
  if (m->pidfile_fd == UV_EBUSY && ++u->pid_tries < 50) {
    m->pidfile_fd = -1;
    uv_timer_start(&u->timer, pidfile_retry_cb, 100, 0);
    return;
  }
  LBP_ERROR("pid file %s: %s", m->cur->cfg->pid_file, uv_strerror(m->pidfile_fd));
  m->pidfile_fd = -1;
}

static void pidfile_retry_cb(uv_timer_t *t) {
  take_pidfile(t->data);
}

static void on_error(struct ipc_channel *ch, int err) {
  struct upgrade *u = ch->data;
  struct master *m = u->m;

  channel_close(u);
  if (u->state != UP_CHILD)
    return; /* old master: the exit callback decides */
  u->state = UP_IDLE;
  event_add(m, EV_UPGRADE, 0, (long)getpid(), m->cur != NULL ? m->cur->id : 0,
            "the previous master is gone: this one is on its own");
  take_pidfile(u);
}

static struct upgrade *upgrade_new(struct master *m) {
  struct upgrade *u = calloc(1, sizeof(*u));

  if (u == NULL)
    return NULL;
  u->m = m;
  uv_timer_init(m->loop, &u->timer);
  u->timer.data = u;
  u->timer_open = 1;
  u->proc.data = u;
  ipc_channel_init(m->loop, &u->ch, on_frame, on_error, u);
  u->ch_open = 1;
  m->upgrade = u;
  return u;
}

/* ---- old master ---- */

static int spawn_new(struct master *m, struct upgrade *u) {
  uv_stdio_container_t stdio[4 + 2 * LBP_MAX_LISTENERS * 2];
  int fds[2 * LBP_MAX_LISTENERS * 2];
  char desc[8192], inherit[8300];
  const char *extra[3] = {"LBPROXY_UPGRADE_FD=3", inherit, NULL};
  char *args[4] = {m->exe, "-c", (char *)m->cfg_path, NULL};
  uv_process_options_t o;
  char **env;
  int n = lsock_export(m, fds, (int)(sizeof(fds) / sizeof(fds[0])), desc, sizeof(desc)), rc;

  snprintf(inherit, sizeof(inherit), "LBPROXY_INHERIT=%s", desc);
  memset(&o, 0, sizeof(o));
  stdio[0].flags = UV_IGNORE;
  stdio[1].flags = UV_INHERIT_FD;
  stdio[1].data.fd = 1;
  stdio[2].flags = UV_INHERIT_FD;
  stdio[2].data.fd = 2;
  stdio[3].flags = UV_CREATE_PIPE | UV_READABLE_PIPE | UV_WRITABLE_PIPE;
  stdio[3].data.stream = (uv_stream_t *)&u->ch.pipe;
  for (int i = 0; i < n; i++) {
    stdio[4 + i].flags = UV_INHERIT_FD;
    stdio[4 + i].data.fd = fds[i];
  }
  o.file = m->exe;
  o.args = args;
  o.stdio = stdio;
  o.stdio_count = 4 + n;
  o.exit_cb = exit_cb;
  if ((env = master_env(extra)) == NULL)
    return UV_ENOMEM;
  o.env = env;
  rc = uv_spawn(m->loop, &u->proc, &o);
  free(env);
  u->proc_open = 1; /* initialized even when uv_spawn fails */
  return rc;
}

void upgrade_start(struct master *m) {
  struct upgrade *u = up(m);
  int rc;

  if (m->stopping || m->retired || m->starting != NULL || (u != NULL && u->state != UP_IDLE)) {
    LBP_WARN("SIGUSR2: a reload, upgrade or stop is in progress: upgrade refused");
    return;
  }
  if (u != NULL) /* an earlier, failed attempt: let its handles go */
    upgrade_close(m);
  if ((u = upgrade_new(m)) == NULL)
    return;
  event_add(m, EV_UPGRADE, 0, (long)getpid(), m->cur->id, "requested: starting %s", m->exe);
  if ((rc = spawn_new(m, u)) != 0) {
    u->pid = 0;
    u->state = UP_STARTING;
    rollback(u, uv_strerror(rc));
    uv_close((uv_handle_t *)&u->proc, proc_closed_cb);
    return;
  }
  u->pid = u->proc.pid;
  u->state = UP_STARTING;
  uv_timer_start(&u->timer, timeout_cb, UPGRADE_TIMEOUT_MS, 0);
  /* The master's secret (private ports) goes first on the channel, not in the environment. */
  if ((rc = ipc_channel_start(&u->ch)) != 0 ||
      (rc = ipc_send(&u->ch, IPC_UP_SECRET, m->secret, LBP_SECRET_LEN)) != 0)
    rollback(u, uv_strerror(rc));
}

int upgrade_active(const struct master *m) {
  const struct upgrade *u = up(m);
  return u != NULL && (u->state == UP_STARTING || u->state == UP_HANDING);
}

static void forwarded_cb(struct ipc_out *out, int status) {
  struct mconn *c = (struct mconn *)((char *)out - offsetof(struct mconn, out));
  mconn_close(c); /* on failure too: the new master is gone, and with it this connection */
}

int upgrade_forward(struct master *m, struct mconn *c) {
  struct upgrade *u = up(m);
  const char *name = c->ls->name;
  size_t namelen = strlen(name);
  unsigned char hdr = (unsigned char)namelen;
  char *buf;

  if (u == NULL || u->state != UP_HANDING)
    return 0;
  if ((buf = malloc(namelen + c->nbytes + 1)) == NULL) {
    mconn_close(c);
    return 1;
  }
  memcpy(buf, name, namelen);
  if (c->nbytes)
    memcpy(buf + namelen, c->bytes, c->nbytes);
  free(c->bytes);
  c->bytes = buf;
  c->nbytes += (uint32_t)namelen;
  if (mconn_stream(c) == NULL || ipc_send_out(&u->ch, &c->out, IPC_UP_CONN, &hdr, 1, c->bytes,
                                              c->nbytes, mconn_stream(c), forwarded_cb) != 0)
    mconn_close(c);
  return 1;
}

void upgrade_close(struct master *m) {
  struct upgrade *u = up(m);

  if (u == NULL)
    return;
  if (u->state == UP_STARTING && u->proc_open && !uv_is_closing((uv_handle_t *)&u->proc))
    uv_process_kill(&u->proc, SIGTERM); /* we are stopping: so is a new master not ready yet */
  u->state = UP_IDLE;
  channel_close(u);
  m->upgrade = NULL;
  if (u->proc_open && !uv_is_closing((uv_handle_t *)&u->proc))
    uv_close((uv_handle_t *)&u->proc, proc_closed_cb);
  if (u->timer_open && !uv_is_closing((uv_handle_t *)&u->timer))
    uv_close((uv_handle_t *)&u->timer, timer_closed_cb);
  maybe_free(u);
}

/* ---- new master ---- */

/* New master, before its loop runs: the old master's first frame, UP_SECRET, read whole (it
 * was written before we started). */
static int read_secret(int fd, struct master *m) {
  unsigned char buf[IPC_HDR_LEN + LBP_SECRET_LEN];
  size_t got = 0;

  while (got < sizeof(buf)) {
    struct pollfd p = {fd, POLLIN, 0};
    ssize_t n;
    if (poll(&p, 1, 5000) <= 0)
      return UV_ETIMEDOUT;
    n = read(fd, buf + got, sizeof(buf) - got);
    if (n == 0)
      return UV_EOF;
    if (n < 0 && errno != EAGAIN && errno != EINTR)
      return -errno;
    got += n > 0 ? (size_t)n : 0;
  }
  if (buf[4] != IPC_UP_SECRET || ipc_get_u32((const char *)buf) != LBP_SECRET_LEN)
    return UV_EPROTO;
  memcpy(m->secret, buf + IPC_HDR_LEN, LBP_SECRET_LEN);
  m->have_secret = 1;
  return 0;
}

int upgrade_child_init(struct master *m) {
  const char *fd = getenv("LBPROXY_UPGRADE_FD"), *inherit = getenv("LBPROXY_INHERIT");
  struct upgrade *u;
  int rc;

  if (fd == NULL)
    return 0;
  if ((u = upgrade_new(m)) == NULL)
    return UV_ENOMEM;
  u->state = UP_CHILD;
  u->pid = (long)getppid();
  if (fcntl(atoi(fd), F_SETFD, FD_CLOEXEC) != 0)
    return -errno;
  if ((rc = read_secret(atoi(fd), m)) != 0)
    return rc;
  if ((rc = ipc_channel_open(&u->ch, atoi(fd))) != 0 || (rc = ipc_channel_start(&u->ch)) != 0)
    return rc;
  LBP_INFO("binary upgrade: taking over from master pid=%ld", u->pid);
  return lsock_inherit(m, inherit != NULL ? inherit : "");
}

void upgrade_child_ready(struct master *m) {
  struct upgrade *u = up(m);
  unsigned char p[4];

  if (u == NULL || u->state != UP_CHILD || u->told_ready)
    return;
  /* Only a master whose every worker serves takes over: a degraded one would be handed
   * everything; the old master times out and keeps serving instead. */
  for (unsigned i = 0; i < m->cur->nslots; i++)
    if (m->cur->by_slot[i] == NULL || !worker_serving(m->cur->by_slot[i]))
      return;
  u->told_ready = 1;
  ipc_put_u32(p, (uint32_t)getpid());
  if (ipc_send(&u->ch, IPC_UP_READY, p, 4) == 0)
    event_add(m, EV_UPGRADE, 0, (long)getpid(), m->cur->id,
              "ready: the previous master pid=%ld hands over", u->pid);
}
