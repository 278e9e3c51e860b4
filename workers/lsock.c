/* The master's listening sockets: bound once, shared by generations, retired without losing a
 * connection. */

/*
 * 1. Every public socket is bound with SO_REUSEPORT, so that a reload may switch to the
 *    reuseport strategy by adding members to its group without closing and reopening it. So
 *    that a second lbproxy cannot join the group unnoticed, the address is first probed with a
 *    plain bind (no SO_REUSEPORT): it fails while anyone listens there.
 * 2. A socket is referenced by the generations that use it (starting, current, draining). The
 *    master accepts on a socket itself (a uv_poll_t on its fd, accept4 in batches) when its
 *    strategy says so (handoff, handoff-least, proxy) or when no ready worker accepts on it:
 *    a reuseport member whose worker is restarting or crash-looping, a socket only draining
 *    workers had, one being retired. What it accepts goes to the current generation.
 * 3. A socket no generation references is retired. A reuseport member first has the group
 *    steered to the public socket (a classic BPF program returning index 0: the first socket
 *    of a group keeps index 0 while it lives), then its backlog is accepted and handed on, once
 *    more after a grace period for handshakes in flight, and only then is it closed; the
 *    steering goes when no member is retiring. Connections queued in the kernel are never reset.
 * 4. Binary upgrade: every socket goes to the new master as an inherited fd, described in
 *    LBPROXY_INHERIT; the new master adopts them instead of binding (lsock_inherit).
 */
#include "master.h"

#include "dispatch.h"
#include "log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef SO_ATTACH_REUSEPORT_CBPF
#define SO_ATTACH_REUSEPORT_CBPF 51
#endif
#ifndef SO_DETACH_REUSEPORT_BPF
#define SO_DETACH_REUSEPORT_BPF 68
#endif

#define BACKLOG          4096
#define ACCEPT_BATCH     64  /* connections per poll callback, so one socket cannot starve others */
#define RETIRE_GRACE_MS  250 /* handshakes in flight on a retiring member complete meanwhile */
#define RETIRE_SETTLE_MS 20  /* retired members' fds are closed by then: steering can go */
#define EMFILE_PAUSE_MS  100 /* out of fds: stop accepting this long rather than spin */

static void lsock_free_cb(uv_handle_t *h);

/* The configured address as a key: what names the same listener across reloads and masters. */
static void addr_key(const struct cfg_addr *a, char *out, size_t cap) {
  snprintf(out, cap, strchr(a->host, ':') ? "[%s]:%u" : "%s:%u", a->any ? "*" : a->host, a->port);
}

static void sock_name(int fd, char *out, size_t cap) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  char host[INET6_ADDRSTRLEN] = "?";
  unsigned port = 0;

  if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0) {
    if (ss.ss_family == AF_INET6) {
      inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, host, sizeof(host));
      port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
      snprintf(out, cap, "[%s]:%u", host, port);
      return;
    }
    inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, host, sizeof(host));
    port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
  }
  snprintf(out, cap, "%s:%u", host, port);
}

static socklen_t sa_len(const struct sockaddr *sa) {
  return sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
}

/* A socket bound to `sa` and listening. `dual`: an IPv6 any-address that takes IPv4 too.
 * Returns the fd or a negative UV error (nothing left open). */
static int bind_fd(const struct sockaddr *sa, int reuseport, int dual, int do_listen) {
  int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1, zero = 0, rc;

  if (fd < 0)
    return -errno;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
      (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) ||
      (dual && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero)) != 0) ||
      bind(fd, sa, sa_len(sa)) != 0 || (do_listen && listen(fd, BACKLOG) != 0))
    goto fail;
  return fd;
fail:
  rc = -errno;
  close(fd);
  return rc;
}

/* "*:port" is [::] dual-stack, or 0.0.0.0 where the system has no IPv6. */
static int bind_any_fallback(const struct cfg_addr *a, int reuseport, int do_listen) {
  struct sockaddr_in sin;
  int fd = bind_fd((const struct sockaddr *)&a->sa, reuseport, a->any, do_listen);

  if (fd >= 0 || !a->any || (fd != UV_EAFNOSUPPORT && fd != UV_EADDRNOTAVAIL))
    return fd;
  memset(&sin, 0, sizeof(sin));
  sin.sin_family = AF_INET;
  sin.sin_port = htons(a->port);
  return bind_fd((const struct sockaddr *)&sin, reuseport, 0, do_listen);
}

