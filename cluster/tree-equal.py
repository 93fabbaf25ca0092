#!/usr/bin/env python3
"""Checks that DST holds what SRC holds: the same directories and files, with the same bytes,
modes and mtimes (to the nanosecond), nothing more, and no `.barge-partial` name left behind.
Barge's own state under a root (`.barge/` directories and `.barge-state` markers) is ignored.

    cluster/tree-equal.py SRC DST        # prints what differs; exit status 1 if anything does
"""
import hashlib, os, stat, sys

IGNORED = {".barge", ".barge-state"}


def walk(root):
    """Every entry under root by its path relative to root, as (kind, mode, mtime_ns, digest)."""
    entries = {}
    for top, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in IGNORED]
        for name in dirs + [f for f in files if f not in IGNORED]:
            path = os.path.join(top, name)
            rel = os.path.relpath(path, root)
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                entries[rel] = ("vanished", None, None, None)  # something still writes into the tree
                continue
            if stat.S_ISDIR(st.st_mode):
                entries[rel] = ("dir", stat.S_IMODE(st.st_mode), None, None)
            elif stat.S_ISREG(st.st_mode):
                h = hashlib.sha256()
                with open(path, "rb") as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        h.update(block)
                entries[rel] = ("file", stat.S_IMODE(st.st_mode), st.st_mtime_ns, h.hexdigest())
            else:
                entries[rel] = ("other", stat.S_IMODE(st.st_mode), None, None)
            if entries[rel][0] == "file" and os.lstat(path).st_ino != st.st_ino:
                entries[rel] = ("vanished", None, None, None)
    return entries


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    src, dst = walk(sys.argv[1]), walk(sys.argv[2])
    problems = []
    for rel, (kind, mode, mtime, digest) in sorted(src.items()):
        if kind == "other":
            continue  # symbolic links and specials are not transferred
        got = dst.get(rel)
        if got is None:
            problems.append(f"missing: {rel!r}")
        elif got[0] != kind:
            problems.append(f"{rel!r}: a {got[0]} where the source has a {kind}")
        elif kind == "file" and got[3] != digest:
            problems.append(f"{rel!r}: different bytes")
        elif got[1] != mode:
            problems.append(f"{rel!r}: mode {got[1]:o}, source {mode:o}")
        elif kind == "file" and got[2] != mtime:
            problems.append(f"{rel!r}: mtime {got[2]}, source {mtime}")
    for rel in sorted(r for r, e in dst.items() if e[0] == "vanished"):
        problems.append(f"changed while it was checked (something still writes into the tree): {rel!r}")
    for rel in sorted(r for r in set(dst) - set(src) if dst[r][0] != "vanished"):
        problems.append(("partial copy left: " if rel.endswith(".barge-partial") else "extra: ") + repr(rel))
    for p in problems[:20]:
        print(p)
    if len(problems) > 20:
        print(f"… and {len(problems) - 20} more")
    files = sum(1 for e in src.values() if e[0] == "file")
    print(f"{'DIFFERENT' if problems else 'identical'}: {files} files, {len(problems)} problems")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
