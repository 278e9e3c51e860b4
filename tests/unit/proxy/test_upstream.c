/* Tests for proxy/upstream.c: the HTTP/1 client, used alone (no client request, as a health
 * check would), against a scripted server in a thread. */
#include "upstream.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- the scripted server: blocking sockets in a thread ---- */

enum step_kind {
  ACCEPT,    /* take the next connection */
  READ_HEAD, /* read one request head (up to the blank line); fails the test on EOF */
  SEND,      /* write `text` */
  SHUT,      /* FIN */
  RESET,     /* close with RST */
  CLOSE,     /* close */
  WAIT_EOF,  /* read until the client closes */
  WAIT_GO,   /* wait for the test thread (server_go) */
  SIGNAL,    /* tell the test thread (server_wait) */
};

struct step {
  enum step_kind kind;
  const char *text;
};

struct server {
  int lfd, fd;
  uint16_t port;
  const struct step *script;
  pthread_t th;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int signals, gos, gone;
  int heads; /* request heads read */
  char last_head[4096];
};

static struct server S;

static void read_head(struct server *s) {
  size_t n = 0;

  while (n < sizeof(s->last_head) - 1) {
    ssize_t k = recv(s->fd, s->last_head + n, 1, 0);
    if (k <= 0)
      return;
    n++;
    if (n >= 4 && memcmp(s->last_head + n - 4, "\r\n\r\n", 4) == 0)
      break;
  }
  s->last_head[n] = '\0';
  s->heads++;
}

