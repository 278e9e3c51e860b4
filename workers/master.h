/* The master process's objects: listening sockets, generations, worker records, slots, events. */
#ifndef LBP_MASTER_H
#define LBP_MASTER_H

/*
 * Who owns what (see docs/ARCHITECTURE.md, "Generations"):
 *
 * - A listening socket (struct lsock) belongs to the master's registry and outlives
 *   generations: a reload that keeps an address keeps its socket open. Generations hold
 *   references; a socket no generation references is retired (its backlog accepted and handed
 *   on, then closed).
 * - A generation owns one validated config and what is derived from it: resolved addresses,
 *   its shared memory (laid out for that config), the dispatch strategy and its private state.
 *   The master holds the current one, a starting one during a reload, and draining ones; each
 *   worker record holds a reference to its own.
 * - A slot is a place in the pool (supervision state, restart backoff). A worker record is
 *   one process: its channel, its generation, its slot. A slot may hold a draining worker of
 *   an old generation and a worker of the new one at once.
 */

#include "balancer.h"
#include "config.h"
#include "ipc.h"
#include "proxy.h"

#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <uv.h>

#define LBP_MAX_WORKERS   256
#define LBP_MAX_LISTENERS 64
#define LBP_SECRET_LEN    16

struct master;
struct generation;
struct worker;
struct dispatch_ops;
struct totals;
struct admin;

/* ---- listening sockets (lsock.c) ---- */

enum lsock_kind {
  LSOCK_PUBLIC,  /* a configured listener's address (always in an SO_REUSEPORT group) */
  LSOCK_MEMBER,  /* reuseport: an extra member of a public socket's group, for one slot */
  LSOCK_PRIVATE, /* proxy: a slot's private 127.0.0.1 port for one listener */
};

struct lsock {
  uv_tcp_t tcp;   /* never uv_listen'ed in the master: it only carries the fd (LISTEN frames) */
  uv_poll_t poll; /* the master accepts on it when nobody else does */
  struct master *m;
  enum lsock_kind kind;
  struct cfg_addr addr; /* public: the configured address (the key across reloads) */
  char name[80];        /* the bound address, "host:port" */
  struct lsock *group;  /* member, private: the public socket it belongs to */
  unsigned slot;        /* member, private */
  unsigned index;       /* public: its place in the listener list (tells port-0 ones apart) */
  unsigned refs;        /* generations using it (starting, current, draining) */
  unsigned pollers;     /* ready, non-draining workers accepting on it */
  uint8_t polling;      /* master: uv_poll_start'ed */
  uint8_t retiring;     /* no generation uses it: accept what is left, then close */
  uint8_t inherited;    /* came from the previous master (binary upgrade) */
  uint8_t shut;         /* stopped listening (graceful stop) */
  uint8_t gone;         /* its handles are closed; the record waits for its holders */
  unsigned holds;       /* connections (mconn.ls) and group members that point at it */
  uint64_t accepted;    /* connections the master accepted on it */
  struct lsock *next;
};

/* Finds or creates the public socket for `a`, listener `index` of its config (bound once; later
 * calls return the same socket with one more reference). Refuses an address another process
 * already listens on. */
int lsock_public(struct master *m, const struct cfg_addr *a, unsigned index, struct lsock **out);
/* Finds or creates the reuseport member of `pub`'s group for `slot`. */
int lsock_member(struct master *m, struct lsock *pub, unsigned slot, struct lsock **out);
/* Finds or creates slot `slot`'s private port for `pub`: 127.0.0.1 on `port` (0: any). */
int lsock_private(struct master *m, struct lsock *pub, unsigned slot, uint16_t port,
                  struct lsock **out);
