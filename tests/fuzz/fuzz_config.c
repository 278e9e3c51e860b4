/* libFuzzer target: the config loader (cfg_parse) on arbitrary bytes, offline. */

/*
 * The input is a config file. Checked:
 * 1. cfg_parse returns 0 with a config, or a negative code with no config and one line of error
 *    text that names the file ("fuzz.yaml:..."), NUL-terminated inside its buffer;
 * 2. a config that loads keeps every bound of the key tables and every cross check of the
 *    meaning step (routes point at upstreams, listen and IP-literal server addresses resolved,
 *    servers written as names left to the master's run-time resolver, port base fits);
 * 3. parsing the same bytes again gives the same answer (nothing depends on leftovers);
 * 4. the router gives an in-range answer for a few requests on every config that loads, and an
 *    answer whenever a catch-all route exists.
 *
 * Name resolution. cfg_parse resolves the listen address (numeric with inet_pton, a name with
 * getaddrinfo); server names are not resolved at load (cfg_server.dns). getaddrinfo could wait
 * on DNS for seconds per input, so this target is linked with
 * -Wl,--wrap=getaddrinfo,--wrap=freeaddrinfo (tests/fuzz/CMakeLists.txt) and the calls from lbp_config land in __wrap_getaddrinfo below: "localhost" is 127.0.0.1 (and
 * "ip6-localhost" ::1), every other name does not exist. No DNS, no /etc/hosts, no network;
 * the config sources are unchanged.
 */
#include "fuzz.h"

#include "config.h"
#include "router.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#define NAME "fuzz.yaml"

int __wrap_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                       struct addrinfo **res);
void __wrap_freeaddrinfo(struct addrinfo *ai);

/* One result, allocated as a whole so __wrap_freeaddrinfo frees it with one call. */
struct fake_ai {
  struct addrinfo ai;
  struct sockaddr_storage sa;
};

int __wrap_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                       struct addrinfo **res) {
  struct fake_ai *f;
  int v6;

  if (node == NULL || (strcmp(node, "localhost") != 0 && strcmp(node, "ip6-localhost") != 0))
    return EAI_NONAME;
  v6 = node[0] == 'i';
  if ((f = calloc(1, sizeof(*f))) == NULL)
    return EAI_MEMORY;
  f->ai.ai_socktype = SOCK_STREAM;
  f->ai.ai_addr = (struct sockaddr *)&f->sa;
  if (v6) {
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&f->sa;
    sin6->sin6_family = AF_INET6;
    sin6->sin6_addr = in6addr_loopback;
    f->ai.ai_family = AF_INET6;
    f->ai.ai_addrlen = sizeof(*sin6);
  } else {
    struct sockaddr_in *sin = (struct sockaddr_in *)&f->sa;
    sin->sin_family = AF_INET;
    sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    f->ai.ai_family = AF_INET;
    f->ai.ai_addrlen = sizeof(*sin);
  }
  *res = &f->ai;
  return 0;
}

void __wrap_freeaddrinfo(struct addrinfo *ai) {
  free(ai); /* the first member of struct fake_ai */
}

static int in_range(uint64_t v, uint64_t lo, uint64_t hi) {
  return v >= lo && v <= hi;
}

static void check_addr(const struct cfg_addr *a, const char *what) {
  FUZZ_CHECK(memchr(a->host, '\0', sizeof(a->host)) != NULL, "%s: host not terminated", what);
  FUZZ_CHECK(a->salen == sizeof(struct sockaddr_in) || a->salen == sizeof(struct sockaddr_in6),
             "%s: not resolved", what);
  FUZZ_CHECK(a->sa.ss_family == (a->salen == sizeof(struct sockaddr_in) ? AF_INET : AF_INET6),
             "%s: family", what);
  FUZZ_CHECK(a->line >= 0 && a->col >= 0, "%s: at %d:%d", what, a->line, a->col);
}

