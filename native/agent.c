/*
 * `paddock-sandbox agent`: pid 1 of the sandbox. It reaps every orphan, accepts connections on
 * the listening socket the launcher created on the host, and forks one handler per connection so
 * a misbehaving command can never block the others. A handler serves exactly one operation.
 *
 * The agent runs as root of the sandbox's user namespace (host uid 100000 by default) with only
 * SETUID/SETGID/KILL (session) or the build set, no_new_privs and the seccomp filter.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent.h"
#include "common.h"
#include "services.h"

#define REQUEST_TIMEOUT_MS 30000 /* a connection that never sends its request is dropped */
#define FINISH_TIMEOUT_MS 2000   /* how long we wait for the client to close after X */

int frame_read(int fd, struct frame *f) {
    unsigned char hdr[5];
    f->data = NULL;
    ssize_t n = read_full(fd, hdr, sizeof hdr);
    if (n <= 0) return (int)n;
    f->type = (char)hdr[0];
    f->len = (uint32_t)hdr[1] << 24 | (uint32_t)hdr[2] << 16 | (uint32_t)hdr[3] << 8 | hdr[4];
    if (f->len > FRAME_MAX) return -2;
    if (f->len == 0) return 1;
    f->data = malloc(f->len + 1);
    if (f->data == NULL) return -1;
    if (read_full(fd, f->data, f->len) != (ssize_t)f->len) {
        free(f->data);
        f->data = NULL;
        if (errno == 0) errno = EPROTO;
        return -1;
    }
    f->data[f->len] = '\0';
    return 1;
}

int frame_write(int fd, char type, const void *data, uint32_t len) {
    unsigned char hdr[5] = {(unsigned char)type, (unsigned char)(len >> 24), (unsigned char)(len >> 16),
                            (unsigned char)(len >> 8), (unsigned char)len};
    const char *parts[2] = {(const char *)hdr, data};
    size_t lens[2] = {sizeof hdr, len};
    for (int i = 0; i < 2; i++) {
        size_t off = 0;
        while (off < lens[i]) {
            ssize_t n = send(fd, parts[i] + off, lens[i] - off, MSG_NOSIGNAL);
            if (n < 0) {
                if (errno == EINTR) continue;
                return -1;
            }
            off += (size_t)n;
        }
    }
    return 0;
}

int frame_printf(int fd, char type, const char *fmt, ...) {
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0) return -1;
    if ((size_t)n >= sizeof buf) n = sizeof buf - 1;
    return frame_write(fd, type, buf, (uint32_t)n);
}

const char *next_field(struct fields *c) {
    if (c->p == NULL || c->p >= c->end) return NULL;
    const char *nul = memchr(c->p, '\0', (size_t)(c->end - c->p));
    if (nul == NULL) return NULL;
    const char *s = c->p;
    c->p = nul + 1;
    return s;
}

int become_user(const struct user *u) {
    if (setgroups(0, NULL) < 0 || setresgid(u->gid, u->gid, u->gid) < 0 || setresuid(u->uid, u->uid, u->uid) < 0)
        return -1;
    return 0;
}

void reply_errno(int sock, const char *what, const char *path, int err) {
    /* The errno name last, in brackets: the client maps it to an error code (ENOENT → not_found)
     * instead of matching the locale's wording. */
    const char *name = strerrorname_np(err);
    frame_printf(sock, 'X', "error %s %.1024s: %s [%s]", what, path, strerror(err), name ? name : "EIO");
}

void conn_finish(int *sock) {
    if (*sock < 0) return;
    shutdown(*sock, SHUT_WR);
    /* Keep reading until the client closes (it does on X), bounded: closing while it still
     * writes would make it see EPIPE/ECONNRESET and lose the X frame it has not read yet. */
    char buf[4096];
    for (int i = 0; i < 1024; i++) {
        struct pollfd p = {.fd = *sock, .events = POLLIN};
        if (poll(&p, 1, FINISH_TIMEOUT_MS) <= 0 || read(*sock, buf, sizeof buf) <= 0) break;
    }
    close(*sock);
    *sock = -1;
}

/* Printable, bounded echo of client-supplied text in error messages. */
static void sanitize(const char *in, char *out, size_t outlen) {
    size_t j = 0;
    for (size_t i = 0; in[i] && j + 1 < outlen; i++) out[j++] = (in[i] >= 0x20 && in[i] < 0x7f) ? in[i] : '?';
    out[j] = '\0';
}

