/*
 * `paddock-sandbox launch`: run as real root by the control plane, detached in its own session.
 *
 * Ordering is the security argument (docs/sandbox.md): the mount, pid, net, ipc, uts and cgroup
 * namespaces are created while we are still real root, so they are owned by the initial user
 * namespace. Only at the very end does the sandbox enter a new user namespace: "root" in there has
 * capabilities over nothing it can see — it cannot mount, unmount, configure the network or open
 * raw sockets, independently of the seccomp filter.
 *
 * Deviation from a plain unshare()+fork(): we clone(2) the child straight into the new namespaces,
 * so the supervisor itself stays in the host's namespaces. Otherwise the child's pivot_root would
 * also move the supervisor (host root, full capabilities) into the sandbox's root filesystem, and
 * it would then resolve /proc/PID/uid_map through a tree the sandbox controls.
 */
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <grp.h>
#include <unistd.h>

#include "common.h"
#include "guard.h"
#include "launch.h"
#include "services.h"

static volatile sig_atomic_t g_child;

/* SIGTERM/SIGINT/SIGHUP to the supervisor: kill the sandbox's pid 1, which takes the whole pid
 * namespace (every process of the sandbox) with it. */
static void on_term(int sig) {
    (void)sig;
    if (g_child > 0) kill(g_child, SIGKILL);
}

static void join_cgroups(const struct launch_opts *o) {
    char pid[32], path[4096];
    snprintf(pid, sizeof pid, "%d\n", getpid());
    for (size_t i = 0; i < o->n_cgroups; i++) {
        if (snprintf(path, sizeof path, "%s/cgroup.procs", o->cgroups[i]) >= (int)sizeof path)
            die_plain("--cgroup %s: path too long", o->cgroups[i]);
        /* Fail closed: a sandbox outside its cgroup would escape its memory/pids/cpu limits. */
        if (write_file(path, pid) < 0) die("join cgroup %s", o->cgroups[i]);
    }
}

int make_listener(const char *path, int host_backed) {
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path) die_plain("--listen %s: path too long for a unix socket", path);
    strcpy(sa.sun_path, path);
    struct stat st;
    if (lstat(path, &st) == 0) {
        /* Only ever remove a stale socket: never let --listen delete some other file. */
        if (!S_ISSOCK(st.st_mode)) die_plain("--listen %s: exists and is not a socket", path);
        if (unlink(path) < 0) die("unlink stale socket %s", path);
    } else if (errno != ENOENT) {
        die("--listen %s", path);
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    mode_t old = umask(0077); /* no window where the socket is connectable by others */
    int rc = bind(fd, (struct sockaddr *)&sa, sizeof sa);
    umask(old);
    if (rc < 0) die("bind %s", path);
    /* Under gVisor (agent --listen) chmod of a host-backed socket is refused: there the socket's
     * directory is root's 0700 inside, and the host side makes the socket 0600 itself. */
    if (chmod(path, 0600) < 0 && !(host_backed && errno == EPERM)) die("chmod %s", path);
    if (listen(fd, 128) < 0) die("listen %s", path);
    return fd;
}

static void loopback_up(void) {
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) die("socket for loopback");
    struct ifreq ifr = {0};
    strcpy(ifr.ifr_name, "lo");
    if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0) die("get lo flags");
    ifr.ifr_flags |= IFF_UP;
    if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0) die("bring lo up");
    close(s);
}

struct child_ctx {
    const struct launch_opts *o;
    int listen_fd, exe_fd, to_parent, from_parent, services_fd;
    int work_fds[MAX_WORK_CGROUPS];
};

/* Opened here, as real root in the host's cgroup namespace: the kernel checks a cgroup.procs
 * write against the opener's credentials and namespace, so the agent (root of the sandbox's user
 * namespace only, in its own cgroup namespace) can later move each command it starts into the
 * work group through these descriptors, and through nothing else. */
static void open_work_cgroups(const struct launch_opts *o, int *fds) {
    char path[4096];
    for (size_t i = 0; i < o->n_work_cgroups; i++) {
        if (snprintf(path, sizeof path, "%s/cgroup.procs", o->work_cgroups[i]) >= (int)sizeof path)
            die_plain("--work-cgroup %s: path too long", o->work_cgroups[i]);
        fds[i] = open(path, O_WRONLY | O_CLOEXEC);
        if (fds[i] < 0) die("open %s", path);
    }
}