/* Drops one reference; a socket with none left is retired (see lsock.c). */
void lsock_unref(struct lsock *ls);
/* Keeps the record (not the socket) alive while something points at it. */
void lsock_hold(struct lsock *ls);
void lsock_release(struct lsock *ls);
/* Graceful stop: every socket stops listening (for every process holding it). */
void lsock_shut_all(struct master *m);
/* Removes any reuseport steering program this master attached. */
void lsock_unsteer(struct master *m);
/* Starts or stops the master's own accepting on every socket, by the rule in lsock.c. */
void lsock_update_polling(struct master *m);
/* Closes every socket no generation references (the master is leaving; the others close with
 * their last generation). */
void lsock_close_all(struct master *m);
/* Describes every socket for a new master ("fd:kind:slot:address;...") and lists their fds.
 * Returns the count. */
int lsock_export(struct master *m, int *fds, int max, char *desc, size_t cap);
/* Adopts the sockets a previous master passed (LBPROXY_INHERIT); they are matched later by
 * lsock_public/member/private instead of binding. Unmatched ones are closed by
 * lsock_drop_unused. 0 or a negative UV error. */
int lsock_inherit(struct master *m, const char *desc);
void lsock_drop_unused(struct master *m);

/* ---- connections the master holds (handoff.c) ---- */

/* A client connection in the master: accepted, or handed back by a draining worker. Its fd
 * stays open here until a worker acknowledges it, so it can be handed again elsewhere. */
struct mconn {
  uv_tcp_t tcp; /* only when has_tcp: a libuv handle around fd (mconn_stream) */
  int fd;       /* the client connection */
  uint8_t has_tcp;
  uint8_t fd_loose; /* has_tcp, but libuv refused the fd: closing the handle leaves it open */
  struct ipc_out out;
  struct master *m;
  struct lsock *ls; /* where it came from (gives its listener in any generation) */
  struct worker *w; /* handed to */
  char *bytes;      /* request bytes already read by a previous worker, or NULL */
  uint32_t nbytes;
  uint32_t seq;
  uint8_t sending; /* the frame carrying it is still being written */
  uint8_t acked;   /* the worker took it: close once the send completes */
  uint8_t refused; /* the worker refused it: hand it on once the send completes */
  uint8_t handed;  /* it came back from a draining worker (between requests) */
  uint8_t npeer;   /* the client's address as CONN carries it (ipc_put_peer), 0: unknown */
  uint16_t to;     /* rebalancing: the slot + 1 it should go to if that worker has room */
  unsigned char peer[IPC_PEER_MAX];
  uint64_t t_sent; /* uv_now when its CONN went out */
  struct mconn *next;
};

struct mconn_fifo {
  struct mconn *head, *tail;
  unsigned len;
};

/* The handoff engine's per-worker state (embedded in struct worker). */
struct hpeer {
  uint32_t next_seq;
  uint32_t acked_seq;
  struct mconn_fifo unacked;
  uint64_t handed;
  uint64_t skip_until; /* refused for lack of fds: not chosen again before this (ms) */
  struct mconn *staged[IPC_BATCH_MAX]; /* CONN frames laid out, sent together (batch end) */
  size_t staged_len[IPC_BATCH_MAX];
  unsigned nstaged;
  struct worker *next_staged; /* in master.staged_workers */
  uint8_t on_staged_list;
};

/* A new mconn around an accepted fd (taken: closed on failure), or with fd -1 one that
 * mconn_accept fills. NULL when out of memory. */
struct mconn *mconn_new(struct master *m, struct lsock *ls, int fd);
/* Takes the fd that came with the channel's current frame into c (made with fd -1). 0 or a
 * negative UV error. */
int mconn_accept(struct mconn *c, struct ipc_channel *ch);
/* A libuv stream around c's fd, for the paths that need one (a send that had to queue, an
 * upgrade's forward); made on first use. NULL when libuv refuses the fd. */
