/* The error responses the proxy writes itself (400, 404, 408, 413, 431, 502, 503, 504...). */
#ifndef LBP_ERRPAGE_H
#define LBP_ERRPAGE_H

#include <uv.h>

/* The whole response for `status` (a small text body, Server and Content-Length), with
 * `Connection: keep-alive` or `Connection: close`. The bytes are static. An unknown status
 * gives the 500 page. */
uv_buf_t px_errpage(int status, int keep_alive);

/* The reason phrase of a status we answer with ("Bad Gateway"), or "Error". */
const char *px_errpage_reason(int status);

#endif
