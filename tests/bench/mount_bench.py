#!/usr/bin/env python3
"""Reads through an artifs mount against the same data read natively.

Builds a fixed synthetic data set (seeded): one large file and many small
files in 100 directories, commits it, mounts the store and measures, for the
mount and for the native directory:

  large     sequential read of the large file (GB/s)
  small     every small file read by two processes (files/s)
  stat      lstat() of every file (ops/s)
  find      find(1) over the tree (s)

in three states:

  cold      page cache dropped (echo 3 > /proc/sys/vm/drop_caches) and the
            daemon freshly started, before each case; native alike
  first     the store's pages in memory (just committed), fresh daemon,
            nothing read through this mount yet (native: warm)
  warm      read again

and the daemon's peak RSS.  Needs root (drop_caches, FUSE).  Prints a
markdown table; ratios are artifs / native for rates, native / artifs for
times, so > 1 means artifs is faster.

The same cases also run against fuse_ceiling.c, a FUSE file system with the
same tree serving its bytes from one buffer in memory and mounted with the
same options: what the kernel's FUSE path allows any daemon on this machine.
A second table puts artifs against it, which separates artifs's own cost
from the kernel's (order-0 page-cache pages, a copy into them) and the
machine's.

usage: mount_bench.py --artifs build/cli/artifs [--quick] [--repeat N] [--workdir DIR] [--keep]
                      [--ceiling PATH | --no-ceiling]
"""

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time

BUF = 1 << 20


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def gen_data(root, large_mib, nsmall, small_kib, seed):
    rng = random.Random(seed)
    os.makedirs(os.path.join(root, "small"), exist_ok=True)
    with open(os.path.join(root, "large.bin"), "wb") as f:
        for _ in range(large_mib):
            f.write(rng.randbytes(1 << 20))
    files = []
    for i in range(nsmall):
        d = os.path.join(root, "small", "d%03d" % (i % 100))
        if i < 100:
            os.makedirs(d, exist_ok=True)
        p = os.path.join(d, "f%06d.bin" % i)
        with open(p, "wb") as f:
            f.write(rng.randbytes(small_kib << 10))
        files.append(os.path.relpath(p, root))
    files.sort()
    return files


def drop_caches():
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def mounted(mp):
    real = os.path.realpath(mp)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4] == real:
                return True
    return False


def wait_mounted(proc, mp, what):
    """Wait until mp is a mount point; fail if proc exits or 20 s pass."""
    t0 = time.monotonic()
    while not mounted(mp):
        if proc.poll() is not None or time.monotonic() - t0 > 20:
            raise RuntimeError("%s did not mount" % what)
        time.sleep(0.01)


def unmount(proc, mp):
    """Unmount mp and reap its daemon, killing it (and lazily unmounting) after 20 s."""
    subprocess.run(["fusermount3", "-u", mp], check=False)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        subprocess.run(["fusermount3", "-uz", mp], check=False)


class Mount:
    def __init__(self, artifs, store, mp, logfile):
        self.artifs, self.store, self.mp, self.logfile = artifs, store, mp, logfile
        self.proc = None
        self.peak_kib = 0       # VmHWM: includes the store's mapped file pages
        self.peak_anon_kib = 0  # RssAnon, sampled: the daemon's own memory
        self._sampler = None

    def start(self):
        self.proc = subprocess.Popen(
            [self.artifs, "--store", self.store, "mount", self.mp, "--foreground",
             "--log", self.logfile],
            stdin=subprocess.DEVNULL)
        wait_mounted(self.proc, self.mp, "artifs (see %s)" % self.logfile)
        self._stop_sampling = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def _status(self, key):
        try:
            with open("/proc/%d/status" % self.proc.pid) as f:
                for line in f:
                    if line.startswith(key):
                        return int(line.split()[1])
        except OSError:
            pass
        return 0

    def _sample(self):
        while not self._stop_sampling.wait(0.05):
            self.peak_anon_kib = max(self.peak_anon_kib, self._status("RssAnon:"))

    def stop(self):
        if not self.proc:
            return
        self._stop_sampling.set()
        self._sampler.join()
        self.peak_kib = max(self.peak_kib, self._status("VmHWM:"))
        self.peak_anon_kib = max(self.peak_anon_kib, self._status("RssAnon:"))
        unmount(self.proc, self.mp)
        self.proc = None


class Ceiling:
    """fuse_ceiling mounted on its own mount point."""

    def __init__(self, binary, mp, large_bytes, nsmall, small_bytes):
        self.binary, self.mp = binary, mp
        self.root = os.path.join(mp, "datasets", "bench", "main")   # as deep as artifs
        self.argv = [binary, mp, str(large_bytes), str(nsmall), str(small_bytes), "2048"]
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL)
        wait_mounted(self.proc, self.mp, "fuse_ceiling")

    def stop(self):
        if self.proc:
            unmount(self.proc, self.mp)
        self.proc = None


