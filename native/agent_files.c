/*
 * put / get / ls. The handler has already become the command user, and its root is the pivoted
 * sandbox root: "../" stops at "/" and an absolute symlink resolves inside the sandbox, so no path
 * given here can name a host file. On top of that, the final component is never followed for put
 * and get (a planted symlink is refused, not written or read through).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"
#include "common.h"

const char *need_path(int sock, struct fields *req, const char *op) {
    const char *path = next_field(req);
    if (path == NULL || *path == '\0') frame_printf(sock, 'X', "error bad request: %s: missing path", op);
    return path && *path ? path : NULL;
}

/* Split PATH into an O_PATH fd on its directory and the final component. */
int open_parent(const char *path, char **base_out) {
    char *a = strdup(path), *b = strdup(path);
    if (a == NULL || b == NULL) return free(a), free(b), errno = ENOMEM, -1;
    const char *dir = dirname(a);
    char *base = basename(b);
    int fd = -1;
    if (strcmp(base, "/") == 0 || strcmp(base, ".") == 0 || strcmp(base, "..") == 0) errno = EISDIR;
    else fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    int err = errno;
    *base_out = fd >= 0 ? strdup(base) : NULL;
    free(a), free(b);
    errno = err;
    return fd;
}

void op_put(int sock, struct fields *req) {
    const char *path = need_path(sock, req, "put");
    if (path == NULL) return;
    const char *m = next_field(req);
    unsigned long mode;
    if (m == NULL || *m == '\0' || strlen(m) > 5 || strspn(m, "01234567") != strlen(m) ||
        (mode = strtoul(m, NULL, 8)) > 07777) {
        frame_printf(sock, 'X', "error bad request: put: bad mode");
        return;
    }
    char *base;
    int dfd = open_parent(path, &base);
    if (dfd < 0) return reply_errno(sock, "put", path, errno);
    struct stat st;
    if (fstatat(dfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        /* Refuse rather than replace: the caller asked to write a file, and this is a link or dir. */
        if (S_ISLNK(st.st_mode)) return reply_errno(sock, "put", path, ELOOP);
        if (S_ISDIR(st.st_mode)) return reply_errno(sock, "put", path, EISDIR);
    }
    char tmp[64];
    snprintf(tmp, sizeof tmp, ".paddock-put.%d", getpid());
    int fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) return reply_errno(sock, "put", path, errno);
    for (;;) {
        struct frame f;
        if (frame_read(sock, &f) != 1 || (f.type != 'I' && f.type != 'C')) {
            free(f.data);
            unlinkat(dfd, tmp, 0); /* client gone or confused: leave nothing behind */
            return;
        }
        if (f.type == 'C') break;
        int rc = f.len ? write_all(fd, f.data, f.len) : 0;
        free(f.data);
        if (rc < 0) {
            int e = errno;
            unlinkat(dfd, tmp, 0);
            return reply_errno(sock, "put", path, e);
        }
    }
    /* rename(2) replaces the directory entry itself: even if a symlink was planted at PATH since
     * the check above, we never write through it. */
    if (fchmod(fd, (mode_t)mode) < 0 || close(fd) < 0 || renameat(dfd, tmp, dfd, base) < 0) {
        int e = errno;
        unlinkat(dfd, tmp, 0);
        return reply_errno(sock, "put", path, e);
    }
    frame_printf(sock, 'X', "exit 0");
}

void op_get(int sock, struct fields *req) {
    const char *path = need_path(sock, req, "get");
    if (path == NULL) return;
    /* O_PATH first: opening a FIFO or device to look at it could block or have side effects. */
    int pfd = open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (pfd < 0) return reply_errno(sock, "get", path, errno);
    struct stat st;
    if (fstat(pfd, &st) < 0) return reply_errno(sock, "get", path, errno);
    if (S_ISLNK(st.st_mode)) return reply_errno(sock, "get", path, ELOOP);
    if (!S_ISREG(st.st_mode)) {
        frame_printf(sock, 'X', "error get %.1024s: not a regular file", path);
        return;
    }
    char self[32];
    snprintf(self, sizeof self, "/proc/self/fd/%d", pfd);
    int fd = open(self, O_RDONLY | O_CLOEXEC); /* same inode; permission checked now, as the user */
    if (fd < 0) return reply_errno(sock, "get", path, errno);
    char buf[CHUNK];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return reply_errno(sock, "get", path, errno);
        if (n == 0) break;
        if (frame_write(sock, 'O', buf, (uint32_t)n) < 0) return;
    }
    frame_printf(sock, 'X', "exit 0");
}

struct entry {
    char *line; /* "type\tmode\tsize\tmtime_ms\tname\n" */
    const char *name;
    size_t nlen;
};

static int by_name(const void *a, const void *b) {
    const struct entry *x = a, *y = b;
    int c = memcmp(x->name, y->name, x->nlen < y->nlen ? x->nlen : y->nlen);
    return c ? c : (x->nlen > y->nlen) - (x->nlen < y->nlen);
}

void op_ls(int sock, struct fields *req) {
    const char *path = need_path(sock, req, "ls");
    if (path == NULL) return;
    int dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) return reply_errno(sock, "ls", path, errno);
    DIR *d = fdopendir(dfd);
    if (d == NULL) return reply_errno(sock, "ls", path, errno);
    struct entry *v = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
        struct stat st;
        if (fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) continue; /* raced away */
        char t = S_ISREG(st.st_mode) ? 'f' : S_ISDIR(st.st_mode) ? 'd' : S_ISLNK(st.st_mode) ? 'l' : 'o';
        long long ms = (long long)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            struct entry *nv = realloc(v, cap * sizeof *v);
            if (nv == NULL) return reply_errno(sock, "ls", path, ENOMEM);
            v = nv;
        }
        int len = asprintf(&v[n].line, "%c\t%o\t%lld\t%lld\t%s\n", t, (unsigned)(st.st_mode & 07777),
                           (long long)st.st_size, ms, de->d_name);
        if (len < 0) return reply_errno(sock, "ls", path, ENOMEM);
        v[n].nlen = strlen(de->d_name);
        v[n].name = v[n].line + len - 1 - v[n].nlen;
        n++;
    }
    qsort(v, n, sizeof *v, by_name);
    /* One O frame per entry: names may contain tabs or newlines, frames keep them unambiguous. */
    for (size_t i = 0; i < n; i++)
        if (frame_write(sock, 'O', v[i].line, (uint32_t)strlen(v[i].line)) < 0) return;
    frame_printf(sock, 'X', "exit 0");
}