/* The file operations, each run as the command user. */
static const struct {
    const char *name;
    void (*run)(int sock, struct fields *req);
} file_ops[] = {
    {"put", op_put},     {"get", op_get}, {"ls", op_ls}, {"stat", op_stat}, {"lsx", op_lsx},
    {"mkdir", op_mkdir}, {"mv", op_mv},   {"rm", op_rm}, {"watch", op_watch},
};

static void (*file_op(const char *name))(int, struct fields *) {
    for (size_t i = 0; i < sizeof file_ops / sizeof *file_ops; i++)
        if (strcmp(file_ops[i].name, name) == 0) return file_ops[i].run;
    return NULL;
}

static void handle(int *sockp, const struct user *u) {
    int sock = *sockp;
    struct pollfd p = {.fd = sock, .events = POLLIN};
    if (poll(&p, 1, REQUEST_TIMEOUT_MS) <= 0) return;
    struct frame f;
    int rc = frame_read(sock, &f);
    if (rc == 0) return;
    if (rc == -2) {
        frame_printf(sock, 'X', "error bad request: frame of %u bytes exceeds the 1 MiB limit", f.len);
        return;
    }
    if (rc < 0) {
        frame_printf(sock, 'X', "error bad request: truncated frame");
        return;
    }
    if (f.type != 'R' || f.data == NULL) {
        frame_printf(sock, 'X', "error bad request: expected an R frame first");
        free(f.data);
        return;
    }
    struct fields req = {f.data, f.data + f.len};
    const char *op = next_field(&req);
    if (op == NULL) {
        frame_printf(sock, 'X', "error bad request: missing op");
    } else if (strcmp(op, "exec") == 0) {
        op_exec(sockp, &req, u); /* switches user in the command's own process */
    } else if (file_op(op) != NULL) {
        /* File ops run entirely as the command user: the kernel's own permission checks, inside
         * the pivoted root, decide what is reachable. Fail closed if we cannot drop privileges. */
        if (become_user(u) < 0) {
            frame_printf(sock, 'X', "error cannot switch to uid %u: %s", (unsigned)u->uid, strerror(errno));
        } else {
            file_op(op)(sock, &req);
        }
    } else {
        char clean[64];
        sanitize(op, clean, sizeof clean);
        frame_printf(sock, 'X', "error bad request: unknown op \"%s\"", clean);
    }
    free(f.data);
}

/* The service supervisor (0: none or gone), and whether we asked it to stop. */
static pid_t g_supervisor;
static int g_shutting_down;
static int g_services_dir = -1;

static void reap(void) {
    int st;
    pid_t pid;
    while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
        if (pid != g_supervisor) continue;
        g_supervisor = 0;
        /* Asked to stop (SIGTERM): its services are down, so the sandbox ends here. */
        if (g_shutting_down) _exit(0);
        svc_supervisor_died(g_services_dir, st);
    }
}

/* Fork the service supervisor before we report ready, so every service's start is already under
 * way when the control plane hears about the sandbox. */
static void start_services(int spec_fd, const struct user *u, int listen_fd, int sfd, int ready_fd) {
    static struct svc_set set;
    char err[600];
    if (svc_load_fd(spec_fd, &set, err, sizeof err) < 0) die_plain("%s", err);
    close(spec_fd);
    g_services_dir = svc_open_dir();
    if (g_services_dir < 0) die("services: create %s", SVC_DIR);
    pid_t pid = fork();
    if (pid < 0) die("services: fork the supervisor");
    if (pid == 0) {
        close(listen_fd);
        close(sfd);
        if (ready_fd >= 0) close(ready_fd);
        svc_supervise(&set, g_services_dir, u->work_fds, u->n_work_fds);
    }
    g_supervisor = pid;
}