def build_ceiling(work):
    """Compile fuse_ceiling.c next to this script; None (and why) if it cannot be."""
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fuse_ceiling.c")
    out = os.path.join(work, "fuse_ceiling")
    try:
        flags = subprocess.run(["pkg-config", "--cflags", "--libs", "fuse3"], check=True,
                               capture_output=True, text=True).stdout.split()
        subprocess.run(["cc", "-O2", "-o", out, src] + flags, check=True,
                       capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as e:
        log("fuse_ceiling not built: %s" % getattr(e, "stderr", e))
        return None
    return out


def read_file(path, buf):
    n = 0
    fd = os.open(path, os.O_RDONLY)
    try:
        while True:
            k = os.readv(fd, [buf])
            if k <= 0:
                break
            n += k
    finally:
        os.close(fd)
    return n


def case_large(root):
    buf = bytearray(BUF)
    t0 = time.perf_counter()
    n = read_file(os.path.join(root, "large.bin"), buf)
    dt = time.perf_counter() - t0
    return n / dt / 1e9


def case_small(root, files, nproc=2):
    parts = [files[i::nproc] for i in range(nproc)]
    t0 = time.perf_counter()
    pids = []
    for part in parts:
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                buf = bytearray(BUF)
                for rel in part:
                    read_file(os.path.join(root, rel), buf)
            except BaseException as e:  # report, never hang the parent
                print("reader failed: %r" % e, file=sys.stderr)
                code = 1
            os._exit(code)
        pids.append(pid)
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        if status:
            raise RuntimeError("a reader process failed")
    dt = time.perf_counter() - t0
    return len(files) / dt


def case_stat(root, files):
    t0 = time.perf_counter()
    for rel in files:
        os.lstat(os.path.join(root, rel))
    dt = time.perf_counter() - t0
    return len(files) / dt


def case_find(root):
    t0 = time.perf_counter()
    subprocess.run(["find", root], stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t0


def run_case(name, root, files):
    if name == "large":
        return case_large(root)
    if name == "small":
        return case_small(root, files)
    if name == "stat":
        return case_stat(root, files)
    return case_find(root)


UNITS = {"large": "GB/s", "small": "files/s", "stat": "ops/s", "find": "s"}
CASES = ["large", "small", "stat", "find"]


def fmt(v, unit):
    if unit == "GB/s":
        return "%.2f" % v
    if unit == "s":
        return "%.3f" % v
    return "%.0f" % v


def ratio(name, artifs, native):
    if name == "find":
        return native / artifs
    return artifs / native


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--artifs", required=True, help="the artifs binary")
    ap.add_argument("--quick", action="store_true", help="256 MiB + 5,000 files")
    ap.add_argument("--workdir", help="where to put data and store (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--seed", type=int, default=20261128)
    ap.add_argument("--repeat", type=int, default=3,
                    help="runs per case and state; the best is reported (default 3)")
    ap.add_argument("--ceiling", help="a built fuse_ceiling (default: compile fuse_ceiling.c)")
    ap.add_argument("--no-ceiling", action="store_true", help="skip the FUSE ceiling")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("mount_bench.py: needs root (drop_caches)")

    large_mib, nsmall = (256, 5000) if args.quick else (2048, 50000)
    work = args.workdir or tempfile.mkdtemp(prefix="artifs-bench-")
    os.makedirs(work, exist_ok=True)
    data, store, mp = (os.path.join(work, x) for x in ("data", "store", "mnt"))
    logfile = os.path.join(work, "daemon.log")
    os.makedirs(mp, exist_ok=True)
    artifs = os.path.abspath(args.artifs)
    m = Mount(artifs, store, mp, logfile)
    ceil = None
    try:
        if not args.no_ceiling:
            binary = os.path.abspath(args.ceiling) if args.ceiling else build_ceiling(work)
            if binary:
                cmp_ = os.path.join(work, "ceiling")
                os.makedirs(cmp_, exist_ok=True)
                ceil = Ceiling(binary, cmp_, large_mib << 20, nsmall, 100 << 10)
        log("generating %d MiB file and %d files of 100 KiB ..." % (large_mib, nsmall))
        shutil.rmtree(data, ignore_errors=True)
        shutil.rmtree(store, ignore_errors=True)
        files = gen_data(data, large_mib, nsmall, 100, args.seed)
        env = dict(os.environ, ARTIFS_STORE=store)
        subprocess.run([artifs, "init"], env=env, check=True, stdout=subprocess.DEVNULL)
        subprocess.run([artifs, "create", "dataset", "bench"], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        t0 = time.perf_counter()
        subprocess.run([artifs, "commit", "datasets/bench", data, "-m", "bench"], env=env,
                       check=True, stdout=subprocess.DEVNULL)
        log("commit: %.2f s" % (time.perf_counter() - t0))
        mroot = os.path.join(mp, "datasets", "bench", "main")
        res = {}
        runs = {}   # every run, for the spread printed after the table

        reps = args.repeat

        def best(c, vals):
            return min(vals) if c == "find" else max(vals)

        def keep(c, who, state, vals):
            runs[(c, who, state)] = list(vals)
            res[(c, who, state)] = best(c, vals)

        # first read through a fresh daemon, store pages in memory; then warm
        for c in CASES:
            first, warm, nat, cfirst, cwarm = [], [], [], [], []
            for _ in range(reps):
                m.start()
                first.append(run_case(c, mroot, files))
                warm.append(run_case(c, mroot, files))
                warm.append(run_case(c, mroot, files))
                m.stop()
                nat.append(run_case(c, data, files))
                nat.append(run_case(c, data, files))
                if ceil:
                    ceil.start()
                    cfirst.append(run_case(c, ceil.root, files))
                    cwarm.append(run_case(c, ceil.root, files))
                    cwarm.append(run_case(c, ceil.root, files))
                    ceil.stop()
            keep(c, "artifs", "first", first)
            keep(c, "artifs", "warm", warm)
            keep(c, "native", "warm", nat)
            if ceil:
                keep(c, "ceiling", "first", cfirst)
                keep(c, "ceiling", "warm", cwarm)
            log("%s: first %s, warm %s, native warm %s" % (
                c, fmt(res[(c, "artifs", "first")], UNITS[c]),
                fmt(res[(c, "artifs", "warm")], UNITS[c]),
                fmt(res[(c, "native", "warm")], UNITS[c])))
            if ceil:
                log("%s: ceiling first %s, warm %s" % (
                    c, fmt(res[(c, "ceiling", "first")], UNITS[c]),
                    fmt(res[(c, "ceiling", "warm")], UNITS[c])))

        # cold: caches dropped and the daemon started afresh before each run
        for c in CASES:
            cold, nat, ccold = [], [], []
            for _ in range(reps):
                drop_caches()
                nat.append(run_case(c, data, files))
                drop_caches()
                m.start()
                cold.append(run_case(c, mroot, files))
                m.stop()
                if ceil:
                    drop_caches()
                    ceil.start()
                    ccold.append(run_case(c, ceil.root, files))
                    ceil.stop()
            keep(c, "native", "cold", nat)
            keep(c, "artifs", "cold", cold)
            if ceil:
                keep(c, "ceiling", "cold", ccold)
            log("%s: cold %s, native cold %s" % (
                c, fmt(res[(c, "artifs", "cold")], UNITS[c]),
                fmt(res[(c, "native", "cold")], UNITS[c])))
            if ceil:
                log("%s: ceiling cold %s" % (c, fmt(res[(c, "ceiling", "cold")], UNITS[c])))

        print()
        print("Data: one %d MiB file; %d files of 100 KiB in 100 directories; %d cores; "
              "best of %d runs." % (large_mib, nsmall, os.cpu_count(), reps))
        print()
        print("| case | unit | native cold | artifs cold | ratio | artifs first read "
              "| native warm | artifs warm | ratio |")
        print("|---|---|---|---|---|---|---|---|---|")
        for c in CASES:
            u = UNITS[c]
            nc, ac = res[(c, "native", "cold")], res[(c, "artifs", "cold")]
            nw, aw = res[(c, "native", "warm")], res[(c, "artifs", "warm")]
            af = res[(c, "artifs", "first")]
            print("| %s | %s | %s | %s | %.2fx | %s | %s | %s | %.2fx |" % (
                c, u, fmt(nc, u), fmt(ac, u), ratio(c, ac, nc), fmt(af, u),
                fmt(nw, u), fmt(aw, u), ratio(c, aw, nw)))
        if ceil:
            print()
            print("Against the FUSE ceiling (fuse_ceiling.c: the same tree served from memory, "
                  "mounted the same way; % = artifs / ceiling):")
            print()
            print("| case | unit | ceiling cold | artifs cold | % | ceiling first | artifs first | % "
                  "| ceiling warm | artifs warm | % |")
            print("|---|---|---|---|---|---|---|---|---|---|---|")
            for c in CASES:
                u = UNITS[c]
                cells = []
                for state in ("cold", "first", "warm"):
                    cv, av = res[(c, "ceiling", state)], res[(c, "artifs", state)]
                    cells += [fmt(cv, u), fmt(av, u), "%.0f%%" % (100 * ratio(c, av, cv))]
                print("| %s | %s | %s |" % (c, u, " | ".join(cells)))
        print()
        print("Spread (worst-best over the runs; this machine varies by up to 20%):")
        print()
        for c in CASES:
            u = UNITS[c]
            cells = []
            for who, state in (("native", "cold"), ("artifs", "cold"), ("artifs", "first"),
                               ("native", "warm"), ("artifs", "warm"), ("ceiling", "cold"),
                               ("ceiling", "first"), ("ceiling", "warm")):
                if (c, who, state) not in runs:
                    continue
                v = runs[(c, who, state)]
                lo, hi = (max(v), min(v)) if c == "find" else (min(v), max(v))
                cells.append("%s %s %s-%s" % (who, state, fmt(lo, u), fmt(hi, u)))
            print("* %s (%s): %s" % (c, u, "; ".join(cells)))
        print()
        print("Daemon peak memory: %.1f MiB anonymous (its own); %.1f MiB RSS counting "
              "the store's mapped page-cache pages" % (m.peak_anon_kib / 1024.0, m.peak_kib / 1024.0))
    finally:
        m.stop()
        if ceil:
            ceil.stop()
        if not args.keep and not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