uv_stream_t *mconn_stream(struct mconn *c);
/* Closes and frees (once libuv is done with it). */
void mconn_close(struct mconn *c);
/* Hands c to a worker of the current generation chosen by `pick`, or queues it. */
void handoff_give(struct master *m, struct mconn *c);
/* Can a connection be placed now (a worker with room)? */
int handoff_has_room(struct master *m);
/* Frame handlers (supervise.c calls them). */
void handoff_acked(struct master *m, struct worker *w);
void handoff_refused(struct master *m, struct worker *w, uint32_t seq, int reason);
/* A worker is gone or draining: what it had not acknowledged goes elsewhere. */
void handoff_worker_gone(struct master *m, struct worker *w);
/* Places queued connections on workers with room, then lets accepting resume. */
void handoff_flush(struct master *m);
/* Around a batch of accepts: between begin and end, CONN frames of fresh connections are
 * staged per worker and leave together, several fds in one sendmsg. */
void handoff_batch_begin(struct master *m);
void handoff_batch_end(struct master *m);
/* Closes every queued connection (stopping). */
void handoff_close_pending(struct master *m);
/* Frees the connection structs kept for reuse (the loop has ended). */
void handoff_free(struct master *m);
/* Round-robin over the current generation's serving workers with room. */
struct worker *handoff_pick_rr(struct master *m);

/* ---- request-level rebalancing (rebalance.c) ---- */

/* Starts the master's rebalancing tick (it only acts under handoff-least with `rebalance`). */
void rebalance_init(struct master *m);
uv_handle_t *rebalance_handle(struct master *m);
/* 1 if w serves and was asked to shed connections: its HANDOVERs are rebalancing, not a bug,
 * and are never refused (that would close the client's connection). */
int rebalance_takes_from(struct master *m, const struct worker *w);
/* Where a connection w shed goes: the slot + 1 of the least busy worker, counted as moved; 0
 * when there is none (the strategy's pick decides). */
unsigned rebalance_target(struct master *m, const struct worker *from);

/* ---- generations (generation.c) ---- */

enum gen_state {
  GEN_STARTING, /* its workers are starting; dispatch still goes to the current one */
  GEN_CURRENT,  /* serving */
  GEN_DRAINING, /* replaced: its workers finish and hand back, then leave */
};

struct generation {
  struct master *m;
  uint32_t id;
  unsigned refs;
  enum gen_state state;
  struct lbp_config *cfg;
  char *bytes; /* the exact file bytes validated */
  size_t len;
  int shm_fd;
  int access_fd; /* its access log (a file, or a copy of stdout), -1 when off */
  void *shm;
  size_t shm_len;
  const struct dispatch_ops *dispatch;
  void *dpriv;                                /* the strategy's own state for this generation */
  struct lsock *listeners[LBP_MAX_LISTENERS]; /* public socket of each cfg listener */
  unsigned nslots;
  struct worker *by_slot[LBP_MAX_WORKERS];   /* its worker in each slot, or NULL */
  uint8_t secret[LBP_SECRET_LEN];            /* proves the master to workers on private ports */
  uint64_t t_created, t_current, t_draining; /* uv_now */
  struct gen_upstream *ups;                  /* each upstream's servers (servers.c) */
  struct dnsname **names;                    /* the host names its servers use, referenced */
  unsigned nnames;
  struct generation *next;
};

/* Builds a generation from a loaded config (taken) and its bytes (taken): shared memory,
 * address table, public sockets, the strategy's sockets. On failure nothing is left behind
 * (the sockets of the running generation stay as they are) and *why says what failed. */
int gen_build(struct master *m, struct lbp_config *cfg, char *bytes, size_t len,
              struct generation **out, char *why, size_t whycap);
void gen_ref(struct generation *g);
void gen_unref(struct generation *g);
/* The index in g's config of the listener `ls` belongs to, or -1 if g has no such listener. */
int gen_listener_index(const struct generation *g, const struct lsock *ls);
/* Finds g's listener whose bound address is `name` ("host:port"); -1 if none. */
int gen_listener_by_name(const struct generation *g, const char *name);
/* SIGUSR1: opens g's access log file again (a rotated file is left to its rotator). 0 (also
 * when it is off or stdout: nothing to reopen), or a negative UV error (the old fd stays). */
