/* The config loader's entry points: runs shape, fields and meaning; reading files; error text. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "config_internal.h"

/* A config file bigger than this is a mistake (or an attack), not a config. */
#define MAX_FILE_BYTES (16u << 20)

const char *const cfg__dispatch_names[] = {"handoff", "handoff-least", "proxy",
                                           "shared",  "reuseport",     NULL};

const char *cfg_dispatch_name(enum cfg_dispatch d) {
  if ((unsigned)d >= sizeof(cfg__dispatch_names) / sizeof(cfg__dispatch_names[0]) - 1)
    return "unknown";
  return cfg__dispatch_names[d];
}

const char *const cfg__balance_names[] = {"round_robin", "least_conn", "random2", "hash", NULL};

const char *cfg_balance_name(enum cfg_balance b) {
  if ((unsigned)b >= sizeof(cfg__balance_names) / sizeof(cfg__balance_names[0]) - 1)
    return "unknown";
  return cfg__balance_names[b];
}

int cfg__error(struct cfg__ctx *ctx, int line, int col, const char *path, const char *fmt, ...) {
  char what[512];
  va_list ap;

  va_start(ap, fmt);
  vsnprintf(what, sizeof(what), fmt, ap);
  va_end(ap);
  snprintf(ctx->err->msg, sizeof(ctx->err->msg), "%s:%d:%d: %s%s%s", ctx->file, line, col,
           path != NULL ? path : "", path != NULL && path[0] != '\0' ? ": " : "", what);
  return UV_EINVAL;
}

const char *cfg__show(char *buf, size_t size, const char *s) {
  size_t i, max = size > 52 ? 48 : size - 4;

  if (size < 5) /* no room for anything but the "..." */
    return size > 0 ? (buf[0] = '\0', buf) : buf;
  for (i = 0; s[i] != '\0' && i < max; i++)
    buf[i] = (s[i] >= ' ' && s[i] < 0x7f) ? s[i] : '?';
  if (s[i] != '\0')
    memcpy(buf + i, "...", 3), i += 3;
  buf[i] = '\0';
  return buf;
}

size_t cfg__levenshtein(const char *a, const char *b, size_t limit) {
  size_t la = strlen(a), lb = strlen(b), row[64];

  /* The difference in length is a lower bound; it also keeps a fuzzed 1 MB key cheap. */
  if ((la > lb ? la - lb : lb - la) > limit || lb >= sizeof(row) / sizeof(row[0]))
    return limit + 1;
  for (size_t j = 0; j <= lb; j++)
    row[j] = j;
  for (size_t i = 1; i <= la; i++) {
    size_t diag = row[0], best;
    row[0] = best = i;
    for (size_t j = 1; j <= lb; j++) {
      size_t up = row[j];
      size_t sub = diag + (a[i - 1] != b[j - 1]);
      size_t v = up + 1 < row[j - 1] + 1 ? up + 1 : row[j - 1] + 1;
      row[j] = v < sub ? v : sub;
      diag = up;
      if (row[j] < best)
        best = row[j];
    }
    if (best > limit)
      return limit + 1;
  }
  return row[lb];
}

const char *cfg__closest(const char *s, const char *const *names) {
  const char *best = NULL;
  size_t best_d = (size_t)-1;

  for (size_t i = 0; names[i] != NULL; i++) {
    size_t len = strlen(names[i]);
    size_t limit = len / 3 > 2 ? len / 3 : 2;
    size_t d = cfg__levenshtein(s, names[i], limit);
    if (d <= limit && d < best_d) {
      best = names[i];
      best_d = d;
    }
  }
  return best;
}

int cfg__warn(struct cfg__ctx *ctx, struct lbp_config *cfg, int line, int col, const char *path,
              const char *fmt, ...) {
  char what[512], line_buf[768], **grown;
  va_list ap;

  va_start(ap, fmt);
  vsnprintf(what, sizeof(what), fmt, ap);
  va_end(ap);
  snprintf(line_buf, sizeof(line_buf), "%s:%d:%d: %s%s%s", ctx->file, line, col,
           path != NULL ? path : "", path != NULL && path[0] != '\0' ? ": " : "", what);
  if ((grown = realloc(cfg->warnings, (cfg->nwarnings + 1) * sizeof(*grown))) == NULL)
    return UV_ENOMEM;
  cfg->warnings = grown;
  if ((grown[cfg->nwarnings] = strdup(line_buf)) == NULL)
    return UV_ENOMEM;
  cfg->nwarnings++;
  return 0;
}

static void routes_free(struct cfg_route *r, size_t n) {
  for (size_t i = 0; i < n; i++) {
    free(r[i].host);
    free(r[i].path);
    free(r[i].set_host);
  }
  free(r);
}

