/* The admin API's upstream control on a real lbproxy: list pools and servers, drain, disable,
 * enable and re-weight a server, kept across a worker's restart and a reload; bad requests. */
#include "itest.h"

#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct hc_resp R;

static const char pool_yaml[] =
    "upstreams:\n  app:\n    servers: [127.0.0.1:%1$u, 127.0.0.1:%2$u]\n";

/* GET (body NULL) or POST `body` to the admin API: the status; *json the parsed answer when
 * it is JSON (else NULL), *text the raw body (malloc'ed; may be NULL). */
static int call(const char *method, const char *path, const char *body, json_t **json,
                char **text) {
  char req[1024], *out = NULL;
  json_error_t err;
  int status;

  snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: admin\r\nContent-Length: %zu\r\n\r\n%s",
           method, path, body != NULL ? strlen(body) : 0, body != NULL ? body : "");
  status = it_admin_raw(req, &out, NULL, 0);
  if (json != NULL)
    *json = out != NULL ? json_loads(out, 0, &err) : NULL;
  if (text != NULL)
    *text = out;
  else
    free(out);
  return status;
}

/* The server named `name` in an upstream object, or NULL. */
static json_t *server_in(json_t *up, const char *name) {
  size_t i;
  json_t *s;

  json_array_foreach(json_object_get(up, "servers"), i, s) {
    if (strcmp(json_string_value(json_object_get(s, "server")), name) == 0)
      return s;
  }
  return NULL;
}

static const char *field(json_t *up, const char *name, const char *key) {
  json_t *s = server_in(up, name);
  cr_assert_not_null(s, "no server %s in the listing", name);
  return json_string_value(json_object_get(s, key));
}

static long number(json_t *up, const char *name, const char *key) {
  json_t *s = server_in(up, name);
  cr_assert_not_null(s, "no server %s in the listing", name);
  return (long)json_integer_value(json_object_get(s, key));
}

/* Sends n GETs; counts those each backend answered (X-Backend b1, b2). */
static void spread(int n, int *b1, int *b2) {
  char v[16];

  *b1 = *b2 = 0;
  for (int i = 0; i < n; i++) {
    cr_assert_eq(it_get("/", &R), 0);
    cr_assert_eq(R.status, 200);
    cr_assert_eq(hc_header(&R, "X-Backend", v, sizeof(v)), 0);
    *b1 += strcmp(v, "b1") == 0;
    *b2 += strcmp(v, "b2") == 0;
  }
}

static void name_of(int i, char *out, size_t cap) {
  snprintf(out, cap, "127.0.0.1:%u", T.be[i].port);
}

