#ifndef CBARGE_FS_H
#define CBARGE_FS_H

/// Opens `path` relative to the directory `dirfd` so that the kernel keeps the whole resolution
/// beneath that directory: `..` and symbolic links may be followed only while they stay inside it
/// (Linux `openat2` with RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS). An escape fails with EXDEV.
/// Where `openat2` does not exist (ENOSYS: Linux before 5.6, or a seccomp filter), each component is
/// opened in turn with O_NOFOLLOW, which refuses every symbolic link on the way (ELOOP), inside the
/// root or not. Returns a descriptor, or -1 with errno set.
int barge_open_beneath(int dirfd, const char *path, int flags, unsigned int mode);

/// `barge_open_beneath`, and with `follow_links` 0 no symbolic link is followed anywhere on the
/// way, inside the root or not (RESOLVE_NO_SYMLINKS; ELOOP), as the fallback walk does anyway.
int barge_open_beneath_links(int dirfd, const char *path, int flags, unsigned int mode, int follow_links);

/// O_PATH and O_DIRECT, which glibc exports only with _GNU_SOURCE (and whose values differ
/// between architectures).
int barge_o_path(void);
int barge_o_direct(void);

/// syncfs(2): flushes the file system holding `fd` (one call makes a whole batch of files durable).
int barge_syncfs(int fd);

/// fallocate(2) with FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE: the range reads as zeros and holds
/// no blocks. Fails with EOPNOTSUPP where the file system cannot make holes.
int barge_punch_hole(int fd, long long offset, long long length);

/// An open file description lock (F_OFD_SETLK, or F_OFD_SETLKW with `wait`) on `length` bytes from
/// `start` (0: to the end and beyond): `type` 0 shared (a read lock), 1 exclusive, 2 unlock. Held by
/// the open file, not the process: two descriptors opened apart exclude each other even in one
/// process, and a close releases it. Fails with EAGAIN when held elsewhere and not `wait`; with
/// EINVAL, ENOLCK or EOPNOTSUPP where the file system keeps no such locks.
int barge_ofd_lock(int fd, int type, long long start, long long length, int wait);

/// copy_file_range(2), which glibc exports only with _GNU_SOURCE: a clone where the file system
/// shares blocks, else an in-kernel copy. Advances both offsets.
long long barge_copy_file_range(int in, long long *in_offset, int out, long long *out_offset, long long length);

/// malloc_trim(3) (glibc): gives the heap's free memory back to the system. Returns 1 when some was.
int barge_malloc_trim(void);

#endif
