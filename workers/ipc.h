/* IPC between the master and its workers: framed messages over a libuv IPC pipe, fds attached. */
#ifndef LBP_IPC_H
#define LBP_IPC_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* Frame: u32 payload length (big-endian) | u8 type | payload. See ipc.c for the protocol. */
#define IPC_HDR_LEN     5
#define IPC_MAX_PAYLOAD (16u << 20)
#define IPC_FD_FLAG     0x80 /* a type with this bit set carries exactly one fd */

enum ipc_type {
  IPC_HELLO = 1,                /* worker -> master: online; payload u32 pid */
  IPC_CONFIG = 2,               /* master -> worker: u32 generation, u16 slot, name\0, bytes */
  IPC_READY = 3,                /* worker -> master: u16 private port (0 if none) */
  IPC_CONN = 4 | IPC_FD_FLAG,   /* master -> worker: u32 seq; fd = accepted client socket */
  IPC_STATUS = 5,               /* worker -> master: u32 acked seq, u32 active, u64 accepted */
  IPC_REFUSE = 6,               /* worker -> master: u32 seq of a conn it will not serve */
  IPC_LISTEN = 7 | IPC_FD_FLAG, /* master -> worker: u8 kind; fd = a listening socket */
  IPC_STOP = 8,                 /* master -> worker: stop now */
};

/* Returns a short name for logs ("conn", "status", ...). */
const char *ipc_type_name(uint8_t type);

/* Writes the 5-byte header for a frame of `type` with a `len`-byte payload. */
void ipc_header(unsigned char hdr[IPC_HDR_LEN], uint8_t type, uint32_t len);

/* Called for each complete frame. Returns 0 to go on, or a negative code to stop decoding
 * (ipc_decode then returns that code). `payload` is valid only during the call. */
typedef int (*ipc_frame_cb)(void *arg, uint8_t type, const char *payload, uint32_t len);

/* Reassembles frames from a byte stream split anywhere. Complete frames inside one chunk are
 * delivered in place; only a partial frame is copied. */
struct ipc_decoder {
  char *buf; /* partial frame bytes */
  size_t len, cap;
};

void ipc_decoder_init(struct ipc_decoder *d);
void ipc_decoder_free(struct ipc_decoder *d);
/* Feeds `n` bytes. Returns 0, UV_EPROTO on a frame longer than IPC_MAX_PAYLOAD, UV_ENOMEM, or
 * the first negative value a callback returned. */
int ipc_decode(struct ipc_decoder *d, const char *data, size_t n, ipc_frame_cb cb, void *arg);

/* A channel: one end of the master<->worker socketpair, as a libuv IPC pipe. */
struct ipc_channel;
typedef void (*ipc_channel_frame_cb)(struct ipc_channel *ch, uint8_t type, const char *payload,
                                     uint32_t len);
/* Called once when the channel fails or the peer closes it (err is UV_EOF or an error). */
typedef void (*ipc_channel_error_cb)(struct ipc_channel *ch, int err);

struct ipc_channel {
  uv_pipe_t pipe; /* ipc = 1 */
  struct ipc_decoder dec;
  ipc_channel_frame_cb on_frame;
  ipc_channel_error_cb on_error;
  void *data;   /* owner's pointer */
  int fd_taken; /* set by ipc_channel_accept during on_frame */
  int failed;
};

/* Initializes a channel around `loop`; then either uv_spawn uses &ch->pipe as a
 * UV_CREATE_PIPE stdio (master), or ipc_channel_open adopts an inherited fd (worker). */
int ipc_channel_init(uv_loop_t *loop, struct ipc_channel *ch, ipc_channel_frame_cb on_frame,
                     ipc_channel_error_cb on_error, void *data);
int ipc_channel_open(struct ipc_channel *ch, int fd);
/* Starts reading frames. on_frame runs for each; a frame whose type has IPC_FD_FLAG must take
 * its fd with ipc_channel_accept (otherwise the channel closes the fd itself). */
int ipc_channel_start(struct ipc_channel *ch);
/* Moves the fd that came with the current frame into `handle` (an initialized uv_tcp_t or
 * uv_pipe_t). Only valid inside on_frame for a frame with IPC_FD_FLAG. */
int ipc_channel_accept(struct ipc_channel *ch, uv_stream_t *handle);
/* Closes the pipe; `cb` runs when the handle is closed (the channel memory may go then). */
void ipc_channel_close(struct ipc_channel *ch, uv_close_cb cb);

/* Caller-owned memory for one outgoing frame of at most IPC_SMALL payload bytes. Used for the
 * per-connection hot path (IPC_CONN) so that sending never allocates. */
#define IPC_SMALL 24
struct ipc_out;
typedef void (*ipc_sent_cb)(struct ipc_out *out, int status);
struct ipc_out {
  uv_write_t req;
  ipc_sent_cb cb;
  unsigned char frame[IPC_HDR_LEN + IPC_SMALL];
};

/* Sends a small frame using caller memory `out` (must stay valid until cb). If `send_handle`
 * is not NULL it travels with the frame (type must have IPC_FD_FLAG); the caller keeps its own
 * copy of the fd open. cb(out, status) runs when the bytes left (status 0) or failed.
 * Returns 0 or a negative UV error (then cb never runs). */
int ipc_send_small(struct ipc_channel *ch, struct ipc_out *out, uint8_t type, const void *payload,
                   uint32_t len, uv_stream_t *send_handle, ipc_sent_cb cb);

/* Sends a frame of any size without a handle; copies the payload, so the caller's buffer may
 * go at once. Returns 0 or a negative UV error. */
int ipc_send(struct ipc_channel *ch, uint8_t type, const void *payload, uint32_t len);

/* Sends a small frame with a handle (type must have IPC_FD_FLAG), allocating the request;
 * for rare control messages such as IPC_LISTEN. 0 or a negative UV error. */
int ipc_send_handle(struct ipc_channel *ch, uint8_t type, const void *payload, uint32_t len,
                    uv_stream_t *send_handle);

/* Big-endian helpers for payloads. */
static inline void ipc_put_u16(unsigned char *p, uint16_t v) {
  p[0] = (unsigned char)(v >> 8);
  p[1] = (unsigned char)v;
}
static inline void ipc_put_u32(unsigned char *p, uint32_t v) {
  p[0] = (unsigned char)(v >> 24);
  p[1] = (unsigned char)(v >> 16);
  p[2] = (unsigned char)(v >> 8);
  p[3] = (unsigned char)v;
}
static inline void ipc_put_u64(unsigned char *p, uint64_t v) {
  ipc_put_u32(p, (uint32_t)(v >> 32));
  ipc_put_u32(p + 4, (uint32_t)v);
}
static inline uint16_t ipc_get_u16(const char *s) {
  const unsigned char *p = (const unsigned char *)s;
  return (uint16_t)((p[0] << 8) | p[1]);
}
static inline uint32_t ipc_get_u32(const char *s) {
  const unsigned char *p = (const unsigned char *)s;
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline uint64_t ipc_get_u64(const char *s) {
  return ((uint64_t)ipc_get_u32(s) << 32) | ipc_get_u32(s + 4);
}

#endif
