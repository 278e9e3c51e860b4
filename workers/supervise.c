/* Worker records and slots: spawning, the master's side of the protocol, exits, backoff, crash
 * loops. */

/*
 * Supervision, after Node's cluster module and pm2:
 *
 * 1. A worker is this executable (/proc/self/exe, so a binary replaced on disk never runs in
 *    an old master's pool) started by uv_spawn with its channel as fd 3 and its generation's
 *    shared memory as fd 4. Every step is a lifecycle event (events.c): fork, online (HELLO),
 *    ready (READY), disconnect (channel lost), exit (code or signal), errored, drain, bye.
 * 2. A worker of the current generation that exits without having said BYE is restarted in
 *    its slot after the slot's delay, which starts at restart.delay and doubles up to
 *    restart.max_delay; a worker that stayed up restart.reset_after resets it. More than
 *    restart.max_exits exits within restart.window mark the slot errored: it is not restarted
 *    (loudly), the other slots go on, and when every slot is errored the master gives up with
 *    the cause. A spawn that fails (the binary cannot be executed as `user:`) counts as an exit.
 * 3. BYE FATAL: the worker is leaving on purpose; its replacement starts at once, without
 *    waiting for the exit or a backoff. BYE DRAINED: the end of a drain.
 * 4. A worker of a starting generation that exits aborts that reload; one of a draining
 *    generation just leaves.
 */
#include "master.h"

#include "dispatch.h"
#include "log.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void slot_exited(struct master *m, struct slot *s, struct worker *w, const char *how);

int worker_serving(const struct worker *w) {
  return w->state == W_READY && w->ch_open && !w->ch.failed;
}

struct worker *worker_of(struct master *m, const struct generation *g, unsigned slot) {
  return slot < g->nslots ? g->by_slot[slot] : NULL;
}

/* ---- listening sockets a worker accepts on ---- */

static void count_pollers(struct worker *w, int on) {
  if (w->counted_pollers == on)
    return;
  w->counted_pollers = (uint8_t)on;
  for (unsigned i = 0; i < w->nsocks; i++)
    w->socks[i]->pollers += on ? 1u : (unsigned)-1;
}

/* ---- leaving ---- */

static const char *describe_exit(const struct worker *w, int64_t status, int sig, char *buf,
                                 size_t cap) {
  if (sig)
    snprintf(buf, cap, "signal=%d (%s)", sig, strsignal(sig));
  else
    snprintf(buf, cap, "code=%lld", (long long)status);
  return buf;
}

/* Both handles are closed: the record goes. */
static void worker_free(struct worker *w, const char *how) {
  struct master *m = w->m;
  struct generation *g = w->gen;
  struct worker **pp = &m->workers;

  count_pollers(w, 0);
  if (w->slot->id < g->nslots && g->by_slot[w->slot->id] == w)
    g->by_slot[w->slot->id] = NULL;
  while (*pp != NULL && *pp != w)
    pp = &(*pp)->next;
  if (*pp == w)
    *pp = w->next;
  if (g == m->cur && !m->stopping && !m->retired && (!w->planned || w->fatal))
    slot_exited(m, w->slot, w, how);
  else
    event_add(m, EV_EXIT, (int)w->slot->id + 1, (long)w->pid, g->id, "%s%s", how,
              w->planned ? " (planned)" : "");
  if (g == m->starting && (!w->planned || w->fatal))
    master_abort_reload(m, how);
  master_worker_gone(m, w);
  gen_unref(g);
  free(w);
  master_workers_changed(m);
  master_maybe_finish(m);
}

static void maybe_free(struct worker *w) {
  if (w->proc_open || w->ch_open)
    return;
  if (w->how[0] == '\0')
    snprintf(w->how, sizeof(w->how), "gone");
  if (!w->planned)
    snprintf(w->slot->last_cause, sizeof(w->slot->last_cause), "%s", w->how);
  worker_free(w, w->how);
}

static void proc_close_cb(uv_handle_t *h) {
  struct worker *w = h->data;
  w->proc_open = 0;
  maybe_free(w);
}

static void ch_close_cb(uv_handle_t *h) {
  struct worker *w = ((struct ipc_channel *)h->data)->data;
  w->ch_open = 0;
  /* Cancelled sends have reported by now: hand what it never took to others. */
  handoff_worker_gone(w->m, w);
  maybe_free(w);
}

static void channel_close(struct worker *w) {
  if (w->ch_open && !uv_is_closing((uv_handle_t *)&w->ch.pipe))
    ipc_channel_close(&w->ch, ch_close_cb);
}

