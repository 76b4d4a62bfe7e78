/*
 * Command-line parsing for `paddock-sandbox launch`. Everything here is validated strictly and
 * fails closed (exit 125): option values end up in overlay/tmpfs mount option strings and in
 * uid_map files, where a stray ',' or ':' would silently change their meaning.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>

#include "common.h"
#include "launch.h"

static const char *need(int argc, char **argv, int *i, const char *opt) {
    if (*i + 1 >= argc) die_plain("option %s needs a value", opt);
    return argv[++*i];
}

/* Characters that are syntax in overlayfs' option string (and ".." which could escape DIR). */
static void check_overlay_path(const char *opt, const char *v, int want_abs) {
    if (*v == '\0') die_plain("%s: empty path", opt);
    if (want_abs && v[0] != '/') die_plain("%s %s: must be an absolute path", opt, v);
    if (!want_abs && v[0] == '/') die_plain("%s %s: must be relative to --layers-dir", opt, v);
    if (strpbrk(v, ",:\\\n") != NULL) die_plain("%s %s: ',', ':', '\\' and newlines are not allowed", opt, v);
    if (!want_abs && (strcmp(v, "..") == 0 || strncmp(v, "../", 3) == 0 || strstr(v, "/../") != NULL ||
                      (strlen(v) >= 3 && strcmp(v + strlen(v) - 3, "/..") == 0)))
        die_plain("%s %s: '..' is not allowed", opt, v);
}

/* Paths inside the sandbox: absolute, no "..". They are resolved with RESOLVE_IN_ROOT anyway;
 * refusing ".." keeps the intent obvious and the mount table predictable. */
static void check_inside_path(const char *opt, const char *v) {
    if (v[0] != '/') die_plain("%s %s: must be an absolute path inside the sandbox", opt, v);
    if (v[strspn(v, "/")] == '\0') die_plain("%s %s: cannot target the sandbox's root itself", opt, v);
    for (const char *p = v; (p = strstr(p, "..")) != NULL; p += 2) {
        int start = p == v || p[-1] == '/';
        int end = p[2] == '\0' || p[2] == '/';
        if (start && end) die_plain("%s %s: '..' is not allowed", opt, v);
    }
}

static void parse_map(const char *opt, const char *v, struct id_map *m) {
    char a[24], b[24], c[24], extra;
    if (sscanf(v, "%23s %23s %23s %c", a, b, c, &extra) != 3 || parse_ulong(a, 0xffffffffUL, &m->inside) ||
        parse_ulong(b, 0xffffffffUL, &m->outside) || parse_ulong(c, 0xffffffffUL, &m->count) || m->count == 0)
        die_plain("%s %s: expected \"INSIDE OUTSIDE COUNT\"", opt, v);
    /* Fail closed: the sandbox must never map to host uid/gid 0, whatever the caller asks. */
    if (m->outside == 0) die_plain("%s %s: mapping to host id 0 is not allowed", opt, v);
    if (m->outside + m->count > 0x100000000UL || m->inside + m->count > 0x100000000UL)
        die_plain("%s %s: range overflows 32 bits", opt, v);
}

static void check_size(const char *opt, const char *v) {
    size_t n = strspn(v, "0123456789");
    if (n == 0 || n > 12 || (v[n] != '\0' && (strchr("kmgKMG%", v[n]) == NULL || v[n + 1] != '\0')))
        die_plain("%s size %s: expected a number with an optional k/m/g/%% suffix", opt, v);
}

