/*
 * Building the exec guard: rules, references and fanotify marks. Runs in the supervisor (host
 * root, host namespaces) while the child has pivoted into the sandbox's root and is blocked on
 * the supervisor pipe, so nothing in the sandbox has run yet. Every step fails closed: any error
 * exits 125 before the child is released, and the child then exits on the closed pipe.
 *
 * Paths inside the sandbox are only ever resolved with openat2(RESOLVE_IN_ROOT |
 * RESOLVE_NO_MAGICLINKS) from an O_PATH fd of /proc/CHILD/root: a symlink the sandbox planted
 * (layers and the upper dir are sandbox-controlled) resolves as it would inside, never to a host
 * path. Marks are placed through /proc/self/fd/N of our own fds, never by a path string.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fanotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"
#include "guard.h"

/* The Debian PATH, in order; /bin and /sbin are symlinks into /usr on merged-usr systems, which
 * RESOLVE_IN_ROOT follows and the dev/ino dedupe collapses. */
static const char *const path_dirs[] = {"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"};
static const char *const loaders[] = {"/lib64/ld-linux-x86-64.so.2", "/lib/ld-linux-x86-64.so.2",
                                      "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", "/lib/ld-musl-x86_64.so.1",
                                      "/lib/ld-linux.so.2", "/lib/ld-musl-i386.so.1"};
static const char *const multi_call[] = {"busybox", "toybox"};

static int bad_text(const char *s, size_t max) {
    size_t n = strlen(s);
    if (n == 0 || n > max) return 1;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7f) return 1;
    return 0;
}

static void add_rule(struct guard *g, const char *name, const char *message, enum ref_kind kind) {
    if (g->n_rules >= GUARD_MAX_RULES) die_plain("--guard: more than %d rules", GUARD_MAX_RULES - 2);
    struct guard_rule *r = &g->rules[g->n_rules++];
    r->name = strdup(name);
    r->message = strdup(message);
    if (r->name == NULL || r->message == NULL) die("strdup");
    r->absolute = name[0] == '/';
    r->kind = kind;
}

/* One rule per line: "deny<TAB>NAME<TAB>MESSAGE". NAME is a program name (no '/') or an absolute
 * path; MESSAGE is one printable line. Anything else is refused: a rule we misread is a rule we
 * would not enforce. */
static void parse_rules(struct guard *g, const char *file) {
    int fd = open(file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) die("--guard %s", file);
    static char buf[256 * 1024];
    size_t len = 0;
    for (;;) {
        ssize_t n = read(fd, buf + len, sizeof buf - 1 - len);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) die("read %s", file);
        if (n == 0) break;
        len += (size_t)n;
        if (len >= sizeof buf - 1) die_plain("--guard %s: larger than %zu bytes", file, sizeof buf - 1);
    }
    close(fd);
    buf[len] = '\0';
    if (memchr(buf, '\0', len) != NULL) die_plain("--guard %s: contains a NUL byte", file);
    int line = 0;
    for (char *save = NULL, *l = strtok_r(buf, "\n", &save); l != NULL; l = strtok_r(NULL, "\n", &save)) {
        line++;
        char *name = strchr(l, '\t');
        char *msg = name ? strchr(name + 1, '\t') : NULL;
        if (strncmp(l, "deny\t", 5) != 0 || msg == NULL) die_plain("--guard %s line %d: expected deny<TAB>NAME<TAB>MESSAGE", file, line);
        *name++ = '\0';
        *msg++ = '\0';
        if (bad_text(name, 255) || (name[0] != '/' && strchr(name, '/') != NULL) || strcmp(name, ".") == 0 ||
            strcmp(name, "..") == 0 || (name[0] == '/' && (name[1] == '\0' || strstr(name, "/../") || strstr(name, "/./"))))
            die_plain("--guard %s line %d: bad program name", file, line);
        if (bad_text(msg, 1024)) die_plain("--guard %s line %d: the message must be one printable line of 1 to 1024 bytes", file, line);
        add_rule(g, name, msg, REF_DENY);
    }
    if (g->n_rules == 0) die_plain("--guard %s: no deny rules (leave --guard out instead)", file);
    /* A non-empty deny list makes multi-call binaries denied too: `busybox rm x` is rm. */
    char msg[256];
    for (size_t i = 0; i < sizeof multi_call / sizeof *multi_call; i++) {
        snprintf(msg, sizeof msg,
                 "paddock: '%s' denied: a multi-call binary can run any program in guardrails.commands.deny as an applet",
                 multi_call[i]);
        add_rule(g, multi_call[i], msg, REF_MULTI);
    }
}