static void exit_cb(uv_process_t *p, int64_t status, int sig) {
  struct worker *w = p->data;

  w->exited = 1;
  if (w->how[0] == '\0')
    describe_exit(w, status, sig, w->how, sizeof(w->how));
  /* The channel is not closed here: what the worker wrote before dying (a last STATUS that
   * acknowledges connections, a HANDOVER) is still in the socket. It reads to EOF and closes
   * itself, and only then are the unacknowledged connections handed on. */
  uv_close((uv_handle_t *)&w->proc, proc_close_cb);
}

static void ch_error(struct ipc_channel *ch, int err) {
  struct worker *w = ch->data;

  if (!w->exited && !w->planned)
    event_add(w->m, EV_DISCONNECT, (int)w->slot->id + 1, (long)w->pid, w->gen->id, "%s",
              err == UV_EOF ? "channel closed" : uv_strerror(err));
  count_pollers(w, 0);
  channel_close(w);
  master_workers_changed(w->m);
}

/* ---- the protocol, master side ---- */

void worker_give_sockets(struct worker *w) {
  struct generation *g = w->gen;
  struct lsock *socks[2 * LBP_MAX_LISTENERS];
  uint8_t kinds[2 * LBP_MAX_LISTENERS];
  uint16_t listeners[2 * LBP_MAX_LISTENERS];
  int n;

  if (w->nsocks > 0 || w->state > W_READY || !w->ch_open || w->ch.failed)
    return;
  n = g->dispatch->worker_sockets(g, w->slot->id, socks, kinds, listeners, 2 * LBP_MAX_LISTENERS);
  for (int i = 0; i < n; i++) {
    unsigned char lp[3] = {kinds[i], (unsigned char)(listeners[i] >> 8),
                           (unsigned char)listeners[i]};
    if (ipc_send_handle(&w->ch, IPC_LISTEN, lp, 3, (uv_stream_t *)&socks[i]->tcp) != 0)
      break; /* the channel failed: exit_cb follows */
    w->socks[w->nsocks++] = socks[i];
  }
  if (w->state == W_READY && w->gen->state != GEN_DRAINING) {
    count_pollers(w, 0);
    count_pollers(w, 1);
  }
}

/* Counts the LISTEN frames the worker gets with its CONFIG: a worker of a starting generation
 * gets its sockets only when the generation becomes current (readiness-gated switch). */
static int sockets_with_config(const struct worker *w) {
  struct lsock *socks[2 * LBP_MAX_LISTENERS];
  uint8_t kinds[2 * LBP_MAX_LISTENERS];
  uint16_t listeners[2 * LBP_MAX_LISTENERS];

  if (w->gen->state != GEN_CURRENT)
    return 0;
  return w->gen->dispatch->worker_sockets(w->gen, w->slot->id, socks, kinds, listeners,
                                          2 * LBP_MAX_LISTENERS);
}

static void send_config(struct worker *w) {
  struct generation *g = w->gen;
  size_t namelen = strlen(g->cfg->file);
  size_t fixed = 4 + 2 + 1 + 1 + 4 + LBP_SECRET_LEN + 2 + namelen;
  unsigned char *p = malloc(fixed + g->len), *q = p;
  int n = sockets_with_config(w);

  if (p == NULL) {
    LBP_ERROR("worker %u: out of memory for its config", w->slot->id + 1);
    uv_process_kill(&w->proc, SIGKILL);
    return;
  }
  ipc_put_u32(q, g->id), q += 4;
  ipc_put_u16(q, (uint16_t)w->slot->id), q += 2;
  *q++ = (unsigned char)n; /* LISTEN frames follow, so the worker knows when it has them */
  *q++ = (unsigned char)(g->dispatch == &dispatch_handoff_least ? 1 : 0);
  ipc_put_u32(q, (uint32_t)g->shm_len), q += 4;
  memcpy(q, g->secret, LBP_SECRET_LEN), q += LBP_SECRET_LEN;
  ipc_put_u16(q, (uint16_t)namelen), q += 2;
  memcpy(q, g->cfg->file, namelen), q += namelen;
  memcpy(q, g->bytes, g->len);
  if (ipc_send(&w->ch, IPC_CONFIG, p, (uint32_t)(fixed + g->len)) == 0) {
    /* Servers and their states before any socket: no request can come before them. */
    servers_send_worker(w);
    if (n > 0)
      worker_give_sockets(w);
  }
  free(p);
}

