/* libFuzzer target: the IPC frame decoder (ipc_decode) over a byte stream split anywhere. */

/*
 * The input is a stream of bytes as a channel reads them: `u32 length | u8 type | payload`
 * frames, or anything else. It is decoded three ways: in one call, in chunks of 1..256 bytes
 * with a generator seeded by the input, and one byte at a time (inputs up to 4 KiB). Checked:
 * 1. the three give the same frames (type, length, payload bytes), the same result, and the
 *    same partial frame left in the decoder;
 * 2. the frames plus the partial frame account for every byte before an error, and each frame's
 *    bytes are the input's bytes at that place (nothing copied wrongly when reassembled);
 * 3. a frame's payload is readable for exactly its length (ASan checks the in-place ones
 *    against the input, the reassembled ones against the decoder's buffer);
 * 4. a callback's negative return stops decoding at once and is returned: the last run stops
 *    at a frame chosen from the input.
 */
#include "fuzz.h"

#include "ipc.h"

#include <stdint.h>
#include <sys/socket.h>
#include <string.h>

#define MAX_FRAMES   4096
#define BYTEWISE_MAX 4096 /* one malloc per byte: only for inputs up to this size */

struct frame {
  uint8_t type;
  uint32_t len;
  uint64_t fnv; /* of the payload */
};

struct run {
  struct frame f[MAX_FRAMES];
  size_t n;
  size_t stop_at; /* the callback returns -1 for frame number stop_at (SIZE_MAX: never) */
  uint64_t bytes; /* header + payload bytes of all frames */
};

static int on_frame(void *arg, uint8_t type, const char *payload, uint32_t len) {
  struct run *r = arg;
  struct frame *f;
  volatile char sink = 0;

  FUZZ_CHECK(len <= IPC_MAX_PAYLOAD, "frame of %u bytes delivered", len);
  if (r->n == r->stop_at)
    return UV_ECANCELED;
  if (r->n == MAX_FRAMES)
    return UV_E2BIG;
  f = &r->f[r->n++];
  f->type = type;
  f->len = len;
  f->fnv = fuzz_hash((const uint8_t *)payload, len);
  if (len > 0) /* touch both ends */
    sink = (char)(payload[0] ^ payload[len - 1]);
  (void)sink;
  r->bytes += IPC_HDR_LEN + (uint64_t)len;
  return 0;
}

/* Decodes data in pieces: `split` 0 = one call, 1 = byte by byte, else generated pieces. */
static int decode(struct run *r, struct ipc_decoder *d, const uint8_t *data, size_t size,
                  uint64_t split) {
  size_t pos = 0;
  int rc = 0;

  ipc_decoder_init(d);
  while (pos < size && rc == 0) {
    size_t end = split == 1 ? pos + 1 : fuzz_read_end(&split, pos, size);
    char *piece = malloc(end - pos); /* exact size: ASan sees reads past a read's end */
    FUZZ_CHECK(piece != NULL, "out of memory");
    memcpy(piece, data + pos, end - pos);
    rc = ipc_decode(d, piece, end - pos, on_frame, r);
    free(piece);
    pos = end;
  }
  if (size == 0)
    rc = ipc_decode(d, (const char *)data, 0, on_frame, r);
  return rc;
}

/* Checks that the frames found are the input's frames, in place. */
static void check_frames(const struct run *r, const uint8_t *data, size_t size) {
  size_t pos = 0;

  for (size_t i = 0; i < r->n; i++) {
    uint32_t len;
    FUZZ_CHECK(pos + IPC_HDR_LEN <= size, "frame %zu past the input", i);
    len = ipc_get_u32((const char *)data + pos);
    FUZZ_CHECK(len == r->f[i].len && data[pos + 4] == r->f[i].type, "frame %zu header", i);
    FUZZ_CHECK(pos + IPC_HDR_LEN + len <= size, "frame %zu payload past the input", i);
    FUZZ_CHECK(fuzz_hash(data + pos + IPC_HDR_LEN, len) == r->f[i].fnv, "frame %zu payload", i);
    pos += IPC_HDR_LEN + len;
  }
}

static void same(const struct run *a, int rca, const struct ipc_decoder *da, const struct run *b,
                 int rcb, const struct ipc_decoder *db, const char *what) {
  FUZZ_CHECK(rca == rcb, "%s: result %d vs %d", what, rca, rcb);
  FUZZ_CHECK(a->n == b->n, "%s: %zu frames vs %zu", what, a->n, b->n);
  FUZZ_CHECK(memcmp(a->f, b->f, a->n * sizeof(a->f[0])) == 0, "%s: frames differ", what);
  if (rca == 0)
    FUZZ_CHECK(da->len == db->len, "%s: partial %zu vs %zu", what, da->len, db->len);
}

/* 5. A CONN's client address (ipc_get_peer) is read within its bytes, and writing what was
 *    read gives the same bytes back. */
static void peer_round_trip(const uint8_t *data, size_t size) {
  struct sockaddr_storage ss;
  unsigned char again[IPC_PEER_MAX];
  size_t n = ipc_get_peer((const char *)data, size, &ss);

  FUZZ_CHECK(n == 0 || n == 7 || n == 19, "peer took %zu bytes", n);
  FUZZ_CHECK(n <= size, "peer read past the input");
  if (n > 0) {
    FUZZ_CHECK(ipc_put_peer(again, (struct sockaddr *)&ss) == n, "peer length changed");
    FUZZ_CHECK(memcmp(again, data, n) == 0, "peer bytes changed");
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static struct run one, split, bytes, stopped;
  struct ipc_decoder d1, d2, d3, d4;
  uint64_t h = fuzz_hash(data, size);
  int rc1, rc2, rc3, rc4;

  if (size > 1u << 16)
    return 0;
  peer_round_trip(data, size);
  one.n = split.n = bytes.n = stopped.n = 0;
  one.bytes = split.bytes = bytes.bytes = stopped.bytes = 0;
  one.stop_at = split.stop_at = bytes.stop_at = SIZE_MAX;
  rc1 = decode(&one, &d1, data, size, 0);
  rc2 = decode(&split, &d2, data, size, h | 2);
  same(&one, rc1, &d1, &split, rc2, &d2, "split reads");
  if (size <= BYTEWISE_MAX) {
    rc3 = decode(&bytes, &d3, data, size, 1);
    same(&one, rc1, &d1, &bytes, rc3, &d3, "byte reads");
    ipc_decoder_free(&d3);
  }
  FUZZ_CHECK(rc1 == 0 || rc1 == UV_EPROTO || rc1 == UV_E2BIG, "result %d", rc1);
  check_frames(&one, data, size);
  if (rc1 == 0) {
    FUZZ_CHECK(one.bytes + d1.len == size, "%llu frame bytes + %zu partial != %zu",
               (unsigned long long)one.bytes, d1.len, size);
    FUZZ_CHECK(d1.len < IPC_HDR_LEN || d1.len < IPC_HDR_LEN + ipc_get_u32(d1.buf),
               "a whole frame left in the decoder");
  }
  /* Stop at a frame picked by the input: decoding ends there with the callback's code. */
  if (one.n > 0) {
    stopped.stop_at = (size_t)(h % one.n);
    rc4 = decode(&stopped, &d4, data, size, h | 2);
    FUZZ_CHECK(rc4 == UV_ECANCELED && stopped.n == stopped.stop_at,
               "stop at %zu: rc %d after %zu frames", stopped.stop_at, rc4, stopped.n);
    ipc_decoder_free(&d4);
  }
  ipc_decoder_free(&d1);
  ipc_decoder_free(&d2);
  return 0;
}