/* Refuses an address someone already listens on: a bind without SO_REUSEPORT fails then,
 * where one with it would silently join their group. Port 0 is always free. */
static int probe(const struct cfg_addr *a) {
  int fd;

  if (a->port == 0)
    return 0;
  fd = bind_any_fallback(a, 0, 0);
  if (fd < 0)
    return fd;
  close(fd);
  return 0;
}

static struct lsock *lsock_new(struct master *m, enum lsock_kind kind, int fd) {
  struct lsock *ls = calloc(1, sizeof(*ls));

  if (ls == NULL)
    return NULL;
  ls->m = m;
  ls->kind = kind;
  if (uv_tcp_init(m->loop, &ls->tcp) != 0) {
    free(ls);
    return NULL;
  }
  ls->tcp.data = ls;
  if (uv_tcp_open(&ls->tcp, fd) != 0 || uv_poll_init(m->loop, &ls->poll, fd) != 0) {
    uv_close((uv_handle_t *)&ls->tcp, (uv_close_cb)free); /* closes fd */
    return NULL;
  }
  ls->poll.data = ls;
  sock_name(fd, ls->name, sizeof(ls->name));
  ls->next = m->lsocks;
  m->lsocks = ls;
  return ls;
}

/* A member or private port belongs to `pub`'s group: it holds the record. */
static void set_group(struct lsock *ls, struct lsock *pub) {
  ls->group = pub;
  lsock_hold(pub);
}

static int lsock_fd(const struct lsock *ls) {
  uv_os_fd_t fd = -1;
  uv_fileno((const uv_handle_t *)&ls->tcp, &fd);
  return fd;
}

/* Is `ls` the socket for configured address `a`? The same resolved address and port (so
 * "localhost:80" and "127.0.0.1:80" are one socket); for port 0 (any free port, tests), the
 * same written host with port 0 in the same place of the listener list: the socket bound for
 * that line at start. */
static int same_sockaddr(const struct sockaddr_storage *x, const struct sockaddr_storage *y) {
  const struct sockaddr_in *x4 = (const void *)x, *y4 = (const void *)y;
  const struct sockaddr_in6 *x6 = (const void *)x, *y6 = (const void *)y;

  if (x->ss_family != y->ss_family)
    return 0;
  if (x->ss_family == AF_INET6)
    return x6->sin6_port == y6->sin6_port && memcmp(&x6->sin6_addr, &y6->sin6_addr, 16) == 0;
  return x4->sin_port == y4->sin_port && x4->sin_addr.s_addr == y4->sin_addr.s_addr;
}

static int same_address(const struct lsock *ls, const struct cfg_addr *a, unsigned a_index) {
  struct sockaddr_storage bound;
  socklen_t len = sizeof(bound);

  if (a->port == 0)
    return ls->addr.port == 0 && strcmp(ls->addr.host, a->host) == 0 && ls->index == a_index;
  if (ls->addr.port == 0) {
    /* A socket bound to port 0 is also the one for its actual port written out (a reload
     * that pins the port it got). */
    memset(&bound, 0, sizeof(bound));
    return !a->any && !ls->addr.any &&
           getsockname(lsock_fd(ls), (struct sockaddr *)&bound, &len) == 0 &&
           same_sockaddr(&bound, &a->sa);
  }
  if (a->any || ls->addr.any)
    return a->any && ls->addr.any && a->port == ls->addr.port;
  return same_sockaddr(&a->sa, &ls->addr.sa);
}

/* Same kind, slot and listener address (for members and private ports: their public's). */
static int matches(const struct lsock *ls, enum lsock_kind kind, const struct cfg_addr *a,
                   const struct lsock *group, unsigned slot) {
  if (ls->kind != kind)
    return 0;
  if (kind == LSOCK_PUBLIC)
    return same_address(ls, a, slot); /* for public sockets, `slot` is the listener index */
  return ls->group == group && ls->slot == slot;
}

static struct lsock *find(struct master *m, enum lsock_kind kind, const struct cfg_addr *a,
                          const struct lsock *group, unsigned slot) {
  for (struct lsock *ls = m->lsocks; ls != NULL; ls = ls->next)
    if (!ls->inherited && matches(ls, kind, a, group, slot))
      return ls;
  return NULL;
}