/* " port=N" for a worker with a private port (dispatch proxy), for logs and tests. */
static void private_port(const struct worker *w, char *out, size_t cap) {
  struct generation *g = w->gen;
  struct lsock *socks[2 * LBP_MAX_LISTENERS];
  uint8_t kinds[2 * LBP_MAX_LISTENERS];
  uint16_t listeners[2 * LBP_MAX_LISTENERS];
  int n =
      g->dispatch->worker_sockets(g, w->slot->id, socks, kinds, listeners, 2 * LBP_MAX_LISTENERS);
  const char *colon;

  out[0] = '\0';
  if (n > 0 && kinds[0] == IPC_LISTEN_PRIVATE && (colon = strrchr(socks[0]->name, ':')) != NULL)
    snprintf(out, cap, " port=%s", colon + 1);
}

static void on_ready(struct worker *w) {
  struct master *m = w->m;
  char port[32];

  if (w->state != W_ONLINE)
    return;
  w->state = W_READY;
  w->t_ready = uv_now(m->loop);
  private_port(w, port, sizeof(port));
  event_add(m, EV_READY, (int)w->slot->id + 1, (long)w->pid, w->gen->id, "%s%s",
            w->gen == m->starting ? "(new generation)" : "", port);
  if (w->gen->state != GEN_DRAINING)
    count_pollers(w, 1);
  master_workers_changed(m);
}

/* A draining worker (or one asked to shed connections: rebalance.c) gave back a connection
 * between requests: its fd and the bytes it had read. */
static void on_handover(struct worker *w, const char *payload, uint32_t len) {
  struct master *m = w->m;
  unsigned listener = len >= 2 ? ipc_get_u16(payload) : ~0u;
  struct mconn *c;

  /* Only a draining worker, or one asked to shed, gives connections back; from any other it
   * would be a bug (or a worker gone bad) and the master would only pile them up. */
  if (!w->ch.fd_here || listener >= w->gen->cfg->nlisteners ||
      (w->state != W_DRAINING && !rebalance_takes_from(m, w)))
    return; /* nothing arrived, or nothing we can place: the channel discards the fd */
  if ((c = mconn_new(m, w->gen->listeners[listener], -1)) == NULL)
    return;
  if (mconn_accept(c, &w->ch) != 0 || (len > 2 && (c->bytes = malloc(len - 2)) == NULL)) {
    mconn_close(c);
    return;
  }
  c->nbytes = len - 2;
  c->handed = 1;
  if (w->state != W_DRAINING)
    c->to = (uint16_t)rebalance_target(m, w);
  if (c->nbytes)
    memcpy(c->bytes, payload + 2, c->nbytes);
  master_handover(m, c);
}

static void on_bye(struct worker *w, const char *payload, uint32_t len) {
  struct master *m = w->m;
  int reason = len >= 1 ? (uint8_t)payload[0] : IPC_BYE_FATAL;
  int textlen = len > 1 ? (int)(len - 1) : 0;

  /* DRAINED is only believed from a worker that was asked to drain. */
  if (reason == IPC_BYE_DRAINED && w->state != W_DRAINING)
    reason = IPC_BYE_FATAL;
  event_add(m, EV_BYE, (int)w->slot->id + 1, (long)w->pid, w->gen->id, "%s%s%.*s",
            reason == IPC_BYE_DRAINED ? "drained" : "fatal", textlen ? ": " : "", textlen,
            payload + 1);
  w->planned = 1;
  if (reason != IPC_BYE_FATAL)
    return;
  w->fatal = 1;
  snprintf(w->how, sizeof(w->how), "said bye: %.*s", textlen, payload + 1);
  count_pollers(w, 0);
  if (w->gen == m->starting) {
    master_abort_reload(m, w->how);
  } else if (w->gen == m->cur && !m->stopping && !m->retired && w->gen->by_slot[w->slot->id] == w &&
             uv_now(m->loop) - w->t_start >= w->gen->cfg->restart.reset_after_ms) {
    /* It served a while and is leaving on purpose: its replacement starts now, not after a
     * crash backoff. One that could not even get going counts as a crash (worker_free). */
    w->gen->by_slot[w->slot->id] = NULL;
    worker_spawn(m, w->gen, w->slot);
  }
  master_workers_changed(m);
}

