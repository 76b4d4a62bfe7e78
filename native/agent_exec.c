/*
 * The `exec` op. The command runs in a forked child that becomes the command user (caps gone,
 * no_new_privs and seccomp stay), gets its own session/process group, and execs. The handler
 * stays root of the user namespace so a command's `kill -9 -1` cannot kill the relay.
 *
 * Start reporting: `P` is sent only after a successful exec. The child reports chdir/exec
 * failures through a close-on-exec pipe; EOF on that pipe means exec succeeded.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent.h"
#include "common.h"

#define MAX_ARGS 65536

static volatile sig_atomic_t g_timed_out;
static volatile pid_t g_pgid;

/* SIGALRM: fires wherever the handler is blocked (even in a send to a slow client). */
static void on_alarm(int sig) {
    (void)sig;
    g_timed_out = 1;
    if (g_pgid > 0) kill(-g_pgid, SIGKILL);
}

struct cmd {
    const char *cwd;
    unsigned long timeout_ms;
    char **argv, **envp;
};

static int parse_cmd(struct fields *req, struct cmd *c, const char **why) {
    const char *t, *n;
    unsigned long argc, envc;
    c->cwd = next_field(req);
    if (c->cwd == NULL || (t = next_field(req)) == NULL || (n = next_field(req)) == NULL) return *why = "missing fields", -1;
    if (parse_ulong(t, 1UL << 40, &c->timeout_ms)) return *why = "bad timeout_ms", -1;
    if (parse_ulong(n, MAX_ARGS, &argc) || argc == 0) return *why = "bad argc", -1;
    c->argv = calloc(argc + 1, sizeof *c->argv);
    if (c->argv == NULL) return *why = "out of memory", -1;
    for (unsigned long i = 0; i < argc; i++)
        if ((c->argv[i] = (char *)next_field(req)) == NULL) return *why = "missing argv", -1;
    if ((n = next_field(req)) == NULL || parse_ulong(n, MAX_ARGS, &envc)) return *why = "bad envc", -1;
    c->envp = calloc(envc + 1, sizeof *c->envp);
    if (c->envp == NULL) return *why = "out of memory", -1;
    for (unsigned long i = 0; i < envc; i++) {
        c->envp[i] = (char *)next_field(req);
        if (c->envp[i] == NULL || strchr(c->envp[i], '=') == NULL) return *why = "bad env entry", -1;
    }
    return 0;
}

extern char **environ;

/* Into the work group before anything of the command runs: there it counts against
 * compute.pids, and `session kill` finds it. Fail closed: a command left in the agent's group
 * would use the agent's reserve and escape the kill. ("0" is the writer itself.) */
static int join_work_cgroups(const struct user *u, char *msg, size_t size) {
    for (size_t i = 0; i < u->n_work_fds; i++) {
        if (write(u->work_fds[i], "0\n", 2) < 0) {
            snprintf(msg, size, "join the session's work cgroup: %s", strerror(errno));
            return -1;
        }
    }
    return 0;
}

static __attribute__((noreturn)) void child(const struct cmd *c, const struct user *u, int in, int out, int err,
                                            int errp) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL); /* ignored dispositions survive exec; commands expect the default */
    setsid();
    char msg[1200];
    if (join_work_cgroups(u, msg, sizeof msg) < 0) {
        /* msg says why */
    } else if (become_user(u) < 0) {
        snprintf(msg, sizeof msg, "setuid %u: %s", (unsigned)u->uid, strerror(errno));
    } else if (chdir(c->cwd) < 0) {
        snprintf(msg, sizeof msg, "chdir %.1024s: %s", c->cwd, strerror(errno));
    } else if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0) {
        snprintf(msg, sizeof msg, "dup2: %s", strerror(errno));
    } else {
        /* execvpe searches the PATH of the current environment, so install the requested one. */
        environ = c->envp;
        execvpe(c->argv[0], c->argv, c->envp);
        snprintf(msg, sizeof msg, "exec: %s", strerror(errno));
    }
    (void)write_all(errp, msg, strlen(msg));
    _exit(127);
}

struct relay {
    int sock, in, out, err, pidfd;
    pid_t pid;
    char *pending; /* one I frame not yet fully written to the command's stdin */
    size_t plen, poff;
    int close_in_after;
};

static void close_fd(int *fd) {
    if (*fd >= 0) close(*fd);
    *fd = -1;
}

/* Write what we can of the pending stdin without blocking (the command may not be reading). */
static void flush_stdin(struct relay *r) {
    while (r->pending && r->poff < r->plen) {
        ssize_t n = write(r->in, r->pending + r->poff, r->plen - r->poff);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) return;
            r->poff = r->plen; /* EPIPE: the command closed stdin; drop the rest */
            r->close_in_after = 1;
            break;
        }
        r->poff += (size_t)n;
    }
    free(r->pending);
    r->pending = NULL;
    if (r->close_in_after) close_fd(&r->in);
}

