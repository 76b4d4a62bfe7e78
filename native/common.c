/* Small helpers shared by both modes: fatal errors, strict number parsing, full reads/writes. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"

static void vreport(const char *fmt, va_list ap, int err) {
    char msg[1024];
    vsnprintf(msg, sizeof msg, fmt, ap);
    /* One write so concurrent writers to the same log never interleave a line. */
    char line[1200];
    int n = err ? snprintf(line, sizeof line, "error %s: %s\n", msg, strerror(err))
                : snprintf(line, sizeof line, "error %s\n", msg);
    if (n > 0) (void)write_all(2, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

void die(const char *fmt, ...) {
    int err = errno;
    va_list ap;
    va_start(ap, fmt);
    vreport(fmt, ap, err ? err : EIO);
    va_end(ap);
    _exit(EXIT_SETUP);
}

void die_plain(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vreport(fmt, ap, 0);
    va_end(ap);
    _exit(EXIT_SETUP);
}

int parse_ulong(const char *s, unsigned long max, unsigned long *out) {
    if (s == NULL || *s == '\0' || strlen(s) > 20) return -1;
    unsigned long v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9') return -1;
        unsigned long d = (unsigned long)(*p - '0');
        if (v > (max - d) / 10) return -1; /* would exceed max */
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

int parse_user(const char *s, uid_t *uid, gid_t *gid) {
    const char *colon = s ? strchr(s, ':') : NULL;
    if (colon == NULL || colon - s > 10) return -1;
    char ubuf[12];
    memcpy(ubuf, s, (size_t)(colon - s));
    ubuf[colon - s] = '\0';
    unsigned long u, g;
    /* 2^32-1 is the "no id" value of setresuid(2): never accept it as a real id. */
    if (parse_ulong(ubuf, 0xfffffffeUL, &u) || parse_ulong(colon + 1, 0xfffffffeUL, &g)) return -1;
    *uid = (uid_t)u;
    *gid = (gid_t)g;
    return 0;
}

int write_all(int fd, const void *buf, size_t len) {
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

ssize_t read_full(int fd, void *buf, size_t len) {
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(fd, (char *)buf + got, len - got);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (n == 0) {
            if (got == 0) return 0;
            errno = EPROTO;
            return -1;
        }
        got += (size_t)n;
    }
    return (ssize_t)got;
}

int write_file(const char *path, const char *text) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    size_t len = strlen(text);
    ssize_t n = write(fd, text, len);
    int err = errno;
    close(fd);
    if (n != (ssize_t)len) {
        errno = n < 0 ? err : EIO;
        return -1;
    }
    return 0;
}
