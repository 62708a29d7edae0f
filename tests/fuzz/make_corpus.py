#!/usr/bin/env python3
"""(Re)make the seed corpus of fuzz_archive in tests/fuzz/corpus/archive.

Valid archives of a tiny tree made by the system tools (GNU tar, bsdtar, zstd,
xz), hostile ones made with Python's tarfile / zipfile (one bad member each),
and truncated or garbage inputs.  Everything is small (the fuzzer mutates it)
and seeded, so a rerun gives the same inputs with the same tool versions.

    python3 tests/fuzz/make_corpus.py [OUTDIR]
"""

import io
import os
import random
import stat
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
MTIME = 1700000000


def tiny_tree(root):
    r = random.Random(3)
    (root / "d/e").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / "a.txt").write_bytes(b"hello\n")
    (root / "d/e/b.bin").write_bytes(r.randbytes(300))
    (root / "x.sh").write_bytes(b"#!/bin/sh\n")
    (root / "x.sh").chmod(0o755)
    (root / "d/link").symlink_to("../a.txt")
    os.link(root / "a.txt", root / "d/hard.txt")
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            os.utime(os.path.join(dirpath, n), (MTIME, MTIME), follow_symlinks=False)


def sh(*args, cwd=None):
    subprocess.run([str(a) for a in args], cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def tar_of(members, fmt=tarfile.PAX_FORMAT):
    """members: (name, type, data-or-linkname)."""
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w", format=fmt) as tf:
        for name, kind, x in members:
            ti = tarfile.TarInfo(name)
            ti.type = kind
            ti.mtime = MTIME
            ti.mode = 0o644
            if kind == tarfile.REGTYPE:
                ti.size = len(x)
                tf.addfile(ti, io.BytesIO(x))
            else:
                ti.linkname = x or ""
                tf.addfile(ti)
    return strip_padding(b.getvalue())


def strip_padding(raw):
    """Drop tar's record padding past the two end blocks: smaller seeds."""
    end = len(raw)
    while end >= 512 and raw[end - 512:end] == b"\0" * 512:
        end -= 512
    return raw[:end] + b"\0" * 1024


def main():
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "corpus" / "archive"
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as t:
        t = Path(t)
        src = t / "src"
        tiny_tree(src)
        made = {
            "valid-gnutar.tar": ("tar", "--sort=name", "--owner=0", "--group=0", "-cf"),
            "valid-gnutar.tgz": ("tar", "--sort=name", "--owner=0", "--group=0", "-czf"),
            "valid-gnutar.tar.xz": ("tar", "--sort=name", "--owner=0", "--group=0", "-cJf"),
            "valid-gnutar.tar.zst": ("tar", "--sort=name", "--owner=0", "--group=0", "--zstd", "-cf"),
            "valid-bsdtar.zip": ("bsdtar", "--format=zip", "-cf"),
            "valid-bsdtar.7z": ("bsdtar", "--format=7zip", "-cf"),
            "valid-bsdtar-odc.cpio": ("bsdtar", "--format=cpio", "-cf"),
            "valid-bsdtar-newc.cpio": ("bsdtar", "--format=newc", "-cf"),
        }
        for name, cmd in made.items():
            sh(*cmd, t / name, "-C", src, ".")
            data = (t / name).read_bytes()
            if name.endswith(".tar"):
                data = strip_padding(data)
            (out / name).write_bytes(data)

        w = {
            "labels.tar": [("a", tarfile.REGTYPE, b"x"),
                           (".labels.jsonl", tarfile.REGTYPE,
                            b'{"path": "a", "labels": {"k": "v"}}\n')],
            "hostile-absolute.tar": [("/etc/evil", tarfile.REGTYPE, b"x")],
            "hostile-dotdot.tar": [("a/../../evil", tarfile.REGTYPE, b"x")],
            "hostile-symlink-out.tar": [("d/l", tarfile.SYMTYPE, "../../etc/passwd")],
            "hostile-hardlink-later.tar": [("h", tarfile.LNKTYPE, "f"), ("f", tarfile.REGTYPE, b"x")],
            "hostile-duplicate.tar": [("f", tarfile.REGTYPE, b"1"), ("./f", tarfile.REGTYPE, b"2")],
            "hostile-chardev.tar": [("dev/null", tarfile.CHRTYPE, None)],
            "hostile-longname.tar": [("n" * 256, tarfile.REGTYPE, b"x")],
            "unicode-gnu.tar": [("日本/ß.txt", tarfile.REGTYPE, b"u"),
                                ("lien→", tarfile.SYMTYPE, "日本/ß.txt")],
        }
        for name, members in w.items():
            fmt = tarfile.GNU_FORMAT if "gnu" in name else tarfile.PAX_FORMAT
            (out / name).write_bytes(tar_of(members, fmt))

        big = tar_of([("ok", tarfile.REGTYPE, b"ok\n"),
                      ("big", tarfile.REGTYPE, random.Random(9).randbytes(4000))])
        (out / "truncated-data.tar").write_bytes(big[:512 * 3 + 1000])
        (out / "truncated-header.tar").write_bytes(big[:700])
        import gzip
        (out / "truncated.tgz").write_bytes(gzip.compress(big, mtime=0)[:600])

        zb = io.BytesIO()
        with zipfile.ZipFile(zb, "w") as z:
            zi = zipfile.ZipInfo("l", date_time=(2024, 1, 1, 0, 0, 0))
            zi.create_system = 3
            zi.external_attr = (stat.S_IFLNK | 0o777) << 16
            z.writestr(zi, "/etc/shadow")
            z.writestr(zipfile.ZipInfo("../up", date_time=(2024, 1, 1, 0, 0, 0)), b"x")
        (out / "hostile-zip.zip").write_bytes(zb.getvalue())

        (out / "garbage.bin").write_bytes(random.Random(4).randbytes(700))
        (out / "one-word.txt").write_bytes(b"README\n")
        (out / "empty").write_bytes(b"")
    for p in sorted(out.iterdir()):
        print(f"{p.stat().st_size:8d}  {p.name}")


if __name__ == "__main__":
    main()