int agent_main(int argc, char **argv) {
    unsigned long lfd = 0, rfd = 0, svcfd = 0;
    int have_listen = 0, have_ready = 0, have_user = 0, have_services = 0;
    const char *listen_path = NULL;
    struct user u = {0};
    for (int i = 0; i < argc; i++) {
        if (i + 1 >= argc) die_plain("option %s needs a value", argv[i]);
        const char *v = argv[++i];
        if (strcmp(argv[i - 1], "--listen-fd") == 0) have_listen = parse_ulong(v, 1 << 20, &lfd) == 0;
        /* Under gVisor (runsc run, no launcher): the agent binds its own socket in a directory
         * the host shares with it (runsc --host-uds=create makes it a host socket). */
        else if (strcmp(argv[i - 1], "--listen") == 0) {
            listen_path = v;
            have_listen = 1;
        }
        else if (strcmp(argv[i - 1], "--ready-fd") == 0) have_ready = parse_ulong(v, 1 << 20, &rfd) == 0;
        else if (strcmp(argv[i - 1], "--user") == 0) have_user = parse_user(v, &u.uid, &u.gid) == 0;
        else if (strcmp(argv[i - 1], "--services-fd") == 0) {
            if (parse_ulong(v, 1 << 20, &svcfd) || fcntl((int)svcfd, F_SETFD, FD_CLOEXEC) < 0) die_plain("bad --services-fd %s", v);
            have_services = 1;
        }
        else if (strcmp(argv[i - 1], "--work-cgroup-fd") == 0) {
            unsigned long fd;
            if (u.n_work_fds >= MAX_WORK_CGROUPS || parse_ulong(v, 1 << 20, &fd) || fcntl((int)fd, F_SETFD, FD_CLOEXEC) < 0)
                die_plain("bad --work-cgroup-fd %s", v);
            u.work_fds[u.n_work_fds++] = (int)fd;
        }
        else die_plain("unknown option %s", argv[i - 1]);
    }
    if (!have_listen || !have_user) die_plain("agent needs --listen-fd N (or --listen PATH) and --user UID:GID");
    /* Fail closed: agent mode only runs as set up by launch (pid 1 of its namespace, no_new_privs,
     * seccomp on). Run any other way it would serve commands with whatever privileges it has. */
    if (getpid() != 1 || prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1 || prctl(PR_GET_SECCOMP, 0, 0, 0, 0) != 2)
        die_plain("agent mode only runs inside a sandbox started by `paddock-sandbox launch`");

    /* Bound only once the checks above passed: a refused agent leaves no socket behind. */
    if (listen_path != NULL) lfd = (unsigned long)make_listener(listen_path, 1);
    prctl(PR_SET_NAME, "paddock-agent", 0, 0, 0);
    /* Not dumpable: sandbox processes may not ptrace-attach, read /proc/1/mem, /proc/1/environ,
     * or reach the host binary through /proc/1/exe. */
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    signal(SIGPIPE, SIG_IGN);
    umask(022);
    if (chdir("/") < 0) die("chdir /");
    int listen_fd = (int)lfd;
    if (fcntl(listen_fd, F_SETFD, FD_CLOEXEC) < 0) die("listen fd");

    /* SIGTERM (from the host: a pid namespace's init gets only signals it handles) asks for an
     * orderly end: services stop in reverse order, then the sandbox ends. */
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigaddset(&chld, SIGTERM);
    sigprocmask(SIG_BLOCK, &chld, NULL);
    int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sfd < 0) die("signalfd");

    if (have_services) start_services((int)svcfd, &u, listen_fd, sfd, have_ready ? (int)rfd : -1);
    if (have_ready) {
        (void)write_all((int)rfd, "ready\n", 6);
        close((int)rfd);
    }
    for (;;) {
        struct pollfd p[2] = {{.fd = listen_fd, .events = POLLIN}, {.fd = sfd, .events = POLLIN}};
        if (poll(p, 2, -1) < 0) continue;
        if (p[1].revents) {
            struct signalfd_siginfo si;
            int term = 0;
            while (read(sfd, &si, sizeof si) > 0) term |= si.ssi_signo == SIGTERM;
            if (term && !g_shutting_down) {
                g_shutting_down = 1;
                if (g_supervisor == 0) _exit(0);
                kill(g_supervisor, SIGTERM);
            }
            reap();
        }
        if (!(p[0].revents & POLLIN)) continue;
        int c = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOMEM) usleep(10000);
            continue;
        }
        pid_t pid = fork();
        if (pid == 0) {
            close(listen_fd);
            close(sfd);
            sigprocmask(SIG_UNBLOCK, &chld, NULL);
            handle(&c, &u);
            conn_finish(&c);
            _exit(0);
        }
        if (pid < 0) frame_printf(c, 'X', "error fork: %s", strerror(errno));
        close(c);
    }
}
