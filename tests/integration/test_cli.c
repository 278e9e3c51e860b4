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

/* ---- operation: -T, -s, users, messages ---- */

static const char *one_upstream(char *path, size_t cap, const char *extra) {
  char yaml[1024];
  snprintf(yaml, sizeof(yaml),
           "listen: 127.0.0.1:0\nworkers: 1\n%supstreams:\n  a:\n    servers: [127.0.0.1:1]\n",
           extra);
  h_write_file(dir, "c.yaml", yaml, path, cap);
  return path;
}

Test(cli, a_user_that_does_not_exist_fails_the_check_with_line_and_column) {
  char path[600], out[4096], want[700];
  const char *args[] = {"-t", "-c", one_upstream(path, sizeof(path), "user: nosuchuser\n"), NULL};

  cr_assert_eq(run(args, out, sizeof(out)), 1, "%s", out);
  snprintf(want, sizeof(want), "%s:3:7: user: no such user 'nosuchuser'", path);
  cr_assert(strstr(out, want) != NULL, "%s", out);
}

Test(cli, the_check_counts_in_good_english_and_prints_warnings) {
  char path[600], out[4096];
  const char *args[] = {"-t", "-c", one_upstream(path, sizeof(path), "proxy_port_base: 9000\n"),
                        NULL};

  cr_assert_eq(run(args, out, sizeof(out)), 0, "%s", out);
  cr_assert(strstr(out, "(1 listener, 1 upstream, 1 route, 1 worker, dispatch handoff)") != NULL,
            "%s", out);
  cr_assert(strstr(out, "lbproxy: warning: ") != NULL && strstr(out, "proxy_port_base") != NULL,
            "%s", out);
}

Test(cli, dump_prints_the_effective_config_with_defaults) {
  char path[600], out[8192];
  const char *args[] = {"-T", "-c", one_upstream(path, sizeof(path), ""), NULL};

  cr_assert_eq(run(args, out, sizeof(out)), 0, "%s", out);
  cr_assert(strstr(out, "shutdown_timeout: 30s\n") != NULL, "%s", out);
  cr_assert(strstr(out, "  - listen: \"127.0.0.1:0\"\n") != NULL, "%s", out);
  cr_assert(strstr(out, "  client_idle: 1m\n") != NULL, "%s", out);
}

Test(cli, option_errors_name_the_program_lbproxy) {
  char out[4096];
  const char *unknown[] = {"-x", NULL}, *noval[] = {"-c", NULL};

  cr_assert_eq(run(unknown, out, sizeof(out)), 2);
  cr_assert(strncmp(out, "lbproxy: unknown option '-x'", 28) == 0, "%s", out);
  cr_assert_eq(run(noval, out, sizeof(out)), 2);
  cr_assert(strncmp(out, "lbproxy: option '-c' needs a value", 34) == 0, "%s", out);
}

Test(cli, the_default_config_path_is_absolute) {
  char out[4096];
  const char *args[] = {"--help", NULL};

  cr_assert_eq(run(args, out, sizeof(out)), 0);
  cr_assert(strstr(out, "(default: /etc/lbproxy/lbproxy.yaml)") != NULL, "%s", out);
}

Test(cli, signal_reload_of_an_invalid_config_exits_non_zero_and_sends_nothing) {
  char path[600], pid[700], out[4096], line[64];
  const char *args[] = {"-s", "reload", "-c", path, NULL};

  snprintf(pid, sizeof(pid), "%s/x.pid", dir);
  snprintf(line, sizeof(line), "%ld\n", (long)getpid()); /* we would catch a SIGHUP */
  h_write_file(dir, "x.pid", line, NULL, 0);
  {
    char yaml[1024];
    snprintf(yaml, sizeof(yaml),
             "pid_file: %s\nupstreams:\n  a:\n    servers: [127.0.0.1:1]\ntimeouts: {conect: 1s}\n",
             pid);
    h_write_file(dir, "bad.yaml", yaml, path, sizeof(path));
  }
  signal(SIGHUP, SIG_IGN);
  cr_assert_eq(run(args, out, sizeof(out)), 1, "%s", out);
  cr_assert(strstr(out, "unknown key 'conect'") != NULL, "%s", out);
}

Test(cli, signal_without_a_running_master_says_so) {
  char path[600], yaml[700], out[4096];
  const char *args[] = {"-s", "quit", "-c", path, NULL};

  snprintf(yaml, sizeof(yaml),
           "pid_file: %s/none.pid\nupstreams:\n  a:\n    servers: [127.0.0.1:1]\n", dir);
  h_write_file(dir, "c.yaml", yaml, path, sizeof(path));
  cr_assert_eq(run(args, out, sizeof(out)), 1, "%s", out);
  cr_assert(strstr(out, "is lbproxy running?") != NULL, "%s", out);
  {
    const char *bad[] = {"-s", "restart", "-c", path, NULL};
    cr_assert_eq(run(bad, out, sizeof(out)), 2, "%s", out);
    cr_assert(strstr(out, "unknown signal 'restart'") != NULL, "%s", out);
  }
}

Test(cli, signal_reload_reaches_the_master_through_the_pid_file) {
  char path[600], yaml[1024], log[700], pid[700];
  const char *argv[] = {LBP_PROXY_BIN, "-c", path, NULL};
  const char *reload[] = {"-s", "reload", "-c", path, NULL};
  const char *quit[] = {"-s", "quit", "-c", path, NULL};
  struct h_proc p;
  char out[4096];
  int status;

  snprintf(pid, sizeof(pid), "%s/lb.pid", dir);
  snprintf(yaml, sizeof(yaml),
           "listen: 127.0.0.1:0\nworkers: 1\npid_file: %s\n"
           "upstreams:\n  a:\n    servers: [127.0.0.1:1]\n",
           pid);
  h_write_file(dir, "c.yaml", yaml, path, sizeof(path));
  snprintf(log, sizeof(log), "%s/lb.log", dir);
  cr_assert_eq(h_spawn(&p, argv, log), 0);
  cr_assert_gt(h_wait_line(log, "ready listen=", 0, 30000, NULL, 0), 0);
  cr_assert_eq(run(reload, out, sizeof(out)), 0, "%s", out);
  cr_assert_gt(h_wait_line(log, "generation: 2 active", 0, 30000, NULL, 0), 0);
  cr_assert_eq(run(quit, out, sizeof(out)), 0, "%s", out);
  status = h_stop(&p, 0, 20000);
  cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %#x", status);
  cr_assert_eq(access(pid, F_OK), -1, "the pid file was left behind");
}

Test(cli, signal_refuses_a_stale_pid_file) {
  char path[600], yaml[700], out[4096], pid[64];
  const char *args[] = {"-s", "stop", "-c", path, NULL};
  pid_t child = fork();

  if (child == 0) { /* a process whose pid a stale file might name: it must survive */
    pause();
    _exit(0);
  }
  snprintf(pid, sizeof(pid), "%d\n", (int)child);
  h_write_file(dir, "stale.pid", pid, NULL, 0);
  snprintf(yaml, sizeof(yaml),
           "pid_file: %s/stale.pid\nupstreams:\n  a:\n    servers: "
           "[127.0.0.1:1]\n",
           dir);
  h_write_file(dir, "c.yaml", yaml, path, sizeof(path));
  cr_assert_eq(run(args, out, sizeof(out)), 1, "%s", out);
  cr_assert(strstr(out, "is stale") != NULL, "%s", out);
  cr_assert_eq(kill(child, 0), 0, "an unrelated process was signalled");
  kill(child, SIGKILL);
  waitpid(child, NULL, 0);
}
