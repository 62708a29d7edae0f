#!/usr/bin/env python3
"""Archive import/export benchmark: artifs against GNU tar on ~1 GiB, one run.

usage: archive_bench.py [--artifs BIN] [--dir WORKDIR] [--size-mib N] [--keep]

Builds a seeded tree of mixed data (small, medium and large files, about a
tenth of the bytes exact copies of other files), makes data.tar of it with
GNU tar, then times each step with /usr/bin/time -v (wall, user, sys, peak
RSS):

  import   artifs commit REPO data.tar        vs  tar -xf data.tar (+ sync)
  export   artifs export REPO@main -o x.tar   vs  tar -cf of the extracted dir (+ sync)

and, for reference, artifs commit of the extracted directory (its tree id
must equal the archive's).  artifs fsyncs (the store's commit, the export's
file before its rename); the "+ sync" rows give tar the same duty.  The page
cache is warm for every contender (the data was just written).  Prints a
markdown table: MB/s of file data, ratio to the tar row, peak RSS (from
time -v, which counts the LMDB map's resident pages) and peak anonymous RSS
(sampled from /proc: the process's own memory).
"""
import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
MiB = 1 << 20


def gen_tree(root, total, seed=20261201):
    """~total bytes: 20% small (1-64 KiB), 25% medium (64 KiB-4 MiB), 45% large
    (16-96 MiB), 10% exact copies of earlier files.  Returns (files, bytes)."""
    rng = random.Random(seed)
    plan = []
    for kind, share, lo, hi in (("small", 0.20, 1 << 10, 64 << 10),
                                ("medium", 0.25, 64 << 10, 4 << 20),
                                ("large", 0.45, 16 << 20, 96 << 20)):
        left = int(total * share)
        while left > lo:
            n = min(rng.randint(lo, hi), left)
            plan.append((kind, n))
            left -= n
    rng.shuffle(plan)
    written = []
    nbytes = 0
    for i, (kind, n) in enumerate(plan):
        d = os.path.join(root, kind, "d%02d" % (i % 41), "e%d" % (i % 3))
        os.makedirs(d, exist_ok=True)
        p = os.path.join(d, "f%06d.bin" % i)
        with open(p, "wb") as f:
            left = n
            while left:
                k = min(left, MiB)
                f.write(rng.randbytes(k))
                left -= k
        written.append((p, n))
        nbytes += n
    # repeated content: copies of earlier files until 10% of the total
    dup = int(total * 0.10)
    j = 0
    while dup > 0 and written:
        src, n = written[rng.randrange(len(written))]
        if n > dup + (4 << 20):
            continue
        d = os.path.join(root, "copies", "c%02d" % (j % 13))
        os.makedirs(d, exist_ok=True)
        shutil.copyfile(src, os.path.join(d, "copy%05d.bin" % j))
        dup -= n
        nbytes += n
        j += 1
    return len(plan) + j, nbytes


def _anon_kib(pid):
    """RssAnon of pid and its descendants (heap and stacks; not the store's file map)."""
    total = 0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    total += int(line.split()[1])
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            kids = f.read().split()
    except OSError:
        return total
    return total + sum(_anon_kib(int(k)) for k in kids)


def timev(cmd, env=None, cwd=None):
    """Run cmd under /usr/bin/time -v; return (wall, user, sys, rss_kib, anon_kib, stdout).
    rss: time's "Maximum resident set size" (counts the LMDB map's resident file pages);
    anon: the peak of RssAnon sampled every 10 ms (the process's own memory)."""
    p = subprocess.Popen(["/usr/bin/time", "-v", *cmd], env=env, cwd=cwd,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    anon = 0
    out = []
    import threading
    t = threading.Thread(target=lambda: out.append(p.communicate()))
    t.start()
    while t.is_alive():
        anon = max(anon, _anon_kib(p.pid))
        t.join(0.01)
    stdout, stderr = out[0]
    err = stderr.decode(errors="replace")
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)}: exit {p.returncode}\n{err[-3000:]}")

    def field(name):
        m = re.search(r"^\s*" + re.escape(name) + r": (.*)$", err, re.M)
        return m.group(1).strip()
    wall = field("Elapsed (wall clock) time (h:mm:ss or m:ss)")
    secs = 0.0
    for part in wall.split(":"):
        secs = secs * 60 + float(part)
    return (secs, float(field("User time (seconds)")), float(field("System time (seconds)")),
            int(field("Maximum resident set size (kbytes)")), anon, stdout)


