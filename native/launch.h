/* Launch mode: options and the steps that build a sandbox. */
#ifndef PADDOCK_LAUNCH_H
#define PADDOCK_LAUNCH_H

#include <sys/types.h>

struct bind_spec {
    const char *src; /* host path */
    const char *dst; /* path inside the rootfs */
    int ro;
};

struct tmpfs_spec {
    const char *dst;
    const char *size; /* validated: digits + optional k/m/g/% */
};

struct id_map {
    unsigned long inside, outside, count;
};

enum caps_mode { CAPS_SESSION, CAPS_BUILD };

struct launch_opts {
    const char *layers_dir;
    const char **lowers; /* topmost first, relative to layers_dir */
    size_t n_lowers;
    const char **lower_abs; /* below all lowers, absolute */
    size_t n_lower_abs;
    const char *upper, *work, *rootfs, *hostname, *netns, *listen;
    uid_t uid;
    gid_t gid;
    struct id_map uid_map, gid_map;
    const char **cgroups;
    size_t n_cgroups;
    /* Where the agent moves every command it starts (--work-cgroup): the user's processes live
     * apart from the agent's, so a full pid limit never stops the agent serving or a kill. */
    const char **work_cgroups;
    size_t n_work_cgroups;
    const char **masks;
    size_t n_masks;
    struct bind_spec *binds;
    size_t n_binds;
    struct tmpfs_spec *tmpfs;
    size_t n_tmpfs;
    int ready_fd; /* -1 when absent */
    const char *guard_file, *guard_log; /* --guard/--guard-log (together or not at all) */
    const char *services_file;          /* --services: the agent starts and supervises these */
    enum caps_mode caps;
};

/* launch_opts.c: parse argv (after "launch"); exits 125 with a message on any problem. */
void parse_launch_opts(int argc, char **argv, struct launch_opts *o);

/* mounts.c: in the child's fresh mount namespace, build the rootfs and pivot_root into it. */
void setup_rootfs(const struct launch_opts *o);

/* restrict.c: capability bounding set + capsets, then no_new_privs + the seccomp filter. */
void restrict_caps(enum caps_mode mode);
void load_seccomp(void);

#endif
