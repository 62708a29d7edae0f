#!/usr/bin/python3
"""Remotes: push, clone and lazy-mount throughput and request counts.

For a file:// remote and a local S3 server (s3rver, as in the tests), on
seeded data (N small files of 100 KiB in 100 directories and one large
file): push time and requests, clone (full pull) time and requests, the
first read of every file through `mount --remote` (nothing local) against
a clone followed by reading a local mount, and a re-push with nothing new.
Needs root (mounts).  Prints a markdown table.

    tests/bench/remote_bench.py --artifs build/cli/artifs [--quick]
"""

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "integration"))
import s3server  # noqa: E402

MiB = 1 << 20


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def gen(root, nsmall, large_mib, seed):
    root.mkdir(parents=True)
    for i in range(nsmall):
        d = root / "small" / f"d{i % 100:02d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:05d}.bin").write_bytes(hashlib.shake_256(b"%d-%d" % (seed, i)).digest(100 * 1024))
    with open(root / "large.bin", "wb") as f:
        for k in range(large_mib):
            f.write(hashlib.shake_256(b"L%d-%d" % (seed, k)).digest(MiB))
    return nsmall * 100 * 1024 + large_mib * MiB


def artifs(binary, store, *args, env, check=True):
    t0 = time.perf_counter()
    p = subprocess.run([binary, "--store", str(store), *map(str, args)], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    dt = time.perf_counter() - t0
    if check and p.returncode:
        sys.exit(f"artifs {' '.join(map(str, args))}: {p.stderr.decode()}")
    return dt, p.stderr.decode()


def requests_of(stderr):
    m = re.search(r"(\d+) requests", stderr)
    return int(m.group(1)) if m else -1


def drop_caches():
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3")


def read_all(root):
    n = 0
    for dp, _, fs in os.walk(root):
        for name in fs:
            with open(os.path.join(dp, name), "rb") as f:
                while True:
                    b = f.read(MiB)
                    if not b:
                        break
                    n += len(b)
    return n


def mount_read(binary, store, mp, env, extra=()):
    mp.mkdir(exist_ok=True)
    t0 = time.perf_counter()
    subprocess.run([binary, "--store", str(store), "mount", str(mp), *extra], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    n = read_all(mp / "datasets" / "bench" / "main")
    dt = time.perf_counter() - t0
    subprocess.run(["fusermount3", "-u", str(mp)], check=True)
    time.sleep(0.3)
    return n, dt


def bench_remote(kind, binary, work, data, total, env, url):
    res = {}
    a, b, c = work / f"{kind}-a", work / f"{kind}-b", work / f"{kind}-c"
    for s in (a, b, c):
        shutil.rmtree(s, ignore_errors=True)
    artifs(binary, a, "init", env=env)
    artifs(binary, a, "create", "dataset", "bench", env=env)
    artifs(binary, a, "commit", "datasets/bench", data, "-m", "bench", env=env)
    artifs(binary, a, "remote", "add", "origin", url, env=env)
    dt, err = artifs(binary, a, "push", "origin", env=env)
    res["push s"], res["push MB/s"], res["push requests"] = dt, total / dt / 1e6, requests_of(err)
    dt, err = artifs(binary, a, "push", "origin", env=env)
    res["re-push s"], res["re-push requests"] = dt, requests_of(err)
    drop_caches()
    t0 = time.perf_counter()
    p = subprocess.run([binary, "clone", url, str(b)], env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)
    if p.returncode:
        sys.exit(p.stderr.decode())
    dt = time.perf_counter() - t0
    res["clone s"], res["clone MB/s"] = dt, total / dt / 1e6
    res["clone requests"] = requests_of(p.stderr.decode())
    drop_caches()
    n, dt = mount_read(binary, b, work / "mnt-local", env)
    assert n == total, (n, total)
    res["clone + local read s"] = res["clone s"] + dt
    artifs(binary, c, "init", env=env)
    artifs(binary, c, "remote", "add", "origin", url, env=env)
    drop_caches()
    n, dt = mount_read(binary, c, work / "mnt-lazy", env, ("--remote", "origin"))
    assert n == total, (n, total)
    res["lazy first read s"], res["lazy MB/s"] = dt, total / dt / 1e6
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--artifs", required=True)
    ap.add_argument("--quick", action="store_true", help="2,000 files + 64 MiB")
    ap.add_argument("--workdir")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("remote_bench.py: needs root (mounts, drop_caches)")
    nsmall, large = (2000, 64) if args.quick else (10000, 1024)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="artifs-remote-bench-"))
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    binary = os.path.abspath(args.artifs)
    env = dict(os.environ)
    env.pop("ARTIFS_STORE", None)
    log(f"generating {nsmall} x 100 KiB and {large} MiB ...")
    total = gen(work / "data", nsmall, large, 7)
    results = {}
    log("file:// remote ...")
    results["file"] = bench_remote("file", binary, work, work / "data", total, env,
                                   f"file://{work}/remote")
    log("s3 (s3rver on loopback) ...")
    with s3server.s3_server(work / "s3") as srv:
        e = dict(env)
        e.update(srv.env)
        results["s3"] = bench_remote("s3", binary, work, work / "data", total, e, srv.url)
    print(f"\nData: {nsmall} files of 100 KiB in 100 directories + one {large} MiB file "
          f"({total / 1e6:.0f} MB); {os.cpu_count()} cores.\n")
    keys = list(results["file"].keys())
    print("| measure | file:// | s3 (s3rver) |")
    print("|---|---|---|")
    for k in keys:
        cells = []
        for kind in ("file", "s3"):
            v = results[kind][k]
            cells.append(f"{v:.2f}" if isinstance(v, float) else str(v))
        print(f"| {k} | " + " | ".join(cells) + " |")
    per10k = {k: results[k]["push requests"] * 10000 / nsmall for k in results}
    print(f"\nPush requests per 10,000 small files (with the large file): "
          f"file {per10k['file']:.0f}, s3 {per10k['s3']:.0f}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
