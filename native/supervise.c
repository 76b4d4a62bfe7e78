/*
 * The service supervisor: a child of the agent (pid 1) that starts the sandbox's services, waits
 * for each to be ready, restarts them when they exit, and stops them in reverse order when asked
 * (SIGTERM). It lives inside the sandbox, so services outlive a control-plane crash like every
 * other sandbox process, and die with the sandbox's pid namespace.
 *
 * The supervisor stays root of the sandbox's user namespace (it needs SETUID/SETGID to start each
 * service as its user, KILL to stop them) and is one process in the agent's cgroup. Each service
 * and each ready check runs in a child that joins the work cgroup (so it counts toward
 * compute.pids and `session kill` reaches it), gets a session of its own, becomes its user with no
 * capabilities (no_new_privs and seccomp are inherited), and runs `/bin/sh -c COMMAND`.
 *
 * What the control plane reads (through the agent's `get`, as any sandbox file):
 *   /run/paddock/services/status      "paddock-services 1" then one line per service:
 *                                     NAME \t STATE \t RESTARTS \t PID \t SINCE_MS \t MESSAGE
 *                                     (replaced atomically by rename on every change)
 *   /run/paddock/services/NAME.log    the service's stdout and stderr, relayed through a pipe, plus
 *                                     "[paddock] ..." lines; at 1 MiB it moves to NAME.log.1
 * /run is the sandbox's own tmpfs: logs cost the sandbox's memory, never the host's.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/capability.h>

#include "common.h"
#include "services.h"

#define LOG_MAX (1u << 20)          /* a log moves to NAME.log.1 beyond this */
#define STOP_TIMEOUT_MS 30000       /* SIGTERM, then SIGKILL after this long */
#define STABLE_MS 60000             /* ready this long: the restart budget is whole again */
#define BACKOFF_FIRST_MS 100
#define BACKOFF_MAX_MS 10000
#define CHECK_FIRST_MS 10           /* ready checks back off from this ... */
#define CHECK_MAX_MS 250            /* ... to this */
#define MAX_GROUPS 64

/* ------------------------------------------------------------------------------------------ */
/* The spec file: "paddock-services 1", then blocks of KEY\tVALUE lines from "service NAME" to
 * "end". Values escape backslash, newline and tab as \\, \n, \t; other control bytes are refused.
 * The control plane writes it (src/providers/local/services.ts); the launcher refuses a bad one
 * (exit 125) before anything starts, and the agent parses it again from the same descriptor. */

static int fail_at(char *err, size_t n, unsigned line, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int fail_at(char *err, size_t n, unsigned line, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(err, n, "services file line %u: %s", line, msg);
    return -1;
}

/* In-place unescape; -1 on a bad escape or a raw control byte. */
static int unescape(char *s) {
    char *w = s;
    for (char *r = s; *r; r++) {
        unsigned char c = (unsigned char)*r;
        if (c < 0x20 || c == 0x7f) return -1;
        if (c != '\\') {
            *w++ = (char)c;
            continue;
        }
        r++;
        if (*r == '\\') *w++ = '\\';
        else if (*r == 'n') *w++ = '\n';
        else if (*r == 't') *w++ = '\t';
        else return -1;
    }
    *w = '\0';
    return 0;
}

static int good_name(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > 63 || !((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= '0' && s[0] <= '9'))) return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-')) return 0;
    return 1;
}

/* Absolute, no "." or ".." component, not "/" itself. */
static int good_path(const char *p) {
    if (p[0] != '/' || p[1] == '\0' || strlen(p) > 1024) return 0;
    for (const char *c = p; *c; c++)
        if (*c == '\n') return 0;
    const char *seg = p;
    while (*seg) {
        while (*seg == '/') seg++;
        const char *end = strchrnul(seg, '/');
        size_t len = (size_t)(end - seg);
        if ((len == 1 && seg[0] == '.') || (len == 2 && seg[0] == '.' && seg[1] == '.')) return 0;
        seg = end;
    }
    return 1;
}

static int good_user(const char *u) {
    size_t n = strlen(u);
    if (n == 0 || n > 32) return 0;
    for (size_t i = 0; i < n; i++)
        if (!((u[i] >= 'a' && u[i] <= 'z') || (u[i] >= 'A' && u[i] <= 'Z') || (u[i] >= '0' && u[i] <= '9') ||
              u[i] == '_' || u[i] == '-' || u[i] == '.'))
            return 0;
    return 1;
}

static char **push(char **list, size_t *n, char *v) {
    char **grown = realloc(list, (*n + 1) * sizeof *list);
    if (grown == NULL) die("realloc");
    grown[(*n)++] = v;
    return grown;
}

