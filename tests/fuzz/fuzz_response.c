/* libFuzzer target: an upstream server's bytes through response parsing and head rewriting. */

/*
 * The input is what a server sends back for one request. It is run the way a worker runs it
 * (proxy/upstream.c: resp_process, resp_head, resp_flush, out_rebase, up_eof): llhttp with
 * px_response_settings over each read, px_head_complete at the head, interim 1xx heads passed
 * on raw, px_head_iov with our Connection line for the final head, body bytes up to the parse
 * position, the buffer rebased once everything in it went out, and the end of the input as the
 * server's EOF. Whether the request was HEAD, and the client's keep-alive and version, come
 * from a hash of the input.
 *
 * Checked: every iovec lies inside the buffer or is our Connection line, received runs in order
 * and contiguous with what went out before; the forwarded final head parses again strictly,
 * ends where it should, keeps status and version, and holds no hop-by-hop line but ours; and
 * one read or reads of 1..256 bytes give the same bytes to the client and the same outcome.
 */
#include "fuzz.h"

#include "http_head.h"

#include <llhttp.h>
#include <stdint.h>
#include <string.h>

#define BUFSIZE  32768 /* ctx.c's buffer size: a head must fit */
#define MAX_SIZE 16384

static const char conn_close[] = "Connection: close\r\n";
static const char conn_keep[] = "Connection: keep-alive\r\n";

enum outcome { O_MORE, O_DONE, O_BAD };

/* One exchange. The buffer `b` holds the input from `base` on; out_len of it has "arrived". */
struct sim {
  const uint8_t *in;
  uint32_t size, base;
  char *b;
  uint32_t out_len, out_pos, out_fwd;
  llhttp_t parser;
  struct px_head head;
  int head_request, client_ka, client_http10;
  int keep_alive, head_pending, head_sent, sent_any;
  enum outcome outcome;
  uint64_t split;
  struct fuzz_out out;
};

static void rebuffer(struct sim *s) {
  uint32_t left = s->size - s->base;
  free(s->b);
  s->b = malloc(left ? left : 1);
  FUZZ_CHECK(s->b != NULL, "out of memory");
  memcpy(s->b, s->in + s->base, left);
}

/* Mirrors resp_head(): -1 for a head we refuse. */
static int resp_head(struct sim *s, uint32_t end) {
  int status;

  if (fuzz_refuse_known(s->b + s->head.start, end - s->head.start))
    return -1; /* fuzz.h: known defects, refused here */
  if (px_head_complete(&s->head, end) < 0)
    return -1;
  status = llhttp_get_status_code(&s->parser);
  if (status < 200)
    return status == 101 ? -1 : 0;
  if (s->head_request)
    s->parser.flags |= F_SKIPBODY;
  s->keep_alive = s->client_ka && !llhttp_message_needs_eof(&s->parser);
  s->head_sent = 1;
  s->head_pending = 1;
  return 0;
}

/* Parses the forwarded final head again and compares it with what the server sent. */
static void check_reparse(struct sim *s, const char *fwd, uint32_t len, int ours) {
  char *copy = malloc(len ? len : 1);
  llhttp_t p;
  struct px_head h;
  llhttp_errno_t err;
  uint32_t end;

  FUZZ_CHECK(copy != NULL, "out of memory");
  memcpy(copy, fwd, len);
  fuzz_context("forwarded head", copy, len);
  llhttp_init(&p, HTTP_RESPONSE, &px_response_settings);
  p.data = &h;
  px_head_reset(&h, copy, 0, 0);
  err = llhttp_execute(&p, copy, len);
  FUZZ_CHECK(err == HPE_PAUSED, "forwarded head does not parse: %s (%s)", llhttp_errno_name(err),
             llhttp_get_error_reason(&p));
  end = (uint32_t)(llhttp_get_error_pos(&p) - copy);
  FUZZ_CHECK(end == len, "forwarded head ends at %u of %u", end, len);
  FUZZ_CHECK(px_head_complete(&h, end) == 0, "forwarded head is refused (flags %#x)", h.flags);
  FUZZ_CHECK(h.ndrops == ours, "forwarded head has %u hop-by-hop lines, %d ours", h.ndrops, ours);
  FUZZ_CHECK(p.status_code == s->parser.status_code, "status %d became %d", s->parser.status_code,
             p.status_code);
  FUZZ_CHECK(p.http_major == s->parser.http_major && p.http_minor == s->parser.http_minor,
             "version changed");
  fuzz_context("response buffer", s->b, s->out_len);
  free(copy);
}