static int cmp_int(const void *a, const void *b) {
    return (*(const int *)a > *(const int *)b) - (*(const int *)a < *(const int *)b);
}

/* Keep only 0, 1, 2 and the given descriptors (exe_fd is close-on-exec, so it goes at exec). */
static void close_other_fds(int *keep, size_t n) {
    qsort(keep, n, sizeof *keep, cmp_int);
    unsigned int next = 3;
    for (size_t i = 0; i < n; i++) {
        if (keep[i] < (int)next) continue; /* -1 (absent) or a duplicate */
        if ((unsigned int)keep[i] > next) close_range(next, (unsigned int)keep[i] - 1, 0);
        next = (unsigned int)keep[i] + 1;
    }
    close_range(next, ~0u, 0);
}

/* Exec guard: no executable memfd in the sandbox. memfds live on an internal mount no fanotify
 * mark reaches, so a memfd holding a denied program's bytes could otherwise be execveat()ed.
 * vm.memfd_noexec is per pid namespace (kernel >= 6.3) and applies to the writer's pid namespace,
 * which is already the sandbox's (we are its pid 1). 2: MFD_EXEC is refused and every memfd is
 * sealed non-executable. Changing it needs CAP_SYS_ADMIN over the namespace's owner, the initial
 * user namespace, which the sandbox never has; and a child namespace cannot lower it. Written
 * while we are still real root, before the sandbox's user namespace exists. */
static void forbid_exec_memfd(void) {
    const char *path = "/proc/sys/vm/memfd_noexec";
    if (write_file(path, "2\n") < 0) die("--guard needs vm.memfd_noexec (kernel >= 6.3): write %s", path);
    char b[4] = {0};
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || read(fd, b, sizeof b - 1) < 1 || b[0] != '2') die_plain("--guard: %s did not stay 2", path);
    close(fd);
}

