/* The heads lbproxy forwards: X-Forwarded-For/-Proto/-Host, Via, Forwarded, Host, path prefix,
 * Connection; all as iovecs over the received bytes, nothing copied. */

/*
 * Requests. Lists lbproxy takes part in are appended to: X-Forwarded-For and Via after the last
 * value of the last line when the client sent one, else as a new line; Forwarded (when enabled)
 * always as a new line, which continues the same list. What only lbproxy can say replaces what the
 * client sent (http_head.c drops the client's X-Forwarded-Proto and X-Forwarded-Host): the scheme
 * it was reached by (http) and the host the client asked for. New lines go before the blank line,
 * in this order: Host (when rewritten), X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host, Via,
 * Forwarded, Connection.
 *
 * Responses get our Connection line (the server's is hop-by-hop and dropped) and Via.
 */
#include "rewrite.h"

#include <ctype.h>
#include <string.h>

#define LIT(s)   uv_buf_init((char *)(s), sizeof(s) - 1)
#define MAX_INS  4
#define MAX_TAIL 32

static void add(uv_buf_t *tail, int *n, uv_buf_t b) {
  if (*n < MAX_TAIL && b.len > 0)
    tail[(*n)++] = b;
}

static void add_ins(struct px_insert *ins, int *n, uint32_t off, uv_buf_t b) {
  int i = (*n)++;

  /* Kept sorted by offset; there are at most MAX_INS. */
  while (i > 0 && ins[i - 1].off > off) {
    ins[i] = ins[i - 1];
    i--;
  }
  ins[i].off = off;
  ins[i].buf = b;
}

/* "for=ADDR;host="HOST";proto=http" (RFC 7239), as pieces; an IPv6 address is quoted. */
static void forwarded_element(const struct px_fwd *f, uv_buf_t *tail, int *n) {
  const char *addr = f->peer + 2;
  uint32_t alen = f->peer_len - 2;
  int v6 = memchr(addr, ':', alen) != NULL;

  add(tail, n, v6 ? LIT("for=\"[") : LIT("for="));
  add(tail, n, uv_buf_init((char *)addr, alen));
  if (v6)
    add(tail, n, LIT("]\""));
  if (f->orig_host != NULL) {
    add(tail, n, LIT(";host=\""));
    add(tail, n, uv_buf_init((char *)f->orig_host, f->orig_host_len));
    add(tail, n, LIT("\""));
  }
  add(tail, n, LIT(";proto=http"));
}

/* The path: drop the stripped prefix, and keep the target starting with '/'. */
static void strip_path(struct px_head *h, const struct px_fwd *f, struct px_insert *ins,
                       int *nins) {
  uint32_t url_end = h->url.off + h->url.len, at = f->path_off + f->strip;

  if (f->strip == 0 || at > url_end)
    return;
  px_head_drop(h, f->path_off, f->strip);
  if (at == url_end || h->base[at] != '/')
    add_ins(ins, nins, at, LIT("/"));
}

int px_rewrite_request(struct px_head *h, const struct px_fwd *f, uint32_t extra, uv_buf_t *iov,
                       int max) {
  struct px_insert ins[MAX_INS];
  uv_buf_t tail[MAX_TAIL], fwd_el[8];
  int nins = 0, nt = 0, nf = 0;

  strip_path(h, f, ins, &nins);
  if (f->new_host != NULL) {
    if (h->flags & PX_HEAD_HAS_HOST)
      px_head_drop(h, h->host_line.off, h->host_line.len);
    add(tail, &nt, LIT("Host: "));
    add(tail, &nt, uv_buf_init((char *)f->new_host, f->new_host_len));
    add(tail, &nt, LIT("\r\n"));
  }
  if (h->flags & PX_HEAD_HAS_XFF) {
    add_ins(ins, &nins, h->xff_end, uv_buf_init((char *)f->peer, f->peer_len));
  } else {
    add(tail, &nt, LIT("X-Forwarded-For: "));
    add(tail, &nt, uv_buf_init((char *)f->peer + 2, f->peer_len - 2));
    add(tail, &nt, LIT("\r\n"));
  }
  add(tail, &nt, LIT("X-Forwarded-Proto: http\r\n"));
  if (f->orig_host != NULL) {
    add(tail, &nt, LIT("X-Forwarded-Host: "));
    add(tail, &nt, uv_buf_init((char *)f->orig_host, f->orig_host_len));
    add(tail, &nt, LIT("\r\n"));
  }
  if (h->flags & PX_HEAD_HAS_VIA)
    add_ins(ins, &nins, h->via_end, LIT(", 1.1 lbproxy"));
  else
    add(tail, &nt, LIT("Via: 1.1 lbproxy\r\n"));
  if (f->forwarded) {
    /* A new line, after any the client sent: lines of one field are one list (RFC 9110 5.3),
     * so this appends our element to it. */
    forwarded_element(f, fwd_el, &nf);
    add(tail, &nt, LIT("Forwarded: "));
    for (int i = 0; i < nf; i++)
      add(tail, &nt, fwd_el[i]);
    add(tail, &nt, LIT("\r\n"));
  }
  if (f->upgrade) {
    px_head_keep_upgrade(h);
    add(tail, &nt, LIT("Connection: upgrade\r\n"));
  } else if (f->http10) {
    add(tail, &nt, LIT("Connection: keep-alive\r\n"));
  }
  if (nt == MAX_TAIL || (h->flags & PX_HEAD_OVERFLOW))
    return -1;
  return px_head_iov_ins(h, ins, nins, tail, nt, extra, iov, max);
}