/* Every bound the key tables and the meaning step promise. */
static void check_config(const struct lbp_config *c) {
  int catch_all = 0;

  FUZZ_CHECK(c->file != NULL && strcmp(c->file, NAME) == 0, "file name");
  FUZZ_CHECK(in_range(c->workers, 1, 256), "workers %u", c->workers);
  FUZZ_CHECK((unsigned)c->dispatch <= CFG_DISPATCH_REUSEPORT, "dispatch %d", c->dispatch);
  FUZZ_CHECK(c->user == NULL || c->user[0] != '\0', "empty user");
  FUZZ_CHECK(c->proxy_port_base == 0 || (unsigned)c->proxy_port_base + c->workers - 1 <= 65535,
             "port base %u with %u workers", c->proxy_port_base, c->workers);
  FUZZ_CHECK(in_range(c->timeouts.connect_ms, 1, 3600000) &&
                 in_range(c->timeouts.client_header_ms, 1, 3600000) &&
                 in_range(c->timeouts.client_idle_ms, 1, 3600000) &&
                 in_range(c->timeouts.upstream_response_ms, 1, 3600000),
             "timeout out of bounds");
  FUZZ_CHECK(c->stats_interval_ms <= 24 * 3600000ull, "stats_interval");
  FUZZ_CHECK(in_range(c->limits.max_header_bytes, 1024, 1024 * 1024), "max_header_bytes %llu",
             (unsigned long long)c->limits.max_header_bytes);
  check_addr(&c->listen, "listen");
  FUZZ_CHECK(in_range(c->nupstreams, 1, 1024), "%zu upstreams", c->nupstreams);
  for (size_t i = 0; i < c->nupstreams; i++) {
    const struct cfg_upstream *u = &c->upstreams[i];
    FUZZ_CHECK(u->name != NULL && u->name[0] != '\0', "upstream %zu name", i);
    for (size_t j = 0; j < i; j++)
      FUZZ_CHECK(strcmp(c->upstreams[j].name, u->name) != 0, "two upstreams named %s", u->name);
    FUZZ_CHECK(in_range(u->nservers, 1, 256), "upstream %zu: %zu servers", i, u->nservers);
    FUZZ_CHECK(u->keepalive <= 10000, "keepalive %u", u->keepalive);
    for (size_t j = 0; j < u->nservers; j++) {
      FUZZ_CHECK(in_range(u->servers[j].weight, 1, 1000), "weight %u", u->servers[j].weight);
      FUZZ_CHECK(u->servers[j].addr.port >= 1, "server port 0");
      if (u->servers[j].dns) {
        FUZZ_CHECK(memchr(u->servers[j].addr.host, '\0', sizeof(u->servers[j].addr.host)) != NULL &&
                       u->servers[j].addr.host[0] != '\0',
                   "server name empty or not terminated");
        FUZZ_CHECK(u->servers[j].addr.salen == 0, "server name %s resolved at load",
                   u->servers[j].addr.host);
      } else {
        check_addr(&u->servers[j].addr, "server");
      }
    }
  }
  FUZZ_CHECK(in_range(c->nroutes, 1, 4096), "%zu routes", c->nroutes);
  for (size_t i = 0; i < c->nroutes; i++) {
    const struct cfg_route *r = &c->routes[i];
    FUZZ_CHECK(r->upstream < c->nupstreams, "route %zu -> upstream %zu", i, r->upstream);
    FUZZ_CHECK(r->path == NULL || r->path[0] == '/', "route %zu path", i);
    FUZZ_CHECK(r->host == NULL || r->host[0] != '\0', "route %zu empty host", i);
    catch_all |= r->host == NULL && r->path == NULL;
  }
  /* The router on this config: answers stay in range; a catch-all always answers. */
  static const struct {
    const char *host, *target;
  } reqs[] = {{"example.com", "/"},
              {"a.example.com:8080", "/api/x?y"},
              {NULL, "http://h.example.com/static/a"},
              {"[::1]:80", "*"},
              {" WWW.Example.COM. ", "/a/b/c"}};
  for (size_t i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++) {
    const char *h = reqs[i].host;
    int r = px_route(c, h, h ? strlen(h) : 0, reqs[i].target, strlen(reqs[i].target));
    FUZZ_CHECK(r >= -1 && r < (int)c->nroutes, "route %d of %zu", r, c->nroutes);
    FUZZ_CHECK(!catch_all || r >= 0, "no route though a catch-all exists");
  }
}

static void check_error(int rc, const struct lbp_config *c, const struct cfg_error *e) {
  size_t len = strnlen(e->msg, sizeof(e->msg));

  FUZZ_CHECK(rc < 0, "rc %d", rc);
  FUZZ_CHECK(c == NULL, "a config despite an error");
  FUZZ_CHECK(len > 0 && len < sizeof(e->msg), "error text empty or unterminated");
  FUZZ_CHECK(strncmp(e->msg, NAME ":", sizeof(NAME)) == 0, "error does not name the file: %s",
             e->msg);
  for (size_t i = 0; i < len; i++)
    FUZZ_CHECK((unsigned char)e->msg[i] >= ' ' && e->msg[i] != 0x7f,
               "error text has control byte %#x at %zu: %s", (unsigned char)e->msg[i], i, e->msg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct lbp_config *c1 = NULL, *c2 = NULL;
  static struct cfg_error e1, e2;
  int rc1, rc2;

  if (size > 1u << 16)
    return 0;
  rc1 = cfg_parse(NAME, (const char *)data, size, &c1, &e1);
  if (rc1 == 0) {
    FUZZ_CHECK(c1 != NULL, "no config");
    check_config(c1);
  } else {
    check_error(rc1, c1, &e1);
  }
  rc2 = cfg_parse(NAME, (const char *)data, size, &c2, &e2);
  FUZZ_CHECK(rc1 == rc2, "second parse: %d then %d", rc1, rc2);
  if (rc1 != 0)
    FUZZ_CHECK(strcmp(e1.msg, e2.msg) == 0, "second parse: '%s' then '%s'", e1.msg, e2.msg);
  else
    FUZZ_CHECK(c1->nupstreams == c2->nupstreams && c1->nroutes == c2->nroutes &&
                   c1->workers == c2->workers && c1->listen.salen == c2->listen.salen &&
                   memcmp(&c1->listen.sa, &c2->listen.sa, c1->listen.salen) == 0,
               "second parse gives another config");
  cfg_free(c1);
  cfg_free(c2);
  return 0;
}