IT_TEST(admin_api,
        drain_lets_in_flight_finish_sends_no_new_requests_and_survives_restart_and_reload) {
  char s1[32], s2[32], path[128], yaml[1024], v[16];
  json_t *j = NULL;
  int b1, b2, fd, busy = -1;
  pid_t w;

  it_start_yaml("handoff", 1, 2, pool_yaml);
  name_of(0, s1, sizeof(s1));
  name_of(1, s2, sizeof(s2));
  cr_assert_eq(call("GET", "/upstreams", NULL, &j, NULL), 200);
  json_t *up = json_array_get(json_object_get(j, "upstreams"), 0);
  cr_assert_str_eq(json_string_value(json_object_get(up, "name")), "app");
  cr_assert_str_eq(json_string_value(json_object_get(up, "balance")), "round_robin");
  cr_assert_str_eq(field(up, s1, "state"), "up");
  cr_assert_eq(number(up, s1, "weight"), 1);
  json_decref(j);

  /* A slow request in flight on one server: the listing shows which (active 1). */
  fd = hc_connect(T.px.port, NULL);
  cr_assert_geq(fd, 0);
  const char *slow = "GET /delay?ms=1500 HTTP/1.1\r\nHost: t\r\n\r\n";
  cr_assert_eq(hc_send_all(fd, slow, strlen(slow)), 0);
  for (int64_t deadline = h_now_ms() + 5000; busy < 0; poll(NULL, 0, 10)) {
    cr_assert_lt(h_now_ms(), deadline, "the slow request never showed as active");
    cr_assert_eq(call("GET", "/upstreams/app", NULL, &j, NULL), 200);
    busy = number(j, s1, "active") == 1 ? 0 : number(j, s2, "active") == 1 ? 1 : -1;
    json_decref(j);
  }
  const char *drained = busy == 0 ? s1 : s2, *bname = busy == 0 ? "b1" : "b2";
  snprintf(path, sizeof(path), "/upstreams/app/servers/%s/drain", drained);
  cr_assert_eq(call("POST", path, NULL, &j, NULL), 200);
  cr_assert_str_eq(field(j, drained, "state"), "draining");
  cr_assert_str_eq(field(j, drained, "admin"), "draining");
  json_decref(j);
  cr_assert_gt(it_wait_log("by the admin API", 0, 5000), 0, "the change was not logged");

  /* No new request goes to it... */
  spread(20, &b1, &b2);
  cr_assert_eq(busy == 0 ? b1 : b2, 0, "a drained server got new requests");
  /* ...and the one in flight finishes there. */
  cr_assert_eq(hc_read_response(fd, &R, 0), 0);
  cr_assert_eq(R.status, 200);
  cr_assert_eq(hc_header(&R, "X-Backend", v, sizeof(v)), 0);
  cr_assert_str_eq(v, bname);
  close(fd);

  /* A replacement worker starts with the drain. */
  w = it_worker_pid(1);
  cr_assert_eq(kill(w, SIGKILL), 0);
  for (int64_t deadline = h_now_ms() + 20000; it_worker_pid(1) == w || it_worker_pid(1) <= 0;) {
    cr_assert_lt(h_now_ms(), deadline, "the worker was not replaced");
    poll(NULL, 0, 10);
  }
  spread(10, &b1, &b2);
  cr_assert_eq(busy == 0 ? b1 : b2, 0, "the new worker sent requests to the drained server");

  /* So does a reload that keeps the server. */
  snprintf(yaml, sizeof(yaml),
           "listen: 127.0.0.1:%u\nworkers: 1\ndispatch: handoff\nupstreams:\n  app:\n"
           "    servers: [%s, %s]\n",
           T.px.port, s1, s2);
  cr_assert_gt(it_reload(yaml, 2, 20000), 0);
  spread(10, &b1, &b2);
  cr_assert_eq(busy == 0 ? b1 : b2, 0, "the reloaded generation sent requests to it");
  cr_assert_eq(call("GET", "/upstreams/app", NULL, &j, NULL), 200);
  cr_assert_str_eq(field(j, drained, "state"), "draining");
  json_decref(j);

  /* Enabled: traffic returns. */
  snprintf(path, sizeof(path), "/upstreams/app/servers/%s/enable", drained);
  cr_assert_eq(call("POST", path, NULL, &j, NULL), 200);
  cr_assert_str_eq(field(j, drained, "state"), "up");
  json_decref(j);
  spread(10, &b1, &b2);
  cr_assert_gt(busy == 0 ? b1 : b2, 0, "an enabled server gets no traffic");
  it_stop();
}

IT_TEST(admin_api, weight_changes_the_split_and_default_restores_it) {
  char s1[32], path[128];
  json_t *j = NULL;
  int b1, b2;

  it_start_yaml("handoff", 1, 2, pool_yaml);
  name_of(0, s1, sizeof(s1));
  snprintf(path, sizeof(path), "/upstreams/app/servers/%s/weight", s1);
  cr_assert_eq(call("POST", path, "3", &j, NULL), 200);
  cr_assert_eq(number(j, s1, "weight"), 3);
  cr_assert_eq(number(j, s1, "configured_weight"), 1);
  json_decref(j);
  /* Smooth weighted round robin in one worker: exactly 3:1 over whole rounds. */
  spread(40, &b1, &b2);
  cr_assert(b1 >= 29 && b1 <= 31 && b1 + b2 == 40, "b1 %d b2 %d for weights 3:1", b1, b2);
  /* The status page's source shows it too. */
  char *text = it_admin_get("/metrics", &(int){0});
  char needle[128];
  snprintf(needle, sizeof(needle), "lbproxy_server_weight{upstream=\"app\",server=\"%s\"} 3", s1);
  cr_assert_not_null(strstr(text, needle), "%s", text);
  free(text);
  cr_assert_eq(call("POST", path, "default\n", &j, NULL), 200);
  cr_assert_eq(number(j, s1, "weight"), 1);
  json_decref(j);
  spread(20, &b1, &b2);
  cr_assert(b1 >= 9 && b1 <= 11, "b1 %d b2 %d for weights 1:1", b1, b2);
  it_stop();
}

