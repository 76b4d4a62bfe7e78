/*
 * watch PATH RECURSIVE: inotify on a directory, as the session user, streamed as `O` frames until
 * the client disconnects. With RECURSIVE, every subdirectory gets a watch too, and so does each
 * directory created (or moved in) later. Bounded: at most WATCH_MAX directories (ENOSPC past
 * that), and a kernel queue overflow ends the watch with an error rather than silently losing
 * events.
 *
 * Frames: `P` "watching" once the watches are in place (so the client knows that a change made
 * after it is seen), then one `O` per event: a letter (c create, w write, r remove, n rename,
 * m chmod) followed by the entry's path relative to the watched directory.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"
#include "common.h"

#define WATCH_MAX 8192
#define WATCH_DEPTH_MAX 256
#define MASK (IN_CREATE | IN_MODIFY | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF)

struct watch {
    int wd;
    char *rel; /* "" for the root */
};

struct watcher {
    int ifd, sock, recursive;
    const char *root;
    struct watch *v;
    size_t n, cap;
};

static struct watch *find(struct watcher *w, int wd) {
    for (size_t i = 0; i < w->n; i++)
        if (w->v[i].wd == wd) return &w->v[i];
    return NULL;
}

static int send_event(struct watcher *w, char kind, const char *rel, const char *name);

/* Watch ROOT/REL (not following a link at its last component) and, if recursive, what is below.
 * ANNOUNCE (a directory that just appeared): entries already in it get a create event, since they
 * may have been made before its watch existed. */
static int add_tree(struct watcher *w, const char *rel, int depth, int announce) {
    if (w->n >= WATCH_MAX || depth > WATCH_DEPTH_MAX) return errno = ENOSPC, -1;
    char full[PATH_MAX];
    int len = snprintf(full, sizeof full, "%s%s%s", w->root, *rel ? "/" : "", rel);
    if (len < 0 || (size_t)len >= sizeof full) return errno = ENAMETOOLONG, -1;
    uint32_t flags = MASK | IN_ONLYDIR | (*rel ? IN_DONT_FOLLOW : 0);
    int wd = inotify_add_watch(w->ifd, full, flags);
    if (wd < 0) return -1;
    struct watch *existing = find(w, wd);
    if (existing == NULL) {
        if (w->n == w->cap) {
            size_t cap = w->cap ? w->cap * 2 : 64;
            struct watch *nv = realloc(w->v, cap * sizeof *nv);
            if (nv == NULL) return errno = ENOMEM, -1;
            w->v = nv;
            w->cap = cap;
        }
        existing = &w->v[w->n++];
        existing->wd = wd;
        existing->rel = NULL;
    }
    free(existing->rel); /* a directory renamed and seen again: its new name */
    if ((existing->rel = strdup(rel)) == NULL) return errno = ENOMEM, -1;
    if (!w->recursive) return 0;
    int dfd = open(full, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0) return 0; /* unreadable: watched, not entered */
    DIR *d = fdopendir(dfd);
    if (d == NULL) return close(dfd), 0;
    struct dirent *de;
    int rc = 0;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
        if (announce && send_event(w, 'c', rel, de->d_name) < 0) {
            rc = -1;
            errno = EPIPE;
            break;
        }
        struct stat st;
        if (fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode)) continue;
        char child[PATH_MAX];
        len = snprintf(child, sizeof child, "%s%s%s", rel, *rel ? "/" : "", de->d_name);
        if (len < 0 || (size_t)len >= sizeof child) continue;
        if (add_tree(w, child, depth + 1, announce) < 0 && (errno == ENOSPC || errno == EPIPE)) rc = -1;
    }
    closedir(d);
    return rc;
}

