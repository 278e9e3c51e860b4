/* Strict HTTP through the real proxy: smuggling shapes get 400 and never reach the backend. */

/*
 * How these tests see smuggling: the backend is switched (GET /mode, straight to it) to record
 * every byte it receives and every request it parses, and to be CR-tolerant like Python's
 * http.server (a CR alone ends a line), the server the attacks were shown against. A
 * test sends its attack through lbproxy and then asks the backend (GET /recorded, again
 * straight to it) what arrived: a refused request must have sent nothing at all, and the
 * request hidden in an attack ("GET /smuggled") must never have been parsed or even received.
 * On the client side, pipelined requests must get their own answers in order, and a new client
 * must get its own answer after an attack, never a leftover one.
 */
#include "itest.h"

#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static struct hc_resp R; /* large: off the stack */

#define LEN(s) (sizeof(s) - 1)

/* 35 bytes: the request an attack hides, and what the backend must never see. */
#define SMUGGLED "GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n"

/* ---- helpers ---- */

/* One request straight to backend 1 (not through the proxy); asserts a 200. */
static void backend_get(const char *path) {
  cr_assert_eq(hc_get(T.be[0].port, path, &R), 0, "backend %s", path);
  cr_assert_eq(R.status, 200, "backend %s: %d", path, R.status);
}

/* lbproxy with one worker (so a pooled upstream connection is always the same one) in front of
 * one backend that records what it receives and is CR-tolerant. */
static void start(const char *dispatch) {
  it_start(dispatch, 1, 1, NULL);
  backend_get("/mode?record=1&cr_tolerant=1");
}

static uint64_t header_u64(const char *name) {
  char v[64];
  cr_assert_eq(hc_header(&R, name, v, sizeof(v)), 0, "no %s header in:\n%s", name, R.head);
  return strtoull(v, NULL, 10);
}

/* What the backend got so far: `what` is "raw" (bytes) or "requests" (parsed request lines).
 * Leaves the text in R.body and returns the number of bytes recorded. */
static uint64_t recorded(const char *what) {
  char path[64];
  snprintf(path, sizeof(path), "/recorded?what=%s", what);
  backend_get(path);
  return header_u64("X-Recorded-Bytes");
}

static int body_has(const char *needle) {
  return memmem(R.body, R.body_len < sizeof(R.body) ? R.body_len : sizeof(R.body) - 1, needle,
                strlen(needle)) != NULL;
}

static int connect_proxy(void) {
  int fd = hc_connect(T.px.port, NULL);
  cr_assert_geq(fd, 0, "connect: %s", strerror(-fd));
  return fd;
}

/* Sends raw[0..len) on a new connection: the answer must be a 400 that closes it. */
static void expect_400(const char *raw, size_t len) {
  struct timeval tv = {15, 0};
  char v[32];
  int fd = connect_proxy();

  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)); /* fail fast where it hangs today */
  cr_assert_eq(hc_send_all(fd, raw, len), 0);
  int rc = hc_read_response(fd, &R, 0);
  cr_assert_eq(rc, 0, "no response (%s) to:\n%.*s", strerror(-rc), (int)len, raw);
  cr_assert_eq(R.status, 400, "%d instead of 400 for:\n%.*s", R.status, (int)len, raw);
  cr_assert(hc_header(&R, "Connection", v, sizeof(v)) == 0 && strcmp(v, "close") == 0);
  cr_assert(hc_wait_closed(fd, 10000), "the connection stayed open");
  close(fd);
}

/* The backend never received a byte and never parsed a request. */
static void backend_saw_nothing(void) {
  uint64_t n = recorded("raw");
  cr_assert_eq(n, 0, "the backend received %llu bytes:\n%s", (unsigned long long)n, R.body);
  cr_assert_eq(recorded("requests"), 0, "the backend parsed:\n%s", R.body);
}

/* The hidden request was neither received nor parsed by the backend. */
static void backend_never_saw_the_smuggled_request(void) {
  recorded("requests");
  cr_assert(!body_has("/smuggled"), "the backend parsed a smuggled request:\n%s", R.body);
  recorded("raw");
  cr_assert(!body_has("/smuggled"), "the backend received the smuggled bytes:\n%s", R.body);
}

/* A new client gets its own answer, not one left over from the attack; and recording works
 * (so the "nothing seen" checks above were not vacuous). */
