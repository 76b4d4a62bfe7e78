/* Agent mode: pid 1 inside the sandbox. Wire protocol in docs/sandbox.md. */
#ifndef PADDOCK_AGENT_H
#define PADDOCK_AGENT_H

#include <stdint.h>
#include <sys/types.h>

#include "common.h"

#define FRAME_MAX (1u << 20) /* 1 MiB payload */
#define CHUNK (64u * 1024)   /* O/E/I chunk size the agent produces */

struct frame {
    char type;
    uint32_t len;
    char *data; /* malloc'd, len bytes + a NUL terminator; NULL when len == 0 */
};

/* Read one frame. 1 = ok, 0 = clean EOF before a frame, -1 = error or truncated (errno set),
 * -2 = payload larger than FRAME_MAX. */
int frame_read(int fd, struct frame *f);
/* Write one frame (MSG_NOSIGNAL). 0 or -1. */
int frame_write(int fd, char type, const void *data, uint32_t len);
int frame_printf(int fd, char type, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* NUL-terminated fields of a request payload. */
struct fields {
    const char *p, *end;
};
/* Next field, or NULL when the payload has no further NUL-terminated string. */
const char *next_field(struct fields *c);

struct user {
    uid_t uid;
    gid_t gid;
    /* cgroup.procs of the work group(s), opened by the launcher: each command joins them before
     * it execs (--work-cgroup-fd). None for sandboxes launched without a work group. */
    int work_fds[MAX_WORK_CGROUPS];
    size_t n_work_fds;
};
/* setgroups(0) + setresgid + setresuid; capabilities go with the uid change. 0 or -1. */
int become_user(const struct user *u);

/* Each op owns the connection until it returns; the caller then exits the handler process. */
/* op_exec finishes the connection itself (then lingers on the pipes) and sets *sock to -1. */
void op_exec(int *sock, struct fields *req, const struct user *u);
void op_put(int sock, struct fields *req);
void op_get(int sock, struct fields *req);
void op_ls(int sock, struct fields *req);
/* stat, tree listing, mkdir -p, rename and recursive remove, never through a final symlink (agent_fsops.c). */
void op_stat(int sock, struct fields *req);
void op_lsx(int sock, struct fields *req);
void op_mkdir(int sock, struct fields *req);
void op_mv(int sock, struct fields *req);
void op_rm(int sock, struct fields *req);
/* inotify watch of a directory (recursive on request), streamed until the client goes (agent_watch.c). */
void op_watch(int sock, struct fields *req);

/* The request's path field, or NULL after replying "bad request". */
const char *need_path(int sock, struct fields *req, const char *op);
/* An O_PATH fd on PATH's directory, and its final component in *base_out (malloc'd); -1 + errno. */
int open_parent(const char *path, char **base_out);

/* End a connection after the final X frame: unread client bytes would turn our close into a
 * connection reset on the client side, so shut down writing and discard what is queued. */
void conn_finish(int *sock);

/* Send "X error <op> <path>: <strerror(err)>". */
void reply_errno(int sock, const char *what, const char *path, int err);

#endif
