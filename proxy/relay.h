/* A byte relay between two TCP streams, with backpressure, half-close and reset propagation. */
#ifndef LBP_RELAY_H
#define LBP_RELAY_H

#include <stddef.h>
#include <uv.h>

struct px_relay;
/* Runs once, after both streams are closed; the relay is freed right after it returns. */
typedef void (*px_relay_done_cb)(struct px_relay *r, void *arg);

/* A new relay whose two uv_tcp_t are initialized: accept into side 0, connect side 1 (or
 * accept into both). `bufsize` bytes per direction. NULL on failure. */
struct px_relay *px_relay_new(uv_loop_t *loop, size_t bufsize, px_relay_done_cb done, void *arg);

/* The stream of side 0 or 1. */
uv_tcp_t *px_relay_tcp(struct px_relay *r, int side);

/* Starts relaying in both directions; `prefix` (may be NULL; the caller keeps it valid until
 * `done`) is written to side 1 first (a PROXY header and any bytes already read). Data read from
 * one side is written to the other; a side is not read while the other's write is pending. EOF on
 * one side becomes a shutdown of the other once its writes are done; when both directions ended,
 * both close. A read error (reset) closes the other side with a reset. 0, or a negative UV error
 * (then close it with px_relay_close). */
int px_relay_start(struct px_relay *r, const void *prefix, size_t prefixlen);

/* Once side `side` has ended (its EOF was passed on), the other side has `ms` to end too;
 * then both are closed. (A master relaying a finished response does not wait forever for a
 * client's FIN.) Call before px_relay_start. */
void px_relay_set_linger(struct px_relay *r, int side, uint64_t ms);

/* Closes both sides now (with RST when `reset`); `done` follows. */
void px_relay_close(struct px_relay *r, int reset);

#endif
