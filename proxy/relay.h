/* A byte relay between two borrowed streams: backpressure, half-close, resets, timeouts. */
#ifndef LBP_RELAY_H
#define LBP_RELAY_H

#include "io.h"

#include <stdint.h>
#include <uv.h>

/* Why a relay ended (px_relay.done's `why`). */
enum px_relay_end {
  PX_RELAY_DONE,         /* both directions ended: each EOF was passed on as a shutdown */
  PX_RELAY_RESET,        /* side `side` failed (reset, error): reset the other one */
  PX_RELAY_IDLE,         /* no byte moved either way for idle_ms */
  PX_RELAY_SEND_TIMEOUT, /* a write to side `side` waited send_ms: its peer stopped reading */
  PX_RELAY_LINGER,       /* one side ended and the other (`side`) did not within linger_ms */
  PX_RELAY_STOPPED,      /* px_relay_stop */
};

struct px_relay;
typedef void (*px_relay_done_cb)(struct px_relay *r, enum px_relay_end why, int side);

/* One direction: from dir[i].from (side i) to the other side. Private. */
struct px_relay_dir {
  struct px_relay *r;
  uv_stream_t *from, *to;
  struct px_buf *b; /* NULL while empty: an idle relay holds no buffer */
  size_t len;
  uint64_t write_since; /* loop time the pending write started */
  uv_write_t wreq;
  uv_shutdown_t sreq;
  int from_fd, to_fd; /* for splice(2); -1 when this direction copies */
  uint8_t reading, writing, eof, shut, shut_done;
};

/* A relay. The streams are borrowed: the owner keeps them, closes them, and frees the relay.
 * Fields are private but for `data`; the struct is public so owners can embed it. */
struct px_relay {
  void *data; /* the owner's */
  struct px_relay_dir dir[2];
  struct px_bufpool *pool;
  uv_timer_t timer;    /* idle, send and linger deadlines */
  void *saved_data[2]; /* the streams' own `data` while the relay runs */
  uint64_t idle_ms, send_ms, linger_ms;
  uint64_t last_io, linger_since;
  int linger_side;           /* -1: none */
  uint64_t spliced;          /* bytes moved by splice(2), never entering user space */
  uint32_t splice_fallbacks; /* times a spliced chunk had to wait in a buffer for its reader */
  uint8_t splice;            /* splice when both streams are TCP sockets (px_relay_set_splice) */
  px_relay_done_cb done;
  uint8_t state;
  int8_t end_side;
  uint8_t end_why;
};

/* Sets a relay up (no handle is created yet): buffers from `pool`; idle_ms (0 = none) ends it
 * when no byte moves either way; send_ms (0 = none) ends it when a write waits that long;
 * linger_ms > 0 with linger_side = i: once side i ended (its EOF was passed on), the other side
 * has linger_ms to end too (a master relaying a finished response does not wait forever for the
 * client's FIN). */
void px_relay_init(struct px_relay *r, struct px_bufpool *pool, uint64_t idle_ms, uint64_t send_ms,
                   int linger_side, uint64_t linger_ms);

/* Between init and start: splice(2) on (the default) or off. With it on and both streams TCP
 * sockets, bytes go socket -> pipe -> socket in the kernel (one pipe per process, always empty
 * between calls); a chunk the destination cannot take at once is read out of the pipe into a
 * buffer and written the usual way, so backpressure, deadlines and ends behave alike. */
void px_relay_set_splice(struct px_relay *r, int on);

/* Makes the process's splice pipe now (else the first relay does), so a process's descriptors
 * are all open once it started: fd counts stay flat. Returns 0, or -1 when relays will copy. */
int px_relay_splice_prepare(void);

/* Starts relaying between s0 and s1. pre[1] (pre may be NULL, an entry empty) is written to s1
 * first, as if read from s0 (a PROXY header, request bytes already read), pre[0] to s0
 * (response bytes already read); they are the owner's, not copied, and must stay valid until
 * `done` (a write of them still pending then is cancelled when the streams close, unread). Data
 * read on one side is written to the other; a side is not read while a write to the other side
 * is pending. EOF on one side becomes a shutdown of the other once its writes are done. While
 * the relay runs it owns both streams' `data` field and read callbacks.
 *
 * `done` runs exactly once, from the loop, after the relay stopped reading, put the streams'
 * `data` back and closed its timer. The owner then closes the streams (with a reset of the
 * other side for PX_RELAY_RESET). Writes may still be pending then: they complete (cancelled)
 * when the owner closes the streams, so the relay's memory must stay valid until both streams'
 * close callbacks ran. A failure to start comes the same way (PX_RELAY_RESET). */
void px_relay_start(struct px_relay *r, uv_loop_t *loop, uv_stream_t *s0, uv_stream_t *s1,
                    const uv_buf_t pre[2], px_relay_done_cb done);

/* Stops a running relay now: no more reads or callbacks into the streams' owners, `data` given
 * back at once (so the owner may close the streams right after); `done` follows with
 * PX_RELAY_STOPPED unless the relay had already ended. */
void px_relay_stop(struct px_relay *r);

#endif
