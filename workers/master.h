/* The master process: worker slots, supervision, and the dispatch strategies' shared state. */
#ifndef LBP_MASTER_H
#define LBP_MASTER_H

#include "config.h"
#include "ipc.h"

#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <uv.h>

#define LBP_MAX_WORKERS 256

/* A connection the master accepted and is handing to a worker (handoff strategies). Its fd
 * stays open here until the worker acknowledges it, so it can be handed again elsewhere. */
struct mconn {
  uv_tcp_t tcp;
  struct ipc_out out;
  struct mconn *next; /* in a slot's un-acked FIFO, the pending queue, or the free list */
  struct master *m;
  struct slot *slot; /* the worker it was last handed to */
  uint32_t seq;
  uint8_t sending; /* the frame carrying it is still being written */
  uint8_t acked;   /* the worker took it: close once the send completes */
  uint8_t refused; /* the worker refused it: hand it on once the send completes */
};

struct mconn_fifo {
  struct mconn *head, *tail;
  unsigned len;
};

enum slot_state {
  SLOT_EMPTY,    /* no process (not started yet, or exited and waiting to restart) */
  SLOT_STARTING, /* spawned, waiting for HELLO */
  SLOT_ONLINE,   /* HELLO received, CONFIG sent, waiting for READY */
  SLOT_READY,    /* serving */
  SLOT_STOPPING, /* asked to stop */
};

/* One worker position. It outlives the processes that fill it: a restarted worker takes the
 * same slot, with the same listening sockets (reuseport socket, private port). */
struct slot {
  struct master *m;
  unsigned id; /* 0-based; logs say "worker id+1" */
  enum slot_state state;
  uv_process_t proc;
  struct ipc_channel ch;
  uint8_t proc_open, ch_open; /* handles not yet closed */
  uint8_t exited;             /* the process is gone (exit_cb ran) */
  pid_t pid;
  uv_timer_t restart;
  uint64_t starts;
  /* listening sockets the strategy gives this slot's worker (fd owned by the master) */
  uv_tcp_t *listen_sock;
  uint16_t private_port;              /* from READY */
  struct sockaddr_storage private_sa; /* proxy: where the master connects to reach it */
  /* handoff */
  uint32_t next_seq;
  uint32_t acked_seq; /* highest sequence number the worker took (from STATUS) */
  struct mconn_fifo unacked;
  uint64_t handed;
  /* from the worker's STATUS */
  uint64_t accepted;
  uint32_t active;
};

/* Kinds of listening socket carried by IPC_LISTEN (payload u8). */
enum listen_kind {
  LISTEN_PUBLIC = 0,  /* serve HTTP on it directly (shared, reuseport) */
  LISTEN_PRIVATE = 1, /* a private port: every connection starts with a PROXY v2 header */
};

struct dispatch_ops;

struct master {
  uv_loop_t *loop;
  struct lbp_config *cfg;
  char *cfg_bytes;
  size_t cfg_len;
  const char *cfg_path;
  uint32_t generation;
  char exe[4096];
  const struct dispatch_ops *dispatch;
  uv_tcp_t listener; /* the public socket (every strategy binds it; not all accept on it) */
  char listen_addr[80];
  struct slot *slots;
  unsigned nslots;
  unsigned rr;       /* round-robin position */
  uint8_t announced; /* the ready line was printed */
  uint8_t stopping;
  uint8_t accept_paused;     /* a connection waits in the listener for a worker with room */
  struct mconn_fifo pending; /* handed back (refused, worker died), waiting for a worker */
  struct mconn *free_mconns;
  unsigned nmconns; /* mconn structs not yet freed */
  uv_signal_t sigint, sigterm;
  uv_timer_t stats_timer, kill_timer;
  int shm_fd;
  void *shm;
  size_t shm_len;
  int exit_code;
};

/* A dispatch strategy, as seen by the master. */
struct dispatch_ops {
  const char *name;
  int reuseport; /* the public socket joins an SO_REUSEPORT group */
  /* After the public socket is bound: set up per-slot sockets, start accepting. 0 or error. */
  int (*start)(struct master *m);
  /* Strategies where the master accepts: can a worker take a connection now, and take one
   * (uv_accept from m->listener and hand it on). NULL where workers accept themselves. */
  int (*can_take)(struct master *m);
  void (*take)(struct master *m);
  /* A worker said HELLO: which listening sockets go to it (at most max). Returns how many. */
  int (*slot_listeners)(struct master *m, struct slot *s, uv_tcp_t **socks, uint8_t *kinds,
                        int max);
  /* A worker became ready, or acknowledged connections: it may take more. */
  void (*slot_free)(struct master *m, struct slot *s);
  /* A worker is gone: whatever it had not acknowledged must go elsewhere. */
  void (*slot_down)(struct master *m, struct slot *s);
  /* A worker refused connection `seq`. */
  void (*refused)(struct master *m, struct slot *s, uint32_t seq);
  /* Stop accepting (shutdown). */
  void (*stop)(struct master *m);
};

extern const struct dispatch_ops dispatch_handoff;
extern const struct dispatch_ops dispatch_handoff_least;
extern const struct dispatch_ops dispatch_proxy;
extern const struct dispatch_ops dispatch_shared;
extern const struct dispatch_ops dispatch_reuseport;

/* The strategy for a config value, or NULL if this build does not have it. */
const struct dispatch_ops *dispatch_find(enum cfg_dispatch d);

/* Runs the master until SIGINT/SIGTERM. Returns the process exit code. */
int master_run(const char *cfg_path);

/* Runs a worker on the channel fd inherited from the master. Returns the exit code. */
int worker_run(int channel_fd);

/* Slot helpers for dispatch strategies (master.c). */
int master_slot_serving(const struct slot *s);
void master_log_stats(struct master *m);

#endif
