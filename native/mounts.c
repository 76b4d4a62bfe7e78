/*
 * The sandbox's filesystem, built by the child while it is still real root in a fresh mount
 * namespace (owned by the initial user namespace, so the sandbox can never undo any of this).
 *
 * Every mount target inside the rootfs is resolved with openat2(RESOLVE_IN_ROOT) and mounted via
 * its /proc/self/fd/N magic link, never by concatenating strings: layers and the upper dir are
 * sandbox-controlled, and a planted symlink (say /proc -> /etc, or /workspace -> /) must resolve
 * exactly as it would inside the sandbox, never to a host path.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common.h"
#include "launch.h"

#define NOSUID_NODEV_NOEXEC (MS_NOSUID | MS_NODEV | MS_NOEXEC)

static int g_root = -1;             /* O_PATH fd of the overlay root */
static uid_t g_root_uid = (uid_t)-1; /* host ids of the sandbox's root, for new mountpoints */
static gid_t g_root_gid = (gid_t)-1;

static int open_in_root(const char *path, int flags) {
    struct open_how how = {
        .flags = (unsigned long long)(flags | O_CLOEXEC),
        .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    };
    while (*path == '/') path++;
    if (*path == '\0') path = ".";
    return (int)syscall(SYS_openat2, g_root, path, &how, sizeof how);
}

static const char *fdpath(int fd) {
    static char buf[4][32]; /* a few live at once (mount source + target) */
    static int next;
    char *b = buf[next++ % 4];
    snprintf(b, 32, "/proc/self/fd/%d", fd);
    return b;
}

/* Open PATH inside the rootfs (O_PATH), creating it and missing parents as a directory or an
 * empty file. New entries are owned by the sandbox's root so they look normal inside. */
