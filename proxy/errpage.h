/* The error responses the proxy writes itself (400, 404, 408, 413, 431, 502, 503, 504...). */
#ifndef LBP_ERRPAGE_H
#define LBP_ERRPAGE_H

#include <uv.h>

/* Seconds a 503 asks the client to wait before trying again (Retry-After). The proxy answers
 * 503 when its upstream has no usable server (all down, draining, disabled or failing, or no
 * server at all while a host name resolves to nothing): that is expected to change within the
 * master's next health check or DNS round, which are seconds apart, so a short wait (HAProxy
 * and Envoy also send a small value) lets well-behaved clients back off without stalling. */
#define PX_RETRY_AFTER_S 1

/* The whole response for `status` (a small text body, Server and Content-Length), with
 * `Connection: keep-alive` or `Connection: close`; a 503 also carries `Retry-After:
 * PX_RETRY_AFTER_S`. The bytes are static. An unknown status gives the 500 page. */
uv_buf_t px_errpage(int status, int keep_alive);

/* The reason phrase of a status we answer with ("Bad Gateway"), or "Error". */
const char *px_errpage_reason(int status);

#endif