/* An inherited socket for this key, adopted (it becomes an ordinary member of the registry). */
static struct lsock *adopt(struct master *m, enum lsock_kind kind, const struct cfg_addr *a,
                           struct lsock *group, unsigned slot) {
  char key[300];

  addr_key(group != NULL ? &group->addr : a, key, sizeof(key));
  for (struct lsock *ls = m->lsocks; ls != NULL; ls = ls->next) {
    char have[300];
    if (!ls->inherited || ls->kind != kind || ls->slot != slot)
      continue;
    addr_key(&ls->addr, have, sizeof(have));
    if (strcmp(have, key) != 0)
      continue;
    ls->inherited = 0;
    if (group != NULL)
      set_group(ls, group);
    if (kind == LSOCK_PUBLIC) {
      ls->addr = *a;
      ls->index = slot;
    }
    return ls;
  }
  return NULL;
}

/* Takes a reference; a retiring socket asked for again is kept after all. */
static int take(struct lsock *ls, struct lsock **out) {
  ls->refs++;
  ls->retiring = 0;
  *out = ls;
  return 0;
}

int lsock_public(struct master *m, const struct cfg_addr *a, unsigned index, struct lsock **out) {
  struct lsock *ls = find(m, LSOCK_PUBLIC, a, NULL, index);
  int fd, rc;

  if (ls == NULL)
    ls = adopt(m, LSOCK_PUBLIC, a, NULL, index);
  if (ls != NULL)
    return take(ls, out);
  if ((rc = probe(a)) != 0)
    return rc;
  if ((fd = bind_any_fallback(a, 1, 1)) < 0)
    return fd;
  if ((ls = lsock_new(m, LSOCK_PUBLIC, fd)) == NULL)
    return UV_ENOMEM;
  ls->addr = *a;
  ls->index = index;
  return take(ls, out);
}

int lsock_member(struct master *m, struct lsock *pub, unsigned slot, struct lsock **out) {
  struct lsock *ls = find(m, LSOCK_MEMBER, NULL, pub, slot);
  struct sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  int fd, dual;

  if (ls == NULL)
    ls = adopt(m, LSOCK_MEMBER, NULL, pub, slot);
  if (ls != NULL)
    return take(ls, out);
  /* Join the group on the port the public socket got (so port 0 works), same family. */
  if (getsockname(lsock_fd(pub), (struct sockaddr *)&ss, &len) != 0)
    return -errno;
  dual = ss.ss_family == AF_INET6 && pub->addr.any;
  if ((fd = bind_fd((struct sockaddr *)&ss, 1, dual, 1)) < 0)
    return fd;
  if ((ls = lsock_new(m, LSOCK_MEMBER, fd)) == NULL)
    return UV_ENOMEM;
  set_group(ls, pub);
  ls->slot = slot;
  ls->addr = pub->addr;
  return take(ls, out);
}

int lsock_private(struct master *m, struct lsock *pub, unsigned slot, uint16_t port,
                  struct lsock **out) {
  struct lsock *ls = find(m, LSOCK_PRIVATE, NULL, pub, slot);
  struct sockaddr_in sin;
  int fd;

  if (ls == NULL)
    ls = adopt(m, LSOCK_PRIVATE, NULL, pub, slot);
  if (ls != NULL)
    return take(ls, out);
  memset(&sin, 0, sizeof(sin));
  sin.sin_family = AF_INET;
  sin.sin_port = htons(port);
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if ((fd = bind_fd((struct sockaddr *)&sin, 0, 0, 1)) < 0)
    return fd;
  if ((ls = lsock_new(m, LSOCK_PRIVATE, fd)) == NULL)
    return UV_ENOMEM;
  set_group(ls, pub);
  ls->slot = slot;
  ls->addr = pub->addr;
  return take(ls, out);
}

/* ---- accepting ---- */

static void poll_stop(struct lsock *ls) {
  if (ls->polling) {
    uv_poll_stop(&ls->poll);
    ls->polling = 0;
  }
}

static void accept_retry_cb(uv_timer_t *t) {
  lsock_update_polling(t->data);
}

static void poll_accept(struct lsock *ls);

/* The fresh connections of one wakeup go to their workers in batches (several fds per
 * sendmsg, handoff.c). */