struct guard *guard_load(const char *rules_file, const char *log_file) {
    struct guard *g = calloc(1, sizeof *g);
    if (g == NULL) die("calloc");
    g->fan_fd = g->root_fd = -1;
    for (size_t i = 0; i < GUARD_CACHE; i++) g->cache[i].ref = -1;
    parse_rules(g, rules_file);
    /* Append-only, never through a symlink; created 0600 (denials name files of the session). */
    g->log_fd = open(log_file, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (g->log_fd < 0) die("--guard-log %s", log_file);
    struct stat st;
    if (fstat(g->log_fd, &st) < 0 || !S_ISREG(st.st_mode)) die_plain("--guard-log %s: not a regular file", log_file);
    return g;
}

static const char *self_fd(int fd) {
    static char b[32];
    snprintf(b, sizeof b, "/proc/self/fd/%d", fd);
    return b;
}

/* Resolve PATH in the sandbox; keep it as a reference unless it is missing, not a regular file,
 * or already known (same dev/ino, e.g. /bin/rm and /usr/bin/rm on merged-usr). */
static void add_ref(struct guard *g, const char *path, const struct guard_rule *rule, enum ref_kind kind) {
    int pfd = guard_open_in_root(g, path, O_PATH);
    if (pfd < 0) {
        /* Missing (or a symlink loop, which exec would refuse too): nothing to reference. The name
         * rule still denies a file by that name appearing later. */
        if (errno == ENOENT || errno == ENOTDIR || errno == ELOOP) return;
        die("guard: resolve %s in the sandbox", path);
    }
    struct stat st;
    if (fstat(pfd, &st) < 0) die("guard: stat %s", path);
    if (!S_ISREG(st.st_mode)) {
        close(pfd);
        return; /* only regular files can be executed */
    }
    for (size_t i = 0; i < g->n_refs; i++)
        if (g->refs[i].dev == st.st_dev && g->refs[i].ino == st.st_ino) {
            close(pfd);
            return;
        }
    if (g->n_refs >= GUARD_MAX_REFS) die_plain("guard: more than %d referenced programs", GUARD_MAX_REFS);
    /* A regular file (checked on this very fd), so this open cannot block; no mark exists yet, so
     * it raises no event we would have to answer ourselves. */
    int fd = open(self_fd(pfd), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) die("guard: open %s", path);
    close(pfd);
    struct guard_ref *r = &g->refs[g->n_refs++];
    *r = (struct guard_ref){.dev = st.st_dev, .ino = st.st_ino, .size = st.st_size, .fd = fd, .rule = rule, .kind = kind};
    snprintf(r->path, sizeof r->path, "%s", path);
}

static void resolve_refs(struct guard *g) {
    char path[512];
    for (size_t i = 0; i < g->n_rules; i++) {
        const struct guard_rule *r = &g->rules[i];
        if (r->absolute) {
            add_ref(g, r->name, r, r->kind);
            continue;
        }
        for (size_t d = 0; d < sizeof path_dirs / sizeof *path_dirs; d++) {
            snprintf(path, sizeof path, "%s/%s", path_dirs[d], r->name);
            add_ref(g, path, r, r->kind);
        }
    }
    for (size_t i = 0; i < sizeof loaders / sizeof *loaders; i++) add_ref(g, loaders[i], NULL, REF_LOADER);
}

/* Denied programs (not loaders) cannot even be opened by the sandbox: that stops copying them,
 * reading them into a memfd, and running them through the dynamic loader (which open()s and
 * mmap()s its target instead of exec'ing it, so no exec event would show it). */
static void mark_refs(struct guard *g) {
    for (size_t i = 0; i < g->n_refs; i++) {
        if (g->refs[i].kind == REF_LOADER) continue;
        if (fanotify_mark(g->fan_fd, FAN_MARK_ADD | FAN_MARK_INODE, FAN_OPEN_PERM | FAN_OPEN_EXEC_PERM, AT_FDCWD,
                          self_fd(g->refs[i].fd)) < 0)
            die("guard: mark %s", g->refs[i].path);
    }
}

/* mountinfo escapes space, tab, newline and backslash as \ooo. */
static void unescape(char *s) {
    char *w = s;
    for (char *r = s; *r; r++) {
        if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' && r[3] >= '0' && r[3] <= '7') {
            *w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
            r += 3;
        } else {
            *w++ = *r;
        }
    }
    *w = '\0';
}

