/*
 * Reporting a denial of the exec guard: one actionable line on the denied process's stderr, and
 * one JSON line in the guard log ({"time","pid","program","path","reason"}), which the control
 * plane reads back (Provider.guardDenials). Nothing here may block the supervisor: every exec in
 * the sandbox is waiting on it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <linux/magic.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "guard.h"

#ifndef PIDFD_THREAD
#define PIDFD_THREAD O_EXCL
#endif

/* The denied thread's stderr, taken as the very file it has open (pidfd_getfd: no path is
 * resolved and nothing is opened as root). Only pipes, sockets and character devices get the
 * line, and never with a write that could block the supervisor. */
static void tell(pid_t tid, const char *message) {
    int pidfd = (int)syscall(SYS_pidfd_open, tid, PIDFD_THREAD);
    if (pidfd < 0) pidfd = (int)syscall(SYS_pidfd_open, tid, 0);
    if (pidfd < 0) return;
    int fd = (int)syscall(SYS_pidfd_getfd, pidfd, 2, 0);
    close(pidfd);
    if (fd < 0) return;
    char line[1100];
    int len = snprintf(line, sizeof line, "%s\n", message);
    struct stat st;
    if (len > 0 && fstat(fd, &st) == 0) {
        if (S_ISSOCK(st.st_mode)) {
            (void)!send(fd, line, (size_t)len, MSG_DONTWAIT | MSG_NOSIGNAL);
        } else if (S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode)) {
            /* A new open file description of the same pipe or device, so O_NONBLOCK does not
             * change the process's own descriptor. A pipe or device raises no event of ours. */
            char self[64];
            snprintf(self, sizeof self, "/proc/self/fd/%d", fd);
            int w = open(self, O_WRONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
            if (w >= 0) {
                (void)!write(w, line, (size_t)len);
                close(w);
            }
        } else if (S_ISREG(st.st_mode)) {
            /* A tool that collects a command's output in a file (Claude Code's Bash tool does) must
             * see the reason too. Only on the local filesystems a sandbox has: a write to FUSE or
             * NFS could block the supervisor. Same open file description: it lands where the
             * process's next write would. */
            struct statfs sf;
            if (fstatfs(fd, &sf) == 0 && (sf.f_type == OVERLAYFS_SUPER_MAGIC || sf.f_type == TMPFS_MAGIC || sf.f_type == BTRFS_SUPER_MAGIC || sf.f_type == EXT4_SUPER_MAGIC))
                (void)!write(fd, line, (size_t)len);
        }
    }
    close(fd);
}

/* JSON string body: quotes, backslashes and control bytes escaped; other bytes as they are. */
static size_t json_str(char *out, size_t cap, const char *s) {
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p && n + 7 < cap; p++) {
        if (*p == '"' || *p == '\\') n += (size_t)snprintf(out + n, cap - n, "\\%c", *p);
        else if (*p < 0x20 || *p == 0x7f) n += (size_t)snprintf(out + n, cap - n, "\\u%04x", *p);
        else out[n++] = (char)*p;
    }
    out[n] = '\0';
    return n;
}

/* The pid as the sandbox sees it (last NSpid field), or the host tid if /proc says nothing. */
static long sandbox_pid(pid_t tid) {
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/%d/status", tid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof buf - 1);
    if (fd >= 0) close(fd);
    if (n <= 0) return tid;
    buf[n] = '\0';
    char *l = strstr(buf, "\nNSpid:");
    if (l == NULL) return tid;
    char *end = strchr(l + 1, '\n'), *last = NULL;
    for (char *p = l + 7; p < (end ? end : buf + n); p++)
        if ((*p == '\t' || *p == ' ') && p[1] >= '0' && p[1] <= '9') last = p + 1;
    return last ? strtol(last, NULL, 10) : tid;
}

void guard_report(struct guard *g, pid_t tid, const char *program, const char *message, const char *epath,
                  const char *ereason) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long ms = (now.tv_sec - g->last_at.tv_sec) * 1000 + (now.tv_nsec - g->last_at.tv_nsec) / 1000000;
    /* execvp-style callers retry the same name in every PATH dir: one attempt, one report. */
    if (g->last_tid == tid && g->last_program == program && ms < 1000) return;
    g->last_tid = tid, g->last_program = program, g->last_at = now;
    tell(tid, message);
    if (g->log_lines >= GUARD_LOG_MAX_LINES) return;
    g->log_lines++;
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    struct tm tm;
    gmtime_r(&wall.tv_sec, &tm);
    char when[40], prog[600], path[8200], reason[700], line[10000];
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    json_str(prog, sizeof prog, program);
    json_str(path, sizeof path, epath);
    json_str(reason, sizeof reason, ereason);
    int len = snprintf(line, sizeof line, "{\"time\":\"%s.%03ldZ\",\"pid\":%ld,\"program\":\"%s\",\"path\":\"%s\",\"reason\":\"%s\"}\n",
                       when, wall.tv_nsec / 1000000, sandbox_pid(tid), prog, path, reason);
    if (len > 0 && (size_t)len < sizeof line) (void)write_all(g->log_fd, line, (size_t)len); /* O_APPEND: one write, one line */
}
