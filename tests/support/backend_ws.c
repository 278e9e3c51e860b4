/* lbp-backend's WebSocket echo (/ws): the handshake, then every frame echoed back as it arrives. */

/*
 * 1. GET /ws with Upgrade: websocket and a Sec-WebSocket-Key gets 101 and the connection leaves
 *    HTTP: be_conn_parse hands every later byte to be_ws_input.
 * 2. Frames are echoed one for one and streamed: the echo's header goes out as soon as the
 *    client's header is read, then payload bytes, unmasked, as they arrive, so a 10 MiB message
 *    never sits in memory. Text and binary keep their opcode, a ping gets a pong, a close is
 *    echoed and then the connection closes (lingering, as every close of this backend).
 * 3. Output above HIGH_WATER stops reading (be_conn_progress), as for HTTP.
 */
#include <string.h>
#include <strings.h>

#include "backend.h"

/* Finds header `name` in the captured request head; its value and length, or NULL. */
static const char *head_value(const struct conn *c, const char *name, size_t *len) {
  const char *p = c->head, *end = c->head + c->head_len;
  size_t nl = strlen(name);

  while ((p = memchr(p, '\n', (size_t)(end - p))) != NULL && ++p < end) {
    if ((size_t)(end - p) > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
      const char *v = p + nl + 1, *e;
      while (v < end && (*v == ' ' || *v == '\t'))
        v++;
      e = v;
      while (e < end && *e != '\r' && *e != '\n')
        e++;
      *len = (size_t)(e - v);
      return v;
    }
  }
  return NULL;
}

int be_ws_respond(struct conn *c) {
  size_t klen = 0, ulen = 0;
  const char *key = head_value(c, "Sec-WebSocket-Key", &klen);
  const char *up = head_value(c, "Upgrade", &ulen);
  char accept[29];

  if (key == NULL || up == NULL || ulen != 9 || strncasecmp(up, "websocket", 9) != 0 ||
      c->head_overflow)
    return -1;
  ws_accept(key, klen, accept);
  be_out_fmt(c,
             "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             "Sec-WebSocket-Accept: %s\r\nX-Backend: %s\r\n\r\n",
             accept, g_opt.name);
  c->ws = 1;
  c->blocked = 0;
  c->req.open = 0;
  memset(&c->wsh, 0, sizeof(c->wsh));
  c->ws_left = 0;
  return 0;
}

/* A frame's header is read: the echo's header goes out. */
static void frame_start(struct conn *c) {
  uint8_t out[14];
  int op = c->wsh.opcode == WS_PING ? WS_PONG : c->wsh.opcode;

  be_out_bytes(c, out, ws_frame_head(out, c->wsh.fin, op, c->wsh.len, NULL));
  c->ws_left = c->wsh.len;
  c->ws_off = 0;
  c->ws_payload = 1;
}

static void frame_end(struct conn *c) {
  if (c->wsh.opcode == WS_CLOSE)
    c->close_after_flush = 1;
  memset(&c->wsh, 0, sizeof(c->wsh));
  c->ws_payload = 0;
}

void be_ws_input(struct conn *c) {
  while (c->in_len > 0 && !c->close_after_flush && !c->closing) {
    uint8_t *p = (uint8_t *)c->in + c->in_off;
    size_t used;
    int done;

    if (!c->ws_payload) {
      used = ws_head_feed(&c->wsh, p, c->in_len, &done);
      if (done)
        frame_start(c);
    } else {
      used = c->in_len < c->ws_left ? c->in_len : (size_t)c->ws_left;
      if (c->wsh.masked)
        ws_unmask(p, used, c->wsh.mask, c->ws_off);
      be_out_bytes(c, p, used);
      c->ws_left -= used;
      c->ws_off += used;
    }
    c->in_off += used;
    c->in_len -= used;
    if (c->ws_payload && c->ws_left == 0)
      frame_end(c);
  }
  if (c->in_len == 0)
    c->in_off = 0;
  be_conn_progress(c);
}
