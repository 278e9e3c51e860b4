/* The lbproxy command line: config checks, help, version, and start-up failures. */
#include "itest.h"

#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static char dir[512];

static void setup(void) {
  cr_assert_eq(h_tmpdir(dir, sizeof(dir)), 0);
}

static void teardown(void) {
  h_rmtree(dir);
}

/* Runs lbproxy with `args` to completion; its output goes to `out`. Returns the exit code. */
static int run(const char *const args[], char *out, size_t cap) {
  const char *argv[8] = {LBP_PROXY_BIN};
  struct h_proc p;
  char log[600];
  FILE *f;
  size_t n = 0;
  int status;

  for (int i = 0; args[i] != NULL && i < 6; i++)
    argv[i + 1] = args[i];
  snprintf(log, sizeof(log), "%s/run.log", dir);
  unlink(log);
  cr_assert_eq(h_spawn(&p, argv, log), 0);
  for (int64_t deadline = h_now_ms() + 30000; !h_exited(&p) && h_now_ms() < deadline;)
    usleep(2000);
  status = p.pid > 0 ? h_stop(&p, SIGKILL, 1000) : p.status;
  f = fopen(log, "r");
  if (f != NULL) {
    n = fread(out, 1, cap - 1, f);
    fclose(f);
  }
  out[n] = '\0';
  cr_assert(WIFEXITED(status), "lbproxy did not exit by itself: %s", out);
  return WEXITSTATUS(status);
}

TestSuite(cli, .init = setup, .fini = teardown, .timeout = 60);

Test(cli, check_accepts_a_valid_file) {
  char path[600], out[4096];
  h_write_file(dir, "ok.yaml",
               "listen: 127.0.0.1:0\nupstreams:\n  a:\n    servers: [127.0.0.1:1]\n", path,
               sizeof(path));
  const char *args[] = {"-t", "-c", path, NULL};
  cr_assert_eq(run(args, out, sizeof(out)), 0, "%s", out);
  cr_assert(strstr(out, "test is successful") != NULL, "%s", out);
}

Test(cli, check_names_file_line_and_column_of_an_error) {
  char path[600], out[4096], want[700];
  h_write_file(dir, "bad.yaml",
               "listen: 127.0.0.1:0\nupstreams:\n  a:\n    servers: [127.0.0.1:1]\n"
               "timeouts:\n  conect: 2s\n",
               path, sizeof(path));
  const char *args[] = {"-t", "-c", path, NULL};
  cr_assert_eq(run(args, out, sizeof(out)), 1, "%s", out);
  snprintf(want, sizeof(want), "%s:6:3: timeouts.conect: unknown key 'conect'", path);
  cr_assert(strstr(out, want) != NULL, "%s", out);
  cr_assert(strstr(out, "did you mean 'connect'") != NULL, "%s", out);
}

Test(cli, the_default_config_of_make_run_is_valid) {
  char out[4096];
  const char *args[] = {"-t", "-c", LBP_SOURCE_DIR "/config/lbproxy.yaml", NULL};
  cr_assert_eq(run(args, out, sizeof(out)), 0, "%s", out);
}

Test(cli, help_and_version_exit_zero) {
  char out[4096];
  const char *help[] = {"--help", NULL}, *version[] = {"--version", NULL};
  cr_assert_eq(run(help, out, sizeof(out)), 0);
  cr_assert(strstr(out, "usage: lbproxy") != NULL, "%s", out);
  cr_assert_eq(run(version, out, sizeof(out)), 0);
  cr_assert(strncmp(out, "lbproxy ", 8) == 0, "%s", out);
}

Test(cli, an_unknown_option_exits_two) {
  char out[4096];
  const char *args[] = {"--bogus", NULL};
  cr_assert_eq(run(args, out, sizeof(out)), 2);
}

Test(cli, a_missing_config_file_is_reported) {
  char out[4096];
  const char *args[] = {"-c", "/nonexistent/lbproxy.yaml", NULL};
  cr_assert_eq(run(args, out, sizeof(out)), 1, "%s", out);
  cr_assert(strstr(out, "/nonexistent/lbproxy.yaml") != NULL, "%s", out);
}

Test(cli, a_port_in_use_is_reported_and_nothing_starts) {
  char path[600], out[4096], yaml[256];
  struct sockaddr_in sa = {0};
  socklen_t len = sizeof(sa);
  int fd = socket(AF_INET, SOCK_STREAM, 0);

  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  cr_assert_eq(listen(fd, 1), 0);
  cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
  snprintf(yaml, sizeof(yaml),
           "listen: 127.0.0.1:%u\nupstreams:\n  a:\n    servers: [127.0.0.1:1]\n",
           ntohs(sa.sin_port));
  h_write_file(dir, "busy.yaml", yaml, path, sizeof(path));
  const char *args[] = {"-c", path, NULL};
  cr_assert_eq(run(args, out, sizeof(out)), 1, "%s", out);
  cr_assert(strstr(out, "address already in use") != NULL, "%s", out);
  cr_assert(strstr(out, "fork") == NULL, "no worker may start: %s", out);
  close(fd);
}