IT_TEST(admin_api, disabled_servers_get_nothing_and_all_disabled_is_a_503) {
  char s1[32], s2[32], path[128];
  json_t *j = NULL;
  int b1, b2;

  it_start_yaml("handoff", 2, 2, pool_yaml);
  name_of(0, s1, sizeof(s1));
  name_of(1, s2, sizeof(s2));
  snprintf(path, sizeof(path), "/upstreams/app/servers/%s/disable", s1);
  cr_assert_eq(call("POST", path, NULL, &j, NULL), 200);
  cr_assert_str_eq(field(j, s1, "state"), "disabled");
  json_decref(j);
  spread(10, &b1, &b2);
  cr_assert_eq(b1, 0);
  /* By its id too. */
  cr_assert_eq(call("GET", "/upstreams/app", NULL, &j, NULL), 200);
  snprintf(path, sizeof(path), "/upstreams/app/servers/%s/disable", field(j, s2, "id"));
  json_decref(j);
  cr_assert_eq(call("POST", path, NULL, NULL, NULL), 200);
  cr_assert_eq(it_get("/", &R), 0);
  cr_assert_eq(R.status, 503);
  it_stop();
}

IT_TEST(admin_api, bad_requests_get_a_4xx_with_a_reason_and_change_nothing) {
  char s1[32], path[160], *text = NULL;
  json_t *j = NULL;

  it_start_yaml("handoff", 1, 2, pool_yaml);
  name_of(0, s1, sizeof(s1));
  cr_assert_eq(call("GET", "/upstreams/nope", NULL, NULL, &text), 404);
  cr_assert_not_null(strstr(text, "no upstream named 'nope'"), "%s", text);
  free(text);
  cr_assert_eq(call("POST", "/upstreams/app/servers/10.9.9.9:1/drain", NULL, NULL, &text), 404);
  cr_assert_not_null(strstr(text, "has no server '10.9.9.9:1'"), "%s", text);
  free(text);
  snprintf(path, sizeof(path), "/upstreams/app/servers/%s/weight", s1);
  const char *bad[] = {"", "abc", "0", "1001", "-3", "3x", "99999999999999999999"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    cr_assert_eq(call("POST", path, bad[i], NULL, &text), 400, "weight '%s'", bad[i]);
    cr_assert_not_null(strstr(text, "integer 1..1000"), "%s", text);
    free(text);
  }
  snprintf(path, sizeof(path), "/upstreams/app/servers/%s/drain", s1);
  cr_assert_eq(call("GET", path, NULL, NULL, &text), 405);
  free(text);
  cr_assert_eq(call("POST", "/upstreams/app/servers/x/explode", NULL, NULL, &text), 404);
  free(text);
  /* A web page cannot drive it (a browser's POST carries Origin). */
  char req[512], head[512], *body = NULL;
  snprintf(req, sizeof(req),
           "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://evil.example\r\n"
           "Content-Length: 0\r\n\r\n",
           path);
  cr_assert_eq(it_admin_raw(req, &body, head, sizeof(head)), 403);
  cr_assert_not_null(strstr(body, "Origin"), "%s", body);
  free(body);
  /* Nothing changed, and the master serves on. */
  cr_assert_eq(call("GET", "/upstreams/app", NULL, &j, NULL), 200);
  cr_assert_str_eq(field(j, s1, "state"), "up");
  cr_assert_eq(number(j, s1, "weight"), 1);
  json_decref(j);
  cr_assert_eq(it_get("/", &R), 0);
  cr_assert_eq(R.status, 200);
  it_stop();
}
