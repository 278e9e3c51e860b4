/* A growable text buffer with JSON and Prometheus escaping (see abuf.h). */
#include "abuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void abuf_init(struct abuf *b) {
  memset(b, 0, sizeof(*b));
}

void abuf_free(struct abuf *b) {
  free(b->data);
  abuf_init(b);
}

/* Room for n more bytes and a NUL. */
static int reserve(struct abuf *b, size_t n) {
  size_t cap;
  char *p;

  if (b->failed)
    return -1;
  if (b->len + n + 1 <= b->cap)
    return 0;
  cap = b->cap ? b->cap : 4096;
  while (cap < b->len + n + 1)
    cap *= 2;
  if ((p = realloc(b->data, cap)) == NULL) {
    b->failed = 1;
    return -1;
  }
  b->data = p;
  b->cap = cap;
  return 0;
}

void abuf_add(struct abuf *b, const void *p, size_t n) {
  if (reserve(b, n) != 0)
    return;
  memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = '\0';
}

void abuf_str(struct abuf *b, const char *s) {
  abuf_add(b, s, strlen(s));
}

void abuf_printf(struct abuf *b, const char *fmt, ...) {
  va_list ap;
  int n;

  va_start(ap, fmt);
  n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0 || reserve(b, (size_t)n) != 0)
    return;
  va_start(ap, fmt);
  vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
}

void abuf_json_strn(struct abuf *b, const char *s, size_t n) {
  abuf_add(b, "\"", 1);
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\')
      abuf_printf(b, "\\%c", c);
    else if (c == '\n')
      abuf_add(b, "\\n", 2);
    else if (c < 0x20 || c == 0x7f)
      abuf_printf(b, "\\u%04x", c);
    else if (c >= 0x80)
      abuf_printf(b, "\\u%04x", c); /* bytes, not UTF-8: keep the JSON valid whatever came */
    else
      abuf_add(b, &s[i], 1);
  }
  abuf_add(b, "\"", 1);
}

void abuf_json_str(struct abuf *b, const char *s) {
  abuf_json_strn(b, s, strlen(s));
}

void abuf_prom_label(struct abuf *b, const char *s) {
  for (; *s != '\0'; s++) {
    if (*s == '\\' || *s == '"')
      abuf_printf(b, "\\%c", *s);
    else if (*s == '\n')
      abuf_add(b, "\\n", 2);
    else
      abuf_add(b, s, 1);
  }
}

void abuf_fixed(struct abuf *b, uint64_t n, uint64_t div, unsigned decimals) {
  if (decimals == 0) {
    abuf_printf(b, "%llu", (unsigned long long)(n / div));
    return;
  }
  abuf_printf(b, "%llu.%0*llu", (unsigned long long)(n / div), (int)decimals,
              (unsigned long long)(n % div));
}