static int ensure_path(const char *path, int want_dir) {
    int fd = open_in_root(path, O_PATH);
    if (fd >= 0 || errno != ENOENT) return fd;
    char *copy = strdup(path);
    if (copy == NULL) return -1;
    char *slash = strrchr(copy, '/');
    const char *base = slash ? slash + 1 : copy;
    int pfd;
    if (slash == NULL || slash == copy) {
        pfd = open_in_root("/", O_PATH | O_DIRECTORY);
    } else {
        *slash = '\0';
        pfd = ensure_path(copy, 1);
    }
    int rc = -1;
    if (pfd >= 0 && *base != '\0') {
        if (want_dir) {
            rc = mkdirat(pfd, base, 0755);
        } else {
            int f = openat(pfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
            rc = f < 0 ? -1 : close(f);
        }
        if (rc == 0 && g_root_uid != (uid_t)-1) (void)fchownat(pfd, base, g_root_uid, g_root_gid, AT_SYMLINK_NOFOLLOW);
    }
    int err = errno;
    if (pfd >= 0) close(pfd);
    free(copy);
    if (rc < 0 && err != EEXIST) {
        errno = err;
        return -1;
    }
    return open_in_root(path, O_PATH);
}

static void mount_in(const char *dst, int dir, const char *src, const char *type, unsigned long flags,
                     const char *data) {
    int fd = ensure_path(dst, dir);
    if (fd < 0) die("mountpoint %s", dst);
    if (mount(src, fdpath(fd), type, flags, data) < 0) die("mount %s on %s", type ? type : src, dst);
    close(fd);
}

/* Bind a host path (or an fd path) onto DST, then remount with FLAGS (MS_RDONLY etc.): a bind
 * mount ignores flags on creation, only the remount applies them. Not recursive on purpose: a
 * read-only remount does not reach submounts, so carrying them along would leave them writable. */
static void bind_in(const char *src, const char *dst, int dir, unsigned long flags) {
    int fd = ensure_path(dst, dir);
    if (fd < 0) die("mountpoint %s", dst);
    if (mount(src, fdpath(fd), NULL, MS_BIND, NULL) < 0) die("bind %s on %s", src, dst);
    close(fd);
    fd = open_in_root(dst, O_PATH); /* now the new mount on top */
    if (fd < 0) die("reopen %s", dst);
    if (mount(NULL, fdpath(fd), NULL, MS_REMOUNT | MS_BIND | flags, NULL) < 0) die("remount %s", dst);
    close(fd);
}

/* Hide PATH: a directory gets an empty read-only tmpfs, anything else /dev/null. Missing paths
 * are fine (nothing to hide); any other failure is fatal, because a mask that silently did not
 * apply would expose exactly what the caller asked to hide. */
static void mask(const char *path) {
    int fd = open_in_root(path, O_PATH);
    if (fd < 0) {
        if (errno == ENOENT || errno == ENOTDIR) return;
        die("mask %s", path);
    }
    struct stat st;
    if (fstat(fd, &st) < 0) die("stat %s", path);
    if (S_ISDIR(st.st_mode)) {
        if (mount("tmpfs", fdpath(fd), "tmpfs", MS_RDONLY | NOSUID_NODEV_NOEXEC, "size=4k,mode=0555") < 0)
            die("mask %s", path);
        close(fd);
    } else {
        close(fd);
        bind_in("/dev/null", path, 0, MS_RDONLY | MS_NOSUID | MS_NOEXEC);
    }
}

static void ro_self_bind(const char *path) {
    int fd = open_in_root(path, O_PATH);
    if (fd < 0) {
        if (errno == ENOENT) return;
        die("open %s", path);
    }
    if (mount(fdpath(fd), fdpath(fd), NULL, MS_BIND | MS_REC, NULL) < 0) die("bind %s", path);
    close(fd);
    fd = open_in_root(path, O_PATH);
    if (fd < 0 || mount(NULL, fdpath(fd), NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | NOSUID_NODEV_NOEXEC, NULL) < 0)
        die("remount %s read-only", path);
    close(fd);
}

static void mount_overlay(const struct launch_opts *o) {
    char opts[4096];
    size_t n = 0;
    int w = snprintf(opts, sizeof opts, "lowerdir=");
    n = (size_t)w;
    int absfd[o->n_lower_abs + 1];
    for (size_t i = 0; i <= o->n_lower_abs; i++) absfd[i] = -1;
    for (size_t i = 0; i < o->n_lowers + o->n_lower_abs && n < sizeof opts; i++) {
        if (i < o->n_lowers) {
            n += (size_t)snprintf(opts + n, sizeof opts - n, "%s%s", i ? ":" : "", o->lowers[i]);
            continue;
        }
        /* Absolute lowers by fd too (see upper/work below); "/" shows as itself. */
        const char *l = o->lower_abs[i - o->n_lowers];
        absfd[i - o->n_lowers] = strcmp(l, "/") == 0 ? -1 : open(l, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (strcmp(l, "/") != 0 && absfd[i - o->n_lowers] < 0) die("open lower %s", l);
        if (absfd[i - o->n_lowers] >= 0)
            n += (size_t)snprintf(opts + n, sizeof opts - n, "%s/proc/self/fd/%d", i ? ":" : "", absfd[i - o->n_lowers]);
        else
            n += (size_t)snprintf(opts + n, sizeof opts - n, "%s/", i ? ":" : "");
    }
    /* Upper/work by fd: overlayfs shows the option string in the sandbox's /proc/self/mountinfo,
     * and the host's directory layout is none of the sandbox's business. */
    int ufd = -1, wfd = -1;
    if (o->upper) {
        ufd = open(o->upper, O_PATH | O_DIRECTORY | O_CLOEXEC);
        wfd = open(o->work, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (ufd < 0 || wfd < 0) die("open %s", ufd < 0 ? o->upper : o->work);
        if (n < sizeof opts)
            n += (size_t)snprintf(opts + n, sizeof opts - n, ",upperdir=%s,workdir=%s", fdpath(ufd), fdpath(wfd));
    }
    /* Do not trust overlay xattrs for redirects/metacopy, and keep no inode index. */
    if (n < sizeof opts) n += (size_t)snprintf(opts + n, sizeof opts - n, ",index=off,metacopy=off,redirect_dir=off");
    if (n > 4000) die_plain("overlay options are %zu bytes, over the 4000-byte limit: use fewer or shorter layer names", n);
    /* Relative --lower names keep the option string short; they are resolved from --layers-dir. */
    if (o->layers_dir && chdir(o->layers_dir) < 0) die("chdir %s", o->layers_dir);
    /* nosuid+nodev: no setuid binary, file capability or device node from a layer means anything. */
    if (mount("overlay", o->rootfs, "overlay", MS_NOSUID | MS_NODEV, opts) < 0) {
        if (errno == ELOOP)
            die("mount overlay on %s (overlapping layers: a layer or upper dir lies inside another lower dir "
                "on the same filesystem; keep layers on a separate filesystem when / is a lower)", o->rootfs);
        die("mount overlay on %s", o->rootfs);
    }
    if (ufd >= 0) close(ufd), close(wfd);
    for (size_t i = 0; i < o->n_lower_abs; i++)
        if (absfd[i] >= 0) close(absfd[i]);
    g_root = open(o->rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (g_root < 0) die("open %s", o->rootfs);
}

static void mount_proc(void) {
    mount_in("/proc", 1, "proc", "proc", NOSUID_NODEV_NOEXEC, NULL);
    /* Kernel memory, keyrings, timers and scheduler internals: masked as runc/Docker do. */
    static const char *const hidden[] = {"/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sysrq-trigger",
                                         "/proc/sched_debug", "/proc/latency_stats", "/proc/timer_stats",
                                         "/proc/acpi", "/proc/scsi"};
    for (size_t i = 0; i < sizeof hidden / sizeof *hidden; i++) mask(hidden[i]);
    static const char *const ro[] = {"/proc/sys", "/proc/bus", "/proc/fs", "/proc/irq"};
    for (size_t i = 0; i < sizeof ro / sizeof *ro; i++) ro_self_bind(ro[i]);
}

static void mount_dev(void) {
    mount_in("/dev", 1, "tmpfs", "tmpfs", NOSUID_NODEV_NOEXEC, "mode=0755,size=64k");
    /* Only these host devices: no /dev/kvm, no block devices, no /dev/mem. The bind mounts carry
     * the host /dev mount's flags, so they work although this tmpfs is nodev. */
    static const char *const devs[] = {"null", "zero", "full", "random", "urandom", "tty"};
    char src[32], dst[32];
    for (size_t i = 0; i < sizeof devs / sizeof *devs; i++) {
        snprintf(src, sizeof src, "/dev/%s", devs[i]);
        snprintf(dst, sizeof dst, "/dev/%s", devs[i]);
        bind_in(src, dst, 0, MS_NOSUID | MS_NOEXEC);
    }
    mount_in("/dev/pts", 1, "devpts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620");
    mount_in("/dev/shm", 1, "tmpfs", "tmpfs", NOSUID_NODEV_NOEXEC, "mode=1777,size=64m");
    int dev = open_in_root("/dev", O_PATH | O_DIRECTORY);
    if (dev < 0) die("open /dev");
    static const char *const links[][2] = {{"pts/ptmx", "ptmx"},        {"/proc/self/fd", "fd"},
                                           {"/proc/self/fd/0", "stdin"}, {"/proc/self/fd/1", "stdout"},
                                           {"/proc/self/fd/2", "stderr"}};
    for (size_t i = 0; i < sizeof links / sizeof *links; i++)
        if (symlinkat(links[i][0], dev, links[i][1]) < 0) die("symlink /dev/%s", links[i][1]);
    /* Read-only once populated: nothing in the sandbox should add entries to /dev. */
    if (mount(NULL, fdpath(dev), NULL, MS_REMOUNT | MS_RDONLY | NOSUID_NODEV_NOEXEC, "mode=0755,size=64k") < 0)
        die("remount /dev read-only");
    close(dev);
}

static void pivot(void) {
    if (fchdir(g_root) < 0) die("chdir rootfs");
    /* pivot_root(".", ".") stacks the old root on top of the new one; detaching "." then drops
     * it, so no path to the host's tree remains in this mount namespace. */
    if (syscall(SYS_pivot_root, ".", ".") < 0) die("pivot_root");
    if (umount2(".", MNT_DETACH) < 0) die("detach old root");
    if (chdir("/") < 0) die("chdir /");
    close(g_root);
}

void setup_rootfs(const struct launch_opts *o) {
    /* Nothing we mount may propagate back to the host's mount table (and vice versa). */
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) die("make / private");
    g_root_uid = (uid_t)o->uid_map.outside;
    g_root_gid = (gid_t)o->gid_map.outside;
    mount_overlay(o);
    mount_proc();
    mount_dev();
    mount_in("/sys", 1, "sysfs", "sysfs", MS_RDONLY | NOSUID_NODEV_NOEXEC, NULL);
    mask("/sys/firmware");
    mask("/sys/devices/virtual/powercap"); /* energy counters: a known side channel */

    char data[96];
    for (size_t i = 0; i < o->n_tmpfs; i++) {
        /* Owned by the sandbox's root, sticky and world-writable: temp-dir semantics. */
        snprintf(data, sizeof data, "size=%s,mode=1777,uid=%lu,gid=%lu", o->tmpfs[i].size, o->uid_map.outside,
                 o->gid_map.outside);
        mount_in(o->tmpfs[i].dst, 1, "tmpfs", "tmpfs", MS_NOSUID | MS_NODEV, data);
    }
    for (size_t i = 0; i < o->n_binds; i++) {
        struct stat st;
        if (stat(o->binds[i].src, &st) < 0) die("bind source %s", o->binds[i].src);
        unsigned long fl = MS_NOSUID | MS_NODEV | (o->binds[i].ro ? MS_RDONLY : 0);
        bind_in(o->binds[i].src, o->binds[i].dst, S_ISDIR(st.st_mode), fl);
    }
    /* Last, so a mask hides whatever is there, binds and tmpfs included. */
    for (size_t i = 0; i < o->n_masks; i++) mask(o->masks[i]);
    pivot();
}