/* Checks the iovecs of one flush: runs of the buffer, contiguous from `from`, and `tail`. */
static void check_iov(struct sim *s, const uv_buf_t *iov, int n, uint32_t from, uint32_t limit,
                      const uv_buf_t *tail, int nt) {
  uint32_t pos = from;

  for (int i = 0; i < n; i++) {
    const char *p = iov[i].base;
    FUZZ_CHECK(iov[i].len > 0, "empty iovec %d", i);
    if (nt > 0 && p == tail[0].base) {
      FUZZ_CHECK(iov[i].len == tail[0].len, "our line cut");
      continue;
    }
    FUZZ_CHECK(p >= s->b && p + iov[i].len <= s->b + limit, "iovec %d outside the input", i);
    FUZZ_CHECK((uint32_t)(p - s->b) >= pos, "iovec %d goes back", i);
    pos = (uint32_t)(p - s->b) + (uint32_t)iov[i].len;
  }
  FUZZ_CHECK(pos == limit, "the last iovec ends at %u, not %u", pos, limit);
}

/* Mirrors resp_flush() (without the write): what is ready goes to the transcript. */
static enum outcome resp_flush(struct sim *s) {
  uint32_t limit = (s->head.flags & PX_HEAD_DONE) ? s->out_pos : s->head.start;
  uint32_t from = s->out_fwd;
  uv_buf_t iov[PX_HEAD_MAX_IOV + 1], tail[1];
  int n = 0, nt = 0, m;

  if (s->head_pending) {
    struct fuzz_out head = {0};
    if (!s->keep_alive)
      tail[nt++] = uv_buf_init((char *)conn_close, sizeof(conn_close) - 1);
    else if (s->client_http10 || (s->parser.http_major == 1 && s->parser.http_minor == 0))
      tail[nt++] = uv_buf_init((char *)conn_keep, sizeof(conn_keep) - 1);
    if (s->head.start > s->out_fwd)
      iov[n++] = uv_buf_init(s->b + s->out_fwd, s->head.start - s->out_fwd);
    m = px_head_iov(&s->head, NULL, tail, nt, limit - s->head.end, iov + n, PX_HEAD_MAX_IOV - n);
    if (m < 0)
      return O_BAD; /* "head too complex" */
    FUZZ_CHECK(m > 0, "no iovec for a head");
    for (int i = n; i < n + m; i++)
      fuzz_out_add(&head, iov[i].base, iov[i].len);
    FUZZ_CHECK(head.len >= limit - s->head.end, "head shorter than its body bytes");
    check_reparse(s, head.p, (uint32_t)(head.len - (limit - s->head.end)), nt);
    fuzz_out_free(&head);
    n += m;
    s->head_pending = 0;
  } else if (limit > s->out_fwd) {
    iov[n++] = uv_buf_init(s->b + s->out_fwd, limit - s->out_fwd);
  }
  if (n > 0)
    check_iov(s, iov, n, from, limit, tail, nt);
  s->out_fwd = limit;
  for (int i = 0; i < n; i++)
    fuzz_out_add(&s->out, iov[i].base, iov[i].len);
  s->sent_any |= n > 0;
  return O_MORE;
}

/* Mirrors out_rebase(): once everything read went out, the next read starts a new buffer. */
static void out_rebase(struct sim *s) {
  if (s->out_fwd != s->out_len || s->out_pos != s->out_len)
    return;
  if (!(s->head.flags & PX_HEAD_DONE) && s->head.start != s->out_len)
    return;
  s->base += s->out_len;
  s->out_len = s->out_pos = s->out_fwd = 0;
  rebuffer(s);
  if (!(s->head.flags & PX_HEAD_DONE))
    px_head_reset(&s->head, s->b, 0, 0);
}

/* Mirrors resp_process() for the bytes that arrived. */
static enum outcome resp_process(struct sim *s) {
  const char *b = s->b;
  int complete = 0, keep = 0;

