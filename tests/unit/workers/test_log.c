/* Tests for workers/log.c: levels, and repeated lines summarized. */
#include "log.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char path[64];
static int saved = -1;

/* stderr goes to a temp file for the test. */
static void capture(void) {
  int fd;

  snprintf(path, sizeof(path), "/tmp/lbp-test-log-XXXXXX");
  fd = mkstemp(path);
  cr_assert_geq(fd, 0);
  saved = dup(STDERR_FILENO);
  dup2(fd, STDERR_FILENO);
  close(fd);
}

static char *captured(void) {
  static char buf[65536];
  FILE *f = fopen(path, "r");
  size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  buf[n] = '\0';
  fclose(f);
  dup2(saved, STDERR_FILENO);
  unlink(path);
  return buf;
}

static int count(const char *s, const char *needle) {
  int n = 0;
  for (; (s = strstr(s, needle)) != NULL; s++)
    n++;
  return n;
}

Test(log, identical_lines_are_written_once_then_summarized) {
  char *out;

  capture();
  lbp_log_init("test", LBP_LOG_INFO);
  for (int i = 0; i < 42; i++)
    LBP_WARN_RL("upstream a:1 (pool p): connect failed; client c: 502 sent");
  LBP_WARN_RL("something else");
  LBP_WARN_RL("something else");
  LBP_INFO("an ordinary line");
  LBP_INFO("an ordinary line");
  lbp_log_flush(0); /* the window is not over: nothing yet */
  out = captured();
  cr_assert_eq(count(out, "test warn: upstream a:1 (pool p): connect failed; client c: 502 sent\n"),
               1, "%s", out);
  cr_assert_eq(count(out, "repeated"), 0, "%s", out);
  cr_assert_eq(count(out, "an ordinary line"), 2, "lines not marked as repeating are all written");
  capture();
  lbp_log_flush(1);
  out = captured();
  cr_assert_eq(count(out, "test warn: upstream a:1 (pool p): connect failed; client c: 502 sent "
                          "(repeated 41 times)\n"),
               1, "%s", out);
  cr_assert_eq(count(out, "something else (repeated 1 time)\n"), 1, "%s", out);
}

Test(log, lines_below_the_level_are_not_written_nor_counted) {
  char *out;

  capture();
  lbp_log_init("test", LBP_LOG_WARN);
  LBP_INFO_RL("client c: 400 sent");
  LBP_INFO_RL("client c: 400 sent");
  LBP_INFO("info");
  LBP_ERROR("error");
  lbp_log_flush(1);
  out = captured();
  cr_assert_eq(count(out, "400"), 0, "%s", out);
  cr_assert_eq(count(out, "test error: error\n"), 1, "%s", out);
}
