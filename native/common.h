/* Shared declarations for paddock-sandbox (launch and agent modes). */
#ifndef PADDOCK_COMMON_H
#define PADDOCK_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Exit status for "the sandbox could not be set up" (mirrors runc/podman's 125). */
#define EXIT_SETUP 125
/* cgroup.procs files a command joins (one per v1 hierarchy that is split; v2 needs one). */
#define MAX_WORK_CGROUPS 4

/* Print "error <message>: <strerror(errno)>\n" to stderr and exit EXIT_SETUP. */
__attribute__((noreturn, format(printf, 1, 2))) void die(const char *fmt, ...);
/* Same without the errno text (for usage errors). */
__attribute__((noreturn, format(printf, 1, 2))) void die_plain(const char *fmt, ...);

/* Strict decimal parse: digits only, no sign, no leading/trailing junk, value <= max. */
int parse_ulong(const char *s, unsigned long max, unsigned long *out);
/* "UID:GID" with both parts decimal. */
int parse_user(const char *s, uid_t *uid, gid_t *gid);

/* write(2) until done; retries EINTR. 0 on success, -1 on error. */
int write_all(int fd, const void *buf, size_t len);
/* read(2) exactly len bytes; retries EINTR. Returns len, 0 on EOF before the first byte,
 * -1 on error or on EOF in the middle (errno EPROTO). */
ssize_t read_full(int fd, void *buf, size_t len);

/* Write a short string to a file (e.g. /proc/PID/uid_map) in one write(2). */
int write_file(const char *path, const char *text);

/* A unix socket listening at PATH, mode 0600 (a stale socket there is replaced; any other file is an
 * error). Dies on failure. Used by launch, and by the agent under gVisor (`agent --listen`, host_backed:
 * a socket gVisor makes on the host, whose chmod it refuses; its directory is 0700 and the host side
 * sets the mode). */
int make_listener(const char *path, int host_backed);

/* Mode entry points. argv[0] is the first option (after "launch"/"agent"). */
int launch_main(int argc, char **argv);
int agent_main(int argc, char **argv);
int idmap_main(int argc, char **argv);

#endif
