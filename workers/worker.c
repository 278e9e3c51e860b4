/* A worker process: takes its generation and sockets from the master, serves with px_ctx, drains
 * and hands back. */

/*
 * 1. Start: HELLO; CONFIG (the generation: config bytes parsed without resolving anything,
 *    the master's resolved addresses applied, its shared memory mapped at the size the master
 *    gives); LISTEN frames; READY. The data plane owns the parsed config from then on.
 * 2. Connections come as CONN frames (fd + listener + bytes already read) or from the listening
 *    sockets the strategy gave this slot. STATUS (after each loop iteration that changed
 *    something) acknowledges CONNs and reports load.
 * 3. DRAIN(deadline, handover): close our copies of the listening sockets, refuse further CONNs,
 *    let requests finish; each connection between requests goes back to the master (HANDOVER)
 *    when `handover`, else it is closed after its response. When nothing is left, or at the
 *    deadline (what is left is closed and counted), a last STATUS and BYE(drained) go out, and
 *    we exit once they are written.
 * 4. A lost master (channel EOF, or SIGTERM with our parent gone): drain without handover for
 *    ORPHAN_DRAIN_MS and exit. STOP or SIGTERM from a living master: stop now.
 * 5. Anything that makes serving impossible says BYE(fatal, why) before exiting, so the master
 *    replaces us at once instead of counting a crash.
 */
#include "master.h"

#include "accesslog.h"
#include "log.h"
#include "proxy.h"
#include "relay.h"
#include "shm.h"
#include "srvwire.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#define MAX_SOCKETS        (2 * LBP_MAX_LISTENERS)
#define STATUS_OUTS        4
#define STATUS_COALESCE_MS 100
#define ORPHAN_DRAIN_MS    5000

struct wlisten {
  uv_tcp_t tcp;
  struct wproc *w;
  uint8_t kind;
  uint8_t held; /* a connection waits un-accepted: the data plane was full (on_room) */
  uint16_t listener;
};

struct wproc {
  uv_loop_t *loop;
  struct ipc_channel ch;
  struct px_ctx *px;
  uint32_t gen;
  unsigned slot;
  unsigned nlisteners;
  int expect_sockets, got_sockets;
  struct wlisten *socks[MAX_SOCKETS];
  uv_check_t check;
  uv_timer_t status_timer, drain_timer, log_timer, beat_timer;
  struct alog alog; /* the access log (access_log), buffered */
  uv_signal_t sigterm;
  int least_loaded;
  /* what the master was told last */
  uint32_t last_seq, sent_seq, sent_active;
  uint64_t sent_accepted;
  struct ipc_out status_out[STATUS_OUTS];
  uint8_t status_busy[STATUS_OUTS];
  struct ipc_out bye_out;
  char bye_text[200]; /* BYE's text: must live until the frame is written */
  void *shm;
  size_t shm_len;
  uint8_t draining, orphan, leaving, stopping;
  unsigned handing; /* HANDOVER frames still being written */
  uint64_t handed;  /* connections given back */
  int exit_code;
};

static void stop_now(struct wproc *w, int code);
static void leave(struct wproc *w);

/* ---- status to the master ---- */

static void status_sent(struct ipc_out *out, int status) {
  struct wproc *w = out->req.data;
  w->status_busy[out - w->status_out] = 0;
}

