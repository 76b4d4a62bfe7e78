/*
 * stat / lsx / mkdir / mv / rm: the file operations E2B's filesystem service needs, done here
 * with syscalls so they never depend on programs (`mkdir`, `mv`, `rm`) that an environment's
 * guardrails may deny, and so they are file operations, not command executions an agent could
 * use to get around a policy. Like put/get/ls, the handler has already become the session user
 * inside the pivoted root: the kernel's permission checks decide what is reachable, and no path
 * can name a host file. On top of that, no operation here acts through a final symlink: stat
 * reports the link, mv moves or replaces the link itself, rm removes the link and never descends
 * through one, lsx does not walk into linked directories.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"
#include "common.h"

#define LSX_MAX_ENTRIES 100000 /* one listing's bound: the client holds them all in memory */
#define TREE_MAX_DEPTH 256     /* lsx and rm recursion (one open fd per level) */
#define RM_MAX_PASSES 64       /* rm re-reads a directory while entries keep appearing */

/* uid/gid → name from the sandbox's own /etc/passwd or /etc/group (no NSS: the agent is the
 * host's binary and the sandbox's libc modules may differ). One-entry cache: a listing mostly
 * has one owner. Falls back to the number. */
struct id_cache {
    int valid;
    unsigned id;
    char name[64];
};

static const char *id_name(const char *file, unsigned id, struct id_cache *c) {
    if (c->valid && c->id == id) return c->name;
    c->valid = 1;
    c->id = id;
    snprintf(c->name, sizeof c->name, "%u", id);
    FILE *f = fopen(file, "re");
    if (f == NULL) return c->name;
    char line[1024];
    while (fgets(line, sizeof line, f)) {
        char *colon = strchr(line, ':'), *idf;
        if (colon == NULL || (idf = strchr(colon + 1, ':')) == NULL) continue;
        char *end;
        unsigned long v = strtoul(++idf, &end, 10);
        if (end == idf || *end != ':' || v != id) continue;
        size_t n = (size_t)(colon - line);
        if (n > 0 && n < sizeof c->name) memcpy(c->name, line, n), c->name[n] = '\0';
        break;
    }
    fclose(f);
    return c->name;
}

static char type_char(mode_t m) {
    return S_ISREG(m) ? 'f' : S_ISDIR(m) ? 'd' : S_ISLNK(m) ? 'l' : 'o';
}

struct out {
    char buf[2 * PATH_MAX + 512];
    size_t len;
    int overflow;
};

static void put_field(struct out *o, const char *s) {
    size_t n = strlen(s) + 1;
    if (o->len + n > sizeof o->buf) {
        o->overflow = 1;
        return;
    }
    memcpy(o->buf + o->len, s, n);
    o->len += n;
}

static struct id_cache g_users, g_groups;

/* One O frame per entry, NUL-separated fields: rel, type, mode (octal), size, mtime seconds,
 * mtime nanoseconds, owner, group, then for a symlink the path it resolves to and that target's
 * type and mode (empty fields otherwise). `full` is the entry's path, for resolving a link. */
static int send_entry(int sock, const char *rel, const char *full, const struct stat *st) {
    struct out o = {.len = 0, .overflow = 0};
    char num[64], t[2] = {type_char(st->st_mode), '\0'};
    put_field(&o, rel);
    put_field(&o, t);
    snprintf(num, sizeof num, "%o", (unsigned)(st->st_mode & 07777));
    put_field(&o, num);
    snprintf(num, sizeof num, "%lld", (long long)st->st_size);
    put_field(&o, num);
    snprintf(num, sizeof num, "%lld", (long long)st->st_mtim.tv_sec);
    put_field(&o, num);
    snprintf(num, sizeof num, "%ld", (long)st->st_mtim.tv_nsec);
    put_field(&o, num);
    put_field(&o, id_name("/etc/passwd", st->st_uid, &g_users));
    put_field(&o, id_name("/etc/group", st->st_gid, &g_groups));
    char target[PATH_MAX] = "", tt[2] = "", tmode[16] = "";
    if (S_ISLNK(st->st_mode) && full != NULL) {
        /* realpath resolves as the user, inside the sandbox root; unresolvable: the path itself. */
        char *r = realpath(full, NULL);
        snprintf(target, sizeof target, "%s", r ? r : full);
        struct stat ts;
        if (r != NULL && stat(r, &ts) == 0) {
            tt[0] = type_char(ts.st_mode);
            snprintf(tmode, sizeof tmode, "%o", (unsigned)(ts.st_mode & 07777));
        }
        free(r);
    }
    put_field(&o, target);
    put_field(&o, tt);
    put_field(&o, tmode);
    if (o.overflow) return 0; /* a name longer than PATH_MAX: skipped rather than cut */
    return frame_write(sock, 'O', o.buf, (uint32_t)o.len);
}

