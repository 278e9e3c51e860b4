/* Tests for proxy/relay.c: bytes both ways with backpressure, half-close, resets, deadlines, over
 * two borrowed TCP streams; the peers are blocking sockets in a thread. */
#include "relay.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static uv_loop_t loop;
static struct px_bufpool pool;
static uv_tcp_t side[2]; /* the relay's streams (owned by the test, borrowed by the relay) */
static int peer[2];      /* the other ends, driven by the test */
static struct px_relay relay;
static int done_calls, closed;
static enum px_relay_end why;
static int why_side;
static char owner_data[] = "owner";

/* A connected TCP pair on loopback: *a for the test, *b for the relay. */
static void tcp_pair(int *a, int *b) {
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof(sa);
  int l = socket(AF_INET, SOCK_STREAM, 0);

  cr_assert_eq(bind(l, (struct sockaddr *)&sa, sizeof(sa)), 0);
  cr_assert_eq(listen(l, 1), 0);
  cr_assert_eq(getsockname(l, (struct sockaddr *)&sa, &len), 0);
  *a = socket(AF_INET, SOCK_STREAM, 0);
  cr_assert_eq(connect(*a, (struct sockaddr *)&sa, sizeof(sa)), 0);
  *b = accept(l, NULL, NULL);
  cr_assert_geq(*b, 0);
  close(l);
}

static void on_done(struct px_relay *r, enum px_relay_end w, int s) {
  cr_assert_eq(r->data, &relay);
  for (int i = 0; i < 2; i++)
    cr_assert_eq(side[i].data, owner_data, "the relay did not give `data` back");
  done_calls++;
  why = w;
  why_side = s;
}

static void close_cb(uv_handle_t *h) {
  closed++;
}

static void setup(void) {
  int b;

  signal(SIGPIPE, SIG_IGN); /* as lbproxy's processes: a write to a reset socket is EPIPE */
  uv_loop_init(&loop);
  px_bufpool_init(&pool, 4096, 4);
  done_calls = closed = 0;
  for (int i = 0; i < 2; i++) {
    tcp_pair(&peer[i], &b);
    uv_tcp_init(&loop, &side[i]);
    cr_assert_eq(uv_tcp_open(&side[i], b), 0);
    side[i].data = owner_data;
  }
  relay.data = &relay;
}