/* Sends one STATUS with the current counters, if a frame buffer is free. 0 if sent. */
static int send_status(struct wproc *w) {
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

/* The acknowledgement must reach the master before anything that depends on it (a HANDOVER of
 * a connection that came by CONN, the BYE): a frame from the pool if one is free, else one
 * allocated for it. */
static void send_ack_now(struct wproc *w) {
  const struct px_counters *pc;
  unsigned char p[16];

  if (w->last_seq == w->sent_seq || w->orphan || w->ch.failed || send_status(w) == 0)
    return;
  pc = px_ctx_counters(w->px);
  ipc_put_u32(p, w->last_seq);
  ipc_put_u32(p + 4, pc->active);
  ipc_put_u64(p + 8, pc->accepted);
  if (ipc_send(&w->ch, IPC_STATUS, p, 16) == 0)
    w->sent_seq = w->last_seq;
}

static void status_timer_cb(uv_timer_t *t) {
  struct wproc *w = t->data;
  if (w->px != NULL && !w->stopping && !w->leaving)
    send_status(w);
}

/* After each loop iteration: one STATUS frame tells the master which connections were taken
 * (the ack), how many are open and how many in total. An ack goes in the iteration that took
 * the connections, before the poll that could read the first of their bytes: a worker killed
 * after that can only lose connections the master no longer counts on it, never a request it
 * had read (a 1 ms delay was tried and dropped for that). A batch of CONN frames taken in one
 * read is acknowledged by one frame. A change of load under handoff-least (the master picks by
 * it) goes at once too; counters that only feed the stats line wait up to STATUS_COALESCE_MS,
 * so a busy worker of the shared or reuseport strategies sends ten frames a second, not one
 * per iteration. A draining worker with nothing left leaves from here. */
static void check_cb(uv_check_t *h) {
  struct wproc *w = h->data;
  const struct px_counters *pc;
  int urgent;

  if (w->px == NULL || w->stopping || w->leaving)
    return;
  pc = px_ctx_counters(w->px);
  urgent = w->last_seq != w->sent_seq || (w->least_loaded && pc->active != w->sent_active);
  if (urgent && !w->orphan) {
    send_status(w);
  } else if ((pc->accepted != w->sent_accepted || pc->active != w->sent_active) && !w->orphan &&
             !uv_is_active((uv_handle_t *)&w->status_timer)) {
    uv_timer_start(&w->status_timer, status_timer_cb, STATUS_COALESCE_MS, 0);
  }
  if (w->draining && pc->active == 0 && w->handing == 0)
    leave(w);
}

/* ---- leaving ---- */

static void bye_sent(struct ipc_out *out, int status) {
  stop_now(out->req.data, 0);
}

/* Sends BYE(reason, text); stops once it is written (or at once if it cannot be). */
static void say_bye(struct wproc *w, int reason, const char *text, int code) {
  unsigned char r = (unsigned char)reason;

  snprintf(w->bye_text, sizeof(w->bye_text), "%s", text);
  w->exit_code = code;
  w->bye_out.req.data = w;
  if (w->orphan || w->ch.failed ||
      ipc_send_out(&w->ch, &w->bye_out, IPC_BYE, &r, 1, w->bye_text, (uint32_t)strlen(w->bye_text),
                   NULL, bye_sent) != 0)
    stop_now(w, code);
}

/* The fatal way out: the master learns why before we go. */
static void fail(struct wproc *w, const char *what) {
  LBP_ERROR("%s: leaving", what);
  if (w->leaving || w->stopping)
    return;
  w->leaving = 1;
  say_bye(w, IPC_BYE_FATAL, what, 2);
}

/* A drain is complete (or its deadline passed): acknowledge everything, say BYE, go. */
static void leave(struct wproc *w) {
  char text[IPC_SMALL];

  if (w->leaving || w->stopping)
    return;
  w->leaving = 1;
  uv_timer_stop(&w->drain_timer);
  send_ack_now(w); /* acks first: the master must not hand a connection we took elsewhere */
  snprintf(text, sizeof(text), "handed=%llu", (unsigned long long)w->handed);
  LBP_INFO("drained: %llu %s handed back", (unsigned long long)w->handed,
           w->handed == 1 ? "connection" : "connections");
  say_bye(w, IPC_BYE_DRAINED, text, 0);
}

static void close_walk_cb(uv_handle_t *h, void *arg) {
  if (!uv_is_closing(h))
    uv_close(h, NULL);
}

static void px_closed(void *arg) {
  struct wproc *w = arg;
  w->px = NULL;
  alog_close(&w->alog); /* after the last request the context ended was logged */
  /* Listener structs were malloc'ed; their close callbacks free them (close_sockets). */
  uv_walk(w->loop, close_walk_cb, NULL);
  signal(SIGTERM, SIG_IGN); /* closing our uv_signal_t restored the default: we are leaving */
}

static void socket_close_cb(uv_handle_t *h) {
  free(h->data);
}

/* Closes one listening socket copy (and forgets it). */
static void close_socket(struct wproc *w, struct wlisten *l) {
  for (int i = 0; i < w->got_sockets; i++)
    if (w->socks[i] == l) {
      w->socks[i] = NULL;
      if (!uv_is_closing((uv_handle_t *)&l->tcp))
        uv_close((uv_handle_t *)&l->tcp, socket_close_cb);
    }
}

static void close_sockets(struct wproc *w) {
  for (int i = 0; i < w->got_sockets; i++)
    if (w->socks[i] != NULL)
      uv_close((uv_handle_t *)&w->socks[i]->tcp, socket_close_cb);
  w->got_sockets = 0;
}

static void stop_now(struct wproc *w, int code) {
  if (w->stopping)
    return;
  w->stopping = 1;
  w->exit_code = code;
  close_sockets(w);
  if (!uv_is_closing((uv_handle_t *)&w->ch.pipe))
    ipc_channel_close(&w->ch, NULL);
  if (w->px != NULL) {
    px_ctx_close(w->px, px_closed, w);
  } else {
    alog_close(&w->alog);
    uv_walk(w->loop, close_walk_cb, NULL);
    signal(SIGTERM, SIG_IGN);
  }
}

/* ---- draining ---- */

struct handing {
  struct ipc_out out;
  struct wproc *w;
  uv_tcp_t *tcp;
  int rebalanced; /* shed while serving (the master asked), not given back by a drain */
  unsigned char bytes[];
};

static void handed_cb(struct ipc_out *out, int status) {
  struct handing *h = (struct handing *)out;
  struct wproc *w = h->w;

  w->handing--;
  if (status == 0) {
    w->handed++;
    if (w->shm != NULL)
      px_stat_add(
          &lbp_shm_worker(w->shm, w->slot)->c[h->rebalanced ? PX_ST_REBALANCED : PX_ST_HANDED_OVER],
          1);
  }
  px_client_handed_over(h->tcp); /* the fd has left (or the channel is gone): close ours */
  free(h);
}

/* px_ctx_drain's and px_ctx_shed's callback: the connection goes back to the master with what
 * we read of it. */
static int hand_back(void *arg, uv_tcp_t *tcp, unsigned listener, const char *bytes, size_t len) {
  struct wproc *w = arg;
  struct handing *h;
  unsigned char hdr[2];

  if (w->orphan || w->ch.failed || len > IPC_MAX_PAYLOAD - 2 ||
      (h = malloc(sizeof(*h) + len)) == NULL)
    return -1;
  /* If it came by CONN, the master still holds its copy until our ack: the ack goes first, or
   * the master could hand that copy to someone else while the connection lives on here. */
  send_ack_now(w);
  h->w = w;
  h->tcp = tcp;
  h->rebalanced = !w->draining;
  if (len)
    memcpy(h->bytes, bytes, len);
  ipc_put_u16(hdr, (uint16_t)listener);
  if (ipc_send_out(&w->ch, &h->out, IPC_HANDOVER, hdr, 2, h->bytes, (uint32_t)len,
                   (uv_stream_t *)tcp, handed_cb) != 0) {
    free(h);
    return -1;
  }
  w->handing++;
  return 0;
}

static void drain_deadline_cb(uv_timer_t *t) {
  struct wproc *w = t->data;
  unsigned left = w->px != NULL ? px_ctx_counters(w->px)->active : 0;

  LBP_WARN("drain deadline: closing %u %s still open", left,
           left == 1 ? "connection" : "connections");
  leave(w);
}

static void drain(struct wproc *w, uint64_t deadline_ms, int handover) {
  if (w->draining || w->stopping || w->leaving)
    return;
  w->draining = 1;
  close_sockets(w); /* our copies only: the master keeps the sockets */
  if (w->px == NULL) {
    leave(w);
    return;
  }
  px_ctx_drain(w->px, handover ? hand_back : NULL, w);
  uv_timer_start(&w->drain_timer, drain_deadline_cb, deadline_ms, 0);
}

/* The master is gone: serve what is in flight a little longer, then go. */
static void orphaned(struct wproc *w, const char *why) {
  if (w->stopping || w->leaving)
    return;
  LBP_WARN("lost the master (%s): draining for %d ms and exiting", why, ORPHAN_DRAIN_MS);
  w->orphan = 1;
  if (!uv_is_closing((uv_handle_t *)&w->ch.pipe))
    ipc_channel_close(&w->ch, NULL);
  w->draining = 0;
  drain(w, ORPHAN_DRAIN_MS, 0);
}

/* ---- sockets from the master ---- */

/* Takes the connection waiting on l and serves it. */
static void accept_one(struct wlisten *l) {
  struct wproc *w = l->w;
  struct px_accept a = {l->listener, l->kind == IPC_LISTEN_PRIVATE ? PX_CLIENT_PROXY_PROTOCOL : 0,
                        NULL, 0, NULL};
  uv_tcp_t *tcp = w->px != NULL ? px_client_new(w->px) : NULL;

  if (tcp == NULL) {
    /* Closing or out of memory. Left un-accepted, libuv would stop polling this socket for
     * good: take the connection and close it. */
    uv_tcp_t *sink = malloc(sizeof(*sink));
    if (sink == NULL || uv_tcp_init(w->loop, sink) != 0) {
      free(sink);
      fail(w, "out of memory accepting a connection");
      return;
    }
    uv_accept((uv_stream_t *)&l->tcp, (uv_stream_t *)sink);
    uv_close((uv_handle_t *)sink, (uv_close_cb)free);
    return;
  }
  if (uv_accept((uv_stream_t *)&l->tcp, (uv_stream_t *)tcp) != 0) {
    px_client_discard(tcp);
    return;
  }
  px_client_start(tcp, &a);
}

static void on_listen_conn(uv_stream_t *server, int status) {
  struct wlisten *l = server->data;
  struct wproc *w = l->w;

  if (status < 0) {
    /* EINVAL: the socket no longer listens (the master shut it for a graceful stop). libuv
     * would call us again at once, for ever: this copy is closed instead. */
    if (status == UV_EINVAL) {
      close_socket(w, l);
      return;
    }
    LBP_WARN("accept: %s", uv_strerror(status));
    return;
  }
  if (w->px != NULL && px_ctx_full(w->px)) {
    /* At limits.max_connections: leave it un-accepted. libuv keeps the one connection it took
     * and stops polling this socket (the kernel's backlog queues the others, or another worker
     * of a shared socket takes them) until on_room accepts it. */
    l->held = 1;
    return;
  }
  accept_one(l);
}

/* A client connection closed below max_connections: serve what the full data plane held. */
static void on_room(void *arg) {
  struct wproc *w = arg;

  for (int i = 0; i < w->got_sockets && !px_ctx_full(w->px); i++) {
    struct wlisten *l = w->socks[i];
    if (l != NULL && l->held && !uv_is_closing((uv_handle_t *)&l->tcp)) {
      l->held = 0;
      accept_one(l);
    }
  }
}

static void send_ready(struct wproc *w) {
  ipc_send(&w->ch, IPC_READY, NULL, 0);
}

static void take_socket(struct wproc *w, const char *p, uint32_t len) {
  struct wlisten *l;
  int rc;

  if (len < 3 || !w->ch.fd_here || w->px == NULL || w->got_sockets >= MAX_SOCKETS ||
      ipc_get_u16(p + 1) >= w->nlisteners) {
    fail(w, "bad listening socket from the master");
    return;
  }
  if (w->draining)
    return; /* too late for it: the channel closes the fd */
  if ((l = calloc(1, sizeof(*l))) == NULL || uv_tcp_init(w->loop, &l->tcp) != 0) {
    free(l);
    fail(w, "out of memory for a listening socket");
    return;
  }
  l->w = w;
  l->kind = (uint8_t)p[0];
  l->listener = ipc_get_u16(p + 1);
  l->tcp.data = l;
  w->socks[w->got_sockets++] = l;
  rc = ipc_channel_accept(&w->ch, (uv_stream_t *)&l->tcp);
  if (rc == 0)
    rc = uv_listen((uv_stream_t *)&l->tcp, 1024, on_listen_conn);
  if (rc != 0) {
    fail(w, "cannot listen on a socket from the master");
    return;
  }
  if (w->got_sockets == w->expect_sockets)
    send_ready(w);
}

/* ---- the generation ---- */

/* LBPROXY_TEST_CRASH=N[@G][:bye] (a test hook): the worker of slot N (of generation G only, if
 * given) exits with code 3 at start-up, before READY; with ":bye" it leaves the way a worker
 * that cannot go on does (BYE fatal). Returns 0 (no), 1 (exit) or 2 (bye). */
static int test_crash(unsigned slot, uint32_t gen) {
  const char *v = getenv("LBPROXY_TEST_CRASH"), *at;
  if (v == NULL || (unsigned)atoi(v) != slot + 1)
    return 0;
  at = strchr(v, '@');
  if (at != NULL && (uint32_t)atol(at + 1) != gen)
    return 0;
  return strstr(v, ":bye") != NULL ? 2 : 1;
}

/* Where a server's counters are: its block in the generation's shared memory. */
static int lookup_server(void *arg, size_t up, uint64_t id, struct px_server_slot *out) {
  struct wproc *w = arg;
  return lbp_shm_server_find(w->shm, (unsigned)up, id, w->slot, out);
}

struct config_frame {
  uint32_t gen, shm_len;
  unsigned slot, nsock, flags;
  const uint8_t *secret;
  const char *name, *bytes;
  size_t namelen, len;
};

static int parse_config_frame(const char *p, uint32_t len, struct config_frame *f) {
  size_t off = 4 + 2 + 1 + 1 + 4 + LBP_SECRET_LEN;

  if (len < off + 2)
    return -1;
  f->gen = ipc_get_u32(p);
  f->slot = ipc_get_u16(p + 4);
  f->nsock = (uint8_t)p[6];
  f->flags = (uint8_t)p[7];
  f->shm_len = ipc_get_u32(p + 8);
  f->secret = (const uint8_t *)p + 12;
  f->namelen = ipc_get_u16(p + off);
  off += 2;
  if (len < off + f->namelen)
    return -1;
  f->name = p + off;
  off += f->namelen;
  f->bytes = p + off;
  f->len = len - off;
  return 0;
}

/* The data plane made a server failing (passive health): the master tells every worker. */
static void on_failing(void *arg, const struct bal_server_state *st) {
  struct wproc *w = arg;
  unsigned char rec[SRVWIRE_STATE_LEN];

  srvwire_put_state(rec, st);
  ipc_send(&w->ch, IPC_FAILING, rec, sizeof(rec));
}

static void take_config(struct wproc *w, const char *p, uint32_t len) {
  struct config_frame f;
  struct lbp_config *cfg;
  struct cfg_error err;
  struct px_gen pg;
  char role[32], name[4096], *env;
  int fd, rc;

  if (w->px != NULL || parse_config_frame(p, len, &f) != 0 || f.namelen >= sizeof(name)) {
    fail(w, "bad config frame");
    return;
  }
  w->gen = f.gen;
  w->slot = f.slot;
  w->expect_sockets = (int)f.nsock;
  w->least_loaded = f.flags & 1;
  memcpy(name, f.name, f.namelen);
  name[f.namelen] = '\0';
  snprintf(role, sizeof(role), "worker %u", w->slot + 1);
  lbp_log_init(role, LBP_LOG_INFO);
  /* Parse only: the master checked everything; it sends the servers host names yield. */
  if (cfg_parse_ex(name, f.bytes, f.len, CFG_NO_RESOLVE, &cfg, &err) != 0) {
    LBP_ERROR("config: %s", err.msg);
    fail(w, "config does not parse");
    return;
  }
  lbp_log_set_level(getenv("LBPROXY_DEBUG") ? LBP_LOG_DEBUG : (enum lbp_log_level)cfg->log_level);
  w->nlisteners = (unsigned)cfg->nlisteners;
  env = getenv("LBPROXY_SHM_FD");
  fd = env != NULL ? atoi(env) : -1;
  /* The size the master laid out for this generation, never one computed here. */
  w->shm_len = f.shm_len;
  if (fd < 0 || lbp_shm_map(fd, w->shm_len, &w->shm) != 0 ||
      lbp_shm_check(w->shm, w->shm_len, (unsigned)cfg->nupstreams, w->slot) != 0) {
    cfg_free(cfg);
    fail(w, "cannot map the generation's shared memory");
    return;
  }
  close(fd);
  switch (test_crash(w->slot, w->gen)) {
  case 1:
    LBP_ERROR("LBPROXY_TEST_CRASH: crashing at start-up as asked");
    exit(3);
  case 2:
    cfg_free(cfg);
    fail(w, "test hook: a fatal error at start-up");
    return;
  default:
    break;
  }
  memset(&pg, 0, sizeof(pg));
  pg.id = w->gen;
  pg.slot = w->slot;
  pg.cfg = cfg;
  pg.rr_counters = lbp_shm_rr(w->shm);
  pg.stats = lbp_shm_worker(w->shm, w->slot);
  pg.server_lookup = lookup_server;
  pg.lookup_arg = w;
  memcpy(pg.secret, f.secret, sizeof(pg.secret));
  if (strcmp(cfg->access_log, "off") != 0 && alog_enable(&w->alog) != 0) {
    cfg_free(cfg);
    fail(w, "out of memory for the access log");
    return;
  }
  if ((rc = px_ctx_new(w->loop, &pg, &w->px)) != 0) {
    LBP_ERROR("data plane: %s", uv_strerror(rc));
    fail(w, "cannot build the data plane");
    return;
  }
  px_ctx_on_failing(w->px, on_failing, w);
  px_ctx_on_room(w->px, on_room, w);
  if (w->alog.enabled)
    px_ctx_on_request(w->px, alog_request, &w->alog);
  if (w->expect_sockets == 0)
    send_ready(w);
}

static void refuse(struct wproc *w, uint32_t seq, int reason) {
  unsigned char p[5];
  ipc_put_u32(p, seq);
  p[4] = (unsigned char)reason;
  ipc_send(&w->ch, IPC_REFUSE, p, 5);
}

static void take_conn(struct wproc *w, const char *payload, uint32_t len) {
  uint32_t seq = len >= 4 ? ipc_get_u32(payload) : 0;
  unsigned listener = len >= 6 ? ipc_get_u16(payload + 4) : ~0u;
  unsigned flags = len >= 7 ? (uint8_t)payload[6] : 0;
  size_t off = 7, npeer = 0;
  struct sockaddr_storage peer;
  uv_tcp_t *tcp;

  if (len >= 7 && (flags & IPC_CONN_PEER))
    off += (npeer = ipc_get_peer(payload + 7, len - 7, &peer));
  struct px_accept a = {listener,
                        PX_CLIENT_FD_SHARED | ((flags & IPC_CONN_HANDED) ? PX_CLIENT_HANDED : 0),
                        len > off ? payload + off : NULL, len > off ? len - off : 0,
                        npeer > 0 ? (const struct sockaddr *)&peer : NULL};

  if (!w->ch.fd_here) {
    /* The kernel could not give us the fd (we are at our fd limit). The master still has
     * it: it goes to another worker, and we keep serving what we have. */
    LBP_WARN("a connection's fd did not arrive (out of fds?): refused back to the master");
    refuse(w, seq, IPC_REFUSE_NOFD);
    return;
  }
  if (w->px == NULL || w->draining || w->stopping || w->leaving || listener >= w->nlisteners) {
    refuse(w, seq, IPC_REFUSE_STOPPING); /* the channel closes the fd we did not take */
    return;
  }
  if ((tcp = px_client_new(w->px)) == NULL) {
    refuse(w, seq, IPC_REFUSE_FULL);
    return;
  }
  if (ipc_channel_accept(&w->ch, (uv_stream_t *)tcp) != 0) {
    px_client_discard(tcp);
    refuse(w, seq, IPC_REFUSE_NOFD);
    return;
  }
  w->last_seq = seq;
  px_client_start(tcp, &a); /* the master keeps its copy until our ack */
}

/* A log file the master opened: the error log (which 0) becomes our stderr; the access log
 * (which 1) is where our access log lines go from now on. */
static void take_logfd(struct wproc *w, const char *payload, uint32_t len) {
  unsigned which = len >= 1 ? (uint8_t)payload[0] : 0;
  uv_pipe_t *p = malloc(sizeof(*p));
  uv_os_fd_t fd;
  int copy;

  if (p == NULL || uv_pipe_init(w->loop, p, 0) != 0) {
    free(p);
    return;
  }
  if (ipc_channel_accept(&w->ch, (uv_stream_t *)p) == 0 && uv_fileno((uv_handle_t *)p, &fd) == 0) {
    if (which == IPC_LOGFD_ERROR && dup2(fd, STDERR_FILENO) >= 0)
      LBP_INFO("error log reopened");
    if (which == IPC_LOGFD_ACCESS && w->alog.enabled &&
        (copy = fcntl(fd, F_DUPFD_CLOEXEC, 3)) >= 0) {
      if (w->alog.fd >= 0)
        LBP_INFO("access log reopened");
      alog_set_fd(&w->alog, copy);
    }
  }
  uv_close((uv_handle_t *)p, (uv_close_cb)free);
}

/* SERVERS: an upstream's servers, as the master resolved its host names. */
static void take_servers(struct wproc *w, const char *p, uint32_t len) {
  struct px_server_spec *specs;
  size_t off = 4, k;
  unsigned n;
  int rc;

  if (w->px == NULL || len < 4)
    return;
  k = ipc_get_u16(p);
  n = ipc_get_u16(p + 2);
  if (n > BAL_MAX_SERVERS || (specs = calloc(n + 1, sizeof(*specs))) == NULL) {
    LBP_ERROR("upstream %zu: cannot take a list of %u servers", k, n);
    return;
  }
  for (unsigned i = 0; i < n; i++) {
    size_t used = srvwire_get_spec(p + off, len - off, &specs[i]);
    if (used == 0) {
      LBP_ERROR("upstream %zu: a malformed server list", k);
      free(specs);
      return;
    }
    off += used;
  }
  if ((rc = px_ctx_set_servers(w->px, k, specs, n)) != 0)
    LBP_ERROR("upstream %zu: cannot take its %u servers: %s", k, n, uv_strerror(rc));
  free(specs);
}

/* STATES: server states the master pushes (health checks, admin, passive failures). */
static void take_states(struct wproc *w, const char *p, uint32_t len) {
  struct bal_server_state st[64];
  size_t n = len / SRVWIRE_STATE_LEN, done = 0;

  if (w->px == NULL)
    return;
  while (done < n) {
    size_t batch = n - done < 64 ? n - done : 64;
    for (size_t i = 0; i < batch; i++)
      srvwire_get_state(p + (done + i) * SRVWIRE_STATE_LEN, &st[i]);
    px_ctx_apply_states(w->px, st, batch);
    done += batch;
  }
}

static void on_frame(struct ipc_channel *ch, uint8_t type, const char *payload, uint32_t len) {
  struct wproc *w = ch->data;

  switch (type) {
  case IPC_CONN:
    take_conn(w, payload, len);
    break;
  case IPC_CONFIG:
    take_config(w, payload, len);
    break;
  case IPC_LISTEN:
    take_socket(w, payload, len);
    break;
  case IPC_DRAIN:
    if (len >= 5)
      drain(w, ipc_get_u32(payload), payload[4] != 0);
    break;
  case IPC_LOGFD:
    take_logfd(w, payload, len);
    break;
  case IPC_SERVERS:
    take_servers(w, payload, len);
    break;
  case IPC_STATES:
    take_states(w, payload, len);
    break;
  case IPC_STOP:
    stop_now(w, 0);
    break;
  case IPC_SHED:
    /* Rebalancing: give some busy connections back (not while leaving in any way). */
    if (len >= 2 && w->px != NULL && !w->draining && !w->stopping && !w->leaving && !w->orphan)
      px_ctx_shed(w->px, ipc_get_u16(payload), hand_back, w);
    break;
  default:
    LBP_WARN("unexpected %s frame from the master", ipc_type_name(type));
    break;
  }
}

static void on_channel_error(struct ipc_channel *ch, int err) {
  struct wproc *w = ch->data;

  if (w->stopping)
    return;
  if (w->leaving) {
    stop_now(w, w->exit_code);
    return;
  }
  orphaned(w, uv_strerror(err));
}

static void sigterm_cb(uv_signal_t *h, int signum) {
  struct wproc *w = h->data;
  const char *mpid = getenv("LBPROXY_MASTER_PID");

  /* PR_SET_PDEATHSIG sends SIGTERM when the master dies: that is an orphan, not a stop. */
  if (mpid != NULL && (long)getppid() != atol(mpid))
    orphaned(w, "SIGTERM after the master died");
  else
    stop_now(w, 0);
}

/* The master coordinates: a signal meant for it (a terminal's process group, a careless kill)
 * must not take a worker down. */
static void ignore_signals(void) {
  static const int ignored[] = {SIGPIPE,   SIGINT,  SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2,  SIGALRM,
                                SIGVTALRM, SIGPROF, SIGIO,   SIGPWR, SIGXFSZ, SIGSTKFLT};
  for (size_t i = 0; i < sizeof(ignored) / sizeof(ignored[0]); i++)
    signal(ignored[i], SIG_IGN);
}

static void log_timer_cb(uv_timer_t *t) {
  lbp_log_flush(0);
}

/* The loop is alive: the master sends rebalanced connections only to a worker whose beat is
 * fresh (a stopped or wedged worker serves no requests, so it would look least busy). */
static void beat_timer_cb(uv_timer_t *t) {
  struct wproc *w = t->data;

  if (w->shm != NULL)
    atomic_store_explicit(&lbp_shm_worker(w->shm, w->slot)->beat_ms, uv_now(t->loop),
                          memory_order_relaxed);
}

int worker_run(int channel_fd) {
  struct wproc w;
  unsigned char hello[4];
  const char *mpid = getenv("LBPROXY_MASTER_PID");

#ifdef __linux__
  /* If the master dies without telling us, the kernel does. */
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (mpid != NULL && (long)getppid() != atol(mpid))
    return 1;
#endif
  lbp_log_init("worker", LBP_LOG_INFO);
  ignore_signals();
  px_relay_splice_prepare(); /* tunnels (Upgrade, TCP mode) splice */
  memset(&w, 0, sizeof(w));
  w.loop = uv_default_loop();
  if (ipc_channel_init(w.loop, &w.ch, on_frame, on_channel_error, &w) != 0 ||
      ipc_channel_open(&w.ch, channel_fd) != 0 || ipc_channel_start(&w.ch) != 0) {
    LBP_ERROR("cannot open the channel to the master (fd %d)", channel_fd);
    return 1;
  }
  uv_check_init(w.loop, &w.check);
  w.check.data = &w;
  uv_check_start(&w.check, check_cb);
  uv_timer_init(w.loop, &w.status_timer);
  uv_timer_init(w.loop, &w.drain_timer);
  w.status_timer.data = w.drain_timer.data = &w;
  alog_init(&w.alog, w.loop);
  /* Repeated error log lines are summarized once their window is over. */
  uv_timer_init(w.loop, &w.log_timer);
  uv_timer_start(&w.log_timer, log_timer_cb, 1000, 1000);
  uv_unref((uv_handle_t *)&w.log_timer);
  uv_timer_init(w.loop, &w.beat_timer);
  w.beat_timer.data = &w;
  uv_timer_start(&w.beat_timer, beat_timer_cb, PX_BEAT_MS, PX_BEAT_MS);
  uv_unref((uv_handle_t *)&w.beat_timer);
  uv_signal_init(w.loop, &w.sigterm);
  w.sigterm.data = &w;
  uv_signal_start(&w.sigterm, sigterm_cb, SIGTERM);
  ipc_put_u32(hello, (uint32_t)getpid());
  ipc_send(&w.ch, IPC_HELLO, hello, 4);
  uv_run(w.loop, UV_RUN_DEFAULT);
  lbp_log_flush(1);
  if (w.shm != NULL)
    lbp_shm_unmap(w.shm, w.shm_len);
  uv_loop_close(w.loop);
  return w.exit_code;
}
