/* Services: long-running processes a sandbox starts at boot and supervises (docs/sandbox.md,
 * "Services"). The spec file is written by the control plane; the launcher checks it and hands
 * the agent a descriptor of it; the agent forks the supervisor (supervise.c) before it is ready. */
#ifndef PADDOCK_SERVICES_H
#define PADDOCK_SERVICES_H

#include <stddef.h>
#include <sys/types.h>

#define SVC_MAX 32                 /* services per sandbox */
#define SVC_SPEC_MAX (1u << 20)    /* bytes of a spec file */
#define SVC_DIR "/run/paddock/services"

struct svc_spec {
    char *name, *command, *user, *cwd; /* cwd: NULL for "/" */
    char **env;                        /* KEY=VALUE */
    size_t n_env;
    int ready_port;                    /* 1..65535, or 0 when ready_command decides */
    char *ready_command;
    unsigned long ready_timeout_ms;
    char **data_dirs;
    size_t n_data_dirs;
    unsigned long restart_limit;
    size_t deps[SVC_MAX];              /* indexes of earlier services */
    size_t n_deps;
};

struct svc_set {
    struct svc_spec s[SVC_MAX];
    size_t n;
};

/* Parse and check a spec file read from FD (from offset 0). 0, or -1 with a one-line reason in
 * ERR ("line 7: ..."). Every string is malloc'd and lives as long as the process. */
int svc_load_fd(int fd, struct svc_set *out, char *err, size_t errlen);

/* Create /run/paddock/services (root-owned, 0755, no symlink anywhere on the way) and return an
 * O_PATH-less directory fd to it, or -1 with errno. Called by the agent before it is ready, so no
 * sandbox command can have planted anything there first. */
int svc_open_dir(void);

/* The supervisor: never returns. DIRFD is svc_open_dir()'s; WORK_FDS the work cgroup's
 * cgroup.procs descriptors every service joins (they count toward compute.pids). */
__attribute__((noreturn)) void svc_supervise(const struct svc_set *set, int dirfd, const int *work_fds, size_t n_work_fds);

/* Called by the agent when the supervisor died without being asked to stop: kill what the status
 * file says is running and mark those services failed, so nobody waits on a stale "ready". */
void svc_supervisor_died(int dirfd, int wstatus);

#endif