static void next_client_gets_its_own_answer(void) {
  int fd = connect_proxy();
  cr_assert_eq(hc_roundtrip(fd, "GET /status?code=202 HTTP/1.1\r\nHost: t\r\n\r\n", &R), 0);
  cr_assert_eq(R.status, 202, "a new client got %d: out of step", R.status);
  close(fd);
  recorded("requests");
  cr_assert(body_has("GET /status?code=202"), "recording does not work:\n%s", R.body);
}

/* The whole check for one request that must be refused outright. */
static void refused(const char *raw, size_t len) {
  expect_400(raw, len);
  backend_saw_nothing();
  next_client_gets_its_own_answer();
}

/* ---- request direction: heads ---- */

IT_EACH_STRATEGY(strict, a_bare_cr_cannot_smuggle_a_request_behind_content_length) {
  /* llhttp 8.1 reads "\rX" as a line end: it sees Content-Length: 35 and takes the hidden
   * request for a body; a CR-tolerant server sees a header "XContent-Length" and no body, so
   * the hidden request runs. Pipelined between two honest requests: answers stay in order. */
  const char attack[] = "GET /status?code=201 HTTP/1.1\r\nHost: t\r\n\r\n"
                        "GET / HTTP/1.1\r\nHost: t\r\nX: \rXContent-Length: 35\r\n\r\n" SMUGGLED
                        "GET /status?code=203 HTTP/1.1\r\nHost: t\r\n\r\n";
  start(dispatch);
  int fd = connect_proxy();
  cr_assert_eq(hc_send_all(fd, attack, LEN(attack)), 0);
  cr_assert_eq(hc_read_response(fd, &R, 0), 0);
  cr_assert_eq(R.status, 201);
  cr_assert_eq(hc_read_response(fd, &R, 0), 0, "no answer to the attack");
  cr_assert_eq(R.status, 400, "the attack got %d", R.status);
  cr_assert(hc_wait_closed(fd, 10000), "the connection stayed open after a 400");
  close(fd);
  backend_never_saw_the_smuggled_request();
  recorded("requests");
  cr_assert(!body_has("GET /\n") && !body_has("code=203"), "forwarded after the attack:\n%s",
            R.body);
  next_client_gets_its_own_answer();
  it_stop();
}

IT_EACH_STRATEGY(strict, a_bare_cr_cannot_forge_x_forwarded_for) {
  const char attack[] = "GET /headers HTTP/1.1\r\nHost: t\r\nA: \rX-Forwarded-For: 6.6.6.6\r\n\r\n";
  start(dispatch);
  refused(attack, LEN(attack));
  it_stop();
}

IT_EACH_STRATEGY(strict, a_bare_cr_cannot_hide_content_length_from_us) {
  /* 0.CL: we would see no body ("\rC" eats the C), the CR-tolerant server a Content-Length
   * that swallows the next request on the upstream connection. */
  const char attack[] = "GET / HTTP/1.1\r\nHost: t\r\nX: \rContent-Length: 35\r\n\r\n" SMUGGLED;
  start(dispatch);
  expect_400(attack, LEN(attack));
  backend_never_saw_the_smuggled_request();
  backend_saw_nothing();
  next_client_gets_its_own_answer();
  it_stop();
}

IT_EACH_STRATEGY(strict, an_obs_fold_with_an_empty_first_line_gets_400) {
  const char tefold[] = "POST / HTTP/1.1\r\nHost: t\r\nX:\r\n Transfer-Encoding: chunked\r\n\r\n"
                        "0\r\n\r\n" SMUGGLED;
  const char clfold[] = "GET / HTTP/1.1\r\nHost: t\r\nX:\r\n Content-Length: 35\r\n\r\n" SMUGGLED;
  start(dispatch);
  expect_400(tefold, LEN(tefold));
  expect_400(clfold, LEN(clfold));
  backend_saw_nothing();
  next_client_gets_its_own_answer();
  it_stop();
}

IT_EACH_STRATEGY(strict, a_space_before_the_colon_gets_400) {
  const char host[] = "GET / HTTP/1.1\r\nHost : evil\r\n\r\n";
  const char xff[] = "GET / HTTP/1.1\r\nHost: t\r\nX-Forwarded-For : 6.6.6.6\r\n\r\n";
  start(dispatch);
  expect_400(host, LEN(host));
  expect_400(xff, LEN(xff));
  backend_saw_nothing();
  next_client_gets_its_own_answer();
  it_stop();
}

