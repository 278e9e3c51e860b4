/* What the dispatch strategies share: listening sockets, the accept path, the strategy table. */
#include "dispatch.h"

#include "log.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

int dispatch_listen_socket(uv_loop_t *loop, const struct sockaddr *sa, int reuseport,
                           uv_tcp_t *tcp) {
  socklen_t len =
      sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
  int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1, rc;

  if (fd < 0)
    return -errno;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
      (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) ||
      bind(fd, sa, len) != 0 || listen(fd, DISPATCH_BACKLOG) != 0) {
    rc = -errno;
    close(fd);
    return rc;
  }
  rc = uv_tcp_init(loop, tcp);
  if (rc == 0)
    rc = uv_tcp_open(tcp, fd);
  if (rc != 0)
    close(fd);
  return rc;
}

int dispatch_sockname(uv_tcp_t *tcp, char *out, size_t cap) {
  struct sockaddr_storage ss;
  int len = sizeof(ss);
  char host[64] = "?";

  if (uv_tcp_getsockname(tcp, (struct sockaddr *)&ss, &len) != 0) {
    snprintf(out, cap, "?");
    return -1;
  }
  if (ss.ss_family == AF_INET6) {
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    uv_ip6_name(s6, host, sizeof(host));
    snprintf(out, cap, "[%s]:%u", host, ntohs(s6->sin6_port));
    return ntohs(s6->sin6_port);
  }
  struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
  uv_ip4_name(s4, host, sizeof(host));
  snprintf(out, cap, "%s:%u", host, ntohs(s4->sin_port));
  return ntohs(s4->sin_port);
}

static void on_connection(uv_stream_t *server, int status) {
  struct master *m = server->data;

  if (status < 0) {
    LBP_WARN("accept: %s", uv_strerror(status));
    return;
  }
  if (m->stopping)
    return;
  if (!m->dispatch->can_take(m)) {
    m->accept_paused = 1; /* not uv_accept'ed: libuv stops polling until we do */
    return;
  }
  m->dispatch->take(m);
}

int dispatch_accept_start(struct master *m) {
  m->listener.data = m;
  return uv_listen((uv_stream_t *)&m->listener, DISPATCH_BACKLOG, on_connection);
}

void dispatch_accept_resume(struct master *m) {
  if (m->accept_paused && !m->stopping && m->dispatch->can_take(m)) {
    m->accept_paused = 0;
    m->dispatch->take(m);
  }
}

struct slot *dispatch_next_slot(struct master *m, int (*ok)(const struct slot *)) {
  for (unsigned k = 0; k < m->nslots; k++) {
    struct slot *s = &m->slots[m->rr];
    m->rr = (m->rr + 1) % m->nslots;
    if (master_slot_serving(s) && (ok == NULL || ok(s)))
      return s;
  }
  return NULL;
}

const struct dispatch_ops *dispatch_find(enum cfg_dispatch d) {
  switch (d) {
  case CFG_DISPATCH_HANDOFF:
    return &dispatch_handoff;
  case CFG_DISPATCH_HANDOFF_LEAST:
    return &dispatch_handoff_least;
  case CFG_DISPATCH_PROXY:
    return &dispatch_proxy;
  case CFG_DISPATCH_SHARED:
    return &dispatch_shared;
  case CFG_DISPATCH_REUSEPORT:
    return &dispatch_reuseport;
  }
  return NULL;
}
