/* A worker process: takes its config and sockets from the master, serves HTTP with px_ctx. */
#include "master.h"

#include "log.h"
#include "proxy.h"
#include "shm.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#define MAX_LISTENERS      4
#define STATUS_OUTS        4
#define STATUS_COALESCE_MS 100

struct worker {
  uv_loop_t *loop;
  struct ipc_channel ch;
  struct lbp_config *cfg;
  struct px_ctx *px;
  unsigned slot;
  int expect_listeners, got_listeners;
  uv_tcp_t *listeners[MAX_LISTENERS];
  uint8_t kinds[MAX_LISTENERS];
  uint16_t private_port;
  uv_check_t check;
  uv_timer_t status_timer;
  int least_loaded; /* dispatch handoff-least: the master balances on our active count */
  uv_signal_t sigterm;
  /* what the master was told last, and what changed since */
  uint32_t last_seq, sent_seq, sent_active;
  uint64_t sent_accepted;
  struct ipc_out status_out[STATUS_OUTS];
  uint8_t status_busy[STATUS_OUTS];
  void *shm;
  size_t shm_len;
  int stopping;
  int exit_code;
};

static void worker_stop(struct worker *w, int code);

/* ---- status to the master ---- */

static void status_sent(struct ipc_out *out, int status) {
  struct worker *w = out->req.data;
  w->status_busy[out - w->status_out] = 0;
}

/* Sends one STATUS with the current counters, if a frame buffer is free. 0 if sent. */
static int send_status(struct worker *w) {
  const struct px_counters *pc = px_ctx_counters(w->px);
  unsigned char p[16];

  for (int i = 0; i < STATUS_OUTS; i++) {
    if (w->status_busy[i])
      continue;
    ipc_put_u32(p, w->last_seq);
    ipc_put_u32(p + 4, pc->active);
    ipc_put_u64(p + 8, pc->accepted);
    w->status_out[i].req.data = w;
    if (ipc_send_small(&w->ch, &w->status_out[i], IPC_STATUS, p, 16, NULL, status_sent) != 0)
      return -1;
    w->status_busy[i] = 1;
    w->sent_seq = w->last_seq;
    w->sent_active = pc->active;
    w->sent_accepted = pc->accepted;
    uv_timer_stop(&w->status_timer);
    return 0;
  }
  return -1; /* all in flight: a later iteration sends the newer values */
}

static void status_timer_cb(uv_timer_t *t) {
  struct worker *w = t->data;
  if (w->px != NULL && !w->stopping)
    send_status(w);
}

/* After each loop iteration: one STATUS frame tells the master which connections were taken
 * (the ack), how many are open and how many in total. An ack goes at once (the master holds
 * the fds and the window until then), and so does a change of load under handoff-least (the
 * master picks by it); counters that only feed the stats line wait up to STATUS_COALESCE_MS,
 * so a busy worker of the shared or reuseport strategies sends ten frames a second, not one
 * per iteration. */
static void check_cb(uv_check_t *h) {
  struct worker *w = h->data;
  const struct px_counters *pc;
  int urgent;

  if (w->px == NULL || w->stopping)
    return;
  pc = px_ctx_counters(w->px);
  urgent = w->last_seq != w->sent_seq || (w->least_loaded && pc->active != w->sent_active);
  if (urgent) {
    send_status(w);
  } else if ((pc->accepted != w->sent_accepted || pc->active != w->sent_active) &&
             !uv_is_active((uv_handle_t *)&w->status_timer)) {
    uv_timer_start(&w->status_timer, status_timer_cb, STATUS_COALESCE_MS, 0);
  }
}

/* ---- sockets from the master ---- */

static void listener_close_cb(uv_handle_t *h);

static void on_listen_conn(uv_stream_t *server, int status) {
  struct worker *w = server->loop->data;
  uv_tcp_t *tcp;
  unsigned flags = (uintptr_t)server->data == LISTEN_PRIVATE ? PX_CLIENT_PROXY_PROTOCOL : 0;

  if (status < 0) {
    LBP_WARN("accept: %s", uv_strerror(status));
    return;
  }
  tcp = w->px != NULL ? px_client_new(w->px) : NULL;
  if (tcp == NULL) {
    /* Stopping or out of memory. Left un-accepted, libuv would stop polling this socket for
     * good: take the connection and close it. */
    uv_tcp_t *sink = malloc(sizeof(*sink));
    if (sink == NULL || uv_tcp_init(w->loop, sink) != 0) {
      free(sink);
      LBP_ERROR("out of memory accepting a connection: exiting");
      worker_stop(w, 1);
      return;
    }
    uv_accept(server, (uv_stream_t *)sink);
    uv_close((uv_handle_t *)sink, listener_close_cb);
    return;
  }
  if (uv_accept(server, (uv_stream_t *)tcp) != 0) {
    px_client_discard(tcp);
    return;
  }
  px_client_start(tcp, &(struct px_accept){.listener = 0, .flags = flags});
}

