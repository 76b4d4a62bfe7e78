/*
 * The last two walls before the agent runs: a minimal capability set (in the sandbox's own user
 * namespace, which owns nothing) and a seccomp filter for the kernel surface no sandbox needs.
 * Both are inherited by everything the agent starts and can never be lifted (no_new_privs).
 */
#include <errno.h>
#include <linux/capability.h>
#include <linux/securebits.h>
#include <sched.h>
#include <seccomp.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common.h"
#include "launch.h"

/* What the agent needs to switch to the command user and to kill commands. */
static const int session_caps[] = {CAP_SETUID, CAP_SETGID, CAP_KILL};
/* What package managers need as root. Deliberately absent: NET_RAW, MKNOD, SYS_ADMIN, SYS_PTRACE,
 * DAC_READ_SEARCH, SYS_MODULE, NET_ADMIN... */
static const int build_caps[] = {CAP_CHOWN,  CAP_DAC_OVERRIDE, CAP_FOWNER, CAP_FSETID,
                                 CAP_SETUID, CAP_SETGID,       CAP_SETFCAP, CAP_KILL,
                                 CAP_NET_BIND_SERVICE, CAP_SYS_CHROOT, CAP_AUDIT_WRITE};

void restrict_caps(enum caps_mode mode) {
    const int *keep = mode == CAPS_BUILD ? build_caps : session_caps;
    size_t n = mode == CAPS_BUILD ? sizeof build_caps / sizeof *build_caps : sizeof session_caps / sizeof *session_caps;
    uint64_t mask = 0;
    for (size_t i = 0; i < n; i++) mask |= 1ULL << keep[i];

    for (int cap = 0; cap < 64; cap++) {
        if (prctl(PR_CAPBSET_READ, cap, 0, 0, 0) < 0) break; /* past the kernel's last cap */
        if (!(mask & (1ULL << cap)) && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) die("drop capability %d", cap);
    }
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0) die("clear ambient capabilities");
    /* Nothing in a sandbox uses ambient capabilities; lock them off for good. */
    if (prctl(PR_SET_SECUREBITS, SECBIT_NO_CAP_AMBIENT_RAISE | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED, 0, 0, 0) < 0)
        die("set securebits");

    struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct data[2] = {{0}};
    data[0].effective = data[0].permitted = (uint32_t)mask;
    data[1].effective = data[1].permitted = (uint32_t)(mask >> 32);
    /* Inheritable stays empty: it survives setuid() to the command user, and nothing needs to pass
     * capabilities through exec (root in build mode regains the bounding set on exec anyway). */
    if (syscall(SYS_capset, &hdr, data) < 0) die("capset");
}

static const char *const denied[] = {
    "mount", "umount2", "pivot_root", "chroot", "swapon", "swapoff", "reboot", "kexec_load", "kexec_file_load",
    "init_module", "finit_module", "delete_module", "ptrace", "process_vm_readv", "process_vm_writev", "add_key",
    "request_key", "keyctl", "bpf", "perf_event_open", "userfaultfd", "unshare", "setns", "open_by_handle_at",
    "name_to_handle_at", "fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "open_tree", "mount_setattr",
    "quotactl", "quotactl_fd", "acct", "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "syslog",
    "iopl", "ioperm", "lookup_dcookie", "nfsservctl", "uselib", "vhangup", "io_uring_setup", "io_uring_enter",
    "io_uring_register", "kcmp", "pidfd_getfd", "sethostname", "setdomainname",
};

static scmp_filter_ctx g_ctx;

static void add(uint32_t action, const char *name, unsigned int n, const struct scmp_arg_cmp *cmp) {
    int nr = seccomp_syscall_resolve_name(name);
    /* Fail closed: a filter that silently lacks a listed syscall would allow it. */
    if (nr == __NR_SCMP_ERROR) die_plain("seccomp: libseccomp does not know syscall %s", name);
    int rc = seccomp_rule_add_array(g_ctx, action, nr, n, cmp);
    if (rc < 0) {
        errno = -rc;
        die("seccomp rule for %s", name);
    }
}