static void poll_cb(uv_poll_t *p, int status, int events) {
  struct lsock *ls = p->data;
  struct master *m = ls->m;

  handoff_batch_begin(m);
  poll_accept(ls);
  handoff_batch_end(m);
}

static void poll_accept(struct lsock *ls) {
  struct master *m = ls->m;
  int fd = lsock_fd(ls);

  /* A retiring socket is emptied whatever the room: what it holds would be reset at its close,
   * so it waits in the master's queue instead. */
  for (int i = 0; ls->retiring || i < ACCEPT_BATCH; i++) {
    struct mconn *c;
    int cfd;

    if (!ls->retiring && !dispatch_can_take(m)) {
      lsock_update_polling(m); /* the kernel backlog holds the rest meanwhile */
      return;
    }
    struct sockaddr_storage ss;
    socklen_t sslen = sizeof(ss);
    cfd = accept4(fd, (struct sockaddr *)&ss, &sslen, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (cfd < 0) {
      if (errno == EINTR || errno == ECONNABORTED)
        continue;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        /* Out of fds: what waits stays in the backlog, and nobody spins on it. */
        LBP_WARN("accept on %s: %s: pausing %d ms", ls->name, strerror(errno), EMFILE_PAUSE_MS);
        poll_stop(ls);
        uv_timer_start(&m->accept_retry, accept_retry_cb, EMFILE_PAUSE_MS, 0);
      } else if (errno != EAGAIN) {
        LBP_WARN("accept on %s: %s", ls->name, strerror(errno));
      }
      return;
    }
    if ((c = mconn_new(m, ls, cfd)) == NULL)
      continue; /* out of memory: closed */
    /* The address came with the accept: the worker need not ask the socket for it. */
    c->npeer = (uint8_t)ipc_put_peer(c->peer, (struct sockaddr *)&ss);
    ls->accepted++;
    dispatch_take(m, c);
  }
}

/* Should the master accept on `ls` now? See (2) at the top. */
static int wants_master(const struct master *m, const struct lsock *ls) {
  if (ls->kind == LSOCK_PRIVATE || ls->shut || m->stopping || m->retired || m->cur == NULL)
    return 0;
  if (uv_is_active((const uv_handle_t *)&m->accept_retry))
    return 0;
  if (ls->retiring)
    return 1;
  if (!dispatch_can_take((struct master *)m))
    return 0;
  if (ls->kind == LSOCK_PUBLIC && m->cur->dispatch->master_accepts &&
      gen_listener_index(m->cur, ls) >= 0)
    return 1;
  return ls->pollers == 0;
}

void lsock_update_polling(struct master *m) {
  for (struct lsock *ls = m->lsocks; ls != NULL; ls = ls->next) {
    int want = !ls->inherited && wants_master(m, ls);
    if (want && !ls->polling) {
      if (uv_poll_start(&ls->poll, UV_READABLE, poll_cb) == 0)
        ls->polling = 1;
    } else if (!want) {
      poll_stop(ls);
    }
  }
}

/* ---- retiring ---- */

static void unlink_ls(struct master *m, struct lsock *ls) {
  struct lsock **pp = &m->lsocks;
  while (*pp != NULL && *pp != ls)
    pp = &(*pp)->next;
  if (*pp == ls)
    *pp = ls->next;
}

/* The record outlives its socket while connections it accepted still name it (mconn.ls) and
 * while reuseport members or private ports of its group exist: those hold it. */
static void lsock_maybe_free(struct lsock *ls) {
  if (ls->gone && ls->holds == 0) {
    if (ls->group != NULL)
      lsock_release(ls->group);
    free(ls);
  }
}

void lsock_hold(struct lsock *ls) {
  ls->holds++;
}

void lsock_release(struct lsock *ls) {
  ls->holds--;
  lsock_maybe_free(ls);
}

static void lsock_tcp_closed_cb(uv_handle_t *h) {
  struct lsock *ls = h->data;
  ls->gone = 1;
  lsock_maybe_free(ls);
}

static void lsock_free_cb(uv_handle_t *h) {
  struct lsock *ls = h->data;
  uv_close((uv_handle_t *)&ls->tcp, lsock_tcp_closed_cb); /* closes the fd */
}

static void lsock_close(struct lsock *ls) {
  if (uv_is_closing((uv_handle_t *)&ls->poll))
    return;
  unlink_ls(ls->m, ls);
  poll_stop(ls);
  uv_close((uv_handle_t *)&ls->poll, lsock_free_cb);
}

