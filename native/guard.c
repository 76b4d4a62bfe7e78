/*
 * The exec guard's event loop (supervisor side). Every exec in the sandbox waits for an answer
 * here, so the common case must be cheap: one fstat, one readlink, a size comparison and, for a
 * dynamic ELF, its PT_INTERP. Bytes are compared only when a file has a reference's exact size.
 *
 * A denial: the denied thread's stderr gets the rule's message first, the guard log gets a line,
 * and only then the kernel gets FAN_DENY, so the message is in the pipe before the shell's own
 * "Operation not permitted". Any error while deciding denies (fail closed).
 */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fanotify.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common.h"
#include "guard.h"

struct verdict {
    int deny;
    const char *program; /* points into the guard (stable) or a literal: used for dedupe */
    const char *message;
    char reason[300], path[4096], msgbuf[300];
};

int guard_open_in_root(const struct guard *g, const char *path, int flags) {
    struct open_how how = {.flags = (unsigned long long)(flags | O_CLOEXEC),
                           .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS};
    while (*path == '/') path++;
    if (*path == '\0') path = ".";
    return (int)syscall(SYS_openat2, g->root_fd, path, &how, sizeof how);
}

static int pread_full(int fd, char *buf, size_t len, off_t off) {
    size_t got = 0;
    while (got < len) {
        ssize_t n = pread(fd, buf + got, len - got, off + (off_t)got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return n < 0 ? -1 : 0; /* EOF: the file shrank, so it differs */
        got += (size_t)n;
    }
    return 1;
}

/* 1 same bytes, 0 different, -1 unreadable. The first block usually differs (ELF headers and
 * the start of .text), so a mismatch costs one 4 KiB read of each file. */
static int same_bytes(int a, int b, off_t size) {
    static char x[65536], y[65536];
    size_t chunk = 4096;
    for (off_t off = 0; off < size; off += (off_t)chunk, chunk = sizeof x) {
        size_t want = (size_t)(size - off) < chunk ? (size_t)(size - off) : chunk;
        int ra = pread_full(a, x, want, off), rb = pread_full(b, y, want, off);
        if (ra < 0 || rb < 0) return -1;
        if (ra == 0 || rb == 0 || memcmp(x, y, want) != 0) return 0;
    }
    return 1;
}

/* The first PT_INTERP, as load_elf_binary reads it (it opens that path right after reading it).
 * 1 with the path in out, 0 when none (not ELF, static, or malformed). */
static int elf_interp(int fd, char *out, size_t cap) {
    unsigned char eh[sizeof(Elf64_Ehdr)];
    if (pread_full(fd, (char *)eh, sizeof eh, 0) != 1 || memcmp(eh, ELFMAG, SELFMAG) != 0) return 0;
    int is64 = eh[EI_CLASS] == ELFCLASS64;
    if (!is64 && eh[EI_CLASS] != ELFCLASS32) return 0;
    Elf64_Ehdr h64;
    Elf32_Ehdr h32;
    memcpy(&h64, eh, sizeof h64);
    memcpy(&h32, eh, sizeof h32);
    uint64_t phoff = is64 ? h64.e_phoff : h32.e_phoff;
    unsigned int phnum = is64 ? h64.e_phnum : h32.e_phnum;
    size_t phsize = is64 ? sizeof(Elf64_Phdr) : sizeof(Elf32_Phdr);
    /* load_elf_binary's checks before it reads PT_INTERP: an ELF it rejects loads no interpreter. */
    unsigned int type = is64 ? h64.e_type : h32.e_type, machine = is64 ? h64.e_machine : h32.e_machine;
    if ((type != ET_EXEC && type != ET_DYN) || machine != (is64 ? EM_X86_64 : EM_386)) return 0;
    if ((is64 ? h64.e_phentsize : h32.e_phentsize) != phsize || phnum == 0 || phnum > 65536 / phsize) return 0;
    for (unsigned int i = 0; i < phnum; i++) {
        Elf64_Phdr p64;
        Elf32_Phdr p32;
        char *p = is64 ? (char *)&p64 : (char *)&p32;
        if (pread_full(fd, p, phsize, (off_t)(phoff + i * phsize)) != 1) return 0;
        if ((is64 ? p64.p_type : p32.p_type) != PT_INTERP) continue;
        uint64_t off = is64 ? p64.p_offset : p32.p_offset, len = is64 ? p64.p_filesz : p32.p_filesz;
        if (len < 2 || len > cap || pread_full(fd, out, (size_t)len, (off_t)off) != 1 || out[len - 1] != '\0') return 0;
        return 1;
    }
    return 0;
}

static struct pending_interp *pending(struct guard *g, pid_t tid, int create) {
    struct pending_interp *oldest = &g->pending[0];
    for (size_t i = 0; i < GUARD_PENDING; i++) {
        if (g->pending[i].tid == tid) return &g->pending[i];
        if (g->pending[i].seq < oldest->seq) oldest = &g->pending[i];
    }
    if (!create) return NULL;
    *oldest = (struct pending_interp){.tid = tid};
    return oldest;
}

/* After an allowed exec of FD by TID: remember which file the kernel will open as its loader. */
void guard_expect_interp(struct guard *g, pid_t tid, int fd) {
    char interp[4096];
    struct pending_interp *p = pending(g, tid, 0);
    if (p) p->tid = 0;
    if (elf_interp(fd, interp, sizeof interp) != 1) return;
    /* The kernel resolves it from the thread's root, which is the sandbox's (chroot is refused).
     * A relative or magic-link interpreter does not resolve here: then its load is denied. */
    int ifd = guard_open_in_root(g, interp, O_PATH);
    struct stat st;
    if (ifd < 0) return;
    if (fstat(ifd, &st) == 0) {
        p = pending(g, tid, 1);
        p->dev = st.st_dev, p->ino = st.st_ino, p->seq = ++g->seq;
    }
    close(ifd);
}

static void deny(struct verdict *v, const char *program, const char *message, const char *reason) {
    v->deny = 1;
    v->program = program;
    v->message = message;
    snprintf(v->reason, sizeof v->reason, "%s", reason);
}

static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* Does FD (stat ST) have the bytes of a reference of one of KINDS? Returns its index or -1. */
static int same_content(struct guard *g, int fd, const struct stat *st, int loaders, int *unreadable) {
    for (size_t i = 0; i < GUARD_CACHE; i++) {
        struct deny_cache *c = &g->cache[i];
        if (c->ref >= 0 && c->dev == st->st_dev && c->ino == st->st_ino && c->size == st->st_size &&
            c->mtime.tv_sec == st->st_mtim.tv_sec && c->mtime.tv_nsec == st->st_mtim.tv_nsec &&
            c->ctime.tv_sec == st->st_ctim.tv_sec && c->ctime.tv_nsec == st->st_ctim.tv_nsec &&
            (g->refs[c->ref].kind == REF_LOADER) == loaders)
            return c->ref;
    }
    for (size_t i = 0; i < g->n_refs; i++) {
        const struct guard_ref *r = &g->refs[i];
        if ((r->kind == REF_LOADER) != loaders || r->size != st->st_size) continue;
        int same = same_bytes(fd, r->fd, st->st_size);
        if (same < 0) *unreadable = 1;
        if (same != 1) continue;
        /* Only verdicts that deny are cached. An "allow" keyed by times could go stale: a write
         * through a shared mapping whose pages are already dirty does not move mtime/ctime. */
        g->cache[g->cache_next] = (struct deny_cache){st->st_dev, st->st_ino, st->st_size, st->st_mtim, st->st_ctim, (int)i};
        g->cache_next = (g->cache_next + 1) % GUARD_CACHE;
        return (int)i;
    }
    return -1;
}

/* Sets v->deny (with program, message, reason) or leaves it 0. Any doubt denies. */
static void decide(struct guard *g, const struct fanotify_event_metadata *m, struct verdict *v) {
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", m->fd);
    ssize_t n = readlink(link, v->path, sizeof v->path - 1);
    v->path[n > 0 ? n : 0] = '\0';
    struct stat st;
    if (n <= 0 || fstat(m->fd, &st) < 0) {
        deny(v, "?", "paddock: exec denied: the exec guard could not inspect the program", "unreadable");
        return;
    }
    if (!S_ISREG(st.st_mode)) return; /* the kernel refuses to exec anything else */

    /* The name it was reached by (d_path: symlinks already resolved; a deleted file ends in " (deleted)"). */
    char base[sizeof v->path];
    snprintf(base, sizeof base, "%s", base_name(v->path));
    char *del = strstr(base, " (deleted)");
    if (del && del[10] == '\0') *del = '\0';
    const struct guard_rule *named = NULL;
    for (size_t i = 0; i < g->n_rules && named == NULL; i++)
        if (!g->rules[i].absolute && strcmp(base, g->rules[i].name) == 0) named = &g->rules[i];

    for (size_t i = 0; i < g->n_refs; i++) {
        const struct guard_ref *r = &g->refs[i];
        if (r->kind == REF_LOADER || r->dev != st.st_dev || r->ino != st.st_ino) continue;
        deny(v, r->rule->name, r->rule->message, r->kind == REF_MULTI ? "multi-call binary" : "same file");
        return;
    }
    /* Only a reference's inode mark asks about plain opens, so such an event is a reference even
     * if its dev/ino moved (an overlay copy-up changes st_ino but keeps the marked inode). */
    if (!(m->mask & FAN_OPEN_EXEC_PERM)) {
        deny(v, named ? named->name : "?", named ? named->message : "paddock: reading a program denied by guardrails.commands.deny is not allowed",
             "same file");
        return;
    }
    if (named) {
        deny(v, named->name, named->message, named->kind == REF_MULTI ? "multi-call binary" : "name");
        return;
    }

    int unreadable = 0;
    int ref = same_content(g, m->fd, &st, 0, &unreadable);
    if (ref >= 0) {
        const struct guard_ref *r = &g->refs[ref];
        char reason[300];
        snprintf(reason, sizeof reason, r->kind == REF_MULTI ? "multi-call binary" : "same content as %s", r->path);
        deny(v, r->rule->name, r->rule->message, reason);
        return;
    }
    int loader = -1;
    for (size_t i = 0; i < g->n_refs && loader < 0; i++)
        if (g->refs[i].kind == REF_LOADER && g->refs[i].dev == st.st_dev && g->refs[i].ino == st.st_ino) loader = (int)i;
    if (loader < 0) loader = same_content(g, m->fd, &st, 1, &unreadable);
    if (unreadable) {
        deny(v, "?", "paddock: exec denied: the exec guard could not read the program", "unreadable");
        return;
    }
    if (loader >= 0) {
        /* Allowed only as the interpreter the kernel opens for the ELF this thread just exec'd.
         * Run directly (`ld.so /tmp/copy-of-rm`), the loader open()s its target, which no exec
         * event would show us. */
        struct pending_interp *p = pending(g, m->pid, 0);
        int expected = p && p->dev == st.st_dev && p->ino == st.st_ino;
        if (p) p->tid = 0;
        if (expected) return;
        const char *name = base_name(g->refs[loader].path);
        snprintf(v->msgbuf, sizeof v->msgbuf,
                 "paddock: running programs through the dynamic loader (%s) directly is denied by guardrails.commands.deny", name);
        deny(v, name, v->msgbuf, "direct loader");
        return;
    }
    guard_expect_interp(g, m->pid, m->fd);
}

int guard_handle(struct guard *g) {
    static char buf[16384] __attribute__((aligned(__alignof__(struct fanotify_event_metadata))));
    for (;;) {
        ssize_t n = read(g->fan_fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return errno == EAGAIN ? 0 : -1;
        struct fanotify_event_metadata *m = (struct fanotify_event_metadata *)buf;
        for (; FAN_EVENT_OK(m, n); m = FAN_EVENT_NEXT(m, n)) {
            if (m->vers != FANOTIFY_METADATA_VERSION) return -1;
            if (m->fd < 0) continue; /* the kernel denies a permission event it could not give us */
            if (m->mask & (FAN_OPEN_PERM | FAN_OPEN_EXEC_PERM)) {
                struct verdict v = {0};
                decide(g, m, &v);
                if (v.deny) guard_report(g, m->pid, v.program, v.message, v.path, v.reason);
                struct fanotify_response r = {.fd = m->fd, .response = v.deny ? FAN_DENY : FAN_ALLOW};
                /* ENOENT: the process was killed while waiting; nothing left to answer. */
                if (write(g->fan_fd, &r, sizeof r) < 0 && errno != ENOENT) {
                    close(m->fd);
                    return -1;
                }
            }
            close(m->fd);
        }
    }
}