/* Returns 0 to continue, -1 when the client is gone. */
static int client_frame(struct relay *r) {
    struct frame f;
    if (frame_read(r->sock, &f) != 1) return -1;
    if (f.type == 'I' && r->in >= 0 && f.len > 0) {
        r->pending = f.data, r->plen = f.len, r->poff = 0;
        flush_stdin(r);
        return 0;
    }
    if (f.type == 'C') {
        r->close_in_after = 1;
        if (r->pending == NULL) close_fd(&r->in);
    } else if (f.type == 'K') {
        unsigned long sig;
        if (f.data && parse_ulong(f.data, 64, &sig) == 0 && sig > 0) kill(-r->pid, (int)sig);
    } else if (f.type != 'I') {
        free(f.data);
        return -1; /* protocol violation: treat like a disconnect (kill, no report) */
    }
    free(f.data);
    return 0;
}

/* Relay one pipe; returns bytes relayed, 0 on EOF (fd closed), -1 on nothing/EAGAIN, -2 when the
 * client is gone. */
static int pump(struct relay *r, int *fd, char type) {
    char buf[CHUNK];
    ssize_t n = read(*fd, buf, sizeof buf);
    if (n == 0) {
        close_fd(fd);
        return 0;
    }
    if (n < 0) return -1;
    return frame_write(r->sock, type, buf, (uint32_t)n) < 0 ? -2 : (int)n;
}

static __attribute__((noreturn)) void client_gone(struct relay *r) {
    kill(-r->pid, SIGKILL);
    waitpid(r->pid, NULL, 0);
    _exit(0);
}

/* Main loop until the command's main process exits (or the timeout fires). */
static int relay_until_exit(struct relay *r) {
    int st = 0;
    for (;;) {
        struct pollfd p[5] = {
            {.fd = r->sock, .events = POLLRDHUP | (r->pending ? 0 : POLLIN)},
            {.fd = r->out, .events = POLLIN},
            {.fd = r->err, .events = POLLIN},
            {.fd = r->pending ? r->in : -1, .events = POLLOUT},
            {.fd = r->pidfd, .events = POLLIN},
        };
        if (poll(p, 5, -1) < 0 && errno != EINTR) client_gone(r);
        if (g_timed_out || (p[4].revents & POLLIN)) break;
        if (p[0].revents & POLLIN) {
            if (client_frame(r) < 0) client_gone(r);
        } else if (p[0].revents & (POLLRDHUP | POLLHUP | POLLERR)) {
            client_gone(r);
        }
        if (p[3].revents) flush_stdin(r);
        if (p[1].revents && pump(r, &r->out, 'O') == -2) client_gone(r);
        if (p[2].revents && pump(r, &r->err, 'E') == -2) client_gone(r);
    }
    while (waitpid(r->pid, &st, 0) < 0 && errno == EINTR) {
    }
    return st;
}

/* After the main process is gone: send what is already in the pipes (non-blocking, until EAGAIN
 * or EOF). Background children that inherited the pipes are not waited for. */
static void drain(struct relay *r) {
    int *fds[2] = {&r->out, &r->err};
    const char types[2] = {'O', 'E'};
    for (int i = 0; i < 2; i++) {
        if (*fds[i] < 0) continue;
        fcntl(*fds[i], F_SETFL, O_NONBLOCK);
        while (*fds[i] >= 0 && pump(r, fds[i], types[i]) > 0) {
        }
    }
}

/* After X: keep reading (and discarding) until every background writer has closed the pipes, so
 * a dev server started with `&` never dies of SIGPIPE just because its exec returned. */
static void linger(struct relay *r) {
    close_fd(&r->in);
    char buf[CHUNK];
    while (r->out >= 0 || r->err >= 0) {
        struct pollfd p[2] = {{.fd = r->out, .events = POLLIN}, {.fd = r->err, .events = POLLIN}};
        if (poll(p, 2, -1) < 0 && errno != EINTR) return;
        for (int i = 0; i < 2; i++) {
            int *fd = i ? &r->err : &r->out;
            if (*fd < 0 || !p[i].revents) continue;
            ssize_t n = read(*fd, buf, sizeof buf);
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) close_fd(fd);
        }
    }
}

/* Where there is no pidfd_open (gVisor's 2022 kernel): a self-pipe a SIGCHLD handler writes to
 * stands in for the pidfd. This handler process has exactly one child, the command, so any
 * SIGCHLD means it exited (stops are not reported: SA_NOCLDSTOP). */
static int g_chld_pipe[2] = {-1, -1};

