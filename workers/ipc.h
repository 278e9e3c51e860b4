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

/* Payload layouts are in the numbered comment at the top of ipc.c. */
enum ipc_type {
  IPC_HELLO = 1,                   /* worker -> master: online */
  IPC_CONFIG = 2,                  /* master -> worker: its generation */
  IPC_READY = 3,                   /* worker -> master: serving */
  IPC_CONN = 4 | IPC_FD_FLAG,      /* master -> worker: a client connection */
  IPC_STATUS = 5,                  /* worker -> master: acks, load, counters */
  IPC_REFUSE = 6,                  /* worker -> master: a connection it will not serve */
  IPC_LISTEN = 7 | IPC_FD_FLAG,    /* master -> worker: a listening socket */
  IPC_STOP = 8,                    /* master -> worker: stop now */
  IPC_DRAIN = 9,                   /* master -> worker: finish, hand back, leave */
  IPC_BYE = 10,                    /* worker -> master: leaving on purpose */
  IPC_HANDOVER = 11 | IPC_FD_FLAG, /* worker -> master: an idle client connection back */
  IPC_LOGFD = 12 | IPC_FD_FLAG,    /* master -> worker: an error or access log file */
  IPC_UP_READY = 13,               /* new master -> old master: ready to take over */
  IPC_UP_CONN = 14 | IPC_FD_FLAG,  /* old master -> new master: a handed-over connection */
  IPC_UP_SECRET = 15,              /* old master -> new master: the master's secret, first */
  IPC_SHED = 16,                   /* master -> worker: give some busy connections back */
  IPC_SERVERS = 20,                /* master -> worker: an upstream's servers (host names) */
  IPC_STATES = 21,                 /* master -> worker: server states (health, admin, ...) */
  IPC_FAILING = 22,                /* worker -> master: passive health made a server failing */
};

/* Kinds of listening socket carried by IPC_LISTEN. */
enum ipc_listen_kind {
  IPC_LISTEN_PUBLIC = 0,  /* serve clients on it directly (shared, reuseport) */
  IPC_LISTEN_PRIVATE = 1, /* a private port: every connection starts with the master's PROXY v2 */
};

/* Flags of IPC_CONN. */
enum ipc_conn_flags {
  IPC_CONN_HANDED = 1, /* it comes back from a draining worker: between requests, not new */
  IPC_CONN_PEER = 2,   /* the client's address follows the flags (ipc_put_peer): the worker
                          need not ask the socket */
};

/* The client address of a CONN: u8 family (4 or 6) | u16 port | 4 or 16 address bytes. */
#define IPC_PEER_MAX 19
/* Writes sa (AF_INET or AF_INET6) at p: its length, or 0 for another family. */
size_t ipc_put_peer(unsigned char *p, const struct sockaddr *sa);
/* Reads an address at p (at most len bytes) into *ss: the bytes it took, or 0 if malformed. */
size_t ipc_get_peer(const char *p, size_t len, struct sockaddr_storage *ss);

/* Which log an IPC_LOGFD carries. */
enum ipc_logfd_which {
  IPC_LOGFD_ERROR = 0,  /* the error log: the worker makes it its stderr */
  IPC_LOGFD_ACCESS = 1, /* the access log: the worker writes its access log lines there */
};

/* Why a worker refused a connection (IPC_REFUSE). */
enum ipc_refuse_reason {
  IPC_REFUSE_STOPPING = 0, /* draining or stopping: give it to another worker */
  IPC_REFUSE_NOFD = 1,     /* the fd did not arrive (the worker is out of fds): skip it a while */
  IPC_REFUSE_FULL = 2,     /* at limits.max_connections */
};

/* Why a worker said BYE. */
enum ipc_bye_reason {
  IPC_BYE_DRAINED = 0, /* drained (reload, graceful stop): a planned exit */
  IPC_BYE_FATAL = 1,   /* cannot go on (text says why): replace it at once */
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
  int fd_here;  /* during on_frame of an fd frame: 0 if its fd did not arrive (EMFILE) */
  int eof_seen; /* libuv said EOF and nothing was read since (see ch_false_eof) */
  int failed;
};

/* Initializes a channel around `loop`; then either uv_spawn uses &ch->pipe as a
 * UV_CREATE_PIPE stdio (master), or ipc_channel_open adopts an inherited fd (worker). */
int ipc_channel_init(uv_loop_t *loop, struct ipc_channel *ch, ipc_channel_frame_cb on_frame,
                     ipc_channel_error_cb on_error, void *data);
int ipc_channel_open(struct ipc_channel *ch, int fd);
/* Starts reading frames. on_frame runs for each; a frame whose type has IPC_FD_FLAG must take
 * its fd with ipc_channel_accept (otherwise the channel closes the fd itself). The kernel drops
 * an fd it cannot install (the receiver is at its fd limit): the frame is still delivered, with
 * ch->fd_here == 0, so the receiver can refuse what it could not take instead of failing. */
