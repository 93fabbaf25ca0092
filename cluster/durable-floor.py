#!/usr/bin/env python3
"""The least a durable copy costs on a disk: one process copies every file of SRC under a
temporary name in DST, runs one syncfs, renames them all, and syncs each directory once. No
network, no checks, no modes or times. A tool that syncs every file before it appears (Barge,
rsync --fsync) cannot beat this by much; one that does not sync (the rsync daemon, GridFTP) can.

    cluster/durable-floor.py SRC DST      # prints the seconds it took
"""
import os, sys, time

src, dst = sys.argv[1], sys.argv[2]
t = time.time()
names = []
for top, dirs, files in os.walk(src):
    dirs.sort()
    out = os.path.join(dst, os.path.relpath(top, src))
    os.makedirs(out, exist_ok=True)
    for f in sorted(files):
        with open(os.path.join(top, f), "rb") as i, open(os.path.join(out, f".{f}.tmp"), "wb") as o:
            while block := i.read(8 << 20):
                o.write(block)
        names.append((out, f))
fd = os.open(dst, os.O_RDONLY)
os.syncfs(fd) if hasattr(os, "syncfs") else os.sync()
for out, f in names:
    os.rename(os.path.join(out, f".{f}.tmp"), os.path.join(out, f))
for out in sorted({out for out, _ in names}):
    dfd = os.open(out, os.O_RDONLY)
    os.fsync(dfd)
    os.close(dfd)
os.fsync(fd)
os.close(fd)
print(time.time() - t)
