/* A slower disk for the agent's journal only, to measure what a slow fsync costs a
 * reset (docs/operations.md, "the journal's mark from the claim on"). Each fsync and
 * fdatasync of a file whose path contains $SLOWSYNC_MATCH first sleeps $SLOWSYNC_US
 * microseconds; every other file (the relay's database, Samba's, slapd's) is untouched.
 *
 *   gcc -shared -fPIC -O2 -o /tmp/slow_fsync.so bench/slow_fsync.c -ldl
 *   LD_PRELOAD=/tmp/slow_fsync.so SLOWSYNC_MATCH=journal.sqlite3 SLOWSYNC_US=6000 \
 *       .venv/bin/python bench/trace_one.py --directory samba --portal wait
 *
 * The processes the bench starts inherit the environment. Not part of the agent. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void delay(int fd) {
    const char *match = getenv("SLOWSYNC_MATCH");
    const char *us = getenv("SLOWSYNC_US");
    if (!match || !us) return;
    char link[64], path[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n <= 0) return;
    path[n] = 0;
    if (strstr(path, match)) usleep((useconds_t)atoi(us));
}

int fsync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    delay(fd);
    return real(fd);
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    delay(fd);
    return real(fd);
}
