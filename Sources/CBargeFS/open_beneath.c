#define _GNU_SOURCE
#include "CBargeFS.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifdef __linux__
#include <linux/openat2.h>
#endif

static int open_walk(int dirfd, const char *path, int flags, unsigned int mode) {
    char buffer[PATH_MAX];
    size_t length = strlen(path);
    if (length >= sizeof buffer) { errno = ENAMETOOLONG; return -1; }
    memcpy(buffer, path, length + 1);
    int current = dirfd;
    char *part = buffer;
    for (;;) {
        while (*part == '/') part++;
        char *next = strchr(part, '/');
        if (next) {
            *next++ = '\0';
            while (*next == '/') next++;
        }
        int last = next == NULL || *next == '\0';
        if (strcmp(part, "..") == 0) {
            if (current != dirfd) close(current);
            errno = EXDEV;
            return -1;
        }
        int fd;
        if (last) {
            fd = openat(current, *part ? part : ".", flags | O_NOFOLLOW | O_CLOEXEC, mode);
        } else {
            fd = openat(current, part, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        }
        int saved = errno;
        if (current != dirfd) close(current);
        if (fd < 0) { errno = saved; return -1; }
        if (last) {
            // O_PATH with O_NOFOLLOW opens a final symbolic link itself: refuse it, as every
            // other link on the way is.
            struct stat st;
            if ((flags & O_PATH) && fstat(fd, &st) == 0 && S_ISLNK(st.st_mode)) {
                close(fd);
                errno = ELOOP;
                return -1;
            }
            return fd;
        }
        current = fd;
        part = next;
    }
}

int barge_open_beneath(int dirfd, const char *path, int flags, unsigned int mode) {
    return barge_open_beneath_links(dirfd, path, flags, mode, 1);
}

int barge_open_beneath_links(int dirfd, const char *path, int flags, unsigned int mode, int follow_links) {
#if defined(__linux__) && defined(SYS_openat2)
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = (unsigned long long)(flags | O_CLOEXEC);
    how.mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | (follow_links ? 0 : RESOLVE_NO_SYMLINKS);
    long fd;
    do {
        fd = syscall(SYS_openat2, dirfd, *path ? path : ".", &how, sizeof how);
    } while (fd < 0 && errno == EAGAIN);
    if (fd >= 0 || errno != ENOSYS) return (int)fd;
#endif
    return open_walk(dirfd, path, flags, mode);
}

int barge_o_path(void) { return O_PATH; }
int barge_o_direct(void) { return O_DIRECT; }
int barge_syncfs(int fd) { return syncfs(fd); }

int barge_punch_hole(int fd, long long offset, long long length) {
    return fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)offset, (off_t)length);
}

int barge_ofd_lock(int fd, int type, long long start, long long length, int wait) {
    struct flock lock;
    memset(&lock, 0, sizeof lock);
    lock.l_type = type == 0 ? F_RDLCK : type == 1 ? F_WRLCK : F_UNLCK;
    lock.l_whence = SEEK_SET;
    lock.l_start = (off_t)start;
    lock.l_len = (off_t)length;
    for (;;) {
        int r = fcntl(fd, wait ? F_OFD_SETLKW : F_OFD_SETLK, &lock);
        if (r == 0 || errno != EINTR) return r;
    }
}

long long barge_copy_file_range(int in, long long *in_offset, int out, long long *out_offset, long long length) {
    off_t a = (off_t)*in_offset, b = (off_t)*out_offset;
    ssize_t n = copy_file_range(in, &a, out, &b, (size_t)length, 0);
    *in_offset = a;
    *out_offset = b;
    return n;
}

#include <malloc.h>

int barge_malloc_trim(void) {
    return malloc_trim(0);
}