void parse_launch_opts(int argc, char **argv, struct launch_opts *o) {
    memset(o, 0, sizeof *o);
    size_t cap = (size_t)argc + 1;
    o->lowers = calloc(cap, sizeof *o->lowers);
    o->lower_abs = calloc(cap, sizeof *o->lower_abs);
    o->cgroups = calloc(cap, sizeof *o->cgroups);
    o->work_cgroups = calloc(cap, sizeof *o->work_cgroups);
    o->masks = calloc(cap, sizeof *o->masks);
    o->binds = calloc(cap, sizeof *o->binds);
    o->tmpfs = calloc(cap, sizeof *o->tmpfs);
    if (!o->lowers || !o->lower_abs || !o->cgroups || !o->work_cgroups || !o->masks || !o->binds || !o->tmpfs) die("calloc");
    o->uid_map = (struct id_map){0, 100000, 65536};
    o->gid_map = (struct id_map){0, 100000, 65536};
    o->ready_fd = -1;
    o->caps = CAPS_SESSION;
    o->hostname = "paddock";
    int have_user = 0;

    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--layers-dir") == 0) {
            o->layers_dir = need(argc, argv, &i, a);
            if (o->layers_dir[0] != '/') die_plain("--layers-dir must be absolute");
        } else if (strcmp(a, "--lower") == 0) {
            const char *v = need(argc, argv, &i, a);
            check_overlay_path(a, v, 0);
            o->lowers[o->n_lowers++] = v;
        } else if (strcmp(a, "--lower-abs") == 0) {
            const char *v = need(argc, argv, &i, a);
            check_overlay_path(a, v, 1);
            o->lower_abs[o->n_lower_abs++] = v;
        } else if (strcmp(a, "--upper") == 0) {
            o->upper = need(argc, argv, &i, a);
            check_overlay_path(a, o->upper, 1);
        } else if (strcmp(a, "--work") == 0) {
            o->work = need(argc, argv, &i, a);
            check_overlay_path(a, o->work, 1);
        } else if (strcmp(a, "--rootfs") == 0) {
            o->rootfs = need(argc, argv, &i, a);
            if (o->rootfs[0] != '/') die_plain("--rootfs must be absolute");
        } else if (strcmp(a, "--hostname") == 0) {
            o->hostname = need(argc, argv, &i, a);
            if (strlen(o->hostname) == 0 || strlen(o->hostname) > 64) die_plain("--hostname: 1 to 64 characters");
        } else if (strcmp(a, "--user") == 0) {
            const char *v = need(argc, argv, &i, a);
            if (parse_user(v, &o->uid, &o->gid)) die_plain("--user %s: expected UID:GID", v);
            have_user = 1;
        } else if (strcmp(a, "--uid-map") == 0) {
            parse_map(a, need(argc, argv, &i, a), &o->uid_map);
        } else if (strcmp(a, "--gid-map") == 0) {
            parse_map(a, need(argc, argv, &i, a), &o->gid_map);
        } else if (strcmp(a, "--cgroup") == 0) {
            o->cgroups[o->n_cgroups++] = need(argc, argv, &i, a);
        } else if (strcmp(a, "--work-cgroup") == 0) {
            if (o->n_work_cgroups >= MAX_WORK_CGROUPS) die_plain("--work-cgroup: at most %d", MAX_WORK_CGROUPS);
            o->work_cgroups[o->n_work_cgroups++] = need(argc, argv, &i, a);
        } else if (strcmp(a, "--mask") == 0) {
            const char *v = need(argc, argv, &i, a);
            check_inside_path(a, v);
            o->masks[o->n_masks++] = v;
        } else if (strcmp(a, "--bind") == 0 || strcmp(a, "--ro-bind") == 0) {
            struct bind_spec *b = &o->binds[o->n_binds++];
            b->src = need(argc, argv, &i, a);
            b->dst = need(argc, argv, &i, a);
            b->ro = a[2] == 'r';
            if (b->src[0] != '/') die_plain("%s %s: source must be an absolute host path", a, b->src);
            check_inside_path(a, b->dst);
        } else if (strcmp(a, "--tmpfs") == 0) {
            struct tmpfs_spec *t = &o->tmpfs[o->n_tmpfs++];
            t->dst = need(argc, argv, &i, a);
            t->size = need(argc, argv, &i, a);
            check_inside_path(a, t->dst);
            check_size(a, t->size);
        } else if (strcmp(a, "--netns") == 0) {
            o->netns = need(argc, argv, &i, a);
        } else if (strcmp(a, "--listen") == 0) {
            o->listen = need(argc, argv, &i, a);
        } else if (strcmp(a, "--ready-fd") == 0) {
            const char *v = need(argc, argv, &i, a);
            unsigned long fd;
            if (parse_ulong(v, 1 << 20, &fd) || fd < 3) die_plain("--ready-fd %s: expected a descriptor >= 3", v);
            if (fcntl((int)fd, F_GETFD) < 0) die("--ready-fd %s", v);
            o->ready_fd = (int)fd;
        } else if (strcmp(a, "--guard") == 0) {
            o->guard_file = need(argc, argv, &i, a);
            if (o->guard_file[0] != '/') die_plain("--guard must be an absolute path");
        } else if (strcmp(a, "--guard-log") == 0) {
            o->guard_log = need(argc, argv, &i, a);
            if (o->guard_log[0] != '/') die_plain("--guard-log must be an absolute path");
        } else if (strcmp(a, "--services") == 0) {
            o->services_file = need(argc, argv, &i, a);
            if (o->services_file[0] != '/') die_plain("--services must be an absolute path");
        } else if (strcmp(a, "--caps") == 0) {
            const char *v = need(argc, argv, &i, a);
            if (strcmp(v, "session") == 0) o->caps = CAPS_SESSION;
            else if (strcmp(v, "build") == 0) o->caps = CAPS_BUILD;
            else die_plain("--caps %s: expected build or session", v);
        } else {
            die_plain("unknown option %s", a);
        }
    }
    if (o->rootfs == NULL) die_plain("--rootfs is required");
    if (o->listen == NULL) die_plain("--listen is required");
    /* No implicit identity: the caller must say who commands run as. */
    if (!have_user) die_plain("--user is required");
    if (o->n_lowers + o->n_lower_abs == 0) die_plain("at least one --lower or --lower-abs is required");
    if (o->n_lowers > 0 && o->layers_dir == NULL) die_plain("--lower needs --layers-dir");
    if ((o->upper == NULL) != (o->work == NULL)) die_plain("--upper and --work go together");
    /* A guard whose denials go unrecorded, or a log without a guard, is a caller bug. */
    if ((o->guard_file == NULL) != (o->guard_log == NULL)) die_plain("--guard and --guard-log go together");
    if (o->upper == NULL && o->n_lowers + o->n_lower_abs < 2)
        die_plain("a read-only root (no --upper) needs at least two lower dirs (an overlayfs rule)");
    /* The agent becomes root (id 0) of its user namespace, so 0 must be mapped (to a non-zero host id). */
    if (o->uid_map.inside != 0 || o->gid_map.inside != 0) die_plain("--uid-map/--gid-map must start at inside id 0");
    if (o->uid > o->uid_map.inside + o->uid_map.count - 1 || o->uid < o->uid_map.inside ||
        o->gid > o->gid_map.inside + o->gid_map.count - 1 || o->gid < o->gid_map.inside)
        die_plain("--user %lu:%lu is not mapped by --uid-map/--gid-map", (unsigned long)o->uid, (unsigned long)o->gid);
}
