/*
 * `paddock-sandbox idmap SRC DST [SRC DST]...`: bind each SRC at DST as an idmapped mount that
 * shows the sandbox id range (host 100000 + n) as n, and host ids outside it as nobody. The gVisor
 * tier builds its overlay from such views of the layers (docs/sandbox.md, "gVisor tier"): gVisor
 * then sees root and the session user as 0 and 1000 without an OCI user namespace (which, with
 * runsc 2022-12 on this kernel, cannot be combined with a network namespace), and what the session
 * user writes lands on disk as host 101000, exactly as under the namespaces tier.
 * Run as root on the host. Each DST must be an existing directory. Non-recursive: submounts of
 * SRC are not carried over (as for an overlay lower).
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/mount.h>

#include "common.h"

#define SANDBOX_ID_BASE 100000
#define SANDBOX_ID_COUNT 65536

/* A user namespace whose ids SANDBOX_ID_BASE.. are host 0..: as a mount's idmapping, it shows the
 * on-disk id SANDBOX_ID_BASE + n as n. Returns an fd on it; the helper child is gone. */
static int sandbox_userns(void) {
    int sync[2];
    if (pipe2(sync, O_CLOEXEC) < 0) die("pipe");
    pid_t child = fork();
    if (child < 0) die("fork");
    if (child == 0) {
        close(sync[1]);
        if (unshare(CLONE_NEWUSER) < 0) _exit(1);
        char b;
        /* Hold the namespace until the parent has its fd (it closes the pipe). */
        (void)!read(sync[0], &b, 1);
        _exit(0);
    }
    close(sync[0]);
    char path[64], map[64];
    snprintf(map, sizeof map, "%d 0 %d", SANDBOX_ID_BASE, SANDBOX_ID_COUNT);
    /* Wait until the child is in its own user namespace. */
    char self_ns[64], child_ns[64];
    snprintf(path, sizeof path, "/proc/%d/ns/user", (int)child);
    for (int i = 0; i < 10000; i++) {
        ssize_t a = readlink("/proc/self/ns/user", self_ns, sizeof self_ns - 1);
        ssize_t b = readlink(path, child_ns, sizeof child_ns - 1);
        if (a < 0 || b < 0) die("readlink user ns");
        self_ns[a] = child_ns[b] = '\0';
        if (strcmp(self_ns, child_ns) != 0) break;
        usleep(100);
    }
    snprintf(path, sizeof path, "/proc/%d/uid_map", (int)child);
    if (write_file(path, map) < 0) die("write %s", path);
    snprintf(path, sizeof path, "/proc/%d/setgroups", (int)child);
    if (write_file(path, "deny") < 0) die("write %s", path);
    snprintf(path, sizeof path, "/proc/%d/gid_map", (int)child);
    if (write_file(path, map) < 0) die("write %s", path);
    snprintf(path, sizeof path, "/proc/%d/ns/user", (int)child);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) die("open %s", path);
    close(sync[1]);
    waitpid(child, NULL, 0);
    return fd;
}

int idmap_main(int argc, char **argv) {
    if (argc == 0 || argc % 2 != 0) die_plain("usage: paddock-sandbox idmap SRC DST [SRC DST]...");
    int userns = sandbox_userns();
    for (int i = 0; i < argc; i += 2) {
        int tree = (int)syscall(SYS_open_tree, AT_FDCWD, argv[i], OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
        if (tree < 0) die("open_tree %s", argv[i]);
        struct mount_attr attr = {.attr_set = MOUNT_ATTR_IDMAP, .userns_fd = (unsigned long long)userns};
        if (syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH, &attr, sizeof attr) < 0) die("idmap %s", argv[i]);
        if (syscall(SYS_move_mount, tree, "", AT_FDCWD, argv[i + 1], MOVE_MOUNT_F_EMPTY_PATH) < 0) die("mount at %s", argv[i + 1]);
        close(tree);
    }
    return 0;
}
