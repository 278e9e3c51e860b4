/* Regression tests for proxy/http_head.c from inputs the libFuzzer targets (tests/fuzz/) found. */
#include "http_head.h"

#include <criterion/criterion.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/*
 * Each input is placed at the very end of a readable page followed by an inaccessible one
 * (as picohttpparser's tests do), so a read of even one byte past the received bytes faults in
 * any build, not only under ASan.
 */
struct guarded {
  char *map, *data;
  size_t maplen;
};

static void guard(struct guarded *g, const char *data, size_t n) {
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  size_t span = (n + page - 1) / page * page;

  g->maplen = span + page;
  g->map = mmap(NULL, g->maplen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  cr_assert_neq(g->map, MAP_FAILED);
  cr_assert_eq(mprotect(g->map + span, page, PROT_NONE), 0);
  g->data = g->map + span - n;
  memcpy(g->data, data, n);
}

static void unguard(struct guarded *g) {
  munmap(g->map, g->maplen);
}

/* Parses a request head held in g; returns where it ends, and px_head_complete's result. */
static uint32_t parse_head(struct guarded *g, size_t n, struct px_head *h, int *rc) {
  llhttp_t p;
  llhttp_errno_t err;
  uint32_t end;

  llhttp_init(&p, HTTP_REQUEST, &px_request_settings);
  p.data = h;
  px_head_reset(h, g->data, 1, 0);
  err = llhttp_execute(&p, g->data, n);
  cr_assert_eq(err, HPE_PAUSED, "llhttp: %s", llhttp_errno_name(err));
  end = (uint32_t)(llhttp_get_error_pos(&p) - g->data);
  *rc = px_head_complete(h, end);
  return end;
}

/* fuzz_request, crash: heap-buffer-overflow in drop_connection_tokens. llhttp 8.1 takes a CR
 * followed by any byte as a line end, so the head's last "line" (here the blank line "\rX")
 * has no '\n'; the line splitter stepped past it and read the byte after the head. */
Test(http_head_fuzz, connection_tokens_never_read_past_a_head_ending_in_a_bare_cr) {
  static const char in[] = "GET / HTTP/1.1\r\nHost: h\r\nConnection: x\r\n\rX";
  size_t n = sizeof(in) - 1;
  struct guarded g;
  struct px_head h;
  uv_buf_t iov[PX_HEAD_MAX_IOV];
  int rc, niov;
  uint32_t end;

  guard(&g, in, n);
  end = parse_head(&g, n, &h, &rc); /* faulted here */
  cr_assert_eq(end, n);
  for (unsigned i = 0; i < h.ndrops; i++)
    cr_expect_leq(h.drops[i].off + h.drops[i].len, end, "drop %u ends past the head", i);
  if (rc == 0) {
    niov = px_head_iov(&h, NULL, NULL, 0, 0, iov, PX_HEAD_MAX_IOV);
    for (int i = 0; i < niov; i++)
      cr_expect(iov[i].base >= g.data && iov[i].base + iov[i].len <= g.data + n,
                "iovec %d outside the input", i);
  }
  unguard(&g);
}

/* The same head with proper line ends: the line Connection names is dropped, nothing else. */
Test(http_head_fuzz, connection_tokens_drop_the_named_line_at_the_very_end_of_the_input) {
  static const char in[] = "GET / HTTP/1.1\r\nHost: h\r\nConnection: x\r\nX: 1\r\n\r\n";
  size_t n = sizeof(in) - 1;
  struct guarded g;
  struct px_head h;
  uv_buf_t iov[PX_HEAD_MAX_IOV];
  char out[256] = "";
  int rc, niov;

  guard(&g, in, n);
  cr_assert_eq(parse_head(&g, n, &h, &rc), n);
  cr_assert_eq(rc, 0);
  niov = px_head_iov(&h, NULL, NULL, 0, 0, iov, PX_HEAD_MAX_IOV);
  cr_assert_gt(niov, 0);
  for (int i = 0; i < niov; i++)
    strncat(out, iov[i].base, iov[i].len);
  cr_expect_str_eq(out, "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
  unguard(&g);
}
