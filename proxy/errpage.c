/* The error responses the proxy writes itself: built once per process, then static bytes. */
#include "errpage.h"

#include <stdio.h>

struct errpage {
  int status;
  const char *reason;
  char text[2][256]; /* [0] Connection: close, [1] keep-alive */
  unsigned len[2];
};

static struct errpage errpages[] = {
    {400, "Bad Request", {{0}}, {0}},
    {404, "Not Found", {{0}}, {0}},
    {405, "Method Not Allowed", {{0}}, {0}},
    {408, "Request Timeout", {{0}}, {0}},
    {413, "Content Too Large", {{0}}, {0}},
    {431, "Request Header Fields Too Large", {{0}}, {0}},
    {500, "Internal Server Error", {{0}}, {0}},
    {502, "Bad Gateway", {{0}}, {0}},
    {503, "Service Unavailable", {{0}}, {0}},
    {504, "Gateway Timeout", {{0}}, {0}},
};

#define NPAGES (sizeof(errpages) / sizeof(errpages[0]))

static struct errpage *find(int status) {
  for (size_t i = 0; i < NPAGES; i++)
    if (errpages[i].status == status)
      return &errpages[i];
  return NULL;
}

const char *px_errpage_reason(int status) {
  const struct errpage *e = find(status);
  return e != NULL ? e->reason : "Error";
}

uv_buf_t px_errpage(int status, int keep_alive) {
  struct errpage *e = find(status);
  int ka = keep_alive != 0;

  if (e == NULL)
    e = find(500);
  if (e->len[ka] == 0) {
    char body[96], retry[32] = "";
    int blen = snprintf(body, sizeof(body), "%d %s\n", e->status, e->reason), n;

    /* No usable server (errpage.h): tell the client when to come back. */
    if (e->status == 503)
      snprintf(retry, sizeof(retry), "Retry-After: %d\r\n", PX_RETRY_AFTER_S);
    n = snprintf(e->text[ka], sizeof(e->text[ka]),
                 "HTTP/1.1 %d %s\r\nServer: lbproxy\r\nContent-Type: text/plain\r\n"
                 "Content-Length: %d\r\n%sConnection: %s\r\n\r\n%s",
                 e->status, e->reason, blen, retry, ka ? "keep-alive" : "close", body);
    e->len[ka] = (unsigned)n;
  }
  return uv_buf_init(e->text[ka], e->len[ka]);
}
