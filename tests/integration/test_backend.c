/* lbp-backend, client and harness on their own: endpoints, keep-alive, framing, spawning. */
#include <criterion/criterion.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "client.h"
#include "harness.h"
#include "pattern.h"

static char g_dir[512];
static struct h_backend g_be;
static struct hc_resp g_r; /* large: keep it off the stack */

static void make_dir(void) {
  cr_assert_eq(h_tmpdir(g_dir, sizeof(g_dir)), 0);
}

/* Copies the backend's log to stderr: the temp dir holding it is gone after the test. */
static void dump_log(void) {
  char line[1024];
  FILE *f = fopen(g_be.proc.log, "r");
  while (f != NULL && fgets(line, sizeof(line), f) != NULL)
    fprintf(stderr, "backend log: %s", line);
  if (f != NULL)
    fclose(f);
}

static void start_backend(const char *const extra[]) {
  int err = h_backend_start(&g_be, g_dir, "b1", extra);
  if (err != 0)
    dump_log();
  cr_assert_eq(err, 0, "backend did not start: %d", err);
}

static void setup(void) {
  make_dir();
  start_backend(NULL);
}

static void teardown(void) {
  h_backend_stop(&g_be);
  h_rmtree(g_dir);
}

/* Stops the backend unless the test already did and insists that it exited cleanly: under the
 * sanitizers a leak or an error report changes its exit status. (Criterion ignores failures in
 * .fini, hence a check at the end of every test body.) */
static void check_clean_exit(void) {
  if (g_be.proc.pid <= 0)
    return;
  int status = h_stop(&g_be.proc, SIGTERM, 10000);
  int clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  if (!clean)
    dump_log();
  cr_assert(clean, "backend wait status %#x", status);
}

/* A Criterion test whose body is followed by check_clean_exit(). */
#define BACKEND_TEST(suite, name)                                                                  \
  static void name##_body(void);                                                                   \
  Test(suite, name) {                                                                              \
    name##_body();                                                                                 \
    check_clean_exit();                                                                            \
  }                                                                                                \
  static void name##_body(void)

static uint64_t header_u64(const struct hc_resp *r, const char *name) {
  char v[128];
  cr_assert_eq(hc_header(r, name, v, sizeof(v)), 0, "no %s header in:\n%s", name, r->head);
  return strtoull(v, NULL, 10);
}

static int connect_be(void) {
  int fd = hc_connect(g_be.port, NULL);
  cr_assert_geq(fd, 0, "connect: %d", fd);
  return fd;
}

static void get(const char *path) {
  int err = hc_get(g_be.port, path, &g_r);
  cr_assert_eq(err, 0, "GET %s: %d", path, err);
}

TestSuite(backend, .init = setup, .fini = teardown, .timeout = 120);