int gen_reopen_access_log(struct generation *g);

/* ---- upstream servers (servers.c: registry, lists, pushes; dns.c: names; check.c) ---- */

/*
 * The master owns the truth about every upstream server and pushes it to the workers:
 * - a server is keyed by (upstream name, id) and shared by every generation listing it, so
 *   its state (health, admin state, runtime weight, passive failures) survives a reload;
 * - a generation's list for an upstream is its literal servers plus one server per address
 *   each host name resolved to (dns.c re-resolves; a change is pushed as a SERVERS frame);
 * - states go out as STATES frames whenever they change, and whole to a starting worker;
 * - workers report passive failures (FAILING); the master spreads them to all.
 */

struct dnsname;
struct ucheck;

/* What an operator or the checks decided about an address a host name stopped giving: kept
 * (the last SERVER_MEMO of them) so that it comes back in the same state (a DNS answer that
 * briefly leaves an address out must not undo a drain). */
#define SERVER_MEMO 256
struct server_memo {
  char upstream[64];
  uint64_t id;
  uint16_t weight;
  uint8_t health, admin;
};

struct userver {
  struct master *m;
  struct userver *next;
  char *upstream; /* the upstream's name: (upstream, id) is the key */
  uint64_t id;
  struct sockaddr_storage addr;
  char name[64];  /* "host:port" as configured, or "ip:port" of a host name's address */
  char host[256]; /* the host name it was resolved from ("" for a literal server) */
  uint16_t port;
  unsigned refs;              /* generation lists holding it */
  struct bal_server_state st; /* what every worker applies */
  struct bal_check chk;       /* active checks: consecutive results against rise/fall */
  struct ucheck *probe;       /* active checks running for it, or NULL */
  char detail[128];           /* the last check's outcome, or why it changed state */
  uint64_t checks, checks_failed, last_check_ms, last_change_ms; /* uv_now */
  uint64_t passive_fails;                                        /* FAILING reports */
  uint8_t fresh; /* created since the last push: its state goes out after its SERVERS */
};

/* A server as one generation lists it: the configured weight and backup are per config. */
struct gserver {
  struct userver *u;
  uint16_t weight;
  uint8_t backup;
};

struct gen_upstream {
  struct gserver *s;
  unsigned n;
  uint8_t has_names; /* some server is a host name: its workers get SERVERS frames */
};

/* Builds g's server lists (and references its host names). 0 or UV_ENOMEM. */
int servers_gen_init(struct generation *g);
/* The record of server `id` of upstream `upstream`, or NULL. */
struct userver *servers_find(const struct master *m, const char *upstream, uint64_t id);
void servers_gen_free(struct generation *g);
/* Every host name of g has been answered (or given up on at start): its lists are complete. */
int servers_settled(const struct generation *g);
/* A host name's addresses changed: rebuild the lists using it, push them. */
void servers_name_changed(struct master *m, struct dnsname *d);
/* After CONFIG: the lists of g's upstreams that use names, and every state, to worker w. */
void servers_send_worker(struct worker *w);
/* A worker reported a passive failure (FAILING payload). */
void servers_on_failing(struct worker *w, const char *payload, uint32_t len);
/* u's state changed: tell every worker, log `why`. */
void servers_state_changed(struct userver *u, const char *why);
/* The newest config of upstream `name` (starting, else current, else any live generation). */
const struct cfg_upstream *servers_upstream_conf(const struct master *m, const char *name);
/* Generations changed (built, current, freed): checks and resolution intervals follow. */
void servers_sync(struct master *m);
/* Stopping: closes every timer and check; memory goes as handles close. */
void servers_close_all(struct master *m);

/* Active checks (check.c): start or stop u's according to its upstream's newest config. */
void check_sync(struct userver *u);
void check_stop(struct userver *u);