/* Sends every new connection of `pub`'s group to `pub` (index 0), or undoes that. */
static void steer(struct master *m, struct lsock *pub, int on) {
  struct sock_filter code[] = {BPF_STMT(BPF_RET | BPF_K, 0)};
  struct sock_fprog prog = {1, code};
  int fd = lsock_fd(pub), zero = 0, rc;

  rc = on ? setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &prog, sizeof(prog))
          : setsockopt(fd, SOL_SOCKET, SO_DETACH_REUSEPORT_BPF, &zero, sizeof(zero));
  /* Detaching from a socket that has no program (every start, when no previous master left
   * one) fails with ENOENT: there was nothing to undo. */
  if (rc != 0 && !(!on && errno == ENOENT))
    LBP_WARN("reuseport steering %s on %s: %s", on ? "on" : "off", pub->name, strerror(errno));
  m->steered = on && rc == 0;
}

/* Accepts what is queued on a retiring member now (it goes to the current generation). */
static void drain_backlog(struct lsock *ls) {
  if (ls->m->cur != NULL && !ls->m->stopping && !ls->m->retired)
    poll_cb(&ls->poll, 0, UV_READABLE);
}

static void retire_cb(uv_timer_t *t) {
  struct master *m = t->data;
  struct lsock *ls, *next;
  int left = 0, closed = 0;

  for (ls = m->lsocks; ls != NULL; ls = next) {
    next = ls->next;
    if (!ls->retiring || ls->kind != LSOCK_MEMBER)
      continue;
    drain_backlog(ls);
    LBP_INFO("listening socket %s (worker %u) retired", ls->name, ls->slot + 1);
    lsock_close(ls);
    closed = 1;
  }
  if (closed) {
    /* Their fds close in the loop's close phase: until then the kernel may still queue on
     * them, so the steering stays until the next pass (a connection queued there at the
     * close would be reset; seen in CI). */
    uv_timer_start(&m->retire_timer, retire_cb, RETIRE_SETTLE_MS, 0);
    return;
  }
  for (ls = m->lsocks; ls != NULL; ls = ls->next)
    left |= ls->retiring && ls->kind == LSOCK_MEMBER;
  if (!left && m->steered)
    for (ls = m->lsocks; ls != NULL; ls = ls->next)
      if (ls->kind == LSOCK_PUBLIC)
        steer(m, ls, 0);
}

void lsock_unref(struct lsock *ls) {
  struct master *m = ls->m;

  if (ls->refs == 0 || --ls->refs > 0)
    return;
  if (ls->kind != LSOCK_MEMBER || m->stopping || m->retired) {
    /* A private port only ever gets our own relays; a public socket whose listener left the
     * config has nobody left to serve its queue; a master that is leaving (stopping, or handed
     * over to a new one, which shares the sockets: no steering of its group) just closes its
     * copy. */
    if (!m->retired && !m->stopping)
      LBP_INFO("listening socket %s closed", ls->name);
    lsock_close(ls);
    return;
  }
  steer(m, ls->group, 1);
  ls->retiring = 1;
  drain_backlog(ls);
  lsock_update_polling(m);
  uv_timer_start(&m->retire_timer, retire_cb, RETIRE_GRACE_MS, 0);
}

void lsock_unsteer(struct master *m) {
  for (struct lsock *ls = m->lsocks; ls != NULL; ls = ls->next)
    if (ls->kind == LSOCK_PUBLIC && !ls->inherited)
      steer(m, ls, 0);
  m->steered = 0;
}

void lsock_shut_all(struct master *m) {
  for (struct lsock *ls = m->lsocks; ls != NULL; ls = ls->next) {
    poll_stop(ls);
    if (ls->kind != LSOCK_PRIVATE && !ls->shut) {
      /* shutdown(SHUT_RD) on a listening socket makes it stop listening for every process that
       * holds it: new clients are refused at once rather than queued and reset later. */
      shutdown(lsock_fd(ls), SHUT_RD);
      ls->shut = 1;
    }
  }
}

void lsock_close_all(struct master *m) {
  struct lsock *ls, *next;

  uv_timer_stop(&m->retire_timer);
  uv_timer_stop(&m->accept_retry);
  if (m->steered)
    lsock_unsteer(m);
  for (ls = m->lsocks; ls != NULL; ls = next) {
    next = ls->next;
    if (ls->refs == 0)
      lsock_close(ls);
  }
}