/* RFC 3986 3.2.2 host (a reg-name or IPv4: unreserved, sub-delims, %XX; or an IP-literal in
 * brackets), then an optional ":" port of 1-5 digits. Userinfo is refused by the caller. */
static int valid_authority(const char *a, size_t n) {
  size_t i = 0, digits = 0;

  if (n > 0 && a[0] == '[') {
    while (++i < n && a[i] != ']')
      if (!isxdigit((unsigned char)a[i]) && a[i] != ':' && a[i] != '.')
        return 0;
    if (i >= n || i == 1)
      return 0;
    i++;
  } else {
    for (; i < n && a[i] != ':'; i++) {
      unsigned char c = (unsigned char)a[i];
      if (c == '%') {
        if (i + 2 >= n || !isxdigit((unsigned char)a[i + 1]) || !isxdigit((unsigned char)a[i + 2]))
          return 0;
        i += 2;
      } else if (!isalnum(c) && strchr("-._~!$&'()*+,;=", c) == NULL) {
        return 0;
      }
    }
    if (i == 0)
      return 0;
  }
  if (i == n)
    return 1;
  if (a[i++] != ':')
    return 0;
  for (; i < n; i++, digits++)
    if (!isdigit((unsigned char)a[i]))
      return 0;
  return digits <= 5;
}

int px_head_absolute_target(struct px_head *h, struct px_span *authority) {
  const char *b = h->base, *u = b + h->url.off, *auth, *slash;
  const char *sep = memmem(u, h->url.len, "://", 3);

  if (sep == NULL)
    return -1;
  auth = sep + 3;
  slash = memchr(auth, '/', (size_t)(u + h->url.len - auth));
  if (slash == NULL || slash == auth || !valid_authority(auth, (size_t)(slash - auth)))
    return -1;
  authority->off = (uint32_t)(auth - b);
  authority->len = (uint32_t)(slash - auth);
  px_head_drop(h, h->url.off, (uint32_t)(slash - u));
  return (h->flags & PX_HEAD_OVERFLOW) ? -1 : 0;
}

int px_rewrite_response(struct px_head *h, enum px_conn_line conn, const uv_buf_t *line,
                        uint32_t extra, uv_buf_t *iov, int max) {
  struct px_insert ins;
  uv_buf_t tail[3];
  int nt = 0, nins = 0;

  if (line != NULL)
    tail[nt++] = *line;
  switch (conn) {
  case PX_CONN_CLOSE:
    tail[nt++] = LIT("Connection: close\r\n");
    break;
  case PX_CONN_KEEP_ALIVE:
    tail[nt++] = LIT("Connection: keep-alive\r\n");
    break;
  case PX_CONN_UPGRADE:
    px_head_keep_upgrade(h);
    tail[nt++] = LIT("Connection: upgrade\r\n");
    break;
  default:
    break;
  }
  if (h->flags & PX_HEAD_HAS_VIA) {
    ins.off = h->via_end;
    ins.buf = LIT(", 1.1 lbproxy");
    nins = 1;
  } else {
    tail[nt++] = LIT("Via: 1.1 lbproxy\r\n");
  }
  if (h->flags & PX_HEAD_OVERFLOW)
    return -1;
  return px_head_iov_ins(h, &ins, nins, tail, nt, extra, iov, max);
}
