/* The data plane's I/O helpers: one buffer pool for every read buffer, and the write helper. */
#ifndef LBP_PX_IO_H
#define LBP_PX_IO_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* A fixed-size I/O buffer from a pool. */
struct px_buf {
  struct px_buf *next; /* on the free list */
  char data[];
};

/* Buffers of one size with a bounded free list. Every buffer of the data plane comes from one
 * pool (clients' requests, upstream responses, relays), so memory freed by one use serves the
 * next whatever it is, and an idle connection holds none. Not thread-safe: one per loop. */
struct px_bufpool {
  size_t size; /* bytes of data per buffer */
  struct px_buf *free;
  unsigned nfree;
  unsigned max_free; /* kept on the free list at most; more are freed */
};

void px_bufpool_init(struct px_bufpool *p, size_t size, unsigned max_free);
/* Frees the buffers on the free list (those in use are the users' to put back). */
void px_bufpool_clear(struct px_bufpool *p);
/* A buffer of p->size bytes, or NULL when out of memory. */
struct px_buf *px_buf_get(struct px_bufpool *p);
/* Gives a buffer back (NULL is ignored). */
void px_buf_put(struct px_bufpool *p, struct px_buf *b);

/* Writes bufs to s: first a direct writev (uv_try_write); what does not fit goes to uv_write
 * with `req` and `cb` (bufs[] may be adjusted in place; the bytes must stay valid until cb).
 * Returns 1 if everything was written now, 0 if `cb` will run later, or a negative UV error
 * (then nothing is pending). */
int px_write(uv_stream_t *s, uv_write_t *req, uv_buf_t *bufs, unsigned n, uv_write_cb cb);

/* Sum of the lengths of bufs. */
size_t px_iov_len(const uv_buf_t *bufs, unsigned n);

/* Looks at a connected socket without reading: 0 if nothing is pending (the peer is quiet),
 * UV_EOF if the peer closed it (a FIN is waiting), UV_EPROTO if bytes are waiting (a server
 * that talks out of turn), or the socket's error (UV_ECONNRESET...). One non-blocking
 * recv(MSG_PEEK). */
int px_peek_closed(const uv_stream_t *s);

#endif