/* ---- binary upgrade ---- */

static const char *const kind_names[] = {"public", "member", "private"};

int lsock_export(struct master *m, int *fds, int max, char *desc, size_t cap) {
  size_t off = 0;
  int n = 0;

  desc[0] = '\0';
  for (struct lsock *ls = m->lsocks; ls != NULL && n < max; ls = ls->next) {
    char key[300];
    int w;
    if (ls->retiring || ls->inherited)
      continue;
    addr_key(ls->group != NULL ? &ls->group->addr : &ls->addr, key, sizeof(key));
    w = snprintf(desc + off, cap - off, "%s%s:%u:%s", n ? ";" : "", kind_names[ls->kind],
                 ls->kind == LSOCK_PUBLIC ? ls->index : ls->slot, key);
    if (w < 0 || (size_t)w >= cap - off)
      break;
    off += (size_t)w;
    fds[n++] = lsock_fd(ls);
  }
  return n;
}

/* One "kind:slot:key" entry for fd `fd`. */
static int inherit_one(struct master *m, int fd, const char *entry) {
  char kind[16], key[300];
  unsigned slot;
  struct lsock *ls;
  struct cfg_addr a;
  int k;

  if (sscanf(entry, "%15[a-z]:%u:%299[^;]", kind, &slot, key) != 3)
    return UV_EINVAL;
  for (k = 0; k < 3 && strcmp(kind, kind_names[k]) != 0; k++)
    ;
  memset(&a, 0, sizeof(a));
  if (k == 3 || cfg_parse_hostport(key, &a) != 0)
    return UV_EINVAL;
  a.any = strcmp(a.host, "*") == 0;
  /* Inherited fds lost FD_CLOEXEC (the spawn dup2'ed them): without it every worker we start
   * would hold every socket, and a retired one would live on, and listen, in a worker. */
  if (fcntl(fd, F_SETFD, FD_CLOEXEC) != 0)
    return -errno;
  if ((ls = lsock_new(m, (enum lsock_kind)k, fd)) == NULL)
    return UV_ENOMEM;
  ls->inherited = 1;
  ls->slot = slot;
  ls->addr = a;
  return 0;
}

int lsock_inherit(struct master *m, const char *desc) {
  const char *p = desc;
  int fd = 3 + 1; /* fd 3 is the channel to the old master; sockets follow in order */
  int rc;

  while (p != NULL && *p != '\0') {
    const char *end = strchr(p, ';');
    char entry[400];
    size_t n = end ? (size_t)(end - p) : strlen(p);
    if (n >= sizeof(entry))
      return UV_EINVAL;
    memcpy(entry, p, n);
    entry[n] = '\0';
    if ((rc = inherit_one(m, fd++, entry)) != 0)
      return rc;
    p = end ? end + 1 : NULL;
  }
  return 0;
}

void lsock_drop_unused(struct master *m) {
  struct lsock *ls, *next;
  int retire = 0;

  for (ls = m->lsocks; ls != NULL; ls = next) {
    next = ls->next;
    if (!ls->inherited)
      continue;
    if (ls->kind == LSOCK_MEMBER) {
      /* A reuseport member the new config does not use (fewer workers): the kernel still
       * sends it connections, so it is retired like one a reload dropped (steered away,
       * emptied, then closed), once it is ours: it has no group record here, so the group is
       * found by its address. */
      struct lsock *pub;
      char key[300], have[300];
      addr_key(&ls->addr, key, sizeof(key));
      for (pub = m->lsocks; pub != NULL; pub = pub->next) {
        if (pub->kind != LSOCK_PUBLIC || pub->inherited)
          continue;
        addr_key(&pub->addr, have, sizeof(have));
        if (strcmp(key, have) == 0)
          break;
      }
      if (pub != NULL) {
        ls->inherited = 0;
        set_group(ls, pub);
        ls->refs = 1;
        lsock_unref(ls);
        retire = 1;
        continue;
      }
    }
    LBP_INFO("inherited socket %s is not in the config: closed", ls->name);
    lsock_close(ls);
  }
  if (!retire)
    lsock_unsteer(m); /* a previous master may have left its group steered */
}