static int has_opt(const char *opts, const char *want) {
    size_t n = strlen(want);
    for (const char *p = opts; p && *p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL)
        if (strncmp(p, want, n) == 0 && (p[n] == ',' || p[n] == '\0')) return 1;
    return 0;
}

/*
 * FAN_OPEN_EXEC_PERM on every mount the sandbox can reach. Mount marks, not filesystem marks: a
 * bind mount of a host file (resolv.conf, /dev/null) shares the host's superblock, and a
 * filesystem mark there would stop every exec on the host's root filesystem at this supervisor.
 * The sandbox cannot add mounts (its user namespace owns no mount namespace; seccomp refuses
 * mount syscalls), so the set marked here is the set that exists for its whole life.
 */
static void mark_mounts(struct guard *g, pid_t child) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/mountinfo", child);
    FILE *f = fopen(path, "re");
    if (f == NULL) die("guard: open %s", path);
    char *line = NULL, mp[4096], opts[1024];
    size_t cap = 0;
    int marked = 0, root_marked = 0;
    while (getline(&line, &cap, f) > 0) {
        unsigned long id;
        if (sscanf(line, "%lu %*u %*s %*s %4095s %1023s", &id, mp, opts) != 3) die_plain("guard: cannot parse %s", path);
        unescape(mp);
        int fd = guard_open_in_root(g, mp, O_PATH);
        if (fd < 0 && errno != ENOENT) die("guard: open mount point %s", mp);
        struct statx sx;
        if (fd >= 0 && statx(fd, "", AT_EMPTY_PATH, STATX_MNT_ID, &sx) < 0) die("guard: statx %s", mp);
        if (fd >= 0 && !(sx.stx_mask & STATX_MNT_ID)) die_plain("guard: the kernel reports no mount id for %s", mp);
        if (fd < 0 || sx.stx_mnt_id != id) {
            /* Over-mounted (or under an over-mounted dir): no path reaches it, and no process in
             * the sandbox holds an fd into it (none has run yet). Skipping it loses nothing. */
            if (fd >= 0) close(fd);
            continue;
        }
        if (fanotify_mark(g->fan_fd, FAN_MARK_ADD | FAN_MARK_MOUNT, FAN_OPEN_EXEC_PERM, AT_FDCWD, self_fd(fd)) < 0) {
            /* proc refuses permission events (FS_DISALLOW_NOTIFY_PERM). Skipping is sound only
             * for a noexec mount: the kernel itself refuses to exec (or mmap PROT_EXEC) from it. */
            if (errno != EINVAL || !has_opt(opts, "noexec")) die("guard: mark mount %s", mp);
        } else {
            marked++;
            if (strcmp(mp, "/") == 0) root_marked = 1;
        }
        close(fd);
    }
    free(line);
    fclose(f);
    if (!root_marked || marked == 0) die_plain("guard: the sandbox's root mount was not marked");
}

void guard_arm(struct guard *g, pid_t child) {
    g->fan_fd = fanotify_init(FAN_CLASS_CONTENT | FAN_CLOEXEC | FAN_NONBLOCK | FAN_REPORT_TID,
                              O_RDONLY | O_LARGEFILE | O_CLOEXEC);
    if (g->fan_fd < 0) die("guard: fanotify_init");
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/root", child);
    g->root_fd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (g->root_fd < 0) die("guard: open %s", path);
    /* References are opened before any mark exists: from here on the supervisor never opens a
     * file in the sandbox (it would wait for its own answer). */
    resolve_refs(g);
    mark_refs(g);
    mark_mounts(g, child);
    /* The child's next exec is this very binary (the agent, by an fd opened on the host). */
    int self = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    if (self < 0) die("guard: open /proc/self/exe");
    guard_expect_interp(g, child, self);
    close(self);
}
