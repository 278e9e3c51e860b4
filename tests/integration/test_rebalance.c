/* Tests for request-level rebalancing (workers/rebalance.c, px_ctx_shed): busy keep-alive
 * connections piled on one worker move, on the same TCP connection, to the idle one (pipelined
 * requests included); nothing fails; never to a stopped worker; `rebalance: false` turns it
 * off. */
#include "itest.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <unistd.h>

#define NCONN 8

struct heavy {
  int fd;
  atomic_int *stop;
  atomic_ullong ok, on_other; /* responses; those from another worker than the first one */
  atomic_int failed;
  int first_slot;
  int pipeline; /* two requests per write: a handover carries the second one along */
};

static int slot_of(const struct hc_resp *r) {
  char v[128];
  int slot = -1;

  if (hc_header(r, "X-Lbproxy-Worker", v, sizeof(v)) != 0 || sscanf(v, "slot=%d", &slot) != 1)
    return -1;
  return slot;
}

static void *heavy_loop(void *arg) {
  struct heavy *h = arg;
  struct hc_resp *r = malloc(sizeof(*r));

  static const char req[] = "GET / HTTP/1.1\r\nHost: t\r\n\r\n";
  static const char two[] = "GET / HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n";

  while (r != NULL && !atomic_load(h->stop)) {
    int n = h->pipeline ? 2 : 1,
        rc = hc_send_all(h->fd, n == 2 ? two : req, n == 2 ? sizeof(two) - 1 : sizeof(req) - 1);
    for (int i = 0; i < n && rc == 0; i++) {
      rc = hc_read_response(h->fd, r, 0);
      if (rc != 0 || r->status != 200 || !r->keep_alive) {
        fprintf(stderr, "heavy connection: rc %d status %d keep-alive %d\n", rc, r->status,
                r->keep_alive);
        rc = -1;
        break;
      }
      atomic_fetch_add(&h->ok, 1);
      if (slot_of(r) != h->first_slot)
        atomic_fetch_add(&h->on_other, 1);
    }
    if (rc != 0) {
      atomic_store(&h->failed, 1);
      break;
    }
  }
  free(r);
  return NULL;
}

/* A worker's value of a per-worker metric in /metrics ({worker="N"}). */
static uint64_t metric(const char *name, int slot) {
  char *body, key[160], *p;
  int status;
  unsigned long long v = 0;

  body = it_admin_get("/metrics", &status);
  cr_assert_eq(status, 200);
  snprintf(key, sizeof(key), "\n%s{worker=\"%d\"} ", name, slot);
  p = strstr(body, key);
  cr_assert_not_null(p, "%s not in /metrics", key + 1);
  sscanf(p + strlen(key), "%llu", &v);
  free(body);
  return v;
}

struct run {
  int fds[NCONN];
  struct heavy h[NCONN];
  pthread_t t[NCONN];
  int nheavy;
  atomic_int stop;
};

/* Opens NCONN keep-alive connections one after the other (handoff-least alternates them over
 * the two idle workers); those worker 1 took will be busy (start_heavy), the others stay open
 * and idle on worker 2. */
static void pile_on_worker_1(struct run *rn) {
  struct hc_resp *r = malloc(sizeof(*r));
  int on2 = 0;

  cr_assert_not_null(r);
  memset(rn, 0, sizeof(*rn));
  rn->nheavy = 0;
  for (int i = 0; i < NCONN; i++) {
    int slot;
    rn->fds[i] = hc_connect(T.px.port, NULL);
    cr_assert_geq(rn->fds[i], 0);
    cr_assert_eq(hc_roundtrip(rn->fds[i], "GET / HTTP/1.1\r\nHost: t\r\n\r\n", r), 0);
    slot = slot_of(r);
    cr_assert(slot == 1 || slot == 2, "%s", r->head);
    if (slot == 2) {
      on2++;
      continue;
    }
    struct heavy *h = &rn->h[rn->nheavy++];
    h->fd = rn->fds[i];
    h->stop = &rn->stop;
    h->first_slot = 1;
    h->pipeline = rn->nheavy % 2 == 0;
  }
  free(r);
  cr_assert_geq(rn->nheavy, 2, "handoff-least gave worker 1 only %d of %d", rn->nheavy, NCONN);
  cr_assert_geq(on2, 2);
}

/* A closed loop of requests on each of worker 1's connections. */
static void start_heavy(struct run *rn) {
  for (int i = 0; i < rn->nheavy; i++)
    cr_assert_eq(pthread_create(&rn->t[i], NULL, heavy_loop, &rn->h[i]), 0);
}

static void stop_run(struct run *rn) {
  atomic_store(&rn->stop, 1);
  for (int i = 0; i < rn->nheavy; i++)
    pthread_join(rn->t[i], NULL);
  for (int i = 0; i < NCONN; i++)
    close(rn->fds[i]);
  for (int i = 0; i < rn->nheavy; i++)
    cr_assert_eq(atomic_load(&rn->h[i].failed), 0, "a request failed on heavy connection %d", i);
}

static uint64_t total_ok(struct run *rn) {
  uint64_t n = 0;
  for (int i = 0; i < rn->nheavy; i++)
    n += atomic_load(&rn->h[i].ok);
  return n;
}

static int moved(struct run *rn) {
  int n = 0;
  for (int i = 0; i < rn->nheavy; i++)
    n += atomic_load(&rn->h[i].on_other) > 0;
  return n;
}