static int parse_spec(char *text, struct svc_set *set, char *err, size_t errlen) {
    memset(set, 0, sizeof *set);
    struct svc_spec *cur = NULL;
    unsigned lineno = 0;
    char *save = NULL;
    int header = 0;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        lineno++;
        if (!header) {
            if (strcmp(line, "paddock-services 1") != 0) return fail_at(err, errlen, lineno, "expected \"paddock-services 1\"");
            header = 1;
            continue;
        }
        char *tab = strchr(line, '\t');
        const char *key = line;
        char *val = line + strlen(line); /* "" for a line without a value, writable for unescape() */
        if (tab) *tab = '\0', val = tab + 1;
        if (unescape(val) < 0) return fail_at(err, errlen, lineno, "bad escape or control character in %s", key);
        if (strcmp(key, "service") == 0) {
            if (cur) return fail_at(err, errlen, lineno, "service %s inside another service block", val);
            if (set->n >= SVC_MAX) return fail_at(err, errlen, lineno, "more than %d services", SVC_MAX);
            if (!good_name(val)) return fail_at(err, errlen, lineno, "bad service name \"%.64s\"", val);
            for (size_t i = 0; i < set->n; i++)
                if (strcmp(set->s[i].name, val) == 0) return fail_at(err, errlen, lineno, "service %s twice", val);
            cur = &set->s[set->n];
            memset(cur, 0, sizeof *cur);
            cur->name = strdup(val);
            cur->ready_timeout_ms = 60000;
            cur->restart_limit = 5;
            continue;
        }
        if (cur == NULL) return fail_at(err, errlen, lineno, "%s outside a service block", key);
        char *v = strdup(val);
        if (v == NULL) die("strdup");
        unsigned long num;
        if (strcmp(key, "end") == 0) {
            free(v);
            if (cur->command == NULL) return fail_at(err, errlen, lineno, "service %s has no command", cur->name);
            if (cur->user == NULL) return fail_at(err, errlen, lineno, "service %s has no user", cur->name);
            if (cur->ready_port == 0 && cur->ready_command == NULL)
                return fail_at(err, errlen, lineno, "service %s has no ready check", cur->name);
            set->n++;
            cur = NULL;
        } else if (strcmp(key, "command") == 0) {
            if (*v == '\0') return fail_at(err, errlen, lineno, "empty command");
            cur->command = v;
        } else if (strcmp(key, "user") == 0) {
            if (!good_user(v)) return fail_at(err, errlen, lineno, "bad user \"%.64s\"", v);
            cur->user = v;
        } else if (strcmp(key, "cwd") == 0) {
            if (!good_path(v) && strcmp(v, "/") != 0) return fail_at(err, errlen, lineno, "cwd must be an absolute path");
            cur->cwd = v;
        } else if (strcmp(key, "env") == 0) {
            char *eq = strchr(v, '=');
            if (eq == NULL || eq == v) return fail_at(err, errlen, lineno, "env entry without NAME=");
            if (cur->n_env >= 256) return fail_at(err, errlen, lineno, "more than 256 env entries");
            cur->env = push(cur->env, &cur->n_env, v);
        } else if (strcmp(key, "ready-port") == 0) {
            if (parse_ulong(v, 65535, &num) || num == 0) return fail_at(err, errlen, lineno, "ready-port must be 1 to 65535");
            cur->ready_port = (int)num;
        } else if (strcmp(key, "ready-command") == 0) {
            if (*v == '\0') return fail_at(err, errlen, lineno, "empty ready-command");
            cur->ready_command = v;
        } else if (strcmp(key, "ready-timeout-ms") == 0) {
            if (parse_ulong(v, 86400000UL, &num) || num == 0) return fail_at(err, errlen, lineno, "bad ready-timeout-ms");
            cur->ready_timeout_ms = num;
        } else if (strcmp(key, "data-dir") == 0) {
            if (!good_path(v)) return fail_at(err, errlen, lineno, "data-dir must be an absolute path without . or ..");
            if (cur->n_data_dirs >= 16) return fail_at(err, errlen, lineno, "more than 16 data dirs");
            cur->data_dirs = push(cur->data_dirs, &cur->n_data_dirs, v);
        } else if (strcmp(key, "restart-limit") == 0) {
            if (parse_ulong(v, 1000, &num)) return fail_at(err, errlen, lineno, "restart-limit must be 0 to 1000");
            cur->restart_limit = num;
        } else if (strcmp(key, "depends-on") == 0) {
            /* Only earlier services: the file's order is a start order, so this also refuses cycles. */
            size_t i = 0;
            while (i < set->n && strcmp(set->s[i].name, v) != 0) i++;
            if (i == set->n) return fail_at(err, errlen, lineno, "%s depends on %s, which is not an earlier service", cur->name, v);
            if (cur->n_deps >= SVC_MAX) return fail_at(err, errlen, lineno, "too many dependencies");
            cur->deps[cur->n_deps++] = i;
            free(v);
        } else {
            return fail_at(err, errlen, lineno, "unknown key \"%.32s\"", key);
        }
    }
    if (!header) return fail_at(err, errlen, 1, "empty file");
    if (cur) return fail_at(err, errlen, lineno, "service %s has no \"end\"", cur->name);
    if (set->n == 0) return fail_at(err, errlen, lineno, "no services");
    return 0;
}