def drop_dir(path):
    shutil.rmtree(path, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--artifs", default=os.path.join(HERE, "../../build/cli/artifs"))
    ap.add_argument("--dir", default=None, help="parent of the work directory (default $TMPDIR)")
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    a = ap.parse_args()
    artifs = os.path.abspath(a.artifs)
    if not os.path.exists(artifs):
        sys.exit(f"no artifs binary at {artifs} (--artifs)")
    work = tempfile.mkdtemp(prefix="artifs-archive-bench-", dir=a.dir)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARTIFS_")}
    env.update(ARTIFS_STORE=os.path.join(work, "store"), ARTIFS_AUTHOR="bench <b@example.org>",
               LC_ALL="C.UTF-8")
    A = lambda *args: [artifs, *args]
    rows = []
    try:
        src = os.path.join(work, "src")
        nfiles, nbytes = gen_tree(src, a.size_mib * MiB)
        tarball = os.path.join(work, "data.tar")
        subprocess.run(["tar", "-cf", tarball, "-C", src, "."], check=True)
        drop_dir(src)          # the archive is the input now
        tar_size = os.path.getsize(tarball)
        print(f"# archive benchmark: {nfiles} files, {nbytes / MiB:.0f} MiB of data, "
              f"data.tar {tar_size / MiB:.0f} MiB (GNU tar)\n")
        subprocess.run(A("init"), env=env, check=True, stdout=subprocess.DEVNULL)
        for r in ("bench", "benchdir"):
            subprocess.run(A("create", "dataset", r), env=env, check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["cat", tarball], stdout=subprocess.DEVNULL, check=True)   # warm

        # import
        t = timev(A("commit", "datasets/bench", tarball, "-m", "import"), env=env)
        rows.append(("import", "artifs commit REPO data.tar", t))
        ext = os.path.join(work, "extracted")
        os.makedirs(ext)
        t = timev(["tar", "-xf", tarball, "-C", ext])
        rows.append(("import", "tar -xf data.tar", t))
        drop_dir(ext)
        os.makedirs(ext)
        t = timev(["sh", "-c", 'tar -xf "$1" -C "$2" && sync -f "$2"', "sh", tarball, ext])
        rows.append(("import", "tar -xf data.tar + sync", t))

        # reference: the directory commit, same tree
        t = timev(A("commit", "datasets/benchdir", ext, "-m", "dir"), env=env)
        rows.append(("reference", "artifs commit REPO DIR (extracted)", t))
        show = lambda r: json.loads(subprocess.run(A("show", r, "--json"), env=env, check=True,
                                                   stdout=subprocess.PIPE).stdout)["tree"]
        same_tree = show("datasets/bench") == show("datasets/benchdir")

        # export
        xt = os.path.join(work, "x.tar")
        t = timev(A("export", "datasets/bench@main", "-o", xt), env=env)
        rows.append(("export", "artifs export REPO@main -o x.tar", t))
        x_size = os.path.getsize(xt)
        os.unlink(xt)
        yt = os.path.join(work, "y.tar")
        t = timev(["tar", "-cf", yt, "-C", ext, "."])
        rows.append(("export", "tar -cf y.tar (extracted dir)", t))
        os.unlink(yt)
        t = timev(["sh", "-c", 'tar -cf "$1" -C "$2" . && sync "$1"', "sh", yt, ext])
        rows.append(("export", "tar -cf y.tar + sync", t))
        os.unlink(yt)

        base = {"import": rows[1][2][0], "export": rows[5][2][0], "reference": rows[1][2][0]}
        print("| step | command | wall s | MB/s | ratio to tar (time) | user s | sys s "
              "| peak RSS MiB | peak anon MiB |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
        for kind, what, (wall, user, sys_, rss, anon, _) in rows:
            mbs = nbytes / 1e6 / wall if wall > 0 else float("inf")
            ratio = wall / base[kind] if base[kind] > 0 else float("nan")
            print(f"| {kind} | `{what}` | {wall:.2f} | {mbs:.0f} | {ratio:.2f}x | {user:.2f} | "
                  f"{sys_:.2f} | {rss / 1024:.0f} | {anon / 1024:.0f} |")
        print(f"\nratio: the row's time over plain tar's (tar -xf for import, tar -cf for export); "
              f"MB/s: {nbytes / 1e6:.0f} MB of file data over wall time.  Peak RSS is "
              f"/usr/bin/time's (it counts the store's memory map); peak anon samples "
              f"RssAnon every 10 ms (heap, stacks).")
        print(f"archive tree == directory tree: {'yes' if same_tree else 'NO'}; "
              f"x.tar {x_size / MiB:.0f} MiB vs data.tar {tar_size / MiB:.0f} MiB")
        if not same_tree:
            return 1
    finally:
        if a.keep:
            print(f"kept {work}")
        else:
            drop_dir(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
