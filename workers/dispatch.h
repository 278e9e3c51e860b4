/* What the dispatch strategies share: listening sockets and the master's one accept path. */
#ifndef LBP_DISPATCH_H
#define LBP_DISPATCH_H

#include "master.h"

#define DISPATCH_BACKLOG 4096

/* Creates a TCP socket bound to `sa` (SO_REUSEADDR, plus SO_REUSEPORT when asked), in
 * listening state with DISPATCH_BACKLOG, wrapped in `tcp` (initialized here). Listening
 * starts in the kernel at once, whether or not anyone polls it, so connections queue even
 * while no worker is there to accept. 0 or a negative UV error. */
int dispatch_listen_socket(uv_loop_t *loop, const struct sockaddr *sa, int reuseport,
                           uv_tcp_t *tcp);

/* The bound address of a socket as "host:port" / "[v6]:port"; returns the port. */
int dispatch_sockname(uv_tcp_t *tcp, char *out, size_t cap);

/* The master's accept path, for the strategies where the master accepts (handoff,
 * handoff-least, proxy): polls m->listener and calls m->dispatch->take for each connection
 * while m->dispatch->can_take says a worker can have it. When none can, the connection is
 * left in the listener, libuv stops polling it, and the kernel backlog holds the rest until
 * dispatch_accept_resume. */
int dispatch_accept_start(struct master *m);
void dispatch_accept_resume(struct master *m);

/* Round-robin over slots that are serving and pass `ok` (NULL = any): the next one, or NULL. */
struct slot *dispatch_next_slot(struct master *m, int (*ok)(const struct slot *));

#endif