BACKEND_TEST(backend, root_names_the_backend_and_keep_alive_reuses_one_connection) {
  char v[64];
  int fd = connect_be();
  for (int i = 1; i <= 3; i++) {
    cr_assert_eq(hc_roundtrip(fd, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", &g_r), 0);
    cr_assert_eq(g_r.status, 200);
    cr_assert_str_eq(g_r.body, "b1\n");
    cr_assert(g_r.keep_alive);
    cr_assert_eq(hc_header(&g_r, "x-backend", v, sizeof(v)), 0);
    cr_assert_str_eq(v, "b1");
    cr_assert_eq(header_u64(&g_r, "X-Conn-Id"), 1);
    cr_assert_eq(header_u64(&g_r, "X-Conn-Requests"), (uint64_t)i);
  }
  close(fd);
}

/* A scaled container service runs one command for every replica: each names itself. */
BACKEND_TEST(backend, name_dash_names_the_backend_after_the_host) {
  char host[256] = "", v[256], body[260];
  cr_assert_eq(gethostname(host, sizeof(host) - 1), 0);
  h_backend_stop(&g_be);
  start_backend((const char *const[]){"--name", "-", NULL});
  get("/");
  cr_assert_eq(g_r.status, 200);
  cr_assert_eq(hc_header(&g_r, "x-backend", v, sizeof(v)), 0);
  cr_assert_str_eq(v, host);
  snprintf(body, sizeof(body), "%s\n", host);
  cr_assert_str_eq(g_r.body, body);
}

BACKEND_TEST(backend, bytes_of_one_mebibyte_arrive_with_the_pattern_checksum) {
  get("/bytes?n=1048576");
  cr_assert_eq(g_r.status, 200);
  cr_assert_not(g_r.chunked);
  cr_assert_eq(header_u64(&g_r, "Content-Length"), 1048576);
  cr_assert_eq(g_r.body_len, 1048576);
  cr_assert_eq(g_r.body_fnv, hc_pattern_fnv(1048576));
}

BACKEND_TEST(backend, chunked_one_mebibyte_arrives_in_chunks_with_the_pattern_checksum) {
  get("/chunked?n=1048576&chunk=1000");
  cr_assert_eq(g_r.status, 200);
  cr_assert(g_r.chunked);
  cr_assert_eq(g_r.body_len, 1048576);
  cr_assert_eq(g_r.body_fnv, hc_pattern_fnv(1048576));
}

BACKEND_TEST(backend, chunked_64_mebibytes_stream_through_with_the_pattern_checksum) {
  uint64_t n = 64ull << 20;
  get("/chunked?n=67108864");
  cr_assert(g_r.chunked);
  cr_assert_eq(g_r.body_len, n);
  cr_assert_eq(g_r.body_fnv, hc_pattern_fnv(n));
}

/* Sends `n` pattern bytes to /sum, chunked or with Content-Length; returns their checksum. */
static uint64_t upload_to_sum(int fd, uint64_t n, int chunked) {
  static unsigned char buf[65536];
  char head[256];
  uint64_t h = HC_FNV_INIT;
  if (chunked)
    snprintf(head, sizeof(head),
             "POST /sum HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
  else
    snprintf(head, sizeof(head), "PUT /sum HTTP/1.1\r\nHost: x\r\nContent-Length: %llu\r\n\r\n",
             (unsigned long long)n);
  cr_assert_eq(hc_send_all(fd, head, strlen(head)), 0);
  for (uint64_t off = 0; off < n; off += sizeof(buf)) {
    size_t k = n - off < sizeof(buf) ? (size_t)(n - off) : sizeof(buf);
    pattern_fill(off * 7 + 3, buf, k);
    h = hc_fnv(h, buf, k);
    if (chunked) {
      snprintf(head, sizeof(head), "%zx\r\n", k);
      cr_assert_eq(hc_send_all(fd, head, strlen(head)), 0);
    }
    cr_assert_eq(hc_send_all(fd, buf, k), 0);
    if (chunked)
      cr_assert_eq(hc_send_all(fd, "\r\n", 2), 0);
  }
  if (chunked)
    cr_assert_eq(hc_send_all(fd, "0\r\n\r\n", 5), 0);
  return h;
}

static void check_sum(uint64_t n, uint64_t fnv) {
  char v[64], body[128];
  cr_assert_eq(g_r.status, 200);
  cr_assert_eq(header_u64(&g_r, "X-Body-Len"), n);
  cr_assert_eq(hc_header(&g_r, "X-Body-Fnv", v, sizeof(v)), 0);
  cr_assert_eq(strtoull(v, NULL, 16), fnv, "backend %s", v);
  snprintf(body, sizeof(body), "len=%llu fnv=%016llx\n", (unsigned long long)n,
           (unsigned long long)fnv);
  cr_assert_str_eq(g_r.body, body);
}

BACKEND_TEST(backend, sum_of_a_ten_mebibyte_chunked_upload_returns_the_clients_checksum) {
  int fd = connect_be();
  uint64_t fnv = upload_to_sum(fd, 10u << 20, 1);
  cr_assert_eq(hc_read_response(fd, &g_r, 0), 0);
  check_sum(10u << 20, fnv);
  close(fd);
}

BACKEND_TEST(backend, sum_of_a_content_length_upload_returns_the_clients_checksum) {
  int fd = connect_be();
  uint64_t fnv = upload_to_sum(fd, 3000001, 0);
  cr_assert_eq(hc_read_response(fd, &g_r, 0), 0);
  check_sum(3000001, fnv);
  /* The connection stays usable after a large body. */
  cr_assert_eq(hc_roundtrip(fd, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", &g_r), 0);
  cr_assert_eq(header_u64(&g_r, "X-Conn-Requests"), 2);
  close(fd);
}

BACKEND_TEST(backend, sum_of_an_empty_body_is_the_fnv_offset_basis) {
  get("/sum");
  check_sum(0, HC_FNV_INIT);
}

BACKEND_TEST(backend, echo_returns_a_content_length_body_unchanged) {
  static char req[100000 + 256];
  int fd = connect_be();
  int n = snprintf(req, 256, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n");
  pattern_fill(5, (unsigned char *)req + n, 100000);
  cr_assert_eq(hc_send_all(fd, req, (size_t)n + 100000), 0);
  cr_assert_eq(hc_read_response(fd, &g_r, 0), 0);
  cr_assert_eq(g_r.status, 200);
  cr_assert_not(g_r.chunked);
  cr_assert_eq(g_r.body_len, 100000);
  cr_assert_eq(g_r.body_fnv, hc_fnv(HC_FNV_INIT, req + n, 100000));
  close(fd);
}

BACKEND_TEST(backend, echo_of_a_chunked_body_comes_back_chunked) {
  int fd = connect_be();
  const char *req = "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                    "5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n";
  cr_assert_eq(hc_roundtrip(fd, req, &g_r), 0);
  cr_assert(g_r.chunked);
  cr_assert_str_eq(g_r.body, "hello, world");
  close(fd);
}

BACKEND_TEST(backend, headers_returns_the_exact_request_head) {
  const char *req =
      "GET /headers?x=1 HTTP/1.1\r\nHost: example.test\r\nX-Forwarded-For: 10.0.0.1\r\n"
      "X-Odd:   spaced value  \r\nconnection: keep-alive\r\n\r\n";
  int fd = connect_be();
  cr_assert_eq(hc_roundtrip(fd, req, &g_r), 0);
  cr_assert_eq(g_r.status, 200);
  cr_assert_eq(g_r.body_len, strlen(req));
  cr_assert_str_eq(g_r.body, req);
  close(fd);
}

BACKEND_TEST(backend, eof_body_ends_when_the_backend_closes) {
  char v[64];
  int fd = connect_be();
  cr_assert_eq(hc_roundtrip(fd, "GET /eof?n=300000 HTTP/1.1\r\nHost: x\r\n\r\n", &g_r), 0);
  cr_assert_eq(g_r.status, 200);
  cr_assert_neq(hc_header(&g_r, "Content-Length", v, sizeof(v)), 0);
  cr_assert_not(g_r.chunked);
  cr_assert_not(g_r.keep_alive);
  cr_assert_eq(g_r.body_len, 300000);
  cr_assert_eq(g_r.body_fnv, hc_pattern_fnv(300000));
  cr_assert_eq(hc_wait_closed(fd, 10000), 1);
  close(fd);
}

BACKEND_TEST(backend, drop_closes_the_connection_without_a_response) {
  int fd = connect_be();
  int err = hc_roundtrip(fd, "GET /drop HTTP/1.1\r\nHost: x\r\n\r\n", &g_r);
  cr_assert_eq(err, -ECONNRESET, "got %d", err);
  cr_assert_eq(hc_wait_closed(fd, 10000), 1);
  close(fd);
}

BACKEND_TEST(backend, conns_counts_the_connections_accepted) {
  char want[32];
  for (int i = 1; i <= 3; i++) {
    get("/conns");
    snprintf(want, sizeof(want), "conns=%d\n", i);
    cr_assert_str_eq(g_r.body, want);
    cr_assert_eq(header_u64(&g_r, "X-Conns"), (uint64_t)i);
    cr_assert_eq(header_u64(&g_r, "X-Conn-Id"), (uint64_t)i);
  }
}

BACKEND_TEST(backend, head_responses_carry_headers_but_no_body) {
  int fd = connect_be();
  cr_assert_eq(hc_roundtrip(fd, "HEAD / HTTP/1.1\r\nHost: x\r\n\r\n", &g_r), 0);
  cr_assert_eq(g_r.status, 200);
  cr_assert_eq(header_u64(&g_r, "Content-Length"), 3);
  cr_assert_eq(g_r.body_len, 0);
  cr_assert_eq(hc_roundtrip(fd, "HEAD /chunked?n=5000 HTTP/1.1\r\nHost: x\r\n\r\n", &g_r), 0);
  cr_assert(g_r.chunked);
  cr_assert_eq(g_r.body_len, 0);
  cr_assert_eq(hc_roundtrip(fd, "HEAD /bytes?n=5000 HTTP/1.1\r\nHost: x\r\n\r\n", &g_r), 0);
  cr_assert_eq(header_u64(&g_r, "Content-Length"), 5000);
  cr_assert_eq(g_r.body_len, 0);
  /* Had any body bytes been sent, this response would be garbled. */
  cr_assert_eq(hc_roundtrip(fd, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", &g_r), 0);
  cr_assert_str_eq(g_r.body, "b1\n");
  cr_assert_eq(header_u64(&g_r, "X-Conn-Requests"), 4);
  close(fd);
}

BACKEND_TEST(backend, three_pipelined_requests_get_three_responses_in_order) {
  const char *reqs = "GET /delay?ms=50 HTTP/1.1\r\nHost: x\r\n\r\n"
                     "GET /bytes?n=10 HTTP/1.1\r\nHost: x\r\n\r\n"
                     "GET /status?code=202 HTTP/1.1\r\nHost: x\r\n\r\n";
  int fd = connect_be();
  cr_assert_eq(hc_send_all(fd, reqs, strlen(reqs)), 0);
  cr_assert_eq(hc_read_response(fd, &g_r, 0), 0);
  cr_assert_eq(g_r.status, 200);
  cr_assert_str_eq(g_r.body, "b1\n");
  cr_assert_eq(header_u64(&g_r, "X-Conn-Requests"), 1);
  cr_assert_eq(hc_read_response(fd, &g_r, 0), 0);
  cr_assert_eq(g_r.body_len, 10);
  cr_assert_eq(g_r.body_fnv, hc_pattern_fnv(10));
  cr_assert_eq(header_u64(&g_r, "X-Conn-Requests"), 2);
  cr_assert_eq(hc_read_response(fd, &g_r, 0), 0);
  cr_assert_eq(g_r.status, 202);
  cr_assert_eq(header_u64(&g_r, "X-Conn-Requests"), 3);
  close(fd);
}

BACKEND_TEST(backend, garbage_gets_a_400_and_then_a_close) {
  int fd = connect_be();
  cr_assert_eq(hc_roundtrip(fd, "THIS IS NOT HTTP\r\n\r\n", &g_r), 0);
  cr_assert_eq(g_r.status, 400);
  cr_assert_not(g_r.keep_alive);
  cr_assert_eq(hc_wait_closed(fd, 10000), 1);
  close(fd);
}

BACKEND_TEST(backend, delay_of_200ms_responds_no_sooner_than_200ms) {
  int64_t t0 = h_now_ms();
  get("/delay?ms=200");
  cr_assert_geq(h_now_ms() - t0, 200);
  cr_assert_str_eq(g_r.body, "b1\n");
}

BACKEND_TEST(backend, close_responds_with_connection_close_and_closes) {
  char v[32];
  int fd = connect_be();
  cr_assert_eq(hc_roundtrip(fd, "GET /close HTTP/1.1\r\nHost: x\r\n\r\n", &g_r), 0);
  cr_assert_eq(g_r.status, 200);
  cr_assert_eq(hc_header(&g_r, "Connection", v, sizeof(v)), 0);
  cr_assert_str_eq(v, "close");
  cr_assert_eq(hc_wait_closed(fd, 10000), 1);
  close(fd);
}

BACKEND_TEST(backend, status_answers_with_the_requested_code_and_unknown_paths_404) {
  get("/status?code=503");
  cr_assert_eq(g_r.status, 503);
  cr_assert_str_eq(g_r.body, "status 503\n");
  get("/status?code=204");
  cr_assert_eq(g_r.status, 204);
  cr_assert_eq(g_r.body_len, 0);
  get("/no/such/thing");
  cr_assert_eq(g_r.status, 404);
}

BACKEND_TEST(backend, hang_keeps_the_connection_open_without_answering) {
  int fd = connect_be();
  const char *req = "GET /hang HTTP/1.1\r\nHost: x\r\n\r\n";
  cr_assert_eq(hc_send_all(fd, req, strlen(req)), 0);
  struct pollfd pfd = {.fd = fd, .events = POLLIN};
  cr_assert_eq(poll(&pfd, 1, 300), 0, "the backend answered or closed");
  close(fd);
}

BACKEND_TEST(backend, http10_closes_unless_it_asks_for_keep_alive) {
  int fd = connect_be();
  cr_assert_eq(hc_roundtrip(fd, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", &g_r), 0);
  cr_assert(g_r.keep_alive);
  cr_assert_eq(hc_roundtrip(fd, "GET / HTTP/1.0\r\n\r\n", &g_r), 0);
  cr_assert_not(g_r.keep_alive);
  cr_assert_eq(header_u64(&g_r, "X-Conn-Requests"), 2);
  cr_assert_eq(hc_wait_closed(fd, 10000), 1);
  close(fd);
}

BACKEND_TEST(backend, expect_100_continue_gets_an_interim_response_first) {
  char buf[64] = {0};
  int fd = connect_be();
  const char *head =
      "POST /sum HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n";
  cr_assert_eq(hc_send_all(fd, head, strlen(head)), 0);
  cr_assert_eq(recv(fd, buf, 25, MSG_WAITALL), 25);
  cr_assert_str_eq(buf, "HTTP/1.1 100 Continue\r\n\r\n");
  cr_assert_eq(hc_send_all(fd, "abc", 3), 0);
  cr_assert_eq(hc_read_response(fd, &g_r, 0), 0);
  check_sum(3, hc_fnv(HC_FNV_INIT, "abc", 3));
  close(fd);
}

BACKEND_TEST(backend, sigterm_makes_the_backend_exit_zero) {
  int status = h_stop(&g_be.proc, SIGTERM, 10000);
  cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "wait status %#x", status);
}

TestSuite(backend_options, .init = make_dir, .fini = teardown, .timeout = 120);

BACKEND_TEST(backend_options, size_serves_that_many_pattern_bytes_on_root) {
  start_backend((const char *const[]){"--size", "100000", NULL});
  get("/");
  cr_assert_eq(g_r.body_len, 100000);
  cr_assert_eq(g_r.body_fnv, hc_pattern_fnv(100000));
}

BACKEND_TEST(backend_options, delay_holds_every_response_back) {
  start_backend((const char *const[]){"--delay", "150", NULL});
  int64_t t0 = h_now_ms();
  get("/status?code=200");
  cr_assert_geq(h_now_ms() - t0, 150);
}

BACKEND_TEST(backend_options, procs_serves_from_forked_processes_and_exits_zero) {
  start_backend((const char *const[]){"--procs", "2", NULL});
  for (int i = 0; i < 6; i++) {
    get("/");
    cr_assert_str_eq(g_r.body, "b1\n");
  }
  int status = h_stop(&g_be.proc, SIGTERM, 10000);
  cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "wait status %#x", status);
}

BACKEND_TEST(backend_options, listen_and_name_are_honoured) {
  start_backend((const char *const[]){"--name", "other", NULL});
  get("/");
  cr_assert_str_eq(g_r.body, "other\n");
  cr_assert_eq(h_count_lines(g_be.proc.log, "ready listen=127.0.0.1:"), 1);
}

/* ---- The harness itself, with /bin/sh standing in for the processes under test ---- */

TestSuite(backend_client, .init = make_dir, .fini = teardown, .timeout = 120);
TestSuite(harness, .init = make_dir, .fini = teardown, .timeout = 120);

static void spawn_sh(struct h_proc *p, const char *script) {
  char log[600];
  snprintf(log, sizeof(log), "%s/sh.log", g_dir);
  const char *argv[] = {"/bin/sh", "-c", script, NULL};
  cr_assert_eq(h_spawn(p, argv, log), 0);
}

Test(harness, spawn_reports_a_missing_binary_at_once) {
  struct h_proc p;
  char log[600];
  snprintf(log, sizeof(log), "%s/x.log", g_dir);
  const char *argv[] = {"/nonexistent/binary", NULL};
  cr_assert_eq(h_spawn(&p, argv, log), -ENOENT);
  cr_assert_eq(p.pid, 0);
}

Test(harness, wait_line_finds_lines_written_later_and_fields_parse) {
  struct h_proc p;
  char line[256], v[64];
  spawn_sh(&p, "echo one; sleep 0.1; echo 'x ready listen=127.0.0.1:4242 workers=2'; echo two");
  long off = h_wait_line(p.log, "ready listen=", 0, 10000, line, sizeof(line));
  cr_assert_gt(off, 0);
  cr_assert_str_eq(line, "x ready listen=127.0.0.1:4242 workers=2");
  cr_assert_eq(h_line_field(line, "listen", v, sizeof(v)), 0);
  cr_assert_str_eq(v, "127.0.0.1:4242");
  cr_assert_eq(h_line_field(line, "workers", v, sizeof(v)), 0);
  cr_assert_str_eq(v, "2");
  cr_assert_eq(h_line_field(line, "isten", v, sizeof(v)), -1);
  cr_assert_gt(h_wait_line(p.log, "two", off, 10000, line, sizeof(line)), off);
  cr_assert_eq(h_wait_line(p.log, "one", off, 50, NULL, 0), -ETIMEDOUT);
  int status = h_stop(&p, SIGTERM, 10000);
  cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  cr_assert_eq(h_count_lines(p.log, "o"), 3); /* one, workers, two */
  cr_assert_eq(h_stop(&p, SIGTERM, 10000), -1, "a second stop has nothing to do");
}

Test(harness, stop_escalates_to_sigkill_when_sigterm_is_ignored) {
  struct h_proc p;
  spawn_sh(&p, "trap '' TERM; echo armed; exec sleep 100");
  cr_assert_gt(h_wait_line(p.log, "armed", 0, 10000, NULL, 0), 0);
  cr_assert_not(h_exited(&p));
  int status = h_stop(&p, SIGTERM, 100);
  cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "wait status %#x", status);
  cr_assert(h_exited(&p));
}

/* Whether pid is running (a zombie waiting for init to reap it counts as dead). */
static int running(pid_t pid) {
  char path[64], buf[256];
  snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
  FILE *f = fopen(path, "r");
  if (f == NULL)
    return 0;
  size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[n] = '\0';
  const char *rp = strrchr(buf, ')');
  return rp != NULL && rp[1] == ' ' && rp[2] != 'Z' && rp[2] != 'X';
}

Test(harness, spawned_children_die_with_the_process_that_spawned_them) {
  int fds[2];
  pid_t grandchild = 0;
  cr_assert_eq(pipe(fds), 0);
  pid_t mid = fork();
  if (mid == 0) {
    struct h_proc p;
    spawn_sh(&p, "exec sleep 100");
    (void)!write(fds[1], &p.pid, sizeof(p.pid));
    _exit(0);
  }
  cr_assert_eq(read(fds[0], &grandchild, sizeof(grandchild)), (ssize_t)sizeof(grandchild));
  waitpid(mid, NULL, 0);
  int64_t deadline = h_now_ms() + 10000;
  while (running(grandchild) && h_now_ms() < deadline) {
    struct timespec ts = {0, 5000000};
    nanosleep(&ts, NULL);
  }
  cr_assert_not(running(grandchild), "pid %d outlived its parent", (int)grandchild);
  close(fds[0]);
  close(fds[1]);
}

Test(harness, worker_pids_keep_the_latest_line_per_slot) {
  struct h_proxy px = {0};
  pid_t pids[4];
  const char *log = "t1 lbproxy[10] master info: worker 0 ready pid=100\n"
                    "t2 lbproxy[11] worker 1 info: worker 1 starting\n"
                    "t3 lbproxy[10] master info: worker 1 ready pid=101\n"
                    "t4 lbproxy[10] master info: worker 0 ready pid=200\n"
                    "t5 lbproxy[10] master info: worker 9 ready pid=900\n";
  cr_assert_eq(h_write_file(g_dir, "lbproxy.log", log, px.proc.log, sizeof(px.proc.log)), 0);
  cr_assert_eq(h_proxy_worker_pids(&px, pids, 4), 2);
  cr_assert_eq(pids[0], 200);
  cr_assert_eq(pids[1], 101);
  cr_assert_eq(pids[2], 0);
}

Test(harness, fd_count_sees_a_new_descriptor) {
  int before = h_fd_count(getpid());
  int fd = dup(1);
  cr_assert_eq(h_fd_count(getpid()), before + 1);
  close(fd);
  cr_assert_eq(h_fd_count(-5), -1);
}

BACKEND_TEST(backend_client, an_interim_100_continue_is_skipped_by_the_client) {
  start_backend(NULL);
  int fd = connect_be();
  const char *req = "POST /sum HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                    "Expect: 100-continue\r\n\r\nabc";
  cr_assert_eq(hc_roundtrip(fd, req, &g_r), 0);
  cr_assert_eq(g_r.status, 200);
  cr_assert_eq(strncmp(g_r.head, "HTTP/1.1 200 OK\r\n", 17), 0, "head: %s", g_r.head);
  check_sum(3, hc_fnv(HC_FNV_INIT, "abc", 3));
  close(fd);
}
