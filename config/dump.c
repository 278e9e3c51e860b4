/* The effective config written back as YAML (lbproxy -T): every key of every table, defaults
 * included, in a form that loads to the same config. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "fields.h"

static uint64_t load_uint(const void *p, size_t width) {
  uint8_t v8;
  uint16_t v16;
  uint32_t v32;
  uint64_t v64;

  switch (width) {
  case 1:
    memcpy(&v8, p, 1);
    return v8;
  case 2:
    memcpy(&v16, p, 2);
    return v16;
  case 4:
    memcpy(&v32, p, 4);
    return v32;
  default:
    memcpy(&v64, p, 8);
    return v64;
  }
}

/* A string as a double-quoted YAML scalar (always quoted: "*.example.com" must not read as an
 * alias, "on" not as a boolean). */
void cfg__dump_string(FILE *out, const char *s) {
  fputc('"', out);
  for (; *s != '\0'; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\')
      fprintf(out, "\\%c", c);
    else if (c < ' ' || c == 0x7f)
      fprintf(out, "\\x%02x", c);
    else
      fputc(c, out);
  }
  fputc('"', out);
}

static void dump_addr(FILE *out, const struct cfg_addr *a) {
  char buf[300];
  if (strchr(a->host, ':') != NULL)
    snprintf(buf, sizeof(buf), "[%s]:%u", a->host, a->port);
  else
    snprintf(buf, sizeof(buf), "%s:%u", a->host[0] ? a->host : "*", a->port);
  cfg__dump_string(out, buf);
}

/* One scalar field's value after "key: ". */
static void dump_scalar(FILE *out, const struct lbp_config *cfg, const struct field *f,
                        const void *p) {
  char buf[64];
  uint64_t v;

  switch (f->type) {
  case T_DURATION:
    fputs(cfg__fmt_duration(buf, sizeof(buf), load_uint(p, f->width)), out);
    break;
  case T_SIZE:
    fputs(cfg__fmt_size(buf, sizeof(buf), load_uint(p, f->width)), out);
    break;
  case T_UINT:
    fprintf(out, "%" PRIu64, load_uint(p, f->width));
    break;
  case T_PERCENT:
    fprintf(out, "%" PRIu64 "%%", load_uint(p, f->width));
    break;
  case T_WORKERS:
    fprintf(out, "%" PRIu64 "%s", load_uint(p, f->width), cfg->workers_auto ? "  # auto" : "");
    break;
  case T_BOOL:
    fputs(load_uint(p, f->width) ? "true" : "false", out);
    break;
  case T_ENUM:
    v = load_uint(p, f->width);
    fputs(((const char *const *)f->aux)[v], out);
    break;
  case T_HOSTPORT:
    dump_addr(out, p);
    break;
  case T_STRING:
    cfg__dump_string(out, *(char *const *)p);
    break;
  default:
    break;
  }
}

void cfg__dump_key(FILE *out, int indent, int *first, const char *name) {
  /* A sequence item starts with "- " in place of the indentation's last two spaces. */
  fprintf(out, "%*s%s%s:", *first ? indent - 2 : indent, "", *first ? "- " : "", name);
  *first = 0;
}

void cfg__dump_table(FILE *out, const struct lbp_config *cfg, const struct field *table,
                     const void *base, int indent, int seq_item) {
  int first = seq_item;

  for (const struct field *f = table; f->name != NULL; f++) {
    const void *p = (const char *)base + f->offset;

    if ((f->flags & NO_DUMP) || (f->type == T_CUSTOM && f->dump == NULL))
      continue;
    if (f->type == T_STRING && *(char *const *)p == NULL) {
      if (!seq_item) /* in a list item, a comment cannot carry the "- " */
        fprintf(out, "%*s# %s: (not set)\n", indent, "", f->name);
      continue;
    }
    if (f->type == T_CUSTOM) {
      f->dump(out, cfg, base, indent, &first);
      continue;
    }
    cfg__dump_key(out, indent, &first, f->name);
    if (f->type == T_TABLE) {
      fputc('\n', out);
      cfg__dump_table(out, cfg, f->aux, p, indent + 2, 0);
      continue;
    }
    fputc(' ', out);
    dump_scalar(out, cfg, f, p);
    fputc('\n', out);
  }
}

void cfg_dump(const struct lbp_config *cfg, FILE *f) {
  fprintf(f, "# lbproxy %s: the effective configuration of %s\n", LBPROXY_VERSION,
          cfg->file != NULL ? cfg->file : "<config>");
  cfg__dump_table(f, cfg, cfg__top_fields, cfg, 0, 0);
}