/* Host names (dns.c). */
struct dnsname {
  struct master *m;
  struct dnsname *next;
  char host[256];
  unsigned refs; /* generations naming it */
  uv_getaddrinfo_t req;
  uv_timer_t timer;               /* the first answer's deadline, then the next lookup */
  struct sockaddr_storage *addrs; /* the last answer, sorted, port 0 */
  unsigned naddrs;
  int err;              /* the last lookup's error, 0 */
  uint64_t interval_ms; /* re-resolve this often (the smallest resolve_interval using it) */
  uint64_t lookups, t_answer;
  uint8_t answered; /* a lookup finished (or the start-up deadline passed) */
  uint8_t busy;     /* a lookup is in flight */
  uint8_t closing;  /* unreferenced or stopping: freed once nothing is in flight */
  uint8_t timer_open;
};

/* Finds or creates (and starts resolving) a host name; references it. NULL: out of memory. */
struct dnsname *dns_ref(struct master *m, const char *host);
void dns_unref(struct dnsname *d);
/* Re-resolution intervals follow the live generations' configs. */
void dns_sync(struct master *m);

/* ---- workers and slots (supervise.c) ---- */

enum worker_state {
  W_STARTING, /* spawned, no HELLO yet */
  W_ONLINE,   /* HELLO received, CONFIG sent, waiting for READY */
  W_READY,    /* serving */
  W_DRAINING, /* DRAIN sent: finishing, handing back */
  W_STOPPING, /* STOP sent (fast stop) */
};

struct slot {
  struct master *m;
  unsigned id; /* 0-based; logs say "worker id+1" */
  uv_timer_t restart;
  uint8_t restart_pending;
  uint8_t errored;
  uint64_t delay_ms;  /* next restart delay */
  uint64_t exits[64]; /* recent unplanned exit times (uv_now), a ring */
  unsigned nexits, exits_pos;
  uint64_t restarts;    /* workers spawned in it (the first, reloads, restarts) */
  uint64_t crashes;     /* its workers that exited without being asked to */
  char last_cause[160]; /* why its last worker ended, for logs and the final error */
};

struct worker {
  struct master *m;
  struct generation *gen; /* referenced */
  struct slot *slot;
  enum worker_state state;
  uv_process_t proc;
  struct ipc_channel ch;
  uint8_t proc_open, ch_open, exited;
  uint8_t planned; /* it said BYE, or we asked it to leave: not a crash */
  uint8_t fatal;   /* it said BYE FATAL: replace it at once */
  pid_t pid;
  uint64_t t_start, t_ready, t_drain; /* uv_now */
  uint64_t drain_limit_ms;            /* the deadline it was given */
  struct hpeer hp;
  uint64_t accepted; /* from STATUS */
  uint32_t active;
  uint64_t rb_last, rb_tick; /* rebalance.c: requests counted at the last tick, and in it */
  uint64_t rb_asked;         /* uv_now when it was last asked to shed connections, 0: never */
  uint64_t rb_moved_at_ask;  /* its rebalanced counter then (did the ask move anything?) */
  uint8_t rb_known, rb_over; /* rb_last is set; ticks in a row over its share */
  struct lsock *socks[2 * LBP_MAX_LISTENERS]; /* the listening sockets it accepts on */
  uint8_t nsocks;
  uint8_t counted_pollers; /* its sockets count it in lsock.pollers */
  char how[160];           /* how it ended ("code=3", "signal=9 (Killed)", "spawn ... failed") */
  struct worker *next;
};

/* Spawns a worker of generation g in slot s. 0, or a negative error (spawn failed: counted as
 * an exit of the slot, with backoff). */
