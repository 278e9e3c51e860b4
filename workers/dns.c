/* Server host names, resolved by the master off its loop (uv_getaddrinfo) and re-resolved. */
#include "master.h"

#include "log.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/*
 * A name is looked up when a generation first uses it, then every resolve_interval (the
 * smallest of the upstreams using it; 0: never again). An answer that differs from the last one
 * rebuilds every list using the name (servers.c). "No such name" is an answer (no addresses:
 * the compose service is gone, or not there yet); any other failure (no resolver, a timeout)
 * keeps the last addresses. A generation's start-up waits for the first answer of its names,
 * at most DNS_FIRST_MS: then its servers from that name are down until the name resolves.
 */

#define DNS_FIRST_MS 5000

static void lookup_start(struct dnsname *d);
static void on_timer(uv_timer_t *t);

/* Freed once unreferenced (or stopping), with no lookup in flight and the timer closed. */
static void maybe_free(struct dnsname *d) {
  struct dnsname **pp = &d->m->names;

  if (!d->closing || d->busy || d->timer_open)
    return;
  while (*pp != NULL && *pp != d)
    pp = &(*pp)->next;
  if (*pp == d)
    *pp = d->next;
  free(d->addrs);
  free(d);
}

static void timer_closed(uv_handle_t *h) {
  struct dnsname *d = h->data;

  d->timer_open = 0;
  maybe_free(d);
}

static void dns_close(struct dnsname *d) {
  if (d->timer_open && !uv_is_closing((uv_handle_t *)&d->timer))
    uv_close((uv_handle_t *)&d->timer, timer_closed);
  if (d->busy)
    uv_cancel((uv_req_t *)&d->req); /* answers UV_ECANCELED if it had not started */
}

static int addr_cmp(const void *a, const void *b) {
  const struct sockaddr_storage *x = a, *y = b;

  if (x->ss_family != y->ss_family)
    return x->ss_family < y->ss_family ? -1 : 1;
  if (x->ss_family == AF_INET6)
    return memcmp(&((const struct sockaddr_in6 *)x)->sin6_addr,
                  &((const struct sockaddr_in6 *)y)->sin6_addr, sizeof(struct in6_addr));
  return memcmp(&((const struct sockaddr_in *)x)->sin_addr,
                &((const struct sockaddr_in *)y)->sin_addr, sizeof(struct in_addr));
}

/* The IPv4 and IPv6 addresses of an answer, sorted, without duplicates, ports 0. */
static int collect(const struct addrinfo *res, struct sockaddr_storage **out, unsigned *n) {
  unsigned cap = 0, k = 0;
  struct sockaddr_storage *a;

  for (const struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next)
    cap++;
  *out = NULL;
  *n = 0;
  if (cap == 0)
    return 0;
  if ((a = calloc(cap, sizeof(*a))) == NULL)
    return UV_ENOMEM;
  for (const struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
    if (ai->ai_family == AF_INET) {
      struct sockaddr_in *s = (struct sockaddr_in *)&a[k];
      s->sin_family = AF_INET;
      s->sin_addr = ((const struct sockaddr_in *)ai->ai_addr)->sin_addr;
    } else if (ai->ai_family == AF_INET6) {
      struct sockaddr_in6 *s = (struct sockaddr_in6 *)&a[k];
      s->sin6_family = AF_INET6;
      s->sin6_addr = ((const struct sockaddr_in6 *)ai->ai_addr)->sin6_addr;
    } else {
      continue;
    }
    k++;
  }
  qsort(a, k, sizeof(*a), addr_cmp);
  *n = 0;
  for (unsigned i = 0; i < k; i++)
    if (*n == 0 || addr_cmp(&a[*n - 1], &a[i]) != 0)
      a[(*n)++] = a[i];
  *out = a;
  return 0;
}

static int same_set(const struct dnsname *d, const struct sockaddr_storage *a, unsigned n) {
  if (d->naddrs != n)
    return 0;
  for (unsigned i = 0; i < n; i++)
    if (addr_cmp(&d->addrs[i], &a[i]) != 0)
      return 0;
  return 1;
}

/* "a, b, c" for the log (truncated with "..."). */
static void show_set(const struct sockaddr_storage *a, unsigned n, char *out, size_t cap) {
  size_t off = 0;
  char ip[INET6_ADDRSTRLEN];

  out[0] = '\0';
  for (unsigned i = 0; i < n && off + sizeof(ip) + 8 < cap; i++) {
    if (a[i].ss_family == AF_INET6)
      inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)&a[i])->sin6_addr, ip, sizeof(ip));
    else
      inet_ntop(AF_INET, &((const struct sockaddr_in *)&a[i])->sin_addr, ip, sizeof(ip));
    off += (size_t)snprintf(out + off, cap - off, "%s%s", i > 0 ? ", " : "", ip);
    if (i + 1 < n && off + sizeof(ip) + 8 >= cap)
      snprintf(out + off, cap - off, ", ...");
  }
}