int ipc_channel_start(struct ipc_channel *ch);
/* Moves the fd that came with the current frame into `handle` (an initialized uv_tcp_t or
 * uv_pipe_t; a uv_pipe_t takes any kind of fd, a regular file too). Only valid inside on_frame
 * for a frame with IPC_FD_FLAG; UV_EBADF when its fd did not arrive. */
int ipc_channel_accept(struct ipc_channel *ch, uv_stream_t *handle);
/* Closes the pipe; `cb` runs when the handle is closed (the channel memory may go then). */
void ipc_channel_close(struct ipc_channel *ch, uv_close_cb cb);

/* Caller-owned memory for one outgoing frame: at most IPC_SMALL payload bytes in place, plus
 * optional `extra` bytes the caller keeps valid until the callback. Used for the per-connection
 * hot path (IPC_CONN) so that sending never allocates. */
#define IPC_SMALL 32
struct ipc_out;
typedef void (*ipc_sent_cb)(struct ipc_out *out, int status);
struct ipc_out {
  uv_write_t req;
  ipc_sent_cb cb;
  unsigned char frame[IPC_HDR_LEN + IPC_SMALL];
};

/* Sends a frame using caller memory `out` (valid until cb): `len` payload bytes copied into
 * `out`, then `extralen` bytes of `extra` referenced (not copied). If `send_handle` is not NULL
 * it travels with the frame (type must have IPC_FD_FLAG); the caller keeps its own copy of the
 * fd open. cb(out, status) runs when the bytes left (status 0) or failed. Returns 0 or a
 * negative UV error (then cb never runs). */
int ipc_send_out(struct ipc_channel *ch, struct ipc_out *out, uint8_t type, const void *payload,
                 uint32_t len, const void *extra, uint32_t extralen, uv_stream_t *send_handle,
                 ipc_sent_cb cb);

/* The hot path's send of a frame carrying a raw fd (no libuv handle around it): when nothing
 * is queued on the channel, one sendmsg(2) from here, so the fd never needs a uv_tcp_t (whose
 * set-up and close cost the master two system calls per connection). Returns 0 when the whole
 * frame left now (cb never runs); 1 when part of it left, fd included, and the rest is queued
 * (cb runs when it has left or failed); UV_EAGAIN when nothing was sent (bytes are queued on the
 * channel, or its socket buffer is full): use ipc_send_out with a handle; another negative UV
 * error when the channel failed. The caller keeps its copy of the fd either way. */
int ipc_send_fd_now(struct ipc_channel *ch, struct ipc_out *out, uint8_t type, const void *payload,
                    uint32_t len, const void *extra, uint32_t extralen, int fd, ipc_sent_cb cb);

/* Batches of fd frames (the master's handoff under load): each frame laid out in its own `out`
 * (ipc_frame), then at most IPC_BATCH_MAX of them, with their fds, leave in one sendmsg(2) when
 * nothing is queued on the channel (the receiver's libuv takes up to 64 fds per read). Returns
 * the bytes written, >= 1 (all of them when it equals the frames' total), or UV_EAGAIN when
 * nothing was sent (bytes queued on the channel, or its buffer full), or another negative UV
 * error. Every fd left with the first byte: what was not written is finished, in order and
 * without fds, with ipc_write_rest. */
#define IPC_BATCH_MAX 32
size_t ipc_frame(struct ipc_out *out, uint8_t type, const void *payload, uint32_t len);
ssize_t ipc_send_frames_now(struct ipc_channel *ch, struct ipc_out *const *outs, const size_t *lens,
                            const int *fds, unsigned n);
/* Queues bytes [from, len) of a frame ipc_frame laid out in `out` (its fd already went). 0 or a
 * negative UV error (then the channel is unusable: half a frame may be on the wire). */
int ipc_write_rest(struct ipc_channel *ch, struct ipc_out *out, size_t from, size_t len,
                   ipc_sent_cb cb);

/* Sends the frame ipc_frame laid out in `out` (len bytes) through libuv, with a handle. As
 * ipc_send_out. */
int ipc_send_laid_out(struct ipc_channel *ch, struct ipc_out *out, size_t len,
                      uv_stream_t *send_handle, ipc_sent_cb cb);

/* ipc_send_out without extra bytes. */
int ipc_send_small(struct ipc_channel *ch, struct ipc_out *out, uint8_t type, const void *payload,
                   uint32_t len, uv_stream_t *send_handle, ipc_sent_cb cb);

/* Sends a frame of any size without a handle; copies the payload, so the caller's buffer may
 * go at once. Returns 0 or a negative UV error. */
int ipc_send(struct ipc_channel *ch, uint8_t type, const void *payload, uint32_t len);

/* Sends a frame with a handle (type must have IPC_FD_FLAG), copying the payload into an
 * allocated request; for rare messages (IPC_LISTEN, IPC_HANDOVER). The caller keeps its copy
 * of the fd. 0 or a negative UV error. */
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
