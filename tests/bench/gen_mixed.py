#!/usr/bin/env python3
"""Generate a deterministic directory of mixed file sizes for benchmarks.

usage: gen_mixed.py DIR TOTAL_MIB [--small N]

About a quarter of the bytes go to small files (1-64 KiB), a quarter to
medium files (64 KiB-4 MiB) and half to large files (16-128 MiB); names are
spread over nested directories.  Content is pseudo-random (incompressible,
no accidental dedupe) from a fixed seed, so every run sees the same bytes.
"""
import os
import random
import sys


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    root, total = sys.argv[1], int(sys.argv[2]) << 20
    rng = random.Random(20261125)
    plan = []
    budget = {"small": total // 4, "medium": total // 4, "large": total // 2}
    ranges = {"small": (1 << 10, 64 << 10), "medium": (64 << 10, 4 << 20),
              "large": (16 << 20, 128 << 20)}
    for kind, left in budget.items():
        lo, hi = ranges[kind]
        while left > lo:
            n = min(rng.randint(lo, hi), left)
            plan.append((kind, n))
            left -= n
    os.makedirs(root, exist_ok=True)
    for i, (kind, n) in enumerate(plan):
        d = os.path.join(root, kind, "d%03d" % (i % 97))
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "f%06d.bin" % i), "wb") as f:
            left = n
            while left:
                k = min(left, 1 << 20)
                f.write(rng.randbytes(k))
                left -= k
    print("%d files, %d bytes" % (len(plan), sum(n for _, n in plan)))


if __name__ == "__main__":
    main()