static void send_ready(struct worker *w) {
  unsigned char p[2];
  ipc_put_u16(p, w->private_port);
  ipc_send(&w->ch, IPC_READY, p, 2);
}

static void take_listener(struct worker *w, const char *payload, uint32_t len) {
  uv_tcp_t *l;
  int rc;

  if (w->got_listeners >= MAX_LISTENERS || len < 1 || w->px == NULL) {
    worker_stop(w, 2);
    return;
  }
  l = malloc(sizeof(*l));
  if (l == NULL || uv_tcp_init(w->loop, l) != 0) {
    free(l);
    worker_stop(w, 2);
    return;
  }
  w->listeners[w->got_listeners] = l;
  w->kinds[w->got_listeners] = (uint8_t)payload[0];
  w->got_listeners++;
  l->data = (void *)(uintptr_t)(uint8_t)payload[0];
  rc = ipc_channel_accept(&w->ch, (uv_stream_t *)l);
  if (rc == 0)
    rc = uv_listen((uv_stream_t *)l, 1024, on_listen_conn);
  if (rc != 0) {
    LBP_ERROR("listening socket from the master: %s", uv_strerror(rc));
    worker_stop(w, 2);
    return;
  }
  if (payload[0] == LISTEN_PRIVATE) {
    struct sockaddr_storage ss;
    int sl = sizeof(ss);
    if (uv_tcp_getsockname(l, (struct sockaddr *)&ss, &sl) == 0)
      w->private_port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
  }
  if (w->got_listeners == w->expect_listeners)
    send_ready(w);
}

/* ---- frames ---- */

static void take_config(struct worker *w, const char *p, uint32_t len) {
  struct cfg_error err;
  const char *name;
  size_t namelen;
  char role[32];
  int rc, fd;

  if (w->cfg != NULL || len < 8 || (namelen = strnlen(p + 7, len - 7)) == len - 7) {
    LBP_ERROR("bad config frame");
    worker_stop(w, 2);
    return;
  }
  w->slot = ipc_get_u16(p + 4);
  w->expect_listeners = (uint8_t)p[6];
  snprintf(role, sizeof(role), "worker %u", w->slot + 1);
  lbp_log_init(role, getenv("LBPROXY_DEBUG") ? LBP_LOG_DEBUG : LBP_LOG_INFO);
  name = p + 7;
  rc = cfg_parse(name, p + 8 + namelen, len - 8 - namelen, &w->cfg, &err);
  if (rc != 0) {
    LBP_ERROR("config: %s", err.msg);
    worker_stop(w, 2);
    return;
  }
  fd = getenv("LBPROXY_SHM_FD") ? atoi(getenv("LBPROXY_SHM_FD")) : -1;
  w->shm_len = lbp_shm_size(w->cfg);
  if (fd < 0 || lbp_shm_map(fd, w->shm_len, &w->shm) != 0) {
    LBP_ERROR("cannot map the master's shared memory");
    worker_stop(w, 2);
    return;
  }
  close(fd);
  w->least_loaded = w->cfg->dispatch == CFG_DISPATCH_HANDOFF_LEAST;
  rc = px_ctx_new(w->loop, w->cfg, lbp_shm_rr(w->shm), &w->px);
  if (rc != 0) {
    LBP_ERROR("data plane: %s", uv_strerror(rc));
    worker_stop(w, 2);
    return;
  }
  if (w->expect_listeners == 0)
    send_ready(w);
}

static void refuse(struct worker *w, uint32_t seq) {
  unsigned char p[4];
  ipc_put_u32(p, seq);
  ipc_send(&w->ch, IPC_REFUSE, p, 4);
}