IT_EACH_STRATEGY(strict, a_space_inside_a_header_name_gets_400) {
  const char req[] = "GET / HTTP/1.1\r\nHost: t\r\nX Forwarded-For: 6.6.6.6\r\n\r\n";
  start(dispatch);
  refused(req, LEN(req));
  it_stop();
}

IT_EACH_STRATEGY(strict, http_versions_other_than_1_0_and_1_1_get_400) {
  const char v20[] = "GET / HTTP/2.0\r\nHost: t\r\n\r\n";
  const char v09[] = "GET / HTTP/0.9\r\nHost: t\r\nX-A: b\r\n\r\n";
  start(dispatch);
  expect_400(v20, LEN(v20));
  expect_400(v09, LEN(v09));
  backend_saw_nothing();
  next_client_gets_its_own_answer();
  it_stop();
}

IT_EACH_STRATEGY(strict, a_double_space_in_the_request_line_gets_400) {
  const char before[] = "GET  / HTTP/1.1\r\nHost: t\r\n\r\n";
  const char after[] = "GET /  HTTP/1.1\r\nHost: t\r\n\r\n";
  start(dispatch);
  expect_400(before, LEN(before));
  expect_400(after, LEN(after));
  backend_saw_nothing();
  next_client_gets_its_own_answer();
  it_stop();
}

IT_EACH_STRATEGY(strict, a_raw_tab_or_high_byte_in_the_target_gets_400) {
  const char tab[] = "GET /a\tb HTTP/1.1\r\nHost: t\r\n\r\n";
  const char high[] = "GET /caf\xc3\xa9 HTTP/1.1\r\nHost: t\r\n\r\n";
  start(dispatch);
  expect_400(tab, LEN(tab));
  expect_400(high, LEN(high));
  backend_saw_nothing();
  next_client_gets_its_own_answer();
  it_stop();
}

/* ---- request direction: framing (CL.TE, TE.CL, TE.TE, 0.CL, bad lengths, bad chunks) ---- */

IT_EACH_STRATEGY(strict, cl_te_and_te_cl_get_400) {
  const char clte[] = "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 40\r\n"
                      "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" SMUGGLED;
  const char tecl[] = "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
                      "Content-Length: 4\r\n\r\n23\r\n" SMUGGLED "\r\n0\r\n\r\n";
  start(dispatch);
  expect_400(clte, LEN(clte));
  expect_400(tecl, LEN(tecl));
  backend_saw_nothing();
  next_client_gets_its_own_answer();
  it_stop();
}

IT_EACH_STRATEGY(strict, obfuscated_transfer_encodings_get_400) {
  /* TE.TE: each a Transfer-Encoding some server would not read as "chunked". */
  static const char *const te[] = {
      "Transfer-Encoding:\tchunked",
      "Transfer-Encoding: identity, chunked",
      "Transfer-Encoding: gzip, chunked",
      "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity",
      "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
      "Transfer-Encoding: chunked, gzip",
      "Transfer-Encoding: ,chunked",
      "Transfer-Encoding: xchunked",
      "Transfer-Encoding : chunked",
      "Transfer-Encoding: \x0b"
      "chunked",
      "Transfer-Encoding: \"chunked\"",
      "Transfer-Encoding: \rchunked",
      "Transfer_Encoding: chunked",
      "X: \rTransfer-Encoding: chunked",
  };
  char req[512];
  start(dispatch);
  for (size_t i = 0; i < sizeof(te) / sizeof(te[0]); i++) {
    int n =
        snprintf(req, sizeof(req),
                 "POST / HTTP/1.1\r\nHost: t\r\n%s\r\n\r\n23\r\n" SMUGGLED "\r\n0\r\n\r\n", te[i]);
    expect_400(req, (size_t)n);
  }
  backend_saw_nothing();
  next_client_gets_its_own_answer();
  it_stop();
}

IT_EACH_STRATEGY(strict, malformed_or_repeated_content_lengths_get_400) {
  /* 0.CL and CL.CL: lengths a server could read differently from us. */
  static const char *const cl[] = {
      "Content-Length: +35",
      "Content-Length: 0x23",
      "Content-Length: ",
      "Content-Length: 35, 35",
      "Content-Length: 0, 35",
      "Content-Length: 0\r\nContent-Length: 35",
      "Content-Length: 35\r\nContent-Length: 35",
      "Content-Length:\t35",
      "Content-Length : 35",
      "Content_Length: 35",
  };
  char req[512];
  start(dispatch);
  for (size_t i = 0; i < sizeof(cl) / sizeof(cl[0]); i++) {
    int n = snprintf(req, sizeof(req), "POST / HTTP/1.1\r\nHost: t\r\n%s\r\n\r\n" SMUGGLED, cl[i]);
    expect_400(req, (size_t)n);
  }
  backend_saw_nothing();
  next_client_gets_its_own_answer();
  it_stop();
}