int worker_spawn(struct master *m, struct generation *g, struct slot *s);
/* Serving (READY, channel up, not draining). */
int worker_serving(const struct worker *w);
/* Sends the worker the listening sockets its strategy gives its slot (LISTEN frames), once. */
void worker_give_sockets(struct worker *w);
/* Sends DRAIN; the worker leaves when done. `handover`: give idle connections back. */
void worker_drain(struct worker *w, uint64_t deadline_ms, int handover);
/* Sends STOP (or SIGTERM if it cannot hear it). */
void worker_stop(struct worker *w);
/* The worker of generation g in slot `slot`, or NULL. */
struct worker *worker_of(struct master *m, const struct generation *g, unsigned slot);
/* Starts (or restarts) every empty slot of the current generation. */
void slots_fill(struct master *m);

/* ---- lifecycle events (events.c) ---- */

enum event_type {
  EV_FORK,
  EV_ONLINE,
  EV_READY,
  EV_DISCONNECT,
  EV_EXIT,
  EV_ERRORED,
  EV_DRAIN,
  EV_BYE,
  EV_RELOAD,
  EV_RELOAD_FAILED,
  EV_GENERATION,
  EV_UPGRADE,
  EV_UPGRADE_FAILED,
  EV_SERVER,    /* an upstream server changed state (checks, passive failures, admin) */
  EV_DNS,       /* a server host name resolved to another set of addresses */
  EV_REBALANCE, /* a worker over its share of requests was asked to give connections away */
};

struct event {
  uint64_t time_ms; /* wall clock, ms since the epoch */
  enum event_type type;
  int slot; /* 1-based; 0 = the master itself */
  long pid;
  uint32_t generation;
  char detail[200];
};

#define EVENTS_MAX 256

/* Records an event (the last EVENTS_MAX are kept) and logs it as one line. */
void event_add(struct master *m, enum event_type type, int slot, long pid, uint32_t gen,
               const char *fmt, ...) __attribute__((format(printf, 6, 7)));
const char *event_name(enum event_type t);

/* ---- the master (master.c) ---- */

struct master {
  uv_loop_t *loop;
  const char *cfg_path;
  char exe[4096];              /* the executable on disk (binary upgrade re-reads it) */
  struct generation *cur;      /* serving */
  struct generation *starting; /* a reload in progress */
  struct generation *gens;     /* every live generation */
  uint32_t next_gen_id;
  struct worker *workers; /* every worker record */
  struct slot slots[LBP_MAX_WORKERS];
  unsigned nslots_made; /* slots[0..n) have their timers initialized */
  struct lsock *lsocks;
  int steered;               /* a reuseport steering program is attached */
  struct mconn_fifo pending; /* held connections waiting for a worker */
  struct userver *servers;   /* every upstream server some generation lists */
  struct server_memo *memo;  /* [SERVER_MEMO] states of addresses a name no longer gives */
  unsigned memo_next;
  struct dnsname *names; /* every server host name some generation uses */
  uint64_t rng;          /* check jitter */
  struct mconn *free_mconns;
  unsigned nmconns;
  unsigned rr;
  uint8_t announced;    /* the ready line was printed */
  uint8_t stopping;     /* 1: fast stop, 2: graceful (QUIT) */
  uint8_t reload_again; /* a HUP came during a reload */
  uint8_t retired;      /* handing over to a new master (binary upgrade): leave when drained */
  struct event events[EVENTS_MAX];
  unsigned nevents, events_pos;
  uv_signal_t sig[7];
  uv_timer_t stats_timer, kill_timer, start_timer, accept_retry, retire_timer, watchdog;
  struct {
    uv_timer_t timer;
    uint32_t seen_gen;           /* the generation its counts are of */
    unsigned target;             /* slot + 1 of the least busy worker of the last move, 0: none */
    unsigned cooldown;           /* ticks to wait before judging again */
    unsigned backoff;            /* the wait after the next ask: doubles while asks move nothing */
    uint64_t asked;              /* SHED requests sent */
    uint64_t moved;              /* connections sent to the target */
  } rb;                          /* rebalance.c */
  uv_timer_t pending_timer;      /* handoff_flush again while connections wait (handoff.c) */
  struct worker *staged_workers; /* workers with CONN frames staged (hpeer.nstaged > 0) */
  uint8_t batching;              /* an accept batch runs: fresh connections' CONNs are staged */
  char *pidfile;                 /* path, while we hold it */
  void *upgrade;                 /* upgrade.c's state */
  int pidfile_fd;
  /* Proves the master to its workers on private ports (PROXY v2 TLV). One per master, not per
   * generation: a relay made under one generation may reach a worker of the next while they
   * overlap; a binary upgrade passes it on (LBPROXY_SECRET). */
  uint8_t secret[LBP_SECRET_LEN];
  uint8_t have_secret;
  struct totals *totals; /* counters of generations already gone (totals.c) */
  struct admin *admin;   /* the admin listener (admin.c), NULL when off */
  uint64_t t_start_ms;   /* wall clock at start, for uptime */
  int exit_code;
  char fatal[256]; /* why the master gave up (exit non-zero) */
};