static void teardown(void) {
  for (int i = 0; i < 2; i++) {
    if (!uv_is_closing((uv_handle_t *)&side[i]))
      uv_close((uv_handle_t *)&side[i], close_cb);
    close(peer[i]);
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  px_bufpool_clear(&pool);
}

TestSuite(relay, .init = setup, .fini = teardown, .timeout = 30);
TestSuite(relay_splice, .init = setup, .fini = teardown, .timeout = 30);

static int use_splice; /* the suite runs twice: bytes copied (relay) and spliced (relay_splice) */

static void start(uint64_t idle_ms, uint64_t send_ms, const uv_buf_t pre[2]) {
  px_relay_init(&relay, &pool, idle_ms, send_ms, -1, 0);
  px_relay_set_splice(&relay, use_splice);
  relay.data = &relay;
  px_relay_start(&relay, &loop, (uv_stream_t *)&side[0], (uv_stream_t *)&side[1], pre, on_done);
}

static void run_until_done(void) {
  while (done_calls == 0)
    uv_run(&loop, UV_RUN_ONCE);
}

/* ---- a peer that pumps bytes: writes `n` pseudo-random bytes then shuts down, while the
 * other peer reads everything; both sums are compared ---- */

struct pump {
  int wfd, rfd;
  size_t n;
  uint64_t wsum, rsum;
  size_t got;
  unsigned seed;
  atomic_int stop; /* set: the writer stops early (at a chunk's end); `n` is then what it wrote */
};

static uint64_t mix(uint64_t h, const unsigned char *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    h = (h ^ p[i]) * 0x100000001b3ULL;
  return h;
}

static void *pump_write(void *arg) {
  struct pump *p = arg;
  unsigned char buf[7919];
  size_t left = p->n;

  p->wsum = 0xcbf29ce484222325ULL;
  while (left > 0 && !atomic_load(&p->stop)) {
    size_t k = left < sizeof(buf) ? left : sizeof(buf);
    for (size_t i = 0; i < k; i++)
      buf[i] = (unsigned char)rand_r(&p->seed);
    p->wsum = mix(p->wsum, buf, k);
    for (size_t off = 0; off < k;) {
      ssize_t w = send(p->wfd, buf + off, k - off, MSG_NOSIGNAL);
      cr_assert_gt(w, 0);
      off += (size_t)w;
    }
    left -= k;
  }
  p->n -= left;
  shutdown(p->wfd, SHUT_WR);
  return NULL;
}

static void *pump_read(void *arg) {
  struct pump *p = arg;
  unsigned char buf[5000];
  ssize_t r;

  p->rsum = 0xcbf29ce484222325ULL;
  while ((r = recv(p->rfd, buf, sizeof(buf), 0)) > 0) {
    p->rsum = mix(p->rsum, buf, (size_t)r);
    p->got += (size_t)r;
  }
  return NULL;
}

static void carries_megabytes_both_ways_intact_and_ends_after_both_half_closes(void) {
  struct pump ab = {.wfd = peer[0], .rfd = peer[1], .n = 3 << 20, .seed = 1};
  struct pump ba = {.wfd = peer[1], .rfd = peer[0], .n = 2 << 20, .seed = 2};
  pthread_t t[4];

  start(0, 0, NULL);
  pthread_create(&t[0], NULL, pump_write, &ab);
  pthread_create(&t[1], NULL, pump_read, &ab);
  pthread_create(&t[2], NULL, pump_write, &ba);
  pthread_create(&t[3], NULL, pump_read, &ba);
  run_until_done();
  for (int i = 0; i < 4; i++)
    pthread_join(t[i], NULL);
  cr_assert_eq(why, PX_RELAY_DONE);
  cr_assert_eq(ab.got, ab.n);
  cr_assert_eq(ab.rsum, ab.wsum);
  cr_assert_eq(ba.got, ba.n);
  cr_assert_eq(ba.rsum, ba.wsum);
  cr_assert_eq(pool.nfree <= pool.max_free, 1);
  if (use_splice)
    cr_assert_gt(relay.spliced, 0, "splice on, yet no byte was spliced");
  else
    cr_assert_eq(relay.spliced, 0);
}

static void a_half_close_passes_through_while_the_other_way_goes_on(void) {
  char buf[16];

  start(0, 0, NULL);
  shutdown(peer[0], SHUT_WR);
  /* Side 1 sees the EOF... */
  struct pollfd pf = {.fd = peer[1], .events = POLLIN};
  while (poll(&pf, 1, 0) == 0)
    uv_run(&loop, UV_RUN_ONCE);
  cr_assert_eq(recv(peer[1], buf, sizeof(buf), 0), 0);
  /* ...and can still answer. */
  cr_assert_eq(send(peer[1], "late", 4, 0), 4);
  pf.fd = peer[0];
  while (poll(&pf, 1, 0) == 0)
    uv_run(&loop, UV_RUN_ONCE);
  cr_assert_eq(recv(peer[0], buf, sizeof(buf), 0), 4);
  cr_assert_arr_eq(buf, "late", 4);
  cr_assert_eq(done_calls, 0);
  shutdown(peer[1], SHUT_WR);
  run_until_done();
  cr_assert_eq(why, PX_RELAY_DONE);
}

static void a_reset_reports_the_side_that_failed(void) {
  struct linger lg = {1, 0};

  start(0, 0, NULL);
  setsockopt(peer[1], SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
  close(peer[1]);
  peer[1] = -1;
  run_until_done();
  cr_assert_eq(why, PX_RELAY_RESET);
  cr_assert_eq(why_side, 1);
}

static void prefixes_go_first_each_way(void) {
  uv_buf_t pre[2] = {uv_buf_init("to0:", 4), uv_buf_init("to1:", 4)};
  char buf[16];

  start(0, 0, pre);
  cr_assert_eq(send(peer[0], "abc", 3, 0), 3);
  cr_assert_eq(send(peer[1], "xyz", 3, 0), 3);
  for (int i = 0; i < 2; i++) {
    size_t got = 0;
    while (got < 7) {
      struct pollfd pf = {.fd = peer[i], .events = POLLIN};
      if (poll(&pf, 1, 0) == 0) {
        uv_run(&loop, UV_RUN_ONCE);
        continue;
      }
      ssize_t r = recv(peer[i], buf + got, sizeof(buf) - got, 0);
      cr_assert_gt(r, 0);
      got += (size_t)r;
    }
    cr_assert_arr_eq(buf, i == 0 ? "to0:xyz" : "to1:abc", 7);
  }
  px_relay_stop(&relay);
  run_until_done();
  cr_assert_eq(why, PX_RELAY_STOPPED);
}

static void nothing_moving_ends_it_after_idle_ms(void) {
  uint64_t t0;

  start(100, 0, NULL);
  t0 = uv_now(&loop);
  cr_assert_eq(send(peer[0], "x", 1, 0), 1); /* activity pushes the deadline */
  run_until_done();
  cr_assert_eq(why, PX_RELAY_IDLE);
  cr_assert_geq(uv_now(&loop) - t0, 100);
}

static void a_reader_that_stops_reading_ends_it_after_send_ms(void) {
  static char big[1 << 16];
  int sent = 0;

  start(0, 200, NULL);
  /* Side 1's peer never reads: the relay's write to it eventually waits, and the relay stops
   * reading side 0 meanwhile, so side 0's peer cannot send any more either. */
  memset(big, 'z', sizeof(big));
  while (done_calls == 0) {
    ssize_t w = send(peer[0], big, sizeof(big), MSG_DONTWAIT);
    if (w > 0)
      sent += (int)w;
    uv_run(&loop, w > 0 ? UV_RUN_NOWAIT : UV_RUN_ONCE);
  }
  cr_assert_gt(sent, 0);
  cr_assert_eq(why, PX_RELAY_SEND_TIMEOUT);
  cr_assert_eq(why_side, 1);
}

static void stop_gives_the_streams_back_at_once(void) {
  start(0, 0, NULL);
  px_relay_stop(&relay);
  cr_assert_eq(side[0].data, owner_data);
  cr_assert_eq(side[1].data, owner_data);
  cr_assert(!uv_is_active((uv_handle_t *)&side[0]), "still reading");
  run_until_done();
  cr_assert_eq(done_calls, 1);
}

/* Splice: a reader that does not keep up makes spliced chunks wait in a buffer (the process's
 * pipe must be empty between calls); every byte still arrives once, in order. The reader starts
 * once that happened (the sockets' buffers are full), and the writer then stops. */
static void a_slow_reader_makes_spliced_bytes_wait_in_a_buffer_intact(void) {
  struct pump ab = {.wfd = peer[0], .rfd = peer[1], .n = (size_t)1 << 40, .seed = 3};
  pthread_t t[2];

  start(0, 0, NULL);
  pthread_create(&t[0], NULL, pump_write, &ab);
  while (relay.splice_fallbacks == 0 && done_calls == 0)
    uv_run(&loop, UV_RUN_ONCE);
  cr_assert_eq(done_calls, 0);
  atomic_store(&ab.stop, 1);
  pthread_create(&t[1], NULL, pump_read, &ab);
  shutdown(peer[1], SHUT_WR);
  run_until_done();
  for (int i = 0; i < 2; i++)
    pthread_join(t[i], NULL);

  cr_assert_eq(why, PX_RELAY_DONE);
  cr_assert_eq(ab.got, ab.n);
  cr_assert_eq(ab.rsum, ab.wsum);
  cr_assert_gt(relay.spliced, 0);
}

/* A TCP urgent byte (MSG_OOB) stops splice at the mark (EAGAIN while the socket stays
 * readable): the relay steps over it with a plain read, as copying always did, instead of
 * spinning with the rest of the stream stuck behind it. */
static void an_urgent_byte_does_not_stall_the_stream(void) {
  char buf[16];
  size_t got = 0;

  start(0, 0, NULL);
  cr_assert_eq(send(peer[0], "ab", 2, 0), 2);
  cr_assert_eq(send(peer[0], "X", 1, MSG_OOB), 1);
  cr_assert_eq(send(peer[0], "cd", 2, 0), 2);
  while (got < 4) {
    struct pollfd pf = {.fd = peer[1], .events = POLLIN};
    if (poll(&pf, 1, 0) == 0) {
      uv_run(&loop, UV_RUN_ONCE);
      continue;
    }
    ssize_t r = recv(peer[1], buf + got, sizeof(buf) - got, 0);
    cr_assert_gt(r, 0);
    got += (size_t)r;
  }
  cr_assert_eq(got, 4);
  cr_assert_arr_eq(buf, "abcd", 4); /* the urgent byte is out of band, as without a relay */
  px_relay_stop(&relay);
  run_until_done();
}

Test(relay, an_urgent_byte_does_not_stall_the_stream) {
  use_splice = 0;
  an_urgent_byte_does_not_stall_the_stream();
}

Test(relay_splice, an_urgent_byte_does_not_stall_the_stream) {
  use_splice = 1;
  an_urgent_byte_does_not_stall_the_stream();
}

Test(relay_splice, a_slow_reader_makes_spliced_bytes_wait_in_a_buffer_intact) {
  use_splice = 1;
  a_slow_reader_makes_spliced_bytes_wait_in_a_buffer_intact();
}

Test(relay, carries_megabytes_both_ways_intact_and_ends_after_both_half_closes) {
  use_splice = 0;
  carries_megabytes_both_ways_intact_and_ends_after_both_half_closes();
}

Test(relay_splice, carries_megabytes_both_ways_intact_and_ends_after_both_half_closes) {
  use_splice = 1;
  carries_megabytes_both_ways_intact_and_ends_after_both_half_closes();
}

Test(relay, a_half_close_passes_through_while_the_other_way_goes_on) {
  use_splice = 0;
  a_half_close_passes_through_while_the_other_way_goes_on();
}

Test(relay_splice, a_half_close_passes_through_while_the_other_way_goes_on) {
  use_splice = 1;
  a_half_close_passes_through_while_the_other_way_goes_on();
}

Test(relay, a_reset_reports_the_side_that_failed) {
  use_splice = 0;
  a_reset_reports_the_side_that_failed();
}

Test(relay_splice, a_reset_reports_the_side_that_failed) {
  use_splice = 1;
  a_reset_reports_the_side_that_failed();
}

Test(relay, prefixes_go_first_each_way) {
  use_splice = 0;
  prefixes_go_first_each_way();
}

Test(relay_splice, prefixes_go_first_each_way) {
  use_splice = 1;
  prefixes_go_first_each_way();
}

Test(relay, nothing_moving_ends_it_after_idle_ms) {
  use_splice = 0;
  nothing_moving_ends_it_after_idle_ms();
}

Test(relay_splice, nothing_moving_ends_it_after_idle_ms) {
  use_splice = 1;
  nothing_moving_ends_it_after_idle_ms();
}

Test(relay, a_reader_that_stops_reading_ends_it_after_send_ms) {
  use_splice = 0;
  a_reader_that_stops_reading_ends_it_after_send_ms();
}

Test(relay_splice, a_reader_that_stops_reading_ends_it_after_send_ms) {
  use_splice = 1;
  a_reader_that_stops_reading_ends_it_after_send_ms();
}

Test(relay, stop_gives_the_streams_back_at_once) {
  use_splice = 0;
  stop_gives_the_streams_back_at_once();
}

Test(relay_splice, stop_gives_the_streams_back_at_once) {
  use_splice = 1;
  stop_gives_the_streams_back_at_once();
}