static void *server_main(void *arg) {
  struct server *s = arg;
  char sink[4096];
  struct linger lg = {1, 0};

  for (const struct step *st = s->script; st->kind != SIGNAL || st->text == NULL; st++) {
    switch (st->kind) {
    case ACCEPT:
      s->fd = accept(s->lfd, NULL, NULL);
      break;
    case READ_HEAD:
      read_head(s);
      break;
    case SEND:
      send(s->fd, st->text, strlen(st->text), MSG_NOSIGNAL);
      break;
    case SHUT:
      shutdown(s->fd, SHUT_WR);
      break;
    case RESET:
      setsockopt(s->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
      close(s->fd);
      break;
    case CLOSE:
      close(s->fd);
      break;
    case WAIT_EOF:
      while (recv(s->fd, sink, sizeof(sink), 0) > 0)
        ;
      break;
    case WAIT_GO:
      pthread_mutex_lock(&s->mu);
      while (s->gos <= s->gone)
        pthread_cond_wait(&s->cv, &s->mu);
      s->gone++;
      pthread_mutex_unlock(&s->mu);
      break;
    case SIGNAL:
      pthread_mutex_lock(&s->mu);
      s->signals++;
      pthread_cond_broadcast(&s->cv);
      pthread_mutex_unlock(&s->mu);
      break;
    }
  }
  return NULL;
}

#define END                                                                                        \
  { SIGNAL, "end" }

static void server_start(const struct step *script) {
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof(sa);

  memset(&S, 0, sizeof(S));
  S.lfd = socket(AF_INET, SOCK_STREAM, 0);
  cr_assert_geq(S.lfd, 0);
  cr_assert_eq(bind(S.lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  cr_assert_eq(listen(S.lfd, 16), 0);
  cr_assert_eq(getsockname(S.lfd, (struct sockaddr *)&sa, &len), 0);
  S.port = ntohs(sa.sin_port);
  S.script = script;
  pthread_mutex_init(&S.mu, NULL);
  pthread_cond_init(&S.cv, NULL);
  pthread_create(&S.th, NULL, server_main, &S);
}

/* Blocks until the server reached its n-th SIGNAL step. */
static void server_wait(int n) {
  pthread_mutex_lock(&S.mu);
  while (S.signals < n)
    pthread_cond_wait(&S.cv, &S.mu);
  pthread_mutex_unlock(&S.mu);
}

/* Lets the server past its next WAIT_GO step. */
static void server_go(void) {
  pthread_mutex_lock(&S.mu);
  S.gos++;
  pthread_cond_broadcast(&S.cv);
  pthread_mutex_unlock(&S.mu);
}

static void server_join(void) {
  pthread_join(S.th, NULL);
  close(S.lfd);
}

/* ---- the client side ---- */

struct result {
  int ready, sent, errors, completes, heads, holds;
  enum px_up_fail ft;
  int status[4];
  char body[65536];
  size_t body_len;
  int hold_next; /* on_data holds the bytes this many times */
  int stop_on_complete;
  struct px_up *held;
};

static uv_loop_t loop;
static struct px_bufpool pool;
static struct px_upenv env;
static struct px_server *srv;
static struct result res;

static void on_ready(struct px_up *u) {
  res.ready++;
}

static void on_sent(struct px_up *u, int status) {
  res.sent++;
}

static int on_data(struct px_up *u, const struct px_up_response *p, const char *body, size_t len,
                   int complete) {
  if (p != NULL && res.heads < 4)
    res.status[res.heads++] = p->status;
  memcpy(res.body + res.body_len, body, len);
  res.body_len += len;
  res.completes += complete;
  if (complete && res.stop_on_complete)
    uv_stop(&loop);
  if (res.hold_next > 0) {
    res.hold_next--;
    res.holds++;
    res.held = u;
    uv_stop(&loop);
    return 1;
  }
  return 0;
}

static void on_error(struct px_up *u, enum px_up_fail ft, int err) {
  res.errors++;
  res.ft = ft;
}

static const struct px_up_cbs cbs = {
    .on_ready = on_ready,
    .on_sent = on_sent,
    .on_data = on_data,
    .on_error = on_error,
};

static void setup(void) {
  memset(&res, 0, sizeof(res));
  uv_loop_init(&loop);
  px_bufpool_init(&pool, 16 * 1024, 8);
  px_upenv_init(&env, &loop, &pool, 2000, 2000);
}

static void use_server(unsigned max_idle, uint64_t idle_ms) {
  struct sockaddr_in sa;

  uv_ip4_addr("127.0.0.1", S.port, &sa);
  srv = px_server_new((struct sockaddr *)&sa, "test", max_idle, idle_ms);
  cr_assert_not_null(srv);
}

static void close_walk(uv_handle_t *h, void *arg) {
  if (!uv_is_closing(h))
    uv_close(h, NULL);
}

static void teardown(void) {
  px_upenv_close_all(&env);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_walk(&loop, close_walk, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  cr_assert_eq(env.nconns, 0, "a connection was not freed");
  if (srv != NULL) {
    cr_assert_eq(srv->refs, 1, "a connection still holds the server");
    px_server_unref(srv);
    srv = NULL;
  }
  cr_assert_eq(uv_loop_close(&loop), 0);
  px_bufpool_clear(&pool);
}

/* Runs the loop until `done` says so, at most 5 s of loop time. */
static void run_until(int (*done)(void)) {
  uint64_t deadline = uv_now(&loop) + 5000;

  while (!done() && uv_now(&loop) < deadline) {
    uv_run(&loop, UV_RUN_ONCE);
    uv_update_time(&loop);
  }
  cr_assert(done(), "timed out");
}

static int got_ready(void) {
  return res.ready > 0 || res.errors > 0;
}
static int got_end(void) {
  return res.completes > 0 || res.errors > 0;
}
static int got_error(void) {
  return res.errors > 0;
}
static int pool_empty(void) {
  return srv->nidle == 0;
}

/* Gets a connection and sends a GET; returns it. */
static struct px_up *get(const char *req, unsigned flags, int want_pooled) {
  struct px_up *u = NULL;
  uv_buf_t b = uv_buf_init((char *)req, (unsigned)strlen(req));
  int rc = px_up_get(&env, srv, flags, &cbs, &res, &u);

  cr_assert_eq(rc, want_pooled, "px_up_get: %d", rc);
  if (rc == 0) {
    res.ready = 0;
    run_until(got_ready);
    cr_assert_eq(res.errors, 0, "connect failed");
  }
  cr_assert_geq(px_up_send(u, &b, 1), 0);
  px_up_request_done(u);
  return u;
}

static const char GET[] = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";

TestSuite(upstream, .init = setup, .fini = teardown, .timeout = 30);

Test(upstream, a_response_is_delivered_and_the_connection_pooled_and_reused) {
  static const struct step script[] = {
      {ACCEPT, NULL},
      {READ_HEAD, NULL},
      {SEND, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"},
      {READ_HEAD, NULL},
      {SEND, "HTTP/1.1 204 No Content\r\n\r\n"},
      {WAIT_EOF, NULL},
      END,
  };
  server_start(script);
  use_server(4, 10000);
  get(GET, 0, 0);
  run_until(got_end);
  cr_assert_eq(res.status[0], 200);
  cr_assert_eq(res.body_len, 5);
  cr_assert_arr_eq(res.body, "hello", 5);
  cr_assert_eq(srv->nidle, 1, "the connection was not pooled");
  res.completes = 0;
  get(GET, 0, 1); /* from the pool: ready at once */
  run_until(got_end);
  cr_assert_eq(res.status[1], 204);
  cr_assert_eq(S.heads, 2, "the server saw %d requests", S.heads);
  px_upenv_close_all(&env);
  uv_run(&loop, UV_RUN_DEFAULT);
  server_join();
}

Test(upstream, a_refused_connect_is_a_connect_failure) {
  static const struct step script[] = {END};
  server_start(script);
  server_join(); /* the port is closed now */
  use_server(4, 10000);
  struct px_up *u;
  int rc = px_up_get(&env, srv, 0, &cbs, &res, &u);
  if (rc == 0)
    run_until(got_error);
  cr_assert(rc < 0 || (res.errors == 1 && res.ft == PX_UP_CONNECT), "rc %d ft %d", rc, res.ft);
}

Test(upstream, eof_before_any_response_byte_is_closed) {
  static const struct step script[] = {{ACCEPT, NULL}, {READ_HEAD, NULL}, {CLOSE, NULL}, END};
  server_start(script);
  use_server(4, 10000);
  get(GET, 0, 0);
  run_until(got_error);
  cr_assert_eq(res.ft, PX_UP_CLOSED);
  server_join();
}

Test(upstream, a_reset_mid_body_is_a_truncated_response) {
  static const struct step script[] = {
      {ACCEPT, NULL},
      {READ_HEAD, NULL},
      {SEND, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part"},
      {CLOSE, NULL},
      END,
  };
  server_start(script);
  use_server(4, 10000);
  get(GET, 0, 0);
  run_until(got_error);
  cr_assert_eq(res.ft, PX_UP_TRUNCATED);
  cr_assert_eq(res.completes, 0, "a truncated response was reported complete");
  cr_assert_eq(res.status[0], 200);
  server_join();
}

Test(upstream, garbage_is_a_bad_response) {
  static const struct step script[] = {
      {ACCEPT, NULL}, {READ_HEAD, NULL}, {SEND, "SSH-2.0-OpenSSH\r\n\r\n"}, {WAIT_EOF, NULL}, END,
  };
  server_start(script);
  use_server(4, 10000);
  get(GET, 0, 0);
  run_until(got_error);
  cr_assert_eq(res.ft, PX_UP_BAD_RESPONSE);
  server_join();
}

Test(upstream, a_silent_server_is_a_timeout) {
  static const struct step script[] = {
      {ACCEPT, NULL},
      {READ_HEAD, NULL},
      {WAIT_EOF, NULL},
      END,
  };
  server_start(script);
  env.response_ms = 100;
  use_server(4, 10000);
  get(GET, 0, 0);
  run_until(got_error);
  cr_assert_eq(res.ft, PX_UP_TIMEOUT);
  server_join();
}

Test(upstream, a_close_delimited_http10_response_completes_at_eof_and_is_not_pooled) {
  static const struct step script[] = {
      {ACCEPT, NULL},
      {READ_HEAD, NULL},
      {SEND, "HTTP/1.0 200 OK\r\nX-A: b\r\n\r\nuntil the end"},
      {CLOSE, NULL},
      END,
  };
  server_start(script);
  use_server(4, 10000);
  get(GET, 0, 0);
  run_until(got_end);
  cr_assert_eq(res.errors, 0);
  cr_assert_eq(res.completes, 1);
  cr_assert_eq(res.body_len, 13);
  cr_assert_eq(srv->nidle, 0);
  server_join();
}

Test(upstream, an_interim_head_comes_before_the_final_one) {
  static const struct step script[] = {
      {ACCEPT, NULL},
      {READ_HEAD, NULL},
      {SEND, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"},
      {WAIT_EOF, NULL},
      END,
  };
  server_start(script);
  use_server(4, 10000);
  get(GET, 0, 0);
  run_until(got_end);
  cr_assert_eq(res.heads, 2);
  cr_assert_eq(res.status[0], 100);
  cr_assert_eq(res.status[1], 201);
  cr_assert_arr_eq(res.body, "ok", 2);
  px_upenv_close_all(&env);
  uv_run(&loop, UV_RUN_DEFAULT);
  server_join();
}

Test(upstream, a_head_response_has_no_body_whatever_it_announces) {
  static const struct step script[] = {
      {ACCEPT, NULL},
      {READ_HEAD, NULL},
      {SEND, "HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n"},
      {WAIT_EOF, NULL},
      END,
  };
  server_start(script);
  use_server(4, 10000);
  get("HEAD / HTTP/1.1\r\nHost: x\r\n\r\n", PX_UP_HEAD, 0);
  run_until(got_end);
  cr_assert_eq(res.completes, 1);
  cr_assert_eq(res.body_len, 0);
  cr_assert_eq(srv->nidle, 1);
  px_upenv_close_all(&env);
  uv_run(&loop, UV_RUN_DEFAULT);
  server_join();
}

Test(upstream, held_bytes_stop_delivery_until_resumed) {
  static const struct step script[] = {
      {ACCEPT, NULL},
      {READ_HEAD, NULL},
      {SEND, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"},
      {WAIT_GO, NULL},
      {SEND, "0\r\n\r\n"},
      {SIGNAL, NULL},
      {WAIT_EOF, NULL},
      END,
  };
  server_start(script);
  use_server(4, 10000);
  res.hold_next = 1;
  get(GET, 0, 0);
  uv_run(&loop, UV_RUN_DEFAULT); /* stops when on_data holds */
  cr_assert_eq(res.holds, 1);
  cr_assert_eq(res.completes, 0);
  server_go();
  server_wait(1);
  /* The rest is sent, but nothing is delivered while the bytes are held. */
  for (int i = 0; i < 20; i++)
    uv_run(&loop, UV_RUN_NOWAIT);
  cr_assert_eq(res.completes, 0);
  px_up_resume(res.held);
  run_until(got_end);
  cr_assert_eq(res.completes, 1);
  cr_assert_eq(srv->nidle, 1);
  px_upenv_close_all(&env);
  uv_run(&loop, UV_RUN_DEFAULT);
  server_join();
}

Test(upstream, an_idle_connection_the_server_closes_leaves_the_pool) {
  static const struct step script[] = {
      {ACCEPT, NULL}, {READ_HEAD, NULL}, {SEND, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"},
      {SIGNAL, NULL}, {CLOSE, NULL},     END,
  };
  server_start(script);
  use_server(4, 10000);
  get(GET, 0, 0);
  run_until(got_end);
  cr_assert_eq(srv->nidle, 1);
  run_until(pool_empty);
  server_join();
}

Test(upstream, idle_connections_expire_after_keepalive_timeout) {
  static const struct step script[] = {
      {ACCEPT, NULL},
      {READ_HEAD, NULL},
      {SEND, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"},
      {WAIT_EOF, NULL},
      END,
  };
  server_start(script);
  use_server(4, 50);
  get(GET, 0, 0);
  run_until(got_end);
  cr_assert_eq(srv->nidle, 1);
  uint64_t t0 = uv_now(&loop);
  run_until(pool_empty);
  cr_assert_geq(uv_now(&loop) - t0, 40);
  server_join(); /* WAIT_EOF ends: the client closed it */
}

static int got_two(void) {
  return res.completes >= 2 || res.errors > 0;
}
static int one_idle(void) {
  return srv->nidle <= 1;
}

/* More connections busy at once than keepalive: the extra one is pooled too (the next request
 * would otherwise connect anew), but closed after PX_UP_SURPLUS_MS, not keepalive_timeout. */
Test(upstream, a_connection_beyond_keepalive_is_pooled_briefly) {
  static const struct step script[] = {
      {ACCEPT, NULL},
      {READ_HEAD, NULL},
      {SEND, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"},
      {ACCEPT, NULL},
      {READ_HEAD, NULL},
      {SEND, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"},
      END,
  };
  uint64_t t0;

  server_start(script);
  use_server(1, 10000);
  get(GET, 0, 0);
  get(GET, 0, 0); /* the first is busy: a second connection */
  run_until(got_two);
  cr_assert_eq(res.errors, 0);
  cr_assert_eq(srv->nidle, 2, "the connection beyond keepalive was closed at once");
  t0 = uv_now(&loop);
  run_until(one_idle);
  cr_assert_geq(uv_now(&loop) - t0, PX_UP_SURPLUS_MS - 100);
  cr_assert_eq(srv->nidle, 1, "the connection within keepalive went too");
  server_join();
}

Test(upstream, check_skips_a_pooled_connection_whose_fin_is_waiting) {
  static const struct step script[] = {
      {ACCEPT, NULL},
      {READ_HEAD, NULL},
      {SEND, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"},
      {SHUT, NULL}, /* the keep-alive timeout of the server fires: FIN */
      {SIGNAL, NULL},
      {ACCEPT, NULL},
      {READ_HEAD, NULL},
      {SEND, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"},
      {WAIT_EOF, NULL},
      END,
  };
  server_start(script);
  use_server(4, 10000);
  res.stop_on_complete = 1;
  get(GET, 0, 0);
  uv_run(&loop, UV_RUN_DEFAULT); /* until the response is complete: pooled, FIN not seen yet */
  cr_assert_eq(res.completes, 1);
  cr_assert_eq(srv->nidle, 1);
  server_wait(1);
  usleep(20 * 1000); /* loopback delivers the FIN at once; this only covers a slow scheduler */
  /* The loop has not polled since: only the peek can know the connection is closing. */
  res.stop_on_complete = 0;
  res.completes = 0;
  get("POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", PX_UP_CHECK, 0);
  run_until(got_end);
  cr_assert_eq(res.errors, 0);
  cr_assert_eq(res.completes, 1);
  px_upenv_close_all(&env);
  uv_run(&loop, UV_RUN_DEFAULT);
  server_join();
}

Test(upstream, without_check_a_pooled_connection_with_a_waiting_fin_is_reused_and_fails) {
  /* The other side of the test above: what the peek protects a request from. */
  static const struct step script[] = {
      {ACCEPT, NULL},
      {READ_HEAD, NULL},
      {SEND, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"},
      {SHUT, NULL},
      {SIGNAL, NULL},
      {WAIT_EOF, NULL},
      {CLOSE, NULL},
      END,
  };
  server_start(script);
  use_server(4, 10000);
  res.stop_on_complete = 1;
  get(GET, 0, 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  server_wait(1);
  usleep(20 * 1000);
  res.stop_on_complete = 0;
  res.completes = 0;
  get(GET, 0, 1); /* the stale one */
  run_until(got_end);
  cr_assert_eq(res.errors, 1);
  cr_assert_eq(res.ft, PX_UP_CLOSED);
  server_join();
}

/* ---- a server that left its pool ---- */

static int no_conns(void) {
  return env.nconns == 0;
}

Test(upstream, a_retired_server_closes_its_idle_connections_and_pools_no_busy_one) {
  static const struct step script[] = {
      {ACCEPT, NULL},
      {READ_HEAD, NULL},
      {SEND, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"},
      {WAIT_EOF, NULL},
      {SIGNAL, NULL},
      {CLOSE, NULL},
      {ACCEPT, NULL},
      {READ_HEAD, NULL},
      {SIGNAL, NULL},
      {WAIT_GO, NULL},
      {SEND, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"},
      {WAIT_EOF, NULL},
      END,
  };
  server_start(script);
  use_server(4, 60000);
  get(GET, 0, 0);
  run_until(got_end);
  cr_assert_eq(srv->nidle, 1);
  cr_assert_eq(srv->refs, 2, "the pool's and the idle connection's");
  px_server_retire(srv);
  cr_assert_eq(srv->nidle, 0);
  run_until(no_conns); /* closed at once, not after idle_ms */
  cr_assert_eq(srv->refs, 1, "the closed connection still holds the server");
  server_wait(1); /* the server saw the EOF */
  /* A connection busy when the server leaves ends with its exchange. */
  res.completes = 0;
  get(GET, 0, 0);
  server_wait(2);
  server_go();
  run_until(got_end);
  cr_assert_eq(res.completes, 1);
  cr_assert_eq(srv->nidle, 0, "pooled after the server left");
  run_until(no_conns);
  server_join();
}

Test(upstream, a_connection_keeps_its_server_alive_after_its_last_other_reference) {
  static const struct step script[] = {
      {ACCEPT, NULL},
      {READ_HEAD, NULL},
      {SIGNAL, NULL},
      {WAIT_GO, NULL},
      {SEND, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"},
      {WAIT_EOF, NULL},
      END,
  };
  struct px_server *s;

  server_start(script);
  use_server(4, 60000);
  get(GET, 0, 0);
  server_wait(1);
  s = srv;
  srv = NULL; /* the pool lets go of it: only the busy connection holds it now */
  px_server_retire(s);
  px_server_unref(s);
  server_go();
  run_until(got_end); /* ASan: the connection used its server to the end */
  run_until(no_conns);
  server_join();
}
