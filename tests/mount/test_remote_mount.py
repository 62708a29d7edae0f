"""Lazy mounts of a remote (artifs mount --remote NAME): a version with
nothing local reads byte-exact, chunks come on demand into a capped cache,
what is cached is served with the remote gone, and what is not fails with
EIO in bounded time.  Run against a file:// remote and a local S3 server.
"""

import errno
import hashlib
import os
import re
import shutil
import time

import pytest

from mountutil import Artifs, run
from s3server import s3  # noqa: F401 (a fixture)

MiB = 1 << 20
REPO = "datasets/remote"


@pytest.fixture(params=["file", "s3"])
def remote(request, tmp_path, env):
    """(url, stop) of an empty remote; env gets the remote's variables."""
    if request.param == "file":
        d = tmp_path / "remote"

        def stop():
            os.rename(d, tmp_path / "remote-gone")
        yield f"file://{d}", stop
        return
    srv = request.getfixturevalue("s3")
    env.update(srv.env)
    yield srv.url, srv.stop


def make_source(root):
    """40 small files and two 20 MiB files; seeded bytes."""
    files = {}
    for i in range(40):
        p = root / f"small/{i // 10}/f{i:03d}.bin"
        p.parent.mkdir(parents=True, exist_ok=True)
        data = hashlib.shake_256(b"small%d" % i).digest(100 * 1024 + i)
        p.write_bytes(data)
        files[str(p.relative_to(root))] = hashlib.sha256(data).hexdigest()
    for i in range(2):
        p = root / f"large{i}.bin"
        h = hashlib.sha256()
        with open(p, "wb") as f:
            for k in range(20):
                block = hashlib.shake_256(b"large%d-%d" % (i, k)).digest(MiB)
                f.write(block)
                h.update(block)
        files[p.name] = h.hexdigest()
    os.symlink("small/0/f000.bin", root / "link")
    return files


def sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(MiB)
            if not b:
                return h.hexdigest()
            h.update(b)


def publish(artifs_bin, tmp_path, env, url):
    a = Artifs(artifs_bin, tmp_path / "a", env).init()
    a.create("dataset", "remote")
    src = tmp_path / "src"
    files = make_source(src)
    a.run("commit", REPO, src, "-m", "data")
    a.run("tag", REPO, "v1")
    a.run("remote", "add", "origin", url)
    a.run("push", "origin")
    return a, files


def cached_mib(log_text):
    m = re.findall(r"(\d+) MiB cached", log_text)
    return int(m[-1]) if m else None


def test_lazy_mount_reads_and_survives_remote_loss(artifs_bin, tmp_path, env, mounter, remote):
    url, stop = remote
    a, files = publish(artifs_bin, tmp_path, env, url)
    b = Artifs(artifs_bin, tmp_path / "b", env).init()
    b.run("remote", "add", "origin", url)
    m = mounter(b.store, args=["--remote", "origin", "--cache-size", "32M"])
    root = m.path / REPO / "v1"
    # directories come from the fetched trees
    assert sorted(os.listdir(root)) == ["large0.bin", "large1.bin", "link", "small"]
    assert os.readlink(root / "link") == "small/0/f000.bin"   # link targets are fetched too
    assert sorted(os.listdir(root / "small" / "0")) == [f"f{i:03d}.bin" for i in range(10)]
    assert os.stat(root / "large1.bin").st_size == 20 * MiB
    # nothing local: the store b has no repository of its own
    assert b.run("repos").stdout == b""
    for rel, digest in sorted(files.items()):
        assert sha(root / rel) == digest, rel
    # twice the cache size was read: the cache stayed under its cap
    # (large0 was read first and is gone; the small files were read last)
    for rel in sorted(f for f in files if f.startswith("small/")):
        assert sha(root / rel) == files[rel]
    stop()
    # cached: served without the remote (drop the kernel's copy first)
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3")
    for rel in sorted(f for f in files if f.startswith("small/")):
        assert sha(root / rel) == files[rel]
    # not cached: EIO, in bounded time, and the daemon keeps serving
    t0 = time.monotonic()
    with pytest.raises(OSError) as e:
        sha(root / "large0.bin")
    assert e.value.errno == errno.EIO
    assert time.monotonic() - t0 < 120
    assert sha(root / "small/0/f000.bin") == files["small/0/f000.bin"]
    run(["fusermount3", "-u", str(m.path)])
    assert m.wait_exit()
    mib = cached_mib(m.log_text())
    assert mib is not None and mib <= 32, m.log_text()[-2000:]


def test_second_node_reads_from_its_own_cache(artifs_bin, tmp_path, env, mounter, remote):
    """A node that has read a version mounts it again with the remote gone."""
    url, stop = remote
    a, files = publish(artifs_bin, tmp_path, env, url)
    c = Artifs(artifs_bin, tmp_path / "c", env).init()
    c.run("remote", "add", "origin", url)
    m = mounter(c.store, args=["--remote", "origin", "--cache-size", "256M"])
    for rel, digest in files.items():
        assert sha(m.path / REPO / "main" / rel) == digest
    run(["fusermount3", "-u", str(m.path)])
    assert m.wait_exit()
    stop()
    m2 = mounter(c.store, args=["--remote", "origin", "--cache-size", "256M"])
    for rel, digest in files.items():
        assert sha(m2.path / REPO / "main" / rel) == digest


def test_lazy_mount_follows_pushes(artifs_bin, tmp_path, env, mounter, remote):
    url, _ = remote
    a, files = publish(artifs_bin, tmp_path, env, url)
    b = Artifs(artifs_bin, tmp_path / "b", env).init()
    b.run("remote", "add", "origin", url)
    m = mounter(b.store, args=["--remote", "origin", "--refresh", "1"])
    assert not (m.path / REPO / "main" / "new.txt").exists()
    src = tmp_path / "src"
    (src / "new.txt").write_text("pushed later\n")
    a.run("commit", REPO, src, "-m", "more")
    a.run("push", "origin")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (m.path / REPO / "main" / "new.txt").exists():
        time.sleep(0.2)
    assert (m.path / REPO / "main" / "new.txt").read_text() == "pushed later\n"