static int send_event(struct watcher *w, char kind, const char *rel, const char *name) {
    char buf[PATH_MAX + NAME_MAX + 4];
    int len = snprintf(buf, sizeof buf, "%c%s%s%s", kind, rel, *rel && *name ? "/" : "", name);
    if (len < 0 || (size_t)len >= sizeof buf) return 0;
    return frame_write(w->sock, 'O', buf, (uint32_t)len);
}

/* 1: go on, 0: the watched directory itself is gone (end cleanly), -1: error (errno). */
static int handle_events(struct watcher *w) {
    char buf[64 * 1024] __attribute__((aligned(__alignof__(struct inotify_event))));
    for (;;) {
        ssize_t len = read(w->ifd, buf, sizeof buf);
        if (len < 0 && errno == EINTR) continue;
        if (len < 0 && errno == EAGAIN) return 1;
        if (len <= 0) return -1;
        for (char *p = buf; p < buf + len;) {
            const struct inotify_event *ev = (const struct inotify_event *)p;
            p += sizeof *ev + ev->len;
            if (ev->mask & IN_Q_OVERFLOW) return errno = EOVERFLOW, -1;
            struct watch *wt = find(w, ev->wd);
            if (wt == NULL) continue;
            const char *name = ev->len ? ev->name : "";
            if ((ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF)) && *wt->rel == '\0') return 0;
            if (ev->mask & IN_IGNORED) {
                free(wt->rel);
                *wt = w->v[--w->n];
                continue;
            }
            if (*name == '\0') continue; /* a subdirectory's own *_SELF: its parent reports it */
            char kind = 0;
            if (ev->mask & (IN_CREATE | IN_MOVED_TO)) kind = 'c';
            else if (ev->mask & IN_MODIFY) kind = 'w';
            else if (ev->mask & IN_DELETE) kind = 'r';
            else if (ev->mask & IN_MOVED_FROM) kind = 'n';
            else if (ev->mask & IN_ATTRIB) kind = 'm';
            if (kind == 0) continue;
            if (send_event(w, kind, wt->rel, name) < 0) return errno = EPIPE, -1;
            if (kind == 'c' && (ev->mask & IN_ISDIR) && w->recursive) {
                char child[PATH_MAX];
                int n = snprintf(child, sizeof child, "%s%s%s", wt->rel, *wt->rel ? "/" : "", name);
                if (n > 0 && (size_t)n < sizeof child && add_tree(w, child, 1, 1) < 0 && (errno == ENOSPC || errno == EPIPE)) return -1;
            }
        }
    }
}

void op_watch(int sock, struct fields *req) {
    const char *path = need_path(sock, req, "watch");
    if (path == NULL) return;
    const char *r = next_field(req);
    if (r == NULL || (strcmp(r, "0") != 0 && strcmp(r, "1") != 0)) {
        frame_printf(sock, 'X', "error bad request: watch: recursive must be 0 or 1");
        return;
    }
    struct watcher w = {.ifd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK), .sock = sock, .recursive = r[0] == '1', .root = path};
    if (w.ifd < 0) return reply_errno(sock, "watch", path, errno);
    if (add_tree(&w, "", 0, 0) < 0) return reply_errno(sock, "watch", path, errno);
    if (frame_printf(sock, 'P', "watching") < 0) return;
    for (;;) {
        struct pollfd p[2] = {{.fd = w.ifd, .events = POLLIN}, {.fd = sock, .events = POLLIN}};
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR) continue;
            return reply_errno(sock, "watch", path, errno);
        }
        if (p[1].revents) {
            /* The client sends nothing after R: any readable state means it is gone. */
            char b;
            if (recv(sock, &b, 1, MSG_DONTWAIT) <= 0 || (p[1].revents & (POLLHUP | POLLERR))) return;
        }
        if (!(p[0].revents & POLLIN)) continue;
        int rc = handle_events(&w);
        if (rc == 0) break;
        if (rc < 0) {
            if (errno == EPIPE) return;
            return reply_errno(sock, "watch", path, errno);
        }
    }
    frame_printf(sock, 'X', "exit 0");
}