int svc_load_fd(int fd, struct svc_set *out, char *err, size_t errlen) {
    char *buf = malloc(SVC_SPEC_MAX + 1);
    if (buf == NULL) die("malloc");
    size_t got = 0;
    for (;;) {
        ssize_t n = pread(fd, buf + got, SVC_SPEC_MAX + 1 - got, (off_t)got);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            snprintf(err, errlen, "read services file: %s", strerror(errno));
            return -1;
        }
        if (n == 0) break;
        got += (size_t)n;
        if (got > SVC_SPEC_MAX) {
            snprintf(err, errlen, "services file larger than %u bytes", SVC_SPEC_MAX);
            return -1;
        }
    }
    buf[got] = '\0';
    if (memchr(buf, '\0', got) != NULL) {
        snprintf(err, errlen, "services file contains a NUL byte");
        return -1;
    }
    return parse_spec(buf, out, err, errlen);
}

/* ------------------------------------------------------------------------------------------ */

int svc_open_dir(void) {
    /* Component by component with O_NOFOLLOW: no symlink, wherever it came from (a layer, a
     * non-tmpfs /run), can redirect where root writes. */
    const char *parts[] = {"run", "paddock", "services"};
    int dir = open("/", O_DIRECTORY | O_CLOEXEC);
    for (size_t i = 0; dir >= 0 && i < 3; i++) {
        if (mkdirat(dir, parts[i], 0755) < 0 && errno != EEXIST) {
            close(dir);
            return -1;
        }
        int next = openat(dir, parts[i], O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        close(dir);
        dir = next;
    }
    if (dir < 0) return -1;
    struct stat st;
    if (fstat(dir, &st) < 0) goto fail;
    /* Ours or refused: a directory someone else owns could hold their files under our names. */
    if (st.st_uid != 0) {
        errno = EPERM;
        goto fail;
    }
    if (fchmod(dir, 0755) < 0) goto fail;
    return dir;
fail:;
    int e = errno;
    close(dir);
    errno = e;
    return -1;
}

/* ------------------------------------------------------------------------------------------ */
/* Runtime state. */

enum svc_state { WAITING, STARTING, READY, BACKOFF, RESTARTING, FAILED, STOPPED };
static const char *const state_names[] = {"starting", "starting", "ready", "restarting", "restarting", "failed", "stopped"};

struct svc_rt {
    const struct svc_spec *spec;
    enum svc_state state;
    pid_t pid;        /* main process = its process group; 0 when none */
    pid_t check_pid;  /* a ready-check command in flight */
    int64_t since_ms; /* wall clock, when it entered `state` */
    int64_t next_at;  /* monotonic: next start (BACKOFF) or next ready check (STARTING/RESTARTING) */
    int64_t deadline; /* monotonic: ready deadline */
    int64_t ready_at; /* monotonic: when it last became ready */
    int check_delay;
    int last_check; /* exit status of the last ready-check command, -1 before any */
    int timed_out;  /* killed for missing its ready deadline */
    unsigned long restarts, in_a_row;
    int log_r, log_w, log_fd;
    size_t log_size;
    int mid_line; /* the service's output so far does not end with a newline */
    char message[512];
};

static struct svc_rt g_rt[SVC_MAX];
static size_t g_n;
static int g_dir = -1;
static const int *g_work_fds;
static size_t g_n_work;
static int g_dirty;
static int g_stopping; /* SIGTERM received: no more starts; stopping g_stop_idx downwards */
static long g_stop_idx;
static int64_t g_stop_deadline;
static int g_stop_killed;

static int64_t mono_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static int64_t wall_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void set_state(struct svc_rt *r, enum svc_state s) {
    r->state = s;
    r->since_ms = wall_ms();
    g_dirty = 1;
}

static void open_log(struct svc_rt *r, int truncate) {
    char name[96];
    snprintf(name, sizeof name, "%s.log", r->spec->name);
    r->log_fd = openat(g_dir, name, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC | (truncate ? O_TRUNC : 0), 0644);
    struct stat st;
    r->log_size = r->log_fd >= 0 && fstat(r->log_fd, &st) == 0 ? (size_t)st.st_size : 0;
}

/* Append to NAME.log; past LOG_MAX the current file becomes NAME.log.1 (replacing the older one). */
static void log_bytes(struct svc_rt *r, const char *buf, size_t n) {
    if (r->log_fd < 0) return;
    if (r->log_size + n > LOG_MAX) {
        char from[96], to[96];
        snprintf(from, sizeof from, "%s.log", r->spec->name);
        snprintf(to, sizeof to, "%s.log.1", r->spec->name);
        close(r->log_fd);
        renameat(g_dir, from, g_dir, to);
        open_log(r, 1);
        if (r->log_fd < 0) return;
    }
    if (write_all(r->log_fd, buf, n) == 0) r->log_size += n;
}

static void note(struct svc_rt *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(struct svc_rt *r, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (len < 0) return;
    if ((size_t)len >= sizeof msg) len = sizeof msg - 1;
    char line[1100];
    /* On a line of its own, even when the service's last output stopped in mid-line. */
    int n = snprintf(line, sizeof line, "%s[paddock] %.*s\n", r->mid_line ? "\n" : "", len, msg);
    r->mid_line = 0;
    if (n > 0) log_bytes(r, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

static void write_status(void) {
    char *buf = malloc(SVC_MAX * 800 + 64);
    if (buf == NULL) return;
    size_t off = (size_t)sprintf(buf, "paddock-services 1\n");
    for (size_t i = 0; i < g_n; i++) {
        struct svc_rt *r = &g_rt[i];
        char msg[512];
        size_t j = 0;
        for (const char *m = r->message; *m && j + 1 < sizeof msg; m++) msg[j++] = (*m == '\t' || *m == '\n') ? ' ' : *m;
        msg[j] = '\0';
        off += (size_t)sprintf(buf + off, "%s\t%s\t%lu\t%d\t%lld\t%s\n", r->spec->name, state_names[r->state], r->restarts,
                               r->pid > 0 ? (int)r->pid : 0, (long long)r->since_ms, msg);
    }
    int fd = openat(g_dir, "status.tmp", O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd >= 0) {
        int ok = write_all(fd, buf, off) == 0;
        close(fd);
        /* rename: a reader sees the old status or the new one, never half of one */
        if (ok) renameat(g_dir, "status.tmp", g_dir, "status");
    }
    free(buf);
    g_dirty = 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Users: /etc/passwd and /etc/group are read directly (fgetpwent/fgetgrent), never through NSS,
 * so nothing in the sandbox's nsswitch.conf decides what code the supervisor loads. */

struct svc_user {
    uid_t uid;
    gid_t gid;
    gid_t groups[MAX_GROUPS];
    int n_groups;
    char name[64], home[512];
};

static int lookup_user(const char *spec, struct svc_user *u, char *err, size_t n) {
    unsigned long num;
    int numeric = parse_ulong(spec, 0xfffffffeUL, &num) == 0;
    memset(u, 0, sizeof *u);
    FILE *f = fopen("/etc/passwd", "re");
    struct passwd *pw = NULL;
    int found = 0;
    while (f && (pw = fgetpwent(f)) != NULL) {
        if (numeric ? pw->pw_uid == (uid_t)num : strcmp(pw->pw_name, spec) == 0) {
            found = 1;
            u->uid = pw->pw_uid;
            u->gid = pw->pw_gid;
            snprintf(u->name, sizeof u->name, "%s", pw->pw_name);
            snprintf(u->home, sizeof u->home, "%s", pw->pw_dir && pw->pw_dir[0] == '/' ? pw->pw_dir : "/");
            break;
        }
    }
    if (f) fclose(f);
    if (!found) {
        if (!numeric) {
            snprintf(err, n, "user \"%s\" does not exist in the sandbox's /etc/passwd (create it in an install step)", spec);
            return -1;
        }
        u->uid = (uid_t)num;
        u->gid = (gid_t)num;
        snprintf(u->name, sizeof u->name, "%s", spec);
        snprintf(u->home, sizeof u->home, "/");
    }
    /* Root inside would regain the bounding set on exec and could signal the agent. */
    if (u->uid == 0) {
        snprintf(err, n, "user \"%s\" is root: services run as an unprivileged user", spec);
        return -1;
    }
    u->groups[u->n_groups++] = u->gid;
    f = fopen("/etc/group", "re");
    struct group *gr;
    while (f && found && (gr = fgetgrent(f)) != NULL && u->n_groups < MAX_GROUPS) {
        if (gr->gr_gid == u->gid || gr->gr_gid == 0) continue; /* never group 0 */
        for (char **m = gr->gr_mem; m && *m; m++)
            if (strcmp(*m, u->name) == 0) {
                u->groups[u->n_groups++] = gr->gr_gid;
                break;
            }
    }
    if (f) fclose(f);
    return 0;
}

static int become(const struct svc_user *u) {
    if (setgroups((size_t)u->n_groups, u->groups) < 0 || setresgid(u->gid, u->gid, u->gid) < 0 ||
        setresuid(u->uid, u->uid, u->uid) < 0)
        return -1;
    return 0;
}

static int have_cap(int cap) {
    struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct data[2];
    if (syscall(SYS_capget, &hdr, data) < 0) return 0;
    return (data[cap / 32].effective >> (cap % 32)) & 1;
}

/* mkdir -p with MODE for every directory it creates; 0 or -1 (errno). */
static int mkdir_p(const char *path, mode_t mode) {
    char buf[1100];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p != '\0') continue;
        char c = *p;
        *p = '\0';
        if (mkdir(buf, mode) < 0 && errno != EEXIST) return -1;
        *p = c;
        if (c == '\0') break;
    }
    struct stat st;
    if (stat(path, &st) < 0) return -1;
    if (!S_ISDIR(st.st_mode)) return errno = ENOTDIR, -1;
    return 0;
}

/*
 * Data directories: left alone when they exist (the template or a snapshot holds them, with
 * their data). A missing one is created owned by the service's user, mode 0700: in a build
 * sandbox as root (which may chown); in a session, where root has no CAP_CHOWN, by the user
 * itself, so its parent must be writable by the user (/home/paddock, /workspace, /tmp, or a
 * directory an install step made). The build's services step creates them with the right owner.
 */
static int ensure_data_dirs(const struct svc_spec *s, const struct svc_user *u, char *err, size_t n) {
    for (size_t i = 0; i < s->n_data_dirs; i++) {
        const char *d = s->data_dirs[i];
        struct stat st;
        if (stat(d, &st) == 0) {
            if (S_ISDIR(st.st_mode)) continue;
            snprintf(err, n, "data directory %s exists and is not a directory", d);
            return -1;
        }
        if (have_cap(CAP_CHOWN)) {
            char parent[1100];
            snprintf(parent, sizeof parent, "%s", d);
            *strrchr(parent, '/') = '\0';
            if ((parent[0] == '\0' || mkdir_p(parent, 0755) == 0) && mkdir(d, 0700) == 0) {
                int fd = open(d, O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                int ok = fd >= 0 && fchown(fd, u->uid, u->gid) == 0;
                if (fd >= 0) close(fd);
                if (ok) continue;
            }
            snprintf(err, n, "cannot create data directory %s: %s", d, strerror(errno));
            return -1;
        }
        pid_t pid = fork();
        if (pid == 0) {
            umask(077);
            _exit(become(u) == 0 && mkdir_p(d, 0700) == 0 ? 0 : (errno & 0x7f) ? (errno & 0x7f) : 1);
        }
        int st2 = 0;
        while (pid > 0 && waitpid(pid, &st2, 0) < 0 && errno == EINTR) {
        }
        if (pid < 0 || !WIFEXITED(st2) || WEXITSTATUS(st2) != 0) {
            int e = pid < 0 ? errno : WIFEXITED(st2) ? WEXITSTATUS(st2) : EIO;
            snprintf(err, n, "cannot create data directory %s as user %s: %s (create it at build time: it is made by the build's services step, or in an install step)",
                     d, u->name, strerror(e));
            return -1;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Children. */

static char **child_env(const struct svc_spec *s, const struct svc_user *u) {
    char **env = calloc(s->n_env + 4, sizeof *env);
    if (env == NULL) return NULL;
    size_t n = 0;
    int has_home = 0, has_user = 0, has_logname = 0;
    for (size_t i = 0; i < s->n_env; i++) {
        if (strncmp(s->env[i], "HOME=", 5) == 0) has_home = 1;
        if (strncmp(s->env[i], "USER=", 5) == 0) has_user = 1;
        if (strncmp(s->env[i], "LOGNAME=", 8) == 0) has_logname = 1;
        env[n++] = s->env[i];
    }
    char *v;
    if (!has_home && asprintf(&v, "HOME=%s", u->home) > 0) env[n++] = v;
    if (!has_user && asprintf(&v, "USER=%s", u->name) > 0) env[n++] = v;
    if (!has_logname && asprintf(&v, "LOGNAME=%s", u->name) > 0) env[n++] = v;
    env[n] = NULL;
    return env;
}

/* In the forked child: its own session, the work cgroup, stdio, the user. Returns a reason on failure. */
static const char *child_setup(const struct svc_user *u, int out, pid_t supervisor) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    setsid();
    for (size_t i = 0; i < g_n_work; i++)
        if (write(g_work_fds[i], "0\n", 2) < 0) return "join the session's work cgroup";
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null < 0 || dup2(null, 0) < 0 || dup2(out >= 0 ? out : null, 1) < 0 || dup2(out >= 0 ? out : null, 2) < 0) return "stdio";
    if (become(u) < 0) return "switch user";
    /* Armed after the uid change (which clears it): if the supervisor dies, so does the service's
     * main process, instead of running on unsupervised. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != supervisor) return "parent-death signal";
    return NULL;
}

static pid_t spawn_sh(const struct svc_spec *s, const struct svc_user *u, const char *command, int out) {
    pid_t supervisor = getpid();
    char **env = child_env(s, u);
    if (env == NULL) return -1;
    pid_t pid = fork();
    if (pid != 0) {
        free(env);
        return pid;
    }
    const char *why = child_setup(u, out, supervisor);
    if (why == NULL && chdir(s->cwd ? s->cwd : "/") < 0) why = "chdir";
    if (why == NULL) {
        char *argv[] = {"sh", "-c", (char *)command, NULL};
        execve("/bin/sh", argv, env);
        why = "exec /bin/sh";
    }
    dprintf(2, "[paddock] cannot start: %s: %s\n", why, strerror(errno));
    _exit(127);
}

static void fail_dependents(void);

/* A service is down for good: FAILED with MESSAGE (already in r->message). */
static void give_up(struct svc_rt *r) {
    set_state(r, FAILED);
    r->pid = 0;
    note(r, "failed: %s", r->message);
    fail_dependents();
}

static void start(struct svc_rt *r) {
    struct svc_user u;
    char err[400];
    if (lookup_user(r->spec->user, &u, err, sizeof err) < 0 || ensure_data_dirs(r->spec, &u, err, sizeof err) < 0) {
        /* A configuration problem: restarting would only repeat it. */
        snprintf(r->message, sizeof r->message, "%s", err);
        give_up(r);
        return;
    }
    note(r, "starting (as %s, uid %u)%s: %s", u.name, (unsigned)u.uid, r->restarts ? " again" : "", r->spec->command);
    pid_t pid = spawn_sh(r->spec, &u, r->spec->command, r->log_w);
    if (pid < 0) {
        snprintf(r->message, sizeof r->message, "fork: %s", strerror(errno));
        give_up(r);
        return;
    }
    r->pid = pid;
    r->timed_out = 0;
    r->last_check = -1;
    r->check_delay = CHECK_FIRST_MS;
    int64_t now = mono_ms();
    r->next_at = now + CHECK_FIRST_MS;
    r->deadline = now + (int64_t)r->spec->ready_timeout_ms;
    set_state(r, r->restarts > 0 ? RESTARTING : STARTING);
}

static int port_open(int port) {
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (s < 0) return 0;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr = {htonl(INADDR_LOOPBACK)}};
    int ok = connect(s, (struct sockaddr *)&a, sizeof a) == 0;
    if (!ok && errno == EINPROGRESS) {
        struct pollfd p = {.fd = s, .events = POLLOUT};
        int e = 0;
        socklen_t len = sizeof e;
        ok = poll(&p, 1, 100) == 1 && getsockopt(s, SOL_SOCKET, SO_ERROR, &e, &len) == 0 && e == 0;
    }
    close(s);
    return ok;
}

static void became_ready(struct svc_rt *r) {
    r->ready_at = mono_ms();
    r->message[0] = '\0';
    set_state(r, READY);
    note(r, "ready");
}

static void check_ready(struct svc_rt *r, int64_t now) {
    if (r->spec->ready_port) {
        if (port_open(r->spec->ready_port)) {
            became_ready(r);
            return;
        }
    } else if (r->check_pid == 0) {
        struct svc_user u;
        char err[400];
        if (lookup_user(r->spec->user, &u, err, sizeof err) == 0) {
            pid_t pid = spawn_sh(r->spec, &u, r->spec->ready_command, -1);
            if (pid > 0) r->check_pid = pid;
        }
    }
    r->next_at = now + r->check_delay;
    r->check_delay = r->check_delay * 3 / 2 > CHECK_MAX_MS ? CHECK_MAX_MS : r->check_delay * 3 / 2;
}

static void describe_exit(int st, char *out, size_t n) {
    if (WIFSIGNALED(st)) {
        const char *abbrev = sigabbrev_np(WTERMSIG(st));
        snprintf(out, n, "killed by SIG%s", abbrev ? abbrev : "?");
    } else {
        snprintf(out, n, "exited with status %d", WEXITSTATUS(st));
    }
}

/* The main process exited (not during a stop). */
static void main_exited(struct svc_rt *r, int st) {
    pid_t pgid = r->pid;
    r->pid = 0;
    if (pgid > 0) kill(-pgid, SIGKILL); /* whatever it left in its group goes with it */
    if (r->check_pid > 0) kill(-r->check_pid, SIGKILL);
    char why[256];
    if (r->timed_out) {
        if (r->spec->ready_port)
            snprintf(why, sizeof why, "not ready within %lu ms (nothing accepted connections on port %d)", r->spec->ready_timeout_ms,
                     r->spec->ready_port);
        else if (r->last_check >= 0)
            snprintf(why, sizeof why, "not ready within %lu ms (its ready command last exited with status %d)", r->spec->ready_timeout_ms,
                     r->last_check);
        else
            snprintf(why, sizeof why, "not ready within %lu ms", r->spec->ready_timeout_ms);
    } else {
        describe_exit(st, why, sizeof why);
    }
    int64_t now = mono_ms();
    if (r->state == READY && now - r->ready_at >= STABLE_MS) r->in_a_row = 0;
    note(r, "%s", why);
    if (r->in_a_row < r->spec->restart_limit) {
        r->in_a_row++;
        r->restarts++;
        int64_t delay = BACKOFF_FIRST_MS;
        for (unsigned long i = 1; i < r->in_a_row && delay < BACKOFF_MAX_MS; i++) delay *= 2;
        if (delay > BACKOFF_MAX_MS) delay = BACKOFF_MAX_MS;
        snprintf(r->message, sizeof r->message, "%s; restart %lu of %lu in a row", why, r->in_a_row, r->spec->restart_limit);
        note(r, "restarting in %lld ms (restart %lu of %lu in a row)", (long long)delay, r->in_a_row, r->spec->restart_limit);
        r->next_at = now + delay;
        set_state(r, BACKOFF);
    } else if (r->spec->restart_limit == 0) {
        snprintf(r->message, sizeof r->message, "%s (restart.limit is 0: not restarted)", why);
        give_up(r);
    } else {
        snprintf(r->message, sizeof r->message, "%s; gave up after %lu restart%s in a row (restart.limit %lu)", why, r->in_a_row,
                 r->in_a_row == 1 ? "" : "s", r->spec->restart_limit);
        give_up(r);
    }
}

/* Services that never started and need one that failed: failed too, saying which. */
static void fail_dependents(void) {
    for (int changed = 1; changed;) {
        changed = 0;
        for (size_t i = 0; i < g_n; i++) {
            struct svc_rt *r = &g_rt[i];
            if (r->state != WAITING) continue;
            for (size_t d = 0; d < r->spec->n_deps; d++) {
                struct svc_rt *dep = &g_rt[r->spec->deps[d]];
                if (dep->state != FAILED) continue;
                snprintf(r->message, sizeof r->message, "not started: it depends on %s, which failed", dep->spec->name);
                set_state(r, FAILED);
                note(r, "%s", r->message);
                changed = 1;
                break;
            }
        }
    }
}

static int deps_ready(const struct svc_rt *r) {
    for (size_t d = 0; d < r->spec->n_deps; d++)
        if (g_rt[r->spec->deps[d]].state != READY) return 0;
    return 1;
}

static int group_alive(pid_t pgid) {
    return pgid > 0 && (kill(-pgid, 0) == 0 || errno != ESRCH);
}

/* ------------------------------------------------------------------------------------------ */
/* Stopping (SIGTERM): in reverse order, each gets SIGTERM (its whole process group, as systemd
 * does), then SIGKILL after STOP_TIMEOUT_MS; the next one starts stopping once the group is
 * empty. So a database stops after the services that use it, and shuts down cleanly. */

static void stop_next(void) {
    while (g_stop_idx >= 0) {
        struct svc_rt *r = &g_rt[g_stop_idx];
        if (r->check_pid > 0) kill(-r->check_pid, SIGKILL);
        if (r->pid > 0 && group_alive(r->pid)) {
            if (!g_stop_deadline) {
                note(r, "stopping (SIGTERM)");
                kill(-r->pid, SIGTERM);
                g_stop_deadline = mono_ms() + STOP_TIMEOUT_MS;
                g_stop_killed = 0;
            }
            return;
        }
        if (r->state != FAILED) {
            if (r->pid > 0) note(r, "stopped");
            snprintf(r->message, sizeof r->message, "stopped with the sandbox");
            set_state(r, STOPPED);
        }
        r->pid = 0;
        g_stop_deadline = 0;
        g_stop_idx--;
    }
}

static void drain_log(struct svc_rt *r) {
    char buf[65536];
    for (;;) {
        ssize_t n = read(r->log_r, buf, sizeof buf);
        if (n <= 0) return;
        log_bytes(r, buf, (size_t)n);
        r->mid_line = buf[n - 1] != '\n';
    }
}

static void reap(void) {
    int st;
    pid_t pid;
    while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
        for (size_t i = 0; i < g_n; i++) {
            struct svc_rt *r = &g_rt[i];
            if (pid == r->check_pid) {
                r->check_pid = 0;
                r->last_check = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
                if (!g_stopping && (r->state == STARTING || r->state == RESTARTING) && r->last_check == 0) became_ready(r);
            } else if (pid == r->pid) {
                drain_log(r);
                if (g_stopping) continue; /* stop_next() watches the group */
                main_exited(r, st);
            }
        }
        /* anything else: an orphan of a service (we are its subreaper); reaping it is all */
    }
}

void svc_supervise(const struct svc_set *set, int dirfd, const int *work_fds, size_t n_work_fds) {
    prctl(PR_SET_NAME, "paddock-svc", 0, 0, 0);
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    /* Orphans of services (a database's workers after it died) are reparented to us and reaped
     * here, so a service's whole tree is ours to account for. */
    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    signal(SIGPIPE, SIG_IGN);
    g_dir = dirfd;
    g_work_fds = work_fds;
    g_n_work = n_work_fds;
    g_n = set->n;

    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sfd < 0) die("services: signalfd");

    for (size_t i = 0; i < g_n; i++) {
        struct svc_rt *r = &g_rt[i];
        r->spec = &set->s[i];
        r->state = WAITING;
        r->since_ms = wall_ms();
        int p[2];
        if (pipe2(p, O_CLOEXEC) < 0) die("services: pipe");
        r->log_r = p[0];
        r->log_w = p[1];
        fcntl(r->log_r, F_SETFL, O_NONBLOCK);
        open_log(r, 1);
    }
    write_status();

    struct pollfd pfd[SVC_MAX + 1];
    for (;;) {
        int64_t now = mono_ms();
        if (!g_stopping) {
            for (size_t i = 0; i < g_n; i++) {
                struct svc_rt *r = &g_rt[i];
                if ((r->state == WAITING && deps_ready(r)) || (r->state == BACKOFF && now >= r->next_at)) start(r);
                if ((r->state == STARTING || r->state == RESTARTING) && r->pid > 0 && !r->timed_out) {
                    if (now >= r->next_at) check_ready(r, now);
                    if (r->state != READY && now >= r->deadline) {
                        r->timed_out = 1;
                        note(r, "not ready within %lu ms: killing it", r->spec->ready_timeout_ms);
                        kill(-r->pid, SIGKILL);
                    }
                }
            }
        } else {
            if (g_stop_deadline && now >= g_stop_deadline && g_stop_idx >= 0) {
                struct svc_rt *r = &g_rt[g_stop_idx];
                if (!g_stop_killed) {
                    note(r, "still running %d ms after SIGTERM: SIGKILL", STOP_TIMEOUT_MS);
                    kill(-r->pid, SIGKILL);
                    g_stop_killed = 1;
                    g_stop_deadline = now + 2000;
                } else {
                    r->pid = 0; /* unkillable (uninterruptible I/O): stop waiting for it */
                }
            }
            stop_next();
            if (g_stop_idx < 0) {
                for (size_t i = 0; i < g_n; i++) drain_log(&g_rt[i]);
                write_status();
                _exit(0);
            }
        }
        if (g_dirty) write_status();

        /* Sleep until the next timer (ready checks, backoffs, deadlines) or an event. */
        int64_t wake = now + 1000;
        for (size_t i = 0; i < g_n; i++) {
            struct svc_rt *r = &g_rt[i];
            if (r->state == BACKOFF || ((r->state == STARTING || r->state == RESTARTING) && !r->timed_out)) {
                if (r->next_at < wake) wake = r->next_at;
                if (r->state != BACKOFF && r->deadline < wake) wake = r->deadline;
            }
        }
        if (g_stopping) wake = now + 20; /* group emptiness is polled while stopping */
        int timeout = wake <= now ? 0 : (int)(wake - now);
        pfd[0] = (struct pollfd){.fd = sfd, .events = POLLIN};
        for (size_t i = 0; i < g_n; i++) pfd[i + 1] = (struct pollfd){.fd = g_rt[i].log_r, .events = POLLIN};
        if (poll(pfd, (nfds_t)g_n + 1, timeout) < 0 && errno != EINTR) die("services: poll");
        for (size_t i = 0; i < g_n; i++)
            if (pfd[i + 1].revents & POLLIN) drain_log(&g_rt[i]);
        if (pfd[0].revents & POLLIN) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof si) == (ssize_t)sizeof si) {
                if ((si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) && !g_stopping) {
                    g_stopping = 1;
                    g_stop_idx = (long)g_n - 1;
                    for (size_t i = 0; i < g_n; i++)
                        if (g_rt[i].state == WAITING || g_rt[i].state == BACKOFF) {
                            snprintf(g_rt[i].message, sizeof g_rt[i].message, "stopped with the sandbox");
                            set_state(&g_rt[i], STOPPED);
                        }
                }
            }
            reap();
        }
    }
}