IT_EACH_STRATEGY(strict, bad_chunk_framing_gets_400_and_nothing_after_it_is_forwarded) {
  /* The first ones llhttp 8.1 refuses too; from "ffff..." on it accepts them (it skips any two
   * bytes after chunk data and takes "\rX" for a line end). */
  static const char *const body[] = {
      "+5\r\nhello\r\n0\r\n\r\n",
      "-5\r\nhello\r\n0\r\n\r\n",
      " 5\r\nhello\r\n0\r\n\r\n",
      "5 \r\nhello\r\n0\r\n\r\n",
      "0x5\r\nhello\r\n0\r\n\r\n",
      "10000000000000005\r\nhello\r\n0\r\n\r\n",
      "ffffffffffffffff\r\nhello\r\n0\r\n\r\n",
      "5\r\nhelloXX0\r\n\r\n",
      "5\r\nhello\rX0\r\n\r\n",
      "5\rXhello\r\n0\r\n\r\n",
      "5;ext\rX\r\nhello\r\n0\r\n\r\n",
      "0\r\nX: \rContent-Length: 35\r\n\r\n",
  };
  char req[512];
  start(dispatch);
  for (size_t i = 0; i < sizeof(body) / sizeof(body[0]); i++) {
    int n = snprintf(
        req, sizeof(req),
        "POST /sum HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n%s" SMUGGLED, body[i]);
    expect_400(req, (size_t)n);
  }
  backend_never_saw_the_smuggled_request();
  next_client_gets_its_own_answer();
  it_stop();
}

IT_EACH_STRATEGY(strict, good_requests_still_pass_byte_for_byte) {
  /* What strictness must not break: OWS, obs-text in values, tchars in names, leading empty
   * lines (skipped, not forwarded), chunk extensions and trailers. */
  const char req[] = "\r\nPOST /sum HTTP/1.1\r\nHost: t\r\nX-Tab:\ta\tb\r\nX-Caf: caf\xc3\xa9\r\n"
                     "X!#$%&'*+.^_`|~: y\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "5;n=\"v\"\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n";
  start(dispatch);
  int fd = connect_proxy();
  cr_assert_eq(hc_send_all(fd, req, LEN(req)), 0);
  cr_assert_eq(hc_read_response(fd, &R, 0), 0);
  cr_assert_eq(R.status, 200);
  cr_assert_eq(header_u64("X-Body-Len"), 5);
  close(fd);
  recorded("raw");
  cr_assert(body_has("\nPOST /sum HTTP/1.1\r\nHost: t\r\nX-Tab:\ta\tb\r\n"
                     "X-Caf: caf\xc3\xa9\r\nX!#$%&'*+.^_`|~: y\r\nTransfer-Encoding: chunked\r\n"),
            "%s", R.body);
  cr_assert(body_has("\r\n\r\n5;n=\"v\"\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n"), "%s", R.body);
  it_stop();
}

/* ---- response direction ---- */

/* GET /raw?kind=KIND makes the backend answer with a malformed response: the client must get a
 * 502 (or a cut, never the response), and the next request on a new client must be served on
 * a new upstream connection, not the one that carried the malformed response. */
static void poisoned_response_gets_502(const char *kind) {
  char path[64];
  int fd = connect_proxy(), rc;

  snprintf(path, sizeof(path), "GET /raw?kind=%s HTTP/1.1\r\nHost: t\r\n\r\n", kind);
  rc = hc_roundtrip(fd, path, &R);
  cr_assert(rc != 0 || R.status == 502, "kind=%s reached the client as %d:\n%s", kind, R.status,
            R.head);
  close(fd);
  fd = connect_proxy();
  cr_assert_eq(hc_roundtrip(fd, "GET / HTTP/1.1\r\nHost: t\r\n\r\n", &R), 0);
  cr_assert_eq(R.status, 200);
  cr_assert_eq(header_u64("X-Conn-Requests"), 1, "after kind=%s the upstream connection was reused",
               kind);
  close(fd);
}