static void on_chld(int sig) {
    (void)sig;
    int saved = errno;
    if (write(g_chld_pipe[1], "x", 1) < 0) { /* full: a wakeup is already pending */
    }
    errno = saved;
}

static int exit_watch_fallback(pid_t pid) {
    if (pipe2(g_chld_pipe, O_CLOEXEC | O_NONBLOCK) < 0) return -1;
    struct sigaction sa = {.sa_handler = on_chld, .sa_flags = SA_NOCLDSTOP | SA_RESTART};
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGCHLD, &sa, NULL) < 0) return -1;
    /* It may have exited before the handler was there: look without reaping it. */
    siginfo_t si = {0};
    if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == pid) on_chld(SIGCHLD);
    return g_chld_pipe[0];
}

/* Fork the command; returns its pid after a successful exec, or -1 after replying X error. */
static pid_t start(int sock, const struct cmd *c, const struct user *u, int *in, int *out, int *err) {
    int pin[2], pout[2], perr[2], errp[2];
    if (pipe2(pin, O_CLOEXEC) < 0 || pipe2(pout, O_CLOEXEC) < 0 || pipe2(perr, O_CLOEXEC) < 0 ||
        pipe2(errp, O_CLOEXEC) < 0) {
        frame_printf(sock, 'X', "error pipe: %s", strerror(errno));
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        frame_printf(sock, 'X', "error fork: %s", strerror(errno));
        return -1;
    }
    if (pid == 0) child(c, u, pin[0], pout[1], perr[1], errp[1]);
    close(pin[0]), close(pout[1]), close(perr[1]), close(errp[1]);
    char msg[1200];
    size_t got = 0;
    for (;;) {
        ssize_t n = read(errp[0], msg + got, sizeof msg - 1 - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0 || (got += (size_t)n) >= sizeof msg - 1) break;
    }
    close(errp[0]);
    if (got > 0) {
        msg[got] = '\0';
        waitpid(pid, NULL, 0);
        /* What the failed child's stderr already holds goes first: the exec guard writes its
         * "denied by guardrails.commands.deny" line there before refusing the exec. */
        char buf[4096];
        fcntl(perr[0], F_SETFL, O_NONBLOCK);
        ssize_t n = read(perr[0], buf, sizeof buf);
        if (n > 0) frame_write(sock, 'E', buf, (uint32_t)n);
        close(pin[1]), close(pout[0]), close(perr[0]);
        frame_printf(sock, 'X', "error %s", msg);
        return -1;
    }
    *in = pin[1], *out = pout[0], *err = perr[0];
    return pid;
}

void op_exec(int *sockp, struct fields *req, const struct user *u) {
    int sock = *sockp;
    struct cmd c = {0};
    const char *why = NULL;
    if (parse_cmd(req, &c, &why) < 0) {
        frame_printf(sock, 'X', "error bad request: exec: %s", why);
        return;
    }
    struct relay r = {.sock = sock, .pidfd = -1};
    r.pid = start(sock, &c, u, &r.in, &r.out, &r.err);
    if (r.pid < 0) return;
    r.pidfd = (int)syscall(SYS_pidfd_open, r.pid, 0);
    if (r.pidfd < 0 && errno == ENOSYS) r.pidfd = exit_watch_fallback(r.pid);
    if (r.pidfd < 0) { /* cannot watch the command: do not leave it running unobserved */
        frame_printf(sock, 'X', "error pidfd_open: %s", strerror(errno));
        client_gone(&r);
    }
    fcntl(r.in, F_SETFL, O_NONBLOCK);
    fcntl(r.out, F_SETFL, O_NONBLOCK);
    fcntl(r.err, F_SETFL, O_NONBLOCK);
    if (frame_printf(sock, 'P', "%d", r.pid) < 0) client_gone(&r);

    g_pgid = r.pid; /* setsid() in the child made its pid the process-group id */
    if (c.timeout_ms > 0) {
        struct sigaction sa = {.sa_handler = on_alarm}; /* no SA_RESTART: interrupt blocked calls */
        sigemptyset(&sa.sa_mask);
        sigaction(SIGALRM, &sa, NULL);
        struct itimerval t = {.it_value = {(time_t)(c.timeout_ms / 1000), (suseconds_t)(c.timeout_ms % 1000) * 1000}};
        setitimer(ITIMER_REAL, &t, NULL);
    }
    int st = relay_until_exit(&r);
    struct itimerval off = {0};
    setitimer(ITIMER_REAL, &off, NULL);
    drain(&r);
    if (g_timed_out) frame_printf(sock, 'X', "timeout");
    else if (WIFSIGNALED(st)) frame_printf(sock, 'X', "signal %d", WTERMSIG(st));
    else frame_printf(sock, 'X', "exit %d", WEXITSTATUS(st));
    conn_finish(sockp);
    linger(&r);
}