/* ------------------------------------------------------------------------------------------ */

void svc_supervisor_died(int dirfd, int wstatus) {
    char why[128];
    describe_exit(wstatus, why, sizeof why);
    int fd = openat(dirfd, "status", O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return;
    char buf[SVC_MAX * 800 + 64];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return;
    buf[n] = '\0';
    char out[sizeof buf + SVC_MAX * 128];
    size_t off = 0;
    char *save = NULL;
    for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *f[6] = {0};
        size_t nf = 0;
        for (char *p = line; nf < 6; nf++) {
            f[nf] = p;
            char *tab = strchr(p, '\t');
            if (tab == NULL) {
                nf++;
                break;
            }
            *tab = '\0';
            p = tab + 1;
        }
        if (nf < 6 || strcmp(f[1], "failed") == 0 || strcmp(f[1], "stopped") == 0) {
            for (size_t i = 0; i < nf; i++) off += (size_t)snprintf(out + off, sizeof out - off, "%s%s", i ? "\t" : "", f[i]);
            off += (size_t)snprintf(out + off, sizeof out - off, "\n");
            continue;
        }
        unsigned long pid;
        /* Its main process got SIGKILL from the parent-death signal; the rest of its group now. */
        if (parse_ulong(f[3], 0x7fffffffUL, &pid) == 0 && pid > 1) kill(-(pid_t)pid, SIGKILL);
        off += (size_t)snprintf(out + off, sizeof out - off, "%s\tfailed\t%s\t0\t%lld\tthe service supervisor died (%s)\n", f[0], f[2],
                                (long long)wall_ms(), why);
    }
    int w = openat(dirfd, "status.tmp", O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (w < 0) return;
    int ok = write_all(w, out, off) == 0;
    close(w);
    if (ok) renameat(dirfd, "status.tmp", dirfd, "status");
}
