/* The data plane's I/O helpers: the buffer pool, the write helper, the peek. */
#include "io.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>

void px_bufpool_init(struct px_bufpool *p, size_t size, unsigned max_free) {
  p->size = size;
  p->free = NULL;
  p->nfree = 0;
  p->max_free = max_free;
}

void px_bufpool_clear(struct px_bufpool *p) {
  while (p->free != NULL) {
    struct px_buf *b = p->free;
    p->free = b->next;
    free(b);
  }
  p->nfree = 0;
}

struct px_buf *px_buf_get(struct px_bufpool *p) {
  struct px_buf *b = p->free;

  if (b != NULL) {
    p->free = b->next;
    p->nfree--;
    return b;
  }
  return malloc(sizeof(*b) + p->size);
}

void px_buf_put(struct px_bufpool *p, struct px_buf *b) {
  if (b == NULL)
    return;
  if (p->nfree >= p->max_free) {
    free(b);
    return;
  }
  b->next = p->free;
  p->free = b;
  p->nfree++;
}

int px_write(uv_stream_t *s, uv_write_t *req, uv_buf_t *bufs, unsigned n, uv_write_cb cb) {
  int r = uv_try_write(s, bufs, n);
  size_t done;
  unsigned i = 0;

  if (r == UV_EAGAIN)
    r = 0;
  else if (r < 0)
    return r;
  done = (size_t)r;
  while (i < n && done >= bufs[i].len) {
    done -= bufs[i].len;
    i++;
  }
  if (i == n)
    return 1;
  bufs[i].base += done;
  bufs[i].len -= done;
  r = uv_write(req, s, bufs + i, n - i, cb);
  return r < 0 ? r : 0;
}

size_t px_iov_len(const uv_buf_t *bufs, unsigned n) {
  size_t len = 0;

  for (unsigned i = 0; i < n; i++)
    len += bufs[i].len;
  return len;
}

int px_peek_closed(const uv_stream_t *s) {
  uv_os_fd_t fd;
  char c;
  ssize_t n;

  if (uv_fileno((const uv_handle_t *)s, &fd) != 0)
    return UV_EBADF;
  do
    n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
  while (n < 0 && errno == EINTR);
  if (n == 0)
    return UV_EOF;
  if (n > 0)
    return UV_EPROTO;
  return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -errno; /* UV_E* are -errno on Unix */
}