TestSuite(rebalance, .fini = it_fini, .timeout = 120);

Test(rebalance, busy_connections_move_to_the_idle_worker_and_requests_even_out) {
  struct run rn;
  int64_t deadline;
  uint64_t r1, r2, d1, d2, base;

  it_start("handoff-least", 2, 1, "debug_header: true\n");
  pile_on_worker_1(&rn);
  start_heavy(&rn);
  deadline = h_now_ms() + 30000;
  while (moved(&rn) == 0 && h_now_ms() < deadline)
    usleep(10000);
  cr_assert_gt(moved(&rn), 0, "no connection moved in 30 s (%llu requests)",
               (unsigned long long)total_ok(&rn));
  /* Requests even out: once the moves settled (1000 requests), over the next 6000 worker 2
   * serves a real share (without rebalancing it serves none; alone on a machine the split is
   * about even). Bounds of 10 % and a long stretch: a loaded machine (sanitizers, tests in
   * parallel) favours one process for a while, and 22/78 was seen so. */
  base = total_ok(&rn);
  deadline = h_now_ms() + 30000;
  while (total_ok(&rn) < base + 1000 && h_now_ms() < deadline)
    usleep(10000);
  r1 = metric("lbproxy_requests_total", 1);
  r2 = metric("lbproxy_requests_total", 2);
  base = total_ok(&rn);
  deadline = h_now_ms() + 60000;
  while (total_ok(&rn) < base + 6000 && h_now_ms() < deadline)
    usleep(10000);
  d1 = metric("lbproxy_requests_total", 1) - r1;
  d2 = metric("lbproxy_requests_total", 2) - r2;
  stop_run(&rn);
  fprintf(stderr,
          "rebalance: %d of %d busy connections moved after %llu requests; then worker 1 "
          "served %llu, worker 2 %llu requests\n",
          moved(&rn), rn.nheavy, (unsigned long long)base, (unsigned long long)d1,
          (unsigned long long)d2);
  cr_assert_geq(d1 + d2, 6000);
  cr_assert_geq(d2 * 10, d1 + d2, "after the move worker 2 served %llu of %llu requests",
                (unsigned long long)d2, (unsigned long long)(d1 + d2));
  cr_assert_geq(d1 * 10, d1 + d2, "after the move worker 1 served %llu of %llu requests",
                (unsigned long long)d1, (unsigned long long)(d1 + d2));
  cr_assert_gt(metric("lbproxy_connections_rebalanced_total", 1), 0);
  cr_assert_lt(moved(&rn), rn.nheavy, "every busy connection moved: that is a new pile");
  cr_assert_geq(it_wait_log("worker 1 rebalance pid=", 0, 5000), 0);
  it_stop();
}

Test(rebalance, rebalance_false_leaves_connections_where_they_are) {
  struct run rn;
  int64_t deadline, until;

  it_start("handoff-least", 2, 1, "debug_header: true\nrebalance: false\n");
  pile_on_worker_1(&rn);
  start_heavy(&rn);
  /* Rebalancing acts within about a second under this load: give it three, and 3000
   * requests. */
  until = h_now_ms() + 3000;
  deadline = h_now_ms() + 60000;
  while ((h_now_ms() < until || total_ok(&rn) < 3000) && h_now_ms() < deadline)
    usleep(10000);
  stop_run(&rn);
  cr_assert_geq(total_ok(&rn), 3000);
  cr_assert_eq(moved(&rn), 0);
  cr_assert_eq(metric("lbproxy_connections_rebalanced_total", 1), 0);
  it_stop();
}

Test(rebalance, never_to_a_stopped_worker) {
  struct run rn;
  int64_t deadline, until;
  uint64_t before[NCONN];
  pid_t w2;

  it_start("handoff-least", 2, 1, "debug_header: true\n");
  pile_on_worker_1(&rn);
  /* Worker 2 serves nothing while stopped, so it looks the least busy: its beat says it is
   * not alive, and nothing goes there. */
  w2 = it_worker_pid(2);
  cr_assert_gt(w2, 0);
  it_sigstop(w2);
  start_heavy(&rn);
  /* Rebalancing would act within about a second: a connection moved to worker 2 would make no
   * progress from then on (no answer comes, so it cannot show as moved). Every connection must
   * progress between the second and the fourth second. */
  until = h_now_ms() + 2000;
  deadline = h_now_ms() + 60000;
  while ((h_now_ms() < until || total_ok(&rn) < 1500) && h_now_ms() < deadline)
    usleep(10000);
  for (int i = 0; i < rn.nheavy; i++)
    before[i] = atomic_load(&rn.h[i].ok);
  until = h_now_ms() + 2000;
  while (h_now_ms() < until)
    usleep(10000);
  for (int i = 0; i < rn.nheavy; i++)
    cr_assert_gt(atomic_load(&rn.h[i].ok), before[i],
                 "busy connection %d made no progress: moved to the stopped worker?", i);
  cr_assert_eq(moved(&rn), 0, "a busy connection was moved to a stopped worker");
  /* Alive again: the load evens out. */
  kill(w2, SIGCONT);
  deadline = h_now_ms() + 30000;
  while (moved(&rn) == 0 && h_now_ms() < deadline)
    usleep(10000);
  stop_run(&rn);
  cr_assert_gt(moved(&rn), 0, "nothing moved once worker 2 was back");
  it_stop();
}
