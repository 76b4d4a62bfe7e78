/*
 * The exec guard (`--guard FILE --guard-log FILE`): the supervisor enforces
 * guardrails.commands.deny inside the sandbox with fanotify permission events, so no process in
 * the sandbox can execute a denied program, whatever started it. See "Exec guard" in
 * docs/sandbox.md for the argument; guard_setup.c builds the guard, guard.c answers events.
 */
#ifndef PADDOCK_GUARD_H
#define PADDOCK_GUARD_H

#include <stddef.h>
#include <sys/types.h>
#include <time.h>

enum ref_kind {
    REF_DENY,   /* a file a deny rule names (resolved in the sandbox's PATH dirs, or an absolute name) */
    REF_MULTI,  /* busybox/toybox: a multi-call binary runs any denied program as an applet */
    REF_LOADER, /* the dynamic loader: may only run as the PT_INTERP of the ELF being exec'd */
};

struct guard_rule {
    char *name;    /* "rm" or "/usr/bin/rm" */
    char *message; /* the one line the denied process gets on its stderr */
    int absolute;  /* name is a path: no basename matching */
    enum ref_kind kind;
};

struct guard_ref {
    dev_t dev;
    ino_t ino;
    off_t size;
    int fd; /* O_RDONLY, opened before any mark existed: the bytes copies are compared with */
    const struct guard_rule *rule; /* NULL for loaders */
    enum ref_kind kind;
    char path[256]; /* where it was found, inside the sandbox */
};

/* The ELF a thread is exec'ing and the loader (PT_INTERP) the kernel will open for it next. */
struct pending_interp {
    pid_t tid;
    dev_t dev;
    ino_t ino;
    unsigned long seq; /* LRU */
};

struct deny_cache {
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime, ctime;
    int ref; /* index into refs; -1 = empty slot */
};

#define GUARD_MAX_RULES 256
#define GUARD_MAX_REFS 512
#define GUARD_PENDING 128
#define GUARD_CACHE 16
#define GUARD_LOG_MAX_LINES 10000 /* the log is on /run (RAM): a denial loop must not fill it */

struct guard {
    struct guard_rule rules[GUARD_MAX_RULES];
    size_t n_rules;
    struct guard_ref refs[GUARD_MAX_REFS];
    size_t n_refs;
    int fan_fd, root_fd, log_fd;
    unsigned long log_lines, seq;
    struct pending_interp pending[GUARD_PENDING];
    struct deny_cache cache[GUARD_CACHE];
    size_t cache_next;
    /* The last denial reported, so one exec attempt retried over PATH dirs reports once. */
    pid_t last_tid;
    const char *last_program;
    struct timespec last_at;
};

/* guard_setup.c: parse and validate the rules file, open the log (append, 0600). Exits 125 on any
 * problem (fail closed: a guard that was asked for and cannot run means no sandbox). */
struct guard *guard_load(const char *rules_file, const char *log_file);
/* guard_setup.c: with the child pivoted into its root and waiting: fanotify group, references,
 * inode marks on them, exec marks on every mount. Exits 125 on any failure; the child then sees
 * its supervisor pipe close and exits before it ever runs anything. */
void guard_arm(struct guard *g, pid_t child);

/* guard.c: answer every queued permission event. 0, or -1 on a fatal error (the caller kills
 * the sandbox: without answers every exec would hang, and we cannot tell what to allow). */
int guard_handle(struct guard *g);

/* guard_report.c: tell the denied thread TID (stderr) and append a guard-log line, once per
 * attempt (execvp-style callers retry the same name in every PATH dir). */
void guard_report(struct guard *g, pid_t tid, const char *program, const char *message, const char *path,
                  const char *reason);

/* guard.c: TID is exec'ing the ELF open at FD; allow the loader (its PT_INTERP) once for TID.
 * Also used for the child's exec of the agent, which comes from the host's mount (unmarked), so
 * only the loader it pulls in from the sandbox's root raises an event. */
void guard_expect_interp(struct guard *g, pid_t tid, int fd);

/* guard.c, shared with guard_setup.c: openat2 inside the sandbox's root, never following a
 * sandbox-controlled symlink outside it nor a magic link. */
int guard_open_in_root(const struct guard *g, const char *path, int flags);

#endif
