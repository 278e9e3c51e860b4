/* lbproxy's entry point: master by default, worker when started by a master, or a config check. */
#include "config.h"
#include "master.h"

#include <getopt.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_CONFIG "config/lbproxy.yaml"

static void usage(FILE *f) {
  fprintf(f,
          "usage: lbproxy [-c FILE] [-t] [-h] [-v]\n"
          "\n"
          "A multi-process load-balancing HTTP/1.1 reverse proxy.\n"
          "\n"
          "  -c, --config FILE  configuration file (default: %s)\n"
          "  -t, --test         check the configuration file and exit (0 valid, 1 not)\n"
          "  -h, --help         show this help and exit\n"
          "  -v, --version      show the version and exit\n"
          "\n"
          "Signals to the master: INT/TERM stop everything.\n",
          DEFAULT_CONFIG);
}

static int test_config(const char *path) {
  struct lbp_config *cfg;
  struct cfg_error err;

  if (cfg_load_file(path, &cfg, &err, NULL, NULL) != 0) {
    fprintf(stderr, "lbproxy: %s\n", err.msg);
    fprintf(stderr, "lbproxy: configuration file %s test failed\n", path);
    return 1;
  }
  printf("lbproxy: configuration file %s syntax is ok (%zu upstreams, %zu routes, %u workers, "
         "dispatch %s)\n",
         path, cfg->nupstreams, cfg->nroutes, cfg->workers, cfg_dispatch_name(cfg->dispatch));
  printf("lbproxy: configuration file %s test is successful\n", path);
  cfg_free(cfg);
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
                                       {"help", no_argument, NULL, 'h'},
                                       {"version", no_argument, NULL, 'v'},
                                       {NULL, 0, NULL, 0}};
  const char *channel = getenv("LBPROXY_CHANNEL_FD");
  const char *path = DEFAULT_CONFIG;
  int test = 0, c;

  raise_nofile();
  if (channel != NULL) /* started by a master (argv is only "worker N", for ps) */
    return worker_run(atoi(channel));
  while ((c = getopt_long(argc, argv, "c:thv", opts, NULL)) != -1) {
    switch (c) {
    case 'c':
      path = optarg;
      break;
    case 't':
      test = 1;
      break;
    case 'h':
      usage(stdout);
      return 0;
    case 'v':
      printf("lbproxy %s\n", LBPROXY_VERSION);
      return 0;
    default:
      usage(stderr);
      return 2;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "lbproxy: unexpected argument '%s'\n", argv[optind]);
    usage(stderr);
    return 2;
  }
  return test ? test_config(path) : master_run(path);
}