static void schedule(struct dnsname *d) {
  if (!d->closing && d->interval_ms > 0)
    uv_timer_start(&d->timer, on_timer, d->interval_ms, 0);
}

static void on_answer(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  struct dnsname *d = req->data;
  struct master *m = d->m;
  struct sockaddr_storage *a = NULL;
  unsigned n = 0;
  int first = !d->answered, gone = status == UV_EAI_NONAME || status == UV_EAI_NODATA;
  char shown[512];

  d->busy = 0;
  d->lookups++;
  if (status == 0 && collect(res, &a, &n) != 0)
    status = UV_ENOMEM;
  uv_freeaddrinfo(res);
  if (d->closing) {
    free(a);
    maybe_free(d);
    return;
  }
  d->answered = 1;
  d->t_answer = uv_now(m->loop);
  if ((status == 0 || gone) && !same_set(d, a, n)) {
    show_set(a, n, shown, sizeof(shown));
    event_add(m, EV_DNS, 0, (long)getpid(), m->cur != NULL ? m->cur->id : 0,
              "%s resolves to %u %s%s%s (was %u)", d->host, n, n == 1 ? "address" : "addresses",
              n > 0 ? ": " : "", shown, d->naddrs);
    free(d->addrs);
    d->addrs = a;
    d->naddrs = n;
    a = NULL;
    servers_name_changed(m, d);
  }
  free(a);
  if (status != 0 && status != d->err)
    LBP_WARN("upstream server name %s: %s%s", d->host, uv_strerror(status),
             d->naddrs > 0 ? " (its last addresses stay in use)"
                           : " (its servers are down until it resolves)");
  d->err = status;
  schedule(d);
  if (first)
    master_workers_changed(m);
}

static void lookup_start(struct dnsname *d) {
  struct addrinfo hints;
  int rc;

  if (d->busy || d->closing)
    return;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  d->req.data = d;
  if ((rc = uv_getaddrinfo(d->m->loop, &d->req, on_answer, d->host, NULL, &hints)) != 0) {
    LBP_WARN("upstream server name %s: cannot start a lookup: %s", d->host, uv_strerror(rc));
    d->answered = 1;
    schedule(d);
    return;
  }
  d->busy = 1;
}

static void on_timer(uv_timer_t *t) {
  struct dnsname *d = t->data;

  if (!d->busy) {
    lookup_start(d);
    return;
  }
  /* The first lookup is still running at the start-up deadline: start without it. */
  if (!d->answered) {
    d->answered = 1;
    LBP_WARN("upstream server name %s: no answer within %d ms: its servers are down until it "
             "resolves",
             d->host, DNS_FIRST_MS);
    master_workers_changed(d->m);
  }
}

struct dnsname *dns_ref(struct master *m, const char *host) {
  struct dnsname *d;

  for (d = m->names; d != NULL; d = d->next)
    if (!d->closing && strcmp(d->host, host) == 0) {
      d->refs++;
      return d;
    }
  if ((d = calloc(1, sizeof(*d))) == NULL)
    return NULL;
  d->m = m;
  d->refs = 1;
  snprintf(d->host, sizeof(d->host), "%s", host);
  uv_timer_init(m->loop, &d->timer);
  d->timer.data = d;
  d->timer_open = 1;
  d->next = m->names;
  m->names = d;
  lookup_start(d);
  uv_timer_start(&d->timer, on_timer, DNS_FIRST_MS, 0);
  return d;
}

void dns_unref(struct dnsname *d) {
  if (--d->refs > 0)
    return;
  d->closing = 1;
  dns_close(d);
  maybe_free(d);
}

/* The smallest resolve_interval of the live generations' upstreams naming d; 0: never. */
static uint64_t interval_of(const struct master *m, const struct dnsname *d) {
  uint64_t best = 0;

  for (const struct generation *g = m->gens; g != NULL; g = g->next)
    for (size_t k = 0; k < g->cfg->nupstreams; k++) {
      const struct cfg_upstream *up = &g->cfg->upstreams[k];
      for (size_t j = 0; j < up->nservers; j++)
        if (up->servers[j].dns && strcmp(up->servers[j].addr.host, d->host) == 0 &&
            up->resolve_interval_ms > 0 && (best == 0 || up->resolve_interval_ms < best))
          best = up->resolve_interval_ms;
    }
  return best;
}

void dns_sync(struct master *m) {
  struct dnsname *next;

  for (struct dnsname *d = m->names; d != NULL; d = next) {
    next = d->next;
    if (d->closing) {
      dns_close(d);
      maybe_free(d);
      continue;
    }
    uint64_t iv = interval_of(m, d);
    if (iv != d->interval_ms) {
      d->interval_ms = iv;
      if (d->answered && !d->busy) {
        if (iv > 0)
          uv_timer_start(&d->timer, on_timer, iv, 0);
        else
          uv_timer_stop(&d->timer);
      }
    }
  }
}