void cfg_free(struct lbp_config *cfg) {
  if (cfg == NULL)
    return;
  for (size_t i = 0; i < cfg->nlisteners; i++)
    if (cfg->listeners[i].own_routes)
      routes_free(cfg->listeners[i].routes, cfg->listeners[i].nroutes);
  free(cfg->listeners);
  for (size_t i = 0; i < cfg->nwarnings; i++)
    free(cfg->warnings[i]);
  free(cfg->warnings);
  free(cfg->pid_file);
  free(cfg->error_log);
  free(cfg->access_log);
  free(cfg->admin.listen);
  for (size_t i = 0; i < cfg->nupstreams; i++) {
    free(cfg->upstreams[i].name);
    free(cfg->upstreams[i].servers);
    free(cfg->upstreams[i].hash_header);
    free(cfg->upstreams[i].health_check.path);
    free(cfg->upstreams[i].health_check.host);
  }
  routes_free(cfg->routes, cfg->nroutes);
  free(cfg->upstreams);
  free(cfg->user);
  free(cfg->file);
  free(cfg);
}

int cfg_parse(const char *name, const char *bytes, size_t len, struct lbp_config **out,
              struct cfg_error *err) {
  return cfg_parse_ex(name, bytes, len, 0, out, err);
}

int cfg_parse_ex(const char *name, const char *bytes, size_t len, unsigned flags,
                 struct lbp_config **out, struct cfg_error *err) {
  struct cfg_error scratch;
  struct cfg__ctx ctx;
  struct cfg__node *root = NULL;
  struct lbp_config *cfg;
  int rc;

  ctx.file = name != NULL ? name : "<config>";
  ctx.err = err != NULL ? err : &scratch;
  ctx.flags = flags;
  ctx.err->msg[0] = '\0';
  *out = NULL;
  if ((cfg = calloc(1, sizeof(*cfg))) == NULL || (cfg->file = strdup(ctx.file)) == NULL)
    rc = UV_ENOMEM;
  else if ((rc = cfg__tree_load(&ctx, bytes, len, &root)) == 0 &&
           (rc = cfg__fields(&ctx, root, cfg)) == 0)
    rc = cfg__meaning(&ctx, root, cfg);
  cfg__tree_free(root);
  if (rc != 0) {
    cfg_free(cfg);
    if (ctx.err->msg[0] == '\0')
      snprintf(ctx.err->msg, sizeof(ctx.err->msg), "%s: %s", ctx.file, uv_strerror(rc));
    return rc;
  }
  *out = cfg;
  return 0;
}

/* Reads the whole of fd into a NUL-terminated buffer (files, pipes and /dev/stdin alike). */
static int read_all(int fd, char **bytes, size_t *len) {
  size_t cap = 4096, n = 0;
  char *buf = malloc(cap), *grown;
  ssize_t r;

  if (buf == NULL)
    return UV_ENOMEM;
  for (;;) {
    if (n + 1 == cap) {
      if (cap >= MAX_FILE_BYTES) {
        free(buf);
        return UV_EFBIG;
      }
      if ((grown = realloc(buf, cap * 2)) == NULL) {
        free(buf);
        return UV_ENOMEM;
      }
      buf = grown;
      cap *= 2;
    }
    r = read(fd, buf + n, cap - n - 1);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0) {
      int e = errno;
      free(buf);
      return -e;
    }
    if (r == 0)
      break;
    n += (size_t)r;
  }
  buf[n] = '\0';
  *bytes = buf;
  *len = n;
  return 0;
}

int cfg_load_file(const char *path, struct lbp_config **out, struct cfg_error *err,
                  char **bytes_out, size_t *len_out) {
  struct cfg_error scratch;
  char *bytes = NULL;
  size_t len = 0;
  int fd, rc;

  if (err == NULL)
    err = &scratch;
  *out = NULL;
  if (bytes_out != NULL)
    *bytes_out = NULL;
  if (len_out != NULL)
    *len_out = 0;
  if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
    rc = -errno;
    snprintf(err->msg, sizeof(err->msg), "%s: cannot open: %s", path, uv_strerror(rc));
    return rc;
  }
  rc = read_all(fd, &bytes, &len);
  close(fd);
  if (rc != 0) {
    snprintf(err->msg, sizeof(err->msg), "%s: cannot read: %s", path, uv_strerror(rc));
    return rc;
  }
  if ((rc = cfg_parse(path, bytes, len, out, err)) != 0 || bytes_out == NULL) {
    free(bytes);
    return rc;
  }
  *bytes_out = bytes;
  if (len_out != NULL)
    *len_out = len;
  return 0;
}