/* EPERM for 32-bit values of arg 0 in [lo, hi]: libseccomp compares each argument once per rule,
 * so split the range into aligned power-of-two blocks, one masked-equality rule each. */
static void deny_a0_range(const char *name, uint32_t lo, uint32_t hi) {
    uint64_t v = lo;
    while (v <= hi) {
        uint64_t size = 1;
        while ((v & (size * 2 - 1)) == 0 && v + size * 2 - 1 <= hi && size < (1ULL << 32)) size *= 2;
        struct scmp_arg_cmp c = SCMP_A0_32(SCMP_CMP_MASKED_EQ, (uint32_t)~(size - 1), (uint32_t)v);
        add(SCMP_ACT_ERRNO(EPERM), name, 1, &c);
        v += size;
    }
}

void load_seccomp(void) {
    g_ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (g_ctx == NULL) die_plain("seccomp_init failed");
    /* Only the native ABI: i386 (int 0x80) and x32 syscalls kill the process, since the rules
     * below are written for x86_64 syscall numbers and would not match theirs. */
    if (seccomp_attr_set(g_ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS) < 0 ||
        seccomp_attr_set(g_ctx, SCMP_FLTATR_CTL_NNP, 1) < 0)
        die_plain("seccomp attributes");
    for (size_t i = 0; i < sizeof denied / sizeof *denied; i++) add(SCMP_ACT_ERRNO(EPERM), denied[i], 0, NULL);

    /* personality: allow only 0 (PER_LINUX), 8 (PER_LINUX32) and 0xffffffff (query). Others can
     * turn off ASLR (ADDR_NO_RANDOMIZE) or change how the kernel reads later syscalls. */
    deny_a0_range("personality", 1, 7);
    deny_a0_range("personality", 9, 0xfffffffe);

    /* clone with any namespace flag; clone3 hides its flags in memory seccomp cannot read, so it
     * gets ENOSYS and libc falls back to clone, which is checked here. */
    static const uint64_t ns_flags[] = {CLONE_NEWUSER, CLONE_NEWNS,  CLONE_NEWPID,    CLONE_NEWNET,
                                        CLONE_NEWIPC,  CLONE_NEWUTS, CLONE_NEWCGROUP, 0x00000080 /* NEWTIME */};
    for (size_t i = 0; i < sizeof ns_flags / sizeof *ns_flags; i++) {
        struct scmp_arg_cmp c = SCMP_A0_64(SCMP_CMP_MASKED_EQ, ns_flags[i], ns_flags[i]);
        add(SCMP_ACT_ERRNO(EPERM), "clone", 1, &c);
    }
    add(SCMP_ACT_ERRNO(ENOSYS), "clone3", 0, NULL);

    /* Raw and packet sockets (also refused by the kernel: CAP_NET_RAW would be needed in the
     * network namespace's owner, the initial user namespace). SOCK_PACKET in AF_INET is the old
     * spelling of a packet socket. */
    struct scmp_arg_cmp pkt = SCMP_A0_32(SCMP_CMP_EQ, AF_PACKET);
    add(SCMP_ACT_ERRNO(EPERM), "socket", 1, &pkt);
    static const int inet[] = {AF_INET, AF_INET6};
    static const int bad_types[] = {SOCK_RAW, SOCK_PACKET};
    for (size_t i = 0; i < 2; i++)
        for (size_t j = 0; j < 2; j++) {
            struct scmp_arg_cmp c[2] = {SCMP_A0_32(SCMP_CMP_EQ, (uint32_t)inet[i]),
                                        SCMP_A1_32(SCMP_CMP_MASKED_EQ, 0xf, (uint32_t)bad_types[j])};
            add(SCMP_ACT_ERRNO(EPERM), "socket", 2, c);
        }

    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) die("no_new_privs");
    int rc = seccomp_load(g_ctx);
    if (rc < 0) {
        errno = -rc;
        die("seccomp_load");
    }
    seccomp_release(g_ctx);
}