static void on_frame(struct ipc_channel *ch, uint8_t type, const char *payload, uint32_t len) {
  struct worker *w = ch->data;
  struct master *m = w->m;

  switch (type) {
  case IPC_HELLO:
    if (w->state != W_STARTING)
      break;
    w->state = W_ONLINE;
    event_add(m, EV_ONLINE, (int)w->slot->id + 1, (long)w->pid, w->gen->id, "%s", "");
    send_config(w);
    if (w->gen->access_fd >= 0)
      master_send_logfd(m, w, IPC_LOGFD_ACCESS, w->gen->access_fd);
    break;
  case IPC_READY:
    on_ready(w);
    break;
  case IPC_STATUS:
    if (len < 16)
      break;
    w->hp.acked_seq = ipc_get_u32(payload);
    w->active = ipc_get_u32(payload + 4);
    w->accepted = ipc_get_u64(payload + 8);
    handoff_acked(m, w);
    break;
  case IPC_REFUSE:
    if (len >= 4)
      handoff_refused(m, w, ipc_get_u32(payload), len >= 5 ? (uint8_t)payload[4] : 0);
    break;
  case IPC_HANDOVER:
    on_handover(w, payload, len);
    break;
  case IPC_BYE:
    on_bye(w, payload, len);
    break;
  case IPC_FAILING:
    servers_on_failing(w, payload, len);
    break;
  default:
    LBP_WARN("worker %u sent an unexpected %s frame", w->slot->id + 1, ipc_type_name(type));
    break;
  }
}

/* ---- spawning ---- */

static void apply_user(const struct lbp_config *cfg, uv_process_options_t *o) {
  if (!cfg->has_user_ids || geteuid() != 0)
    return;
  o->flags |= UV_PROCESS_SETUID | UV_PROCESS_SETGID;
  o->uid = cfg->uid;
  o->gid = cfg->gid;
}

/* The spawn failed before a process existed: the slot counts it as an exit. */
static void spawn_failed(struct worker *w, int rc, int handle_init) {
  snprintf(w->how, sizeof(w->how), "spawn of %.100s failed: %s", w->m->exe, uv_strerror(rc));
  w->exited = 1;
  channel_close(w);
  if (handle_init) { /* uv_spawn initialized the handle even though it failed */
    w->proc_open = 1;
    uv_close((uv_handle_t *)&w->proc, proc_close_cb);
  }
}

int worker_spawn(struct master *m, struct generation *g, struct slot *s) {
  struct worker *w = calloc(1, sizeof(*w));
  uv_process_options_t o;
  uv_stdio_container_t stdio[5];
  char mpid[48], idbuf[16], **env;
  const char *extra[4];
  char *args[4];
  int rc;

  if (w == NULL)
    return UV_ENOMEM;
  w->m = m;
  w->gen = g;
  gen_ref(g);
  w->slot = s;
  w->state = W_STARTING;
  w->next = m->workers;
  m->workers = w;
  if (s->id < g->nslots && g->by_slot[s->id] == NULL)
    g->by_slot[s->id] = w;
  memset(&o, 0, sizeof(o));
  snprintf(idbuf, sizeof(idbuf), "%u", s->id + 1);
  snprintf(mpid, sizeof(mpid), "LBPROXY_MASTER_PID=%ld", (long)getpid());
  extra[0] = "LBPROXY_CHANNEL_FD=3";
  extra[1] = "LBPROXY_SHM_FD=4";
  extra[2] = mpid;
  extra[3] = NULL;
  args[0] = m->exe;
  args[1] = "worker";
  args[2] = idbuf;
  args[3] = NULL;
  ipc_channel_init(m->loop, &w->ch, on_frame, ch_error, w);
  w->ch_open = 1;
  stdio[0].flags = UV_IGNORE;
  stdio[1].flags = UV_INHERIT_FD;
  stdio[1].data.fd = 1;
  stdio[2].flags = UV_INHERIT_FD;
  stdio[2].data.fd = 2;
  stdio[3].flags = UV_CREATE_PIPE | UV_READABLE_PIPE | UV_WRITABLE_PIPE;
  stdio[3].data.stream = (uv_stream_t *)&w->ch.pipe;
  stdio[4].flags = UV_INHERIT_FD;
  stdio[4].data.fd = g->shm_fd;
  /* /proc/self/exe is the master's own binary even if the file on disk was replaced. */
  o.file = "/proc/self/exe";
  o.args = args;
  o.stdio = stdio;
  o.stdio_count = 5;
  o.exit_cb = exit_cb;
  apply_user(g->cfg, &o);
  w->proc.data = w;
  env = master_env(extra);
  o.env = env;
  rc = env != NULL ? uv_spawn(m->loop, &w->proc, &o) : UV_ENOMEM;
  free(env);
  if (rc != 0) {
    spawn_failed(w, rc, env != NULL);
    return rc;
  }
  w->proc_open = 1;
  w->pid = w->proc.pid;
  w->t_start = uv_now(m->loop);
  s->restarts++;
  event_add(m, EV_FORK, (int)s->id + 1, (long)w->pid, g->id, "%s", "");
  if ((rc = ipc_channel_start(&w->ch)) != 0) {
    LBP_ERROR("worker %u: channel: %s", s->id + 1, uv_strerror(rc));
    uv_process_kill(&w->proc, SIGKILL);
  }
  return 0;
}