int master_run(const char *cfg_path);
/* SIGHUP: re-read the config; a new generation replaces the current one once ready. */
void master_reload(struct master *m);
/* Starts a new generation from the current one's config bytes (no file read): a failed
 * upgrade's rollback, when our own workers already drained away. */
void master_restart_current(struct master *m, const char *why);
/* The generation just became current, or a worker became ready or left: re-evaluate who
 * accepts on what and whether the start-up is complete. */
void master_workers_changed(struct master *m);
/* Every current slot is errored: give up with m->fatal. */
void master_give_up(struct master *m);
/* The master is done with the reload it started (a worker of the starting generation failed). */
void master_abort_reload(struct master *m, const char *why);
/* A worker left for good (its record is about to go): generation bookkeeping. */
void master_worker_gone(struct master *m, struct worker *w);
/* Stopping or handed over, and no worker left (every record freed): end the loop. */
void master_maybe_finish(struct master *m);
/* A handed-back connection to place (from a draining worker or an old master). */
void master_handover(struct master *m, struct mconn *c);
void master_log_stats(struct master *m);
/* SIGUSR1: reopens the error log here and in every worker, and every generation's access log
 * (sent to its workers). */
void master_reopen_logs(struct master *m);
/* Sends a worker a log file (IPC LOGFD; `which` is enum ipc_logfd_which): a copy of `fd`. */
void master_send_logfd(struct master *m, struct worker *w, unsigned which, int fd);

/* ---- pid file (pidfile.c) ---- */

/* Creates the pid file with our pid, written atomically (temp + rename) and locked while we run.
 * Fails with UV_EBUSY (and *other = that pid) if another live lbproxy holds it. Returns the
 * locked fd (>= 0) or a negative UV error. */
int pidfile_create(const char *path, long *other);
/* Removes the file if it still names us; closes the lock. */
void pidfile_remove(const char *path, int fd);
/* Is an lbproxy running with this pid file (is it locked)? 1 with *pid, else 0. */
int pidfile_running(const char *path, long *pid);
/* Reads the pid in `path`. 0 or a negative UV error. */
int pidfile_read(const char *path, long *pid);

/* ---- binary upgrade (upgrade.c) ---- */

/* SIGUSR2: start a new master from the executable on disk. */
void upgrade_start(struct master *m);
/* In a new master: the previous master's channel (LBPROXY_UPGRADE_FD), if any. 0 or error. */
int upgrade_child_init(struct master *m);
/* In a new master: every worker is ready; tell the old master. */
void upgrade_child_ready(struct master *m);
/* Old master: is an upgrade waiting for the new master, or handing over to it? */
int upgrade_active(const struct master *m);
/* Old master: a draining worker gave back a connection; 1 if it went to the new master. */
int upgrade_forward(struct master *m, struct mconn *c);
/* Closes upgrade state (stopping). */
void upgrade_close(struct master *m);
/* Worker env/args helper shared by spawns: the master's environ plus `extra` (NULL-ended). */
char **master_env(const char *const *extra);

#endif