static void take_conn(struct worker *w, const char *payload, uint32_t len) {
  uint32_t seq = len >= 4 ? ipc_get_u32(payload) : 0;
  uv_tcp_t *tcp = (w->px != NULL && !w->stopping) ? px_client_new(w->px) : NULL;

  if (tcp == NULL) {
    refuse(w, seq); /* the channel closes the fd we did not take; the master re-dispatches */
    return;
  }
  if (ipc_channel_accept(&w->ch, (uv_stream_t *)tcp) != 0) {
    px_client_discard(tcp);
    refuse(w, seq);
    return;
  }
  w->last_seq = seq;
  /* The master keeps its copy until our ack. */
  px_client_start(tcp, &(struct px_accept){.listener = 0, .flags = PX_CLIENT_FD_SHARED});
}

static void on_frame(struct ipc_channel *ch, uint8_t type, const char *payload, uint32_t len) {
  struct worker *w = ch->data;

  switch (type) {
  case IPC_CONN:
    take_conn(w, payload, len);
    break;
  case IPC_CONFIG:
    take_config(w, payload, len);
    break;
  case IPC_LISTEN:
    take_listener(w, payload, len);
    break;
  case IPC_STOP:
    worker_stop(w, 0);
    break;
  default:
    LBP_WARN("unexpected %s frame from the master", ipc_type_name(type));
    break;
  }
}

static void on_channel_error(struct ipc_channel *ch, int err) {
  struct worker *w = ch->data;
  if (!w->stopping)
    LBP_WARN("lost the master (%s): exiting", uv_strerror(err));
  worker_stop(w, w->stopping ? w->exit_code : 1);
}

/* ---- stopping ---- */

static void close_walk_cb(uv_handle_t *h, void *arg) {
  if (!uv_is_closing(h))
    uv_close(h, NULL);
}

static void px_closed(void *arg) {
  struct worker *w = arg;
  w->px = NULL;
  /* Listener structs were malloc'ed; their close callbacks free them (see worker_stop). */
  uv_walk(w->loop, close_walk_cb, NULL);
  signal(SIGTERM, SIG_IGN); /* closing our uv_signal_t restored the default: we are leaving */
}

static void listener_close_cb(uv_handle_t *h) {
  free(h);
}

static void worker_stop(struct worker *w, int code) {
  if (w->stopping)
    return;
  w->stopping = 1;
  w->exit_code = code;
  for (int i = 0; i < w->got_listeners; i++)
    uv_close((uv_handle_t *)w->listeners[i], listener_close_cb);
  w->got_listeners = 0;
  if (!uv_is_closing((uv_handle_t *)&w->ch.pipe))
    ipc_channel_close(&w->ch, NULL);
  if (w->px != NULL) {
    px_ctx_close(w->px, px_closed, w);
  } else {
    uv_walk(w->loop, close_walk_cb, NULL);
    signal(SIGTERM, SIG_IGN);
  }
}

static void sigterm_cb(uv_signal_t *h, int signum) {
  worker_stop(h->data, 0);
}

int worker_run(int channel_fd) {
  struct worker w;
  unsigned char hello[4];
  const char *mpid = getenv("LBPROXY_MASTER_PID");

#ifdef __linux__
  /* If the master dies without telling us, the kernel does. */
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (mpid != NULL && (long)getppid() != atol(mpid))
    return 1;
#endif
  lbp_log_init("worker", LBP_LOG_INFO);
  signal(SIGPIPE, SIG_IGN);
  signal(SIGINT, SIG_IGN); /* Ctrl-C reaches the whole group; the master stops us in order */
  memset(&w, 0, sizeof(w));
  w.loop = uv_default_loop();
  w.loop->data = &w;
  if (ipc_channel_init(w.loop, &w.ch, on_frame, on_channel_error, &w) != 0 ||
      ipc_channel_open(&w.ch, channel_fd) != 0 || ipc_channel_start(&w.ch) != 0) {
    LBP_ERROR("cannot open the channel to the master (fd %d)", channel_fd);
    return 1;
  }
  uv_check_init(w.loop, &w.check);
  w.check.data = &w;
  uv_check_start(&w.check, check_cb);
  uv_timer_init(w.loop, &w.status_timer);
  w.status_timer.data = &w;
  uv_signal_init(w.loop, &w.sigterm);
  w.sigterm.data = &w;
  uv_signal_start(&w.sigterm, sigterm_cb, SIGTERM);
  ipc_put_u32(hello, (uint32_t)getpid());
  ipc_send(&w.ch, IPC_HELLO, hello, 4);
  uv_run(w.loop, UV_RUN_DEFAULT);
  if (w.shm != NULL)
    lbp_shm_unmap(w.shm, w.shm_len);
  cfg_free(w.cfg);
  uv_loop_close(w.loop);
  return w.exit_code;
}