void op_stat(int sock, struct fields *req) {
    const char *path = need_path(sock, req, "stat");
    if (path == NULL) return;
    struct stat st;
    if (fstatat(AT_FDCWD, path, &st, AT_SYMLINK_NOFOLLOW) < 0) return reply_errno(sock, "stat", path, errno);
    const char *slash = strrchr(path, '/');
    const char *name = slash && slash[1] ? slash + 1 : path;
    if (send_entry(sock, name, path, &st) < 0) return;
    frame_printf(sock, 'X', "exit 0");
}

static int by_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

struct walk {
    int sock;
    size_t sent;
    int err; /* first error that ends the listing */
};

/* Send DFD's entries (sorted), then descend into real directories (never a link) while depth > 1. */
static void walk(struct walk *w, int dfd, const char *full, const char *rel, int depth) {
    DIR *d = fdopendir(dfd);
    if (d == NULL) {
        close(dfd);
        w->err = errno;
        return;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            char **nv = realloc(names, cap * sizeof *names);
            if (nv == NULL) break;
            names = nv;
        }
        if ((names[n] = strdup(de->d_name)) != NULL) n++;
    }
    qsort(names, n, sizeof *names, by_str);
    for (size_t i = 0; i < n && w->err == 0; i++) {
        char child_full[PATH_MAX], child_rel[PATH_MAX];
        int a = snprintf(child_full, sizeof child_full, "%s/%s", strcmp(full, "/") ? full : "", names[i]);
        int b = snprintf(child_rel, sizeof child_rel, "%s%s%s", rel, *rel ? "/" : "", names[i]);
        if (a < 0 || b < 0 || (size_t)a >= sizeof child_full || (size_t)b >= sizeof child_rel) continue;
        struct stat st;
        if (fstatat(dirfd(d), names[i], &st, AT_SYMLINK_NOFOLLOW) < 0) continue; /* raced away */
        if (++w->sent > LSX_MAX_ENTRIES) {
            w->err = E2BIG;
            break;
        }
        if (send_entry(w->sock, child_rel, child_full, &st) < 0) {
            w->err = EPIPE;
            break;
        }
        if (!S_ISDIR(st.st_mode) || depth <= 1) continue;
        int cfd = openat(dirfd(d), names[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (cfd >= 0) walk(w, cfd, child_full, child_rel, depth - 1); /* unreadable subdirectory: listed, not entered */
    }
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    closedir(d);
}

void op_lsx(int sock, struct fields *req) {
    const char *path = need_path(sock, req, "lsx");
    if (path == NULL) return;
    const char *ds = next_field(req);
    unsigned long depth;
    if (ds == NULL || parse_ulong(ds, TREE_MAX_DEPTH, &depth) < 0 || depth < 1) {
        frame_printf(sock, 'X', "error bad request: lsx: depth must be 1..%d", TREE_MAX_DEPTH);
        return;
    }
    /* The directory asked for may itself be a link (followed, as E2B does); nothing below it is. */
    int dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) return reply_errno(sock, "lsx", path, errno);
    struct walk w = {.sock = sock, .sent = 0, .err = 0};
    walk(&w, dfd, path, "", (int)depth);
    if (w.err == EPIPE) return;
    if (w.err) return reply_errno(sock, "lsx", path, w.err);
    frame_printf(sock, 'X', "exit 0");
}

/* mkdir -p of an absolute PATH as the user. Existing components may be links (resolved inside the
 * sandbox root, as for put's directory); each one created is opened O_NOFOLLOW next, so a link
 * planted in its place is not followed. *created: whether the last component was made here. */
