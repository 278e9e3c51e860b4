/* A growable text buffer for the admin API's responses, with JSON and Prometheus escaping. */
#ifndef LBP_ABUF_H
#define LBP_ABUF_H

#include <stddef.h>
#include <stdint.h>

/* Appending never fails loudly: out of memory sets `failed` and later appends do nothing, so a
 * renderer checks once at the end (the admin answers 500 then). */
struct abuf {
  char *data;
  size_t len, cap;
  int failed;
};

void abuf_init(struct abuf *b);
void abuf_free(struct abuf *b);
void abuf_add(struct abuf *b, const void *p, size_t n);
void abuf_str(struct abuf *b, const char *s);
void abuf_printf(struct abuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A JSON string literal ("..." with \", \\, \n, \u00XX escapes) of s[0..n). */
void abuf_json_strn(struct abuf *b, const char *s, size_t n);
void abuf_json_str(struct abuf *b, const char *s);
/* A Prometheus label value (escapes \\, \" and \n; the quotes are the caller's). */
void abuf_prom_label(struct abuf *b, const char *s);
/* n / div with `decimals` digits after the point (div a power of ten), e.g. 1500 us as
 * seconds: abuf_fixed(b, 1500, 1000000, 6) -> "0.001500". */
void abuf_fixed(struct abuf *b, uint64_t n, uint64_t div, unsigned decimals);

#endif