static void response_kinds(const char *dispatch, const char *const *kinds, size_t n) {
  it_start(dispatch, 1, 1, NULL);
  for (size_t i = 0; i < n; i++)
    poisoned_response_gets_502(kinds[i]);
  /* The control: a well-formed /raw answer passes, and its connection is reused. */
  int fd = connect_proxy();
  cr_assert_eq(hc_roundtrip(fd, "GET / HTTP/1.1\r\nHost: t\r\n\r\n", &R), 0);
  uint64_t before = header_u64("X-Conn-Requests");
  cr_assert_eq(hc_roundtrip(fd, "GET /raw?kind=good HTTP/1.1\r\nHost: t\r\n\r\n", &R), 0);
  cr_assert_eq(R.status, 200);
  cr_assert_str_eq(R.body, "ok");
  cr_assert_eq(hc_roundtrip(fd, "GET / HTTP/1.1\r\nHost: t\r\n\r\n", &R), 0);
  cr_assert_eq(header_u64("X-Conn-Requests"), before + 2,
               "a good response's connection was not reused");
  close(fd);
  it_stop();
}

#define KINDS(...)                                                                                 \
  (const char *const[]){__VA_ARGS__}, sizeof((const char *const[]){__VA_ARGS__}) / sizeof(char *)

IT_EACH_STRATEGY(strict, a_response_with_a_bare_cr_or_lf_gets_502) {
  response_kinds(dispatch, KINDS("barecr", "barelf"));
}

IT_EACH_STRATEGY(strict, a_response_with_an_obs_fold_or_a_bad_name_gets_502) {
  response_kinds(dispatch, KINDS("fold", "spname", "nul"));
}

IT_EACH_STRATEGY(strict, a_response_with_a_bad_status_line_gets_502) {
  response_kinds(dispatch, KINDS("http2", "status2", "ctlreason", "lead"));
}

IT_EACH_STRATEGY(strict, a_response_with_ambiguous_framing_gets_502) {
  response_kinds(dispatch, KINDS("clte", "cl2", "tegzip"));
}

IT_EACH_STRATEGY(strict, a_response_with_bad_chunk_framing_gets_502) {
  response_kinds(dispatch, KINDS("chunkcrlf", "chunkcr", "chunksp"));
}

/* ---- HTTP/1.0 clients ---- */

/* An HTTP/1.0 GET of a chunked response: it must arrive de-chunked, close-delimited. */
static void http10_chunked(const char *path, uint64_t n, const char *extra) {
  char req[256], v[64];
  int fd = connect_proxy();

  snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\n%s\r\n", path, extra);
  cr_assert_eq(hc_roundtrip(fd, req, &R), 0, "%s", path);
  cr_assert_eq(R.status, 200);
  cr_assert(!R.chunked, "%s: a chunked response went to an HTTP/1.0 client:\n%s", path, R.head);
  cr_assert_neq(hc_header(&R, "Transfer-Encoding", v, sizeof(v)), 0, "%s", R.head);
  cr_assert(hc_header(&R, "Connection", v, sizeof(v)) == 0 && strcmp(v, "close") == 0, "%s",
            R.head);
  cr_assert_eq(R.body_len, n, "%s", path);
  cr_assert_eq(R.body_fnv, hc_pattern_fnv(n), "%s: the body was altered", path);
  cr_assert(hc_wait_closed(fd, 10000));
  close(fd);
}

IT_EACH_STRATEGY(strict, http10_clients_get_chunked_responses_dechunked_and_closed) {
  it_start(dispatch, 1, 1, NULL);
  http10_chunked("/chunked?n=100000&chunk=1000", 100000, "Connection: keep-alive\r\n");
  http10_chunked("/chunked?n=3000&chunk=1", 3000, "");
  http10_chunked("/chunked?n=1048576&chunk=7777", 1048576, "Connection: keep-alive\r\n");
  http10_chunked("/chunked?n=0", 0, "");
  /* HEAD: no body, and no Transfer-Encoding either. */
  int fd = connect_proxy();
  char v[64];
  cr_assert_eq(hc_roundtrip(fd, "HEAD /chunked?n=10 HTTP/1.0\r\n\r\n", &R), 0);
  cr_assert_eq(R.status, 200);
  cr_assert_neq(hc_header(&R, "Transfer-Encoding", v, sizeof(v)), 0, "%s", R.head);
  close(fd);
  /* HTTP/1.1 clients still get the chunked response as it was. */
  cr_assert_eq(it_get("/chunked?n=5000&chunk=100", &R), 0);
  cr_assert(R.chunked);
  cr_assert_eq(R.body_fnv, hc_pattern_fnv(5000));
  it_stop();
}