static int ensure_dirs(const char *path, mode_t mode, int *created) {
    *created = 0;
    if (path[0] != '/') return errno = EINVAL, -1;
    char *copy = strdup(path);
    if (copy == NULL) return errno = ENOMEM, -1;
    int dfd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC), rc = 0;
    char *save = NULL;
    for (char *c = strtok_r(copy, "/", &save); c != NULL && dfd >= 0; c = strtok_r(NULL, "/", &save)) {
        if (strcmp(c, ".") == 0) continue;
        if (strcmp(c, "..") == 0) {
            errno = EINVAL; /* the client sends normalised paths */
            rc = -1;
            break;
        }
        *created = 0;
        int nfd = openat(dfd, c, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (nfd < 0 && errno == ENOENT) {
            if (mkdirat(dfd, c, mode) == 0) *created = 1;
            else if (errno != EEXIST) {
                rc = -1;
                break;
            }
            nfd = openat(dfd, c, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        }
        close(dfd);
        dfd = nfd;
    }
    int err = errno;
    if (dfd < 0) rc = -1;
    else close(dfd);
    free(copy);
    errno = err;
    return rc;
}

void op_mkdir(int sock, struct fields *req) {
    const char *path = need_path(sock, req, "mkdir");
    if (path == NULL) return;
    int created;
    if (ensure_dirs(path, 0755, &created) < 0) return reply_errno(sock, "mkdir", path, errno);
    if (!created) return reply_errno(sock, "mkdir", path, EEXIST);
    frame_printf(sock, 'X', "exit 0");
}

void op_mv(int sock, struct fields *req) {
    const char *from = need_path(sock, req, "mv");
    if (from == NULL) return;
    const char *to = need_path(sock, req, "mv");
    if (to == NULL) return;
    char *from_base, *to_base;
    int sfd = open_parent(from, &from_base);
    if (sfd < 0) return reply_errno(sock, "mv", from, errno);
    /* Like E2B: the destination's directories are created first. */
    char *dir = strdup(to);
    if (dir == NULL) return reply_errno(sock, "mv", to, ENOMEM);
    char *slash = strrchr(dir, '/');
    if (slash != NULL && slash != dir) {
        *slash = '\0';
        int created;
        if (ensure_dirs(dir, 0755, &created) < 0) return reply_errno(sock, "mv", to, errno);
    }
    free(dir);
    int dfd = open_parent(to, &to_base);
    if (dfd < 0) return reply_errno(sock, "mv", to, errno);
    /* rename(2) moves or replaces directory entries: a link at either end is the link itself. */
    if (renameat(sfd, from_base, dfd, to_base) < 0) {
        int e = errno;
        struct stat st;
        int from_missing = e == ENOENT && fstatat(sfd, from_base, &st, AT_SYMLINK_NOFOLLOW) < 0;
        return reply_errno(sock, "mv", from_missing || e != ENOENT ? from : to, e);
    }
    frame_printf(sock, 'X', "exit 0");
}

/* Remove directory NAME under PDFD and everything in it, opening each level O_NOFOLLOW: a link
 * is unlinked, never descended into. */
static int remove_tree(int pdfd, const char *name, int depth) {
    if (depth > TREE_MAX_DEPTH) return errno = ELOOP, -1;
    int fd = openat(pdfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return -1;
    DIR *d = fdopendir(fd);
    if (d == NULL) {
        int e = errno;
        close(fd);
        return errno = e, -1;
    }
    int err = 0;
    for (int pass = 0; pass < RM_MAX_PASSES; pass++) {
        int removed = 0;
        rewinddir(d);
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
            if (unlinkat(fd, de->d_name, 0) == 0 || (errno == EISDIR && remove_tree(fd, de->d_name, depth + 1) == 0)) {
                removed++;
            } else if (errno != ENOENT && err == 0) {
                err = errno;
            }
        }
        if (removed == 0) break;
    }
    closedir(d);
    if (unlinkat(pdfd, name, AT_REMOVEDIR) < 0 && err == 0) err = errno;
    if (err) return errno = err, -1;
    return 0;
}

void op_rm(int sock, struct fields *req) {
    const char *path = need_path(sock, req, "rm");
    if (path == NULL) return;
    char *base;
    int dfd = open_parent(path, &base);
    if (dfd < 0) return reply_errno(sock, "rm", path, errno);
    if (unlinkat(dfd, base, 0) < 0) {
        if (errno != EISDIR || remove_tree(dfd, base, 0) < 0) return reply_errno(sock, "rm", path, errno);
    }
    frame_printf(sock, 'X', "exit 0");
}