void worker_drain(struct worker *w, uint64_t deadline_ms, int handover) {
  unsigned char p[5];

  if (w->state == W_DRAINING || w->state == W_STOPPING)
    return;
  w->planned = 1;
  w->state = W_DRAINING;
  w->t_drain = uv_now(w->m->loop);
  w->drain_limit_ms = deadline_ms;
  count_pollers(w, 0);
  ipc_put_u32(p, (uint32_t)deadline_ms);
  p[4] = (unsigned char)handover;
  if (!(w->ch_open && !w->ch.failed && ipc_send(&w->ch, IPC_DRAIN, p, 5) == 0) && w->proc_open &&
      !w->exited)
    uv_process_kill(&w->proc, SIGTERM);
  event_add(w->m, EV_DRAIN, (int)w->slot->id + 1, (long)w->pid, w->gen->id, "deadline=%llums%s",
            (unsigned long long)deadline_ms, handover ? " handover" : "");
}

void worker_stop(struct worker *w) {
  if (w->state == W_STOPPING)
    return;
  w->planned = 1;
  w->state = W_STOPPING;
  count_pollers(w, 0);
  /* STOP over the channel; a signal only for a worker that cannot hear it (a signal right
   * after STOP would race with its orderly exit). */
  if (!(w->ch_open && !w->ch.failed && ipc_send(&w->ch, IPC_STOP, NULL, 0) == 0) && w->proc_open &&
      !w->exited)
    uv_process_kill(&w->proc, SIGTERM);
}

/* ---- slots ---- */

static void restart_cb(uv_timer_t *t) {
  struct slot *s = t->data;
  struct master *m = s->m;

  s->restart_pending = 0;
  if (m->stopping || m->retired || m->cur == NULL || s->id >= m->cur->nslots ||
      m->cur->by_slot[s->id] != NULL)
    return;
  worker_spawn(m, m->cur, s);
}

/* Unplanned exits within the window, counting this one. */
static unsigned recent_exits(struct master *m, struct slot *s) {
  const struct cfg_restart *r = &m->cur->cfg->restart;
  uint64_t now = uv_now(m->loop);
  unsigned cap = sizeof(s->exits) / sizeof(s->exits[0]), n = 0;

  s->exits[s->exits_pos] = now;
  s->exits_pos = (s->exits_pos + 1) % cap;
  if (s->nexits < cap)
    s->nexits++;
  for (unsigned i = 0; i < s->nexits; i++)
    n += now - s->exits[i] <= r->window_ms;
  return n;
}

static void slot_exited(struct master *m, struct slot *s, struct worker *w, const char *how) {
  const struct cfg_restart *r = &m->cur->cfg->restart;
  unsigned n;

  if (w->state == W_READY && uv_now(m->loop) - w->t_start >= r->reset_after_ms)
    s->delay_ms = r->delay_ms;
  if (s->delay_ms == 0)
    s->delay_ms = r->delay_ms;
  n = recent_exits(m, s);
  s->crashes++;
  if (n > r->max_exits) {
    s->errored = 1;
    event_add(m, EV_EXIT, (int)s->id + 1, (long)w->pid, w->gen->id, "%s", how);
    event_add(m, EV_ERRORED, (int)s->id + 1, (long)w->pid, w->gen->id,
              "%u exits within %llums (last: %s): not restarting it; the other workers go on", n,
              (unsigned long long)r->window_ms, how);
    master_give_up(m);
    return;
  }
  event_add(m, EV_EXIT, (int)s->id + 1, (long)w->pid, w->gen->id,
            "%s (unexpected: restart in %llu ms)", how, (unsigned long long)s->delay_ms);
  s->restart_pending = 1;
  uv_timer_start(&s->restart, restart_cb, s->delay_ms, 0);
  s->delay_ms = s->delay_ms * 2 > r->max_delay_ms ? r->max_delay_ms : s->delay_ms * 2;
}

void slots_fill(struct master *m) {
  struct generation *g = m->cur;

  for (unsigned i = 0; g != NULL && i < g->nslots && !m->stopping && !m->retired; i++) {
    struct slot *s = &m->slots[i];
    if (g->by_slot[i] == NULL && !s->errored && !s->restart_pending)
      worker_spawn(m, g, s);
  }
}