  s->head.base = b;
  for (;;) {
    llhttp_errno_t err = llhttp_execute(&s->parser, b + s->out_pos, s->out_len - s->out_pos);
    uint32_t pos;

    if (err == HPE_OK) {
      s->out_pos = s->out_len;
      break;
    }
    if (err != HPE_PAUSED)
      return O_BAD;
    pos = (uint32_t)(llhttp_get_error_pos(&s->parser) - b);
    s->out_pos = pos;
    if (!(s->head.flags & PX_HEAD_DONE)) {
      llhttp_resume(&s->parser);
      if (resp_head(s, pos) < 0)
        return O_BAD;
      continue;
    }
    if (llhttp_get_status_code(&s->parser) < 200) {
      llhttp_resume(&s->parser);
      px_head_reset(&s->head, b, 0, pos); /* the final head follows */
      continue;
    }
    /* Whether the connection is reusable also depends on nothing following in the same read,
     * which the read pattern decides: the transcript keeps what does not. */
    keep = llhttp_should_keep_alive(&s->parser);
    llhttp_resume(&s->parser);
    complete = 1;
    break;
  }
  if (!complete && !(s->head.flags & PX_HEAD_DONE) && s->out_len >= BUFSIZE)
    return O_BAD; /* "head too large" */
  if (resp_flush(s) == O_BAD)
    return O_BAD;
  if (complete) {
    fuzz_out_event(&s->out, 'K', keep);
    fuzz_out_event(&s->out, '@', (long)(s->base + s->out_pos));
    return O_DONE;
  }
  out_rebase(s);
  return O_MORE;
}

/* Mirrors up_eof(): the server closed; a close-delimited response is complete. */
static enum outcome up_eof(struct sim *s) {
  if (s->head_sent && llhttp_message_needs_eof(&s->parser)) {
    llhttp_errno_t e = llhttp_finish(&s->parser);
    if (e == HPE_OK || e == HPE_PAUSED) {
      s->out_pos = s->out_len;
      if (resp_flush(s) == O_BAD)
        return O_BAD;
      fuzz_out_event(&s->out, 'F', 0);
      return O_DONE;
    }
  }
  return O_BAD;
}

static void run(struct sim *s, const uint8_t *data, size_t size, uint64_t split, uint64_t opts) {
  enum outcome o = O_MORE;

  memset(s, 0, sizeof(*s));
  s->in = data;
  s->size = (uint32_t)size;
  s->split = split;
  s->head_request = (opts & 3) == 0; /* a quarter of the inputs answer a HEAD */
  s->client_ka = (opts & 4) != 0;
  s->client_http10 = (opts & 24) == 0;
  rebuffer(s);
  llhttp_init(&s->parser, HTTP_RESPONSE, &px_response_settings);
  s->parser.data = &s->head;
  px_head_reset(&s->head, s->b, 0, 0);
  while (o == O_MORE && s->base + s->out_len < s->size) {
    uint32_t end = (uint32_t)fuzz_read_end(&s->split, s->base + s->out_len, s->size);
    s->out_len = end - s->base;
    o = resp_process(s);
  }
  if (o == O_MORE)
    o = up_eof(s);
  s->outcome = o; /* O_BAD: a 502 page, or the client cut if bytes went out */
  free(s->b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static struct sim one, split;
  uint64_t h = fuzz_hash(data, size);
  size_t n;

  if (size > MAX_SIZE)
    return 0;
  run(&one, data, size, 0, h >> 32);
  run(&split, data, size, h | 1, h >> 32);
  FUZZ_CHECK(one.outcome == split.outcome, "outcome %d in one read, %d in split reads", one.outcome,
             split.outcome);
  /* After a fault, how much went out first depends on the reads: compare what both sent. */
  n = one.out.len < split.out.len ? one.out.len : split.out.len;
  FUZZ_CHECK((one.outcome == O_BAD || one.out.len == split.out.len) &&
                 (n == 0 || memcmp(one.out.p, split.out.p, n) == 0),
             "one read and split reads differ:\n--- one read (%zu)\n%.*s\n--- split (%zu)\n%.*s",
             one.out.len, (int)one.out.len, one.out.p, split.out.len, (int)split.out.len,
             split.out.p);
  fuzz_out_free(&one.out);
  fuzz_out_free(&split.out);
  return 0;
}
