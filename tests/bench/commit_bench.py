#!/usr/bin/env python3
"""Commit benchmark: artifs against the native filesystem and git, one run.

usage: commit_bench.py [--artifs BIN] [--dir WORKDIR] [--size-mib N]

Prints, for the same data on the same disk in the same run:
  1. commit of a mixed-size directory (default 1 GiB) vs `cp -a` + sync,
     in MB/s and files/s, with the ratio;
  2. a no-change re-commit of 20,000 small files vs `git add -A` on the same
     tree (both only stat the files);
  3. stored bytes after a 1 MiB insert into the middle of a 256 MiB file,
     and the time of that second commit;
  4. `artifs cat` of the 256 MiB file vs `cat` of the source file.
Caches are warm for every contender (the data was just written).
"""
import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, stdout=subprocess.PIPE, **kw).stdout


def timed(cmd, **kw):
    t = time.perf_counter()
    out = run(cmd, **kw)
    return time.perf_counter() - t, out


def best(n, fn):
    return min(fn() for _ in range(n))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--artifs", default=os.path.join(HERE, "../../build/cli/artifs"))
    ap.add_argument("--dir", default=None)
    ap.add_argument("--size-mib", type=int, default=1024)
    a = ap.parse_args()
    artifs = os.path.abspath(a.artifs)
    work = tempfile.mkdtemp(prefix="artifs-bench-", dir=a.dir)
    env = dict(os.environ, ARTIFS_STORE=os.path.join(work, "store"))
    A = lambda *args: [artifs, *args]
    try:
        run(A("init"), env=env)
        print("# artifs commit benchmark (warm page cache, same disk)")

        # 1. mixed directory
        mixed = os.path.join(work, "mixed")
        out = run([sys.executable, os.path.join(HERE, "gen_mixed.py"), mixed, str(a.size_mib)])
        nfiles, nbytes = int(out.split()[0]), int(out.split()[2])
        run(["sync"])
        run(A("create", "dataset", "mixed"), env=env)
        t_art, _ = timed(A("commit", "datasets/mixed", mixed, "-m", "bench"), env=env)
        dst = os.path.join(work, "cp")
        run(["sync"])
        t_cp, _ = timed(["sh", "-c", 'cp -a "$0" "$1" && sync', mixed, dst])
        shutil.rmtree(dst)
        print("\n## commit of %d files, %.1f MiB" % (nfiles, nbytes / 2**20))
        print("%-28s %8s %10s %10s %8s" % ("", "seconds", "MB/s", "files/s", "ratio"))
        for name, t in (("artifs commit", t_art), ("cp -a + sync (native)", t_cp)):
            print("%-28s %8.2f %10.0f %10.0f %8.2f" % (name, t, nbytes / t / 1e6, nfiles / t, t / t_cp))

        # 2. no-change re-commit of 20,000 files
        small = os.path.join(work, "small")
        rng = random.Random(2)
        for i in range(20000):
            d = os.path.join(small, "d%03d" % (i % 200))
            os.makedirs(d, exist_ok=True)
            with open(os.path.join(d, "f%05d" % i), "wb") as f:
                f.write(rng.randbytes(rng.randint(100, 8000)))
        time.sleep(1.2)  # past the racy-clean window of both tools
        run(A("create", "dataset", "small"), env=env)
        run(A("commit", "datasets/small", small, "-m", "one"), env=env)
        t_re = best(5, lambda: timed(A("commit", "datasets/small", small, "-m", "two"), env=env,
                                     stderr=subprocess.DEVNULL)[0])
        run(["git", "init", "-q", small])
        run(["git", "-C", small, "add", "-A"])
        t_git = best(5, lambda: timed(["git", "-C", small, "add", "-A"])[0])
        print("\n## no-change re-commit of 20,000 files (best of 5)")
        print("artifs commit     %.3f s" % t_re)
        print("git add -A        %.3f s   ratio artifs/git %.2f" % (t_git, t_re / t_git))

        # 3. 1 MiB insert into the middle of a 256 MiB file
        big = os.path.join(work, "big")
        os.makedirs(big)
        r3 = random.Random(3)
        data = b"".join(r3.randbytes(1 << 20) for _ in range(256))
        with open(os.path.join(big, "model.bin"), "wb") as f:
            f.write(data)
        run(A("create", "model", "big"), env=env)
        run(A("commit", "models/big", big, "-m", "v1"), env=env)
        s1 = json.loads(run(A("du", "models/big", "--json"), env=env))["stored_bytes"]
        mid = len(data) // 2
        with open(os.path.join(big, "model.bin"), "wb") as f:
            f.write(data[:mid] + random.Random(4).randbytes(1 << 20) + data[mid:])
        t_ins, _ = timed(A("commit", "models/big", big, "-m", "v2"), env=env)
        s2 = json.loads(run(A("du", "models/big", "--json"), env=env))["stored_bytes"]
        print("\n## 1 MiB inserted into the middle of a 256 MiB file")
        print("stored after v1   %.2f MiB" % (s1 / 2**20))
        print("stored after v2   %.2f MiB  (+%.2f MiB for a 1 MiB insert; a copy would add 257 MiB)"
              % (s2 / 2**20, (s2 - s1) / 2**20))
        print("commit of v2      %.2f s" % t_ins)

        # 4. reading back
        src = os.path.join(big, "model.bin")
        t_cat = best(3, lambda: timed(["sh", "-c", '"$0" cat models/big:model.bin > /dev/null', artifs],
                                      env=env)[0])
        t_ncat = best(3, lambda: timed(["sh", "-c", 'cat "$0" > /dev/null', src])[0])
        size = os.path.getsize(src)
        print("\n## read 257 MiB (best of 3)")
        print("artifs cat        %.3f s  %6.0f MB/s" % (t_cat, size / t_cat / 1e6))
        print("cat (native)      %.3f s  %6.0f MB/s  ratio %.2f" % (t_ncat, size / t_ncat / 1e6, t_cat / t_ncat))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