static __attribute__((noreturn)) void child_main(struct child_ctx *c) {
    const struct launch_opts *o = c->o;
    sigset_t none;
    sigemptyset(&none);
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    sigprocmask(SIG_SETMASK, &none, NULL);

    if (o->netns) {
        int fd = open(o->netns, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || setns(fd, CLONE_NEWNET) < 0) die("setns %s", o->netns);
        close(fd);
    } else {
        loopback_up();
    }
    /* Fail closed: host supplementary groups (root has gid 0) would survive into the user
     * namespace as raw kernel gids and grant group access to host files. */
    if (setgroups(0, NULL) < 0) die("setgroups");
    if (o->guard_file) forbid_exec_memfd();

    setup_rootfs(o); /* ends inside the new root, old root detached */
    if (sethostname(o->hostname, strlen(o->hostname)) < 0) die("sethostname");

    if (unshare(CLONE_NEWUSER) < 0) die("unshare user namespace");
    char b = 'u';
    if (write_all(c->to_parent, &b, 1) < 0) die("signal supervisor");
    if (read_full(c->from_parent, &b, 1) != 1) die_plain("supervisor did not finish setting up the sandbox");
    close(c->to_parent);
    if (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0) die("become root of the user namespace");
    if (o->guard_file) {
        /* The guard lives in the supervisor; when its fanotify fd closes, the kernel allows every
         * pending and later exec. So the sandbox dies with it. Armed after our last credential
         * change (a uid change clears it). getppid() cannot confirm the supervisor is still there
         * (it is 0 for a pid namespace's init), so: the supervisor holds its end of this pipe
         * for its whole life, and a hangup means it is already gone. */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) die("set parent-death signal");
        struct pollfd p = {.fd = c->from_parent, .events = POLLIN};
        if (poll(&p, 1, 0) < 0 || (p.revents & (POLLHUP | POLLERR))) die_plain("supervisor exited before the sandbox started");
    }
    close(c->from_parent);

    restrict_caps(o->caps);
    load_seccomp();

    char lfd[16], rfd[16], sfd[16], user[32], wfd[MAX_WORK_CGROUPS][16];
    snprintf(lfd, sizeof lfd, "%d", c->listen_fd);
    snprintf(rfd, sizeof rfd, "%d", o->ready_fd);
    snprintf(sfd, sizeof sfd, "%d", c->services_fd);
    snprintf(user, sizeof user, "%lu:%lu", (unsigned long)o->uid, (unsigned long)o->gid);
    int keep[4 + MAX_WORK_CGROUPS] = {c->listen_fd, o->ready_fd, c->exe_fd, c->services_fd};
    for (size_t i = 0; i < o->n_work_cgroups; i++) keep[4 + i] = c->work_fds[i];
    close_other_fds(keep, 4 + o->n_work_cgroups);
    /* These are the agent's; everything else is closed above or close-on-exec (exe_fd). */
    if (fcntl(c->listen_fd, F_SETFD, 0) < 0) die("listen fd");
    if (o->ready_fd >= 0 && fcntl(o->ready_fd, F_SETFD, 0) < 0) die("ready fd");
    char *argv[10 + 2 * MAX_WORK_CGROUPS] = {"paddock-sandbox", "agent", "--listen-fd", lfd, "--user", user};
    size_t argc = 6;
    if (o->ready_fd >= 0) argv[argc++] = "--ready-fd", argv[argc++] = rfd;
    if (c->services_fd >= 0) {
        if (fcntl(c->services_fd, F_SETFD, 0) < 0) die("services fd");
        argv[argc++] = "--services-fd", argv[argc++] = sfd;
    }
    for (size_t i = 0; i < o->n_work_cgroups; i++) {
        if (fcntl(c->work_fds[i], F_SETFD, 0) < 0) die("work cgroup fd");
        snprintf(wfd[i], sizeof wfd[i], "%d", c->work_fds[i]);
        argv[argc++] = "--work-cgroup-fd", argv[argc++] = wfd[i];
    }
    argv[argc] = NULL;
    /* Fail closed: the control plane's environment may hold secrets; the agent starts empty and
     * commands get exactly the environment each exec request carries. */
    char *envp[] = {NULL};
    syscall(SYS_execveat, c->exe_fd, "", argv, envp, AT_EMPTY_PATH);
    die("exec agent");
}

static void write_maps(pid_t pid, const struct launch_opts *o) {
    char path[64], map[96];
    snprintf(path, sizeof path, "/proc/%d/uid_map", pid);
    snprintf(map, sizeof map, "%lu %lu %lu\n", o->uid_map.inside, o->uid_map.outside, o->uid_map.count);
    if (write_file(path, map) < 0) die("write %s", path);
    snprintf(path, sizeof path, "/proc/%d/gid_map", pid);
    snprintf(map, sizeof map, "%lu %lu %lu\n", o->gid_map.inside, o->gid_map.outside, o->gid_map.count);
    if (write_file(path, map) < 0) die("write %s", path);
}

/* Wait for the child, answering the guard's permission events meanwhile. A pidfd rather than a
 * blocking waitpid, so one poll() covers both; SIGTERM (on_term) interrupts it with EINTR. */
static int wait_child(pid_t child, struct guard *g) {
    int pidfd = (int)syscall(SYS_pidfd_open, child, 0);
    if (pidfd < 0 && g) {
        kill(child, SIGKILL); /* fail closed: we could not both watch it and answer its execs */
        die("pidfd_open");
    }
    int st;
    for (;;) {
        if (pidfd < 0) {
            if (waitpid(child, &st, 0) == child) break;
            if (errno != EINTR) die("waitpid");
            continue;
        }
        struct pollfd p[2] = {{.fd = pidfd, .events = POLLIN}, {.fd = g ? g->fan_fd : -1, .events = POLLIN}};
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR) continue;
            kill(child, SIGKILL);
            die("poll");
        }
        if (p[1].revents && guard_handle(g) < 0) {
            /* Fail closed: without answers every exec hangs, and we cannot tell what to allow. */
            fprintf(stderr, "error guard: reading fanotify events: %s; killing the sandbox\n", strerror(errno));
            kill(child, SIGKILL);
            g = NULL;
        }
        if (p[0].revents && waitpid(child, &st, WNOHANG) == child) break;
    }
    if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
    return WEXITSTATUS(st);
}

