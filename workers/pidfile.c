/* The pid file: written atomically, locked while the master runs, read by `lbproxy -s`. */

/*
 * The file is written to a temporary name, locked (flock, exclusive), then renamed over the
 * real name, so a reader never sees it half written and the lock is on the file the name
 * points at. A second master first tries the lock of the existing file: if it is held, an
 * lbproxy is running and the second one refuses to start; if not, the file is stale.
 */
#include "master.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

int pidfile_read(const char *path, long *pid) {
  char buf[32];
  ssize_t n;
  char *end;
  int fd = open(path, O_RDONLY | O_CLOEXEC);

  if (fd < 0)
    return -errno;
  n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0)
    return UV_EINVAL;
  buf[n] = '\0';
  *pid = strtol(buf, &end, 10);
  if (end == buf || *pid <= 0 || (*end != '\n' && *end != '\0'))
    return UV_EINVAL;
  return 0;
}

/* Is the existing file locked by a running master? 1 (and its pid), 0 if stale or absent. */
static int held(const char *path, long *other) {
  int fd = open(path, O_RDONLY | O_CLOEXEC), busy = 0;

  if (fd < 0)
    return 0;
  if (flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK) {
    busy = 1;
    if (pidfile_read(path, other) != 0)
      *other = 0;
  }
  close(fd);
  return busy;
}

int pidfile_running(const char *path, long *pid) {
  *pid = 0;
  return held(path, pid);
}

int pidfile_create(const char *path, long *other) {
  char tmp[4096], line[32];
  int fd, len, rc;

  if (held(path, other))
    return UV_EBUSY;
  if (snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", path, (long)getpid()) >= (int)sizeof(tmp))
    return UV_ENAMETOOLONG;
  unlink(tmp); /* a leftover of a crashed start: ours by name (our pid) */
  fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0)
    return -errno;
  len = snprintf(line, sizeof(line), "%ld\n", (long)getpid());
  if (flock(fd, LOCK_EX | LOCK_NB) != 0 || write(fd, line, (size_t)len) != len ||
      rename(tmp, path) != 0) {
    rc = -errno;
    unlink(tmp);
    close(fd);
    return rc != 0 ? rc : UV_EIO;
  }
  return fd;
}

void pidfile_remove(const char *path, int fd) {
  long pid;

  if (fd < 0)
    return;
  /* Only ours: after a binary upgrade the file names the new master. */
  if (path != NULL && pidfile_read(path, &pid) == 0 && pid == (long)getpid())
    unlink(path);
  close(fd);
}
