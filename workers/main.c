/* lbproxy's entry point: master by default, worker when started by a master, config check, -s
 * signals. */
#include "config.h"
#include "master.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define DEFAULT_CONFIG "/etc/lbproxy/lbproxy.yaml"

int worker_run(int channel_fd);

static void usage(FILE *f) {
  fprintf(f,
          "usage: lbproxy [-c FILE] [-t | -T | -s SIGNAL] [-h] [-v]\n"
          "\n"
          "A multi-process load-balancing HTTP/1.1 and TCP reverse proxy.\n"
          "\n"
          "  -c, --config FILE   configuration file (default: %s)\n"
          "  -t, --test          check the configuration and exit (0 valid, 1 not)\n"
          "  -T, --dump          check it and print the effective configuration\n"
          "  -s, --signal SIGNAL send SIGNAL to the running master (its pid_file) and exit:\n"
          "                        reload   re-read the config; new workers replace the old ones\n"
          "                        quit     graceful stop: finish requests in flight\n"
          "                        stop     fast stop\n"
          "                        reopen   reopen the error log (after rotating it)\n"
          "                        upgrade  start the binary on disk and hand over to it\n"
          "  -h, --help          show this help and exit\n"
          "  -v, --version       show the version and exit\n"
          "\n"
          "Signals to the master: HUP reload, QUIT graceful stop, TERM/INT fast stop,\n"
          "USR1 reopen logs, USR2 binary upgrade.\n",
          DEFAULT_CONFIG);
}

static int load(const char *path, struct lbp_config **cfg) {
  struct cfg_error err;

  if (cfg_load_file(path, cfg, &err, NULL, NULL) != 0) {
    fprintf(stderr, "lbproxy: %s\n", err.msg);
    fprintf(stderr, "lbproxy: configuration file %s test failed\n", path);
    return 1;
  }
  for (size_t i = 0; i < (*cfg)->nwarnings; i++)
    fprintf(stderr, "lbproxy: warning: %s\n", (*cfg)->warnings[i]);
  return 0;
}

static const char *plural(size_t n, const char *one, const char *many) {
  return n == 1 ? one : many;
}

static int test_config(const char *path, int dump) {
  struct lbp_config *cfg;

  if (load(path, &cfg) != 0)
    return 1;
  if (dump) {
    cfg_dump(cfg, stdout);
  } else {
    printf("lbproxy: configuration file %s syntax is ok (%zu %s, %zu %s, %zu %s, %u %s, "
           "dispatch %s)\n",
           path, cfg->nlisteners, plural(cfg->nlisteners, "listener", "listeners"), cfg->nupstreams,
           plural(cfg->nupstreams, "upstream", "upstreams"), cfg->nroutes,
           plural(cfg->nroutes, "route", "routes"), cfg->workers,
           plural(cfg->workers, "worker", "workers"), cfg_dispatch_name(cfg->dispatch));
    printf("lbproxy: configuration file %s test is successful\n", path);
  }
  cfg_free(cfg);
  return 0;
}

/* lbproxy -s NAME: the signal for it through the running master's pid file. */
static int send_signal(const char *path, const char *name) {
  static const struct {
    const char *name;
    int sig;
  } table[] = {{"reload", SIGHUP},
               {"quit", SIGQUIT},
               {"stop", SIGTERM},
               {"reopen", SIGUSR1},
               {"upgrade", SIGUSR2}};
  struct lbp_config *cfg;
  long pid;
  int sig = 0, rc;

  for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
    if (strcmp(name, table[i].name) == 0)
      sig = table[i].sig;
  if (sig == 0) {
    fprintf(stderr, "lbproxy: unknown signal '%s' (reload, quit, stop, reopen or upgrade)\n", name);
    return 2;
  }
  /* A reload of a config that does not load would fail in the master: say so here, and do not
   * signal at all. */
  if (load(path, &cfg) != 0)
    return 1;
  if (cfg->pid_file == NULL) {
    fprintf(stderr, "lbproxy: %s has no pid_file: cannot find the running master\n", path);
    cfg_free(cfg);
    return 1;
  }
  if ((rc = pidfile_read(cfg->pid_file, &pid)) != 0) {
    fprintf(stderr, "lbproxy: pid file %s: %s (is lbproxy running?)\n", cfg->pid_file,
            rc == UV_EINVAL ? "no pid in it" : strerror(-rc));
    cfg_free(cfg);
    return 1;
  }
  /* A running master keeps its pid file locked: an unlocked one is stale, and its pid may
   * belong to an unrelated process by now. */
  if (!pidfile_running(cfg->pid_file, &pid)) {
    fprintf(stderr, "lbproxy: pid file %s is stale: no lbproxy holds it (is lbproxy running?)\n",
            cfg->pid_file);
    cfg_free(cfg);
    return 1;
  }
  cfg_free(cfg);
  if (kill((pid_t)pid, sig) != 0) {
    fprintf(stderr, "lbproxy: cannot signal master pid %ld: %s\n", pid, strerror(errno));
    return 1;
  }
  return 0;
}

/* Every connection costs an fd (two in the proxy strategy's master): allow as many as the
 * hard limit lets us, as nginx's worker_rlimit_nofile would. */
static void raise_nofile(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

int main(int argc, char **argv) {
  static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                       {"test", no_argument, NULL, 't'},
                                       {"dump", no_argument, NULL, 'T'},
                                       {"signal", required_argument, NULL, 's'},
                                       {"help", no_argument, NULL, 'h'},
                                       {"version", no_argument, NULL, 'v'},
                                       {NULL, 0, NULL, 0}};
  const char *channel = getenv("LBPROXY_CHANNEL_FD");
  const char *path = DEFAULT_CONFIG, *sig = NULL;
  int test = 0, dump = 0, c;

  raise_nofile();
  if (channel != NULL) /* started by a master (argv is only "worker N", for ps) */
    return worker_run(atoi(channel));
  opterr = 0; /* our own messages, named "lbproxy:" like every other */
  while ((c = getopt_long(argc, argv, ":c:tTs:hv", opts, NULL)) != -1) {
    switch (c) {
    case 'c':
      path = optarg;
      break;
    case 't':
      test = 1;
      break;
    case 'T':
      dump = 1;
      break;
    case 's':
      sig = optarg;
      break;
    case 'h':
      usage(stdout);
      return 0;
    case 'v':
      printf("lbproxy %s\n", LBPROXY_VERSION);
      return 0;
    case ':':
      fprintf(stderr, "lbproxy: option '%s' needs a value\n", argv[optind - 1]);
      usage(stderr);
      return 2;
    default:
      fprintf(stderr, "lbproxy: unknown option '%s'\n", argv[optind - 1]);
      usage(stderr);
      return 2;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "lbproxy: unexpected argument '%s'\n", argv[optind]);
    usage(stderr);
    return 2;
  }
  if (sig != NULL)
    return send_signal(path, sig);
  if (test || dump)
    return test_config(path, dump);
  return master_run(path);
}