static int supervise(pid_t child, int from_child, int to_child, const struct launch_opts *o, struct guard *g) {
    char b;
    /* The child asks once, after pivot_root and unshare(CLONE_NEWUSER); EOF means it failed
     * before that. The guard is armed before the child may go on: nothing has run in the sandbox
     * yet. If arming fails we exit 125 here, and the child exits on the closed pipe. */
    if (read_full(from_child, &b, 1) == 1) {
        write_maps(child, o);
        if (g) guard_arm(g, child);
        if (write_all(to_child, &b, 1) < 0) die("signal child");
    } else {
        g = NULL;
    }
    close(from_child);
    /* to_child stays open until we exit: the child checks it after arming PDEATHSIG. */
    return wait_child(child, g);
}

int launch_main(int argc, char **argv) {
    struct launch_opts o;
    parse_launch_opts(argc, argv, &o);
    struct guard *guard = o.guard_file ? guard_load(o.guard_file, o.guard_log) : NULL;

    /* Before any namespace exists, so every descendant is accounted to the sandbox's cgroups. */
    join_cgroups(&o);
    int work_fds[MAX_WORK_CGROUPS];
    open_work_cgroups(&o, work_fds);
    /* Opened and checked here, as host root and before anything exists: a bad spec is a launch
     * error (125) with the reason, and the agent reads the same file through this descriptor
     * (the file itself is never visible inside the sandbox). */
    int services_fd = -1;
    if (o.services_file) {
        static struct svc_set checked;
        char err[600];
        services_fd = open(o.services_file, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (services_fd < 0) die("--services %s", o.services_file);
        if (svc_load_fd(services_fd, &checked, err, sizeof err) < 0) die_plain("--services %s: %s", o.services_file, err);
    }
    int listen_fd = make_listener(o.listen, 0);
    int exe_fd = open("/proc/self/exe", O_PATH | O_CLOEXEC);
    if (exe_fd < 0) die("open /proc/self/exe");
    int up[2], down[2];
    if (pipe2(up, O_CLOEXEC) < 0 || pipe2(down, O_CLOEXEC) < 0) die("pipe");

    /* Block the terminating signals across clone: handled by the supervisor, default in the child. */
    sigset_t term, old;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    sigaddset(&term, SIGINT);
    sigaddset(&term, SIGHUP);
    sigprocmask(SIG_BLOCK, &term, &old);

    unsigned long flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP;
    if (o.netns == NULL) flags |= CLONE_NEWNET;
    pid_t pid = (pid_t)syscall(SYS_clone, flags | SIGCHLD, NULL, NULL, NULL, NULL);
    if (pid < 0) die("clone namespaces");
    if (pid == 0) {
        close(up[0]);
        close(down[1]);
        struct child_ctx c = {&o, listen_fd, exe_fd, up[1], down[0], services_fd, {0}};
        memcpy(c.work_fds, work_fds, sizeof work_fds);
        child_main(&c);
    }

    g_child = pid;
    signal(SIGPIPE, SIG_IGN); /* a vanished reader of the ready pipe must not kill the supervisor */
    struct sigaction sa = {.sa_handler = on_term};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sigprocmask(SIG_SETMASK, &old, NULL);
    close(up[1]);
    close(down[0]);
    close(listen_fd);
    close(exe_fd);
    if (services_fd >= 0) close(services_fd);
    for (size_t i = 0; i < o.n_work_cgroups; i++) close(work_fds[i]);
    /* Best effort (needs CAP_SYS_RESOURCE): if the sandbox's memory cgroup runs out, the OOM
     * killer should pick a sandbox process, not the supervisor that reports its exit. */
    (void)write_file("/proc/self/oom_score_adj", "-1000\n");
    if (o.ready_fd >= 0) {
        dprintf(o.ready_fd, "pid %d\n", pid);
        close(o.ready_fd); /* the agent's "ready" (or the child's exit) is what closes the pipe */
    }
    return supervise(pid, up[0], down[1], &o, guard);
}
