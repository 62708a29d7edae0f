"""The S3 remote (index/remote_s3.c) against a local s3rver, through artifs-remote-tool.

The tool is built with the unit tests (tests/unit, BUILD_TESTING=ON); it is
found as $ARTIFS_REMOTE_TOOL, next to $ARTIFS_BIN's build tree, or in a
build directory of this checkout.
"""

import os
import random
import subprocess
import time
from pathlib import Path

import pytest

from clihelpers import MiB, assert_no_sanitizer_report
from s3server import SECRET_KEY, list_keys, s3  # noqa: F401  (s3 is a fixture)

HERE = Path(__file__).resolve().parent
TOOL = "artifs-remote-tool"

# exit codes of artifs-remote-tool
NOTFOUND, EXISTS, CORRUPT = 3, 4, 5


def find_tool():
    env = os.environ.get("ARTIFS_REMOTE_TOOL")
    if env:
        return Path(env)
    if os.environ.get("ARTIFS_BIN"):
        # same build tree as the binary under test (never mix builds)
        return Path(os.environ["ARTIFS_BIN"]).resolve().parent.parent / "tests" / "unit" / TOOL
    root = HERE.parent.parent
    found = [root / "build" / "tests" / "unit" / TOOL]
    found += sorted(root.glob(f"build-*/tests/unit/{TOOL}"), key=lambda p: -p.stat().st_mtime)
    return next((p for p in found if p.exists()), found[0])


@pytest.fixture(scope="module")
def tool():
    t = find_tool()
    if not t.exists():
        pytest.fail(f"{t} is missing: build the {TOOL} target (configure with "
                    "-DBUILD_TESTING=ON) or set ARTIFS_REMOTE_TOOL", pytrace=False)
    return t


class Remote:
    """Runs the tool against one remote URL."""

    def __init__(self, tool, s3, url=None):
        self.tool, self.s3 = str(tool), s3
        self.url = url or s3.url

    def cmd(self, *args, **env):
        return [self.tool, self.url, *map(str, args)], self.s3.client_env(**env)

    def run(self, *args, rc=0, input=b"", timeout=120, env=None):
        cmd, e = self.cmd(*args, **(env or {}))
        p = subprocess.run(cmd, input=input, env=e, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=timeout)
        if rc is not None:
            assert p.returncode == rc, (
                f"{' '.join(cmd[2:])}: exit {p.returncode}, wanted {rc}\n"
                f"stderr: {p.stderr[:3000]!r}")
        assert_no_sanitizer_report(p.stderr)
        return p

    def put(self, key, data, exclusive=False, **kw):
        return self.run("put", key, *(["--exclusive"] if exclusive else []), input=data, **kw)

    def get(self, key, **kw):
        return self.run("get", key, **kw).stdout

    def list(self, prefix=""):
        out = self.run("list", prefix).stdout.decode()
        return [(k, int(n)) for k, n in (line.rsplit(" ", 1) for line in out.splitlines())]


@pytest.fixture
def remote(tool, s3):  # noqa: F811
    return Remote(tool, s3)


def rand(seed, n):
    return random.Random(seed).randbytes(n)


def err(p):
    return p.stderr.decode("utf-8", "replace")


@pytest.mark.parametrize("size", [0, 1, 40 * MiB])
def test_put_get_roundtrip(remote, size):
    data = rand(size, size)
    remote.put("objs/blob", data)
    assert remote.get("objs/blob") == data
    assert remote.list("objs/") == [("objs/blob", size)]


def test_range_reads(remote):
    size = 3 * MiB + 17
    data = rand(7, size)
    remote.put("packs/p.pack", data)
    for off, n in [(0, 2), (0, size), (1, 1), (123457, 65536), (size - 1, 1), (MiB, 2 * MiB)]:
        out = remote.run("range", "packs/p.pack", off, n).stdout
        assert out == data[off:off + n], (off, n)
    # past the end: fewer bytes than asked is an error, never a short read
    p = remote.run("range", "packs/p.pack", size - 10, 11, rc=CORRUPT)
    assert "packs/p.pack" in err(p)
    remote.run("range", "packs/p.pack", size, 1, rc=CORRUPT)
    remote.run("range", "packs/missing.pack", 0, 1, rc=NOTFOUND)


def test_range_answer_longer_than_asked(remote):
    # s3rver 3.7.1 reads "Range: bytes=0-0" as "bytes=0-" (end 0 is falsy) and
    # sends the whole object: the backend must refuse it, not overrun dst.
    remote.put("k", b"0123456789")
    p = remote.run("range", "k", 0, 1, rc=CORRUPT)
    assert "more than the 1 bytes asked for" in err(p)
    assert remote.run("range", "k", 0, 10).stdout == b"0123456789"


def test_list_paginates_past_1000_keys(remote, s3):  # noqa: F811
    n = 1234
    remote.run("putmany", "many/k", n, timeout=300)
    # (not "many-x/": s3rver walks its directories, so it neither sorts nor
    # pages "many-x/" < "many/" the way S3 does)
    remote.put("manyx/x", b"x")
    remote.put("other/y", b"yy")
    Remote(remote.tool, s3, s3.url_for("elsewhere")).put("many/z", b"outside the prefix")

    got = remote.list("many/")
    want = [(f"many/k{i:05d}", (i % 7) * len(f"many/k{i:05d}")) for i in range(n)]
    assert got == want
    everything = remote.list("")
    assert [k for k, _ in everything] == sorted(k for k, _ in everything)
    assert len(everything) == n + 2
    assert ("other/y", 2) in everything and ("manyx/x", 1) in everything
    # the bucket root sees the prefixes as keys
    root = Remote(remote.tool, s3, s3.url_for(""))
    assert ("elsewhere/many/z", 18) in root.list("elsewhere/")
    assert len(root.list(f"{s3.prefix}/many/")) == n
    assert sorted(list_keys(s3.url, s3.env, "many/")) == [k for k, _ in want]


def test_keys_with_reserved_characters(remote):
    keys = ["a+b", "c=d", "e~f", "dir/x+y=z~w", "dir/++==~~", "dir/a.b_c-d"]
    for i, k in enumerate(keys):
        remote.put(k, k.encode() * (i + 1))
    for i, k in enumerate(keys):
        assert remote.get(k) == k.encode() * (i + 1)
    assert remote.list("dir/") == sorted((k, len(k) * (i + 1)) for i, k in enumerate(keys)
                                         if k.startswith("dir/"))
    # the same names as an independent client reads them
    assert [k for k, _ in remote.list("")] == sorted(list_keys(remote.url, remote.s3.env))
    remote.run("del", "dir/x+y=z~w")
    remote.run("get", "dir/x+y=z~w", rc=NOTFOUND)
    assert remote.get("a+b") == b"a+b"


def test_exclusive_put(remote):
    remote.put("refs/lock", b"first", exclusive=True)
    p = remote.put("refs/lock", b"second", exclusive=True, rc=EXISTS)
    assert "refs/lock" in err(p) and "exists" in err(p)
    assert remote.get("refs/lock") == b"first"
    remote.put("refs/lock", b"third")  # a plain put replaces
    assert remote.get("refs/lock") == b"third"
    # a pack-sized body: the 412 may come before the upload is done
    big = rand(40, 40 * MiB)
    remote.put("packs/big.pack", big, exclusive=True)
    t0 = time.monotonic()
    remote.put("packs/big.pack", rand(41, 40 * MiB), exclusive=True, rc=EXISTS)
    assert time.monotonic() - t0 < 30
    assert remote.get("packs/big.pack") == big


def test_concurrent_exclusive_puts_one_wins(remote):
    for rnd in range(4):
        key = f"race/{rnd}"
        bodies = [rand(100 * rnd + i, 2 * MiB) for i in range(3)]
        procs = []
        for b in bodies:
            cmd, e = remote.cmd("put", key, "--exclusive")
            procs.append(subprocess.Popen(cmd, env=e, stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE))
        for pr, b in zip(procs, bodies):
            pr.stdin.write(b)
            pr.stdin.close()
        codes = [pr.wait(timeout=120) for pr in procs]
        for pr in procs:
            pr.stdout.close()
            pr.stderr.close()
        assert sorted(codes) == [0] + [EXISTS] * (len(bodies) - 1), codes
        assert remote.get(key) == bodies[codes.index(0)]


def test_missing_key(remote, s3):  # noqa: F811
    p = remote.run("get", "packs/nope.pack", rc=NOTFOUND)
    assert "packs/nope.pack" in err(p) and s3.url in err(p)
    assert "artifs-remote-tool: error: " in err(p)
    remote.run("del", "packs/nope.pack")  # deleting a missing key is fine


def test_missing_bucket(tool, s3):  # noqa: F811
    p = Remote(tool, s3, "s3://no-such-bucket/x").run("get", "k", rc=1)
    assert "no-such-bucket" in err(p) and "NoSuchBucket" in err(p)


def test_wrong_credentials(remote):
    remote.put("k", b"v")
    secret = "wrong-secret-5d1f0c9e"
    p = remote.run("get", "k", rc=1, env={"AWS_SECRET_ACCESS_KEY": secret})
    assert "403" in err(p) and "SignatureDoesNotMatch" in err(p) and "access denied" in err(p)
    p2 = remote.run("put", "k2", rc=1, input=b"x", env={"AWS_ACCESS_KEY_ID": "AKIDNOBODY",
                                                       "AWS_SECRET_ACCESS_KEY": secret})
    assert "InvalidAccessKeyId" in err(p2)
    for q in (p, p2):
        assert secret.encode() not in q.stderr + q.stdout
    p3 = remote.run("get", "k", rc=1, env={"AWS_SECRET_ACCESS_KEY": ""})
    assert "AWS_SECRET_ACCESS_KEY" in err(p3)
    assert SECRET_KEY.encode() not in p3.stderr


def test_server_gone_fails_in_bounded_time(remote, s3):  # noqa: F811
    remote.put("k", b"survives a restart")
    s3.stop()
    t0 = time.monotonic()
    p = remote.run("get", "k", rc=1, env={"ARTIFS_S3_MAX_RETRIES": 2}, timeout=60)
    assert time.monotonic() - t0 < 10
    assert "connect" in err(p).lower() and "'k'" in err(p)
    t0 = time.monotonic()
    remote.run("put", "k2", rc=1, input=b"x", timeout=60)  # the default: 5 retries
    assert time.monotonic() - t0 < 20
    s3.start()
    assert remote.get("k") == b"survives a restart"


def test_server_hung_times_out(remote, s3):  # noqa: F811
    remote.put("k", b"v")
    s3.pause()
    try:
        t0 = time.monotonic()
        p = remote.run("get", "k", rc=1, timeout=60,
                       env={"ARTIFS_S3_MAX_RETRIES": 1, "ARTIFS_S3_TIMEOUT": 1})
        assert time.monotonic() - t0 < 15
        assert "too slow" in err(p)
    finally:
        s3.resume()
    assert remote.get("k") == b"v"


def test_retries_on_throttling(remote, s3):  # noqa: F811
    remote.put("k", b"value")
    s3.fault(fail=3, status=503, code="SlowDown")
    assert remote.get("k") == b"value"
    s3.fault(fail=2, status=500, code="InternalError")
    remote.put("k", b"value 2")
    assert remote.get("k") == b"value 2"
    s3.fault(fail=3, status=503, code="SlowDown")
    p = remote.run("get", "k", rc=1, env={"ARTIFS_S3_MAX_RETRIES": 1})
    assert "503" in err(p) and "SlowDown" in err(p)
    s3.fault(fail=0)


def test_exclusive_put_retried_after_lost_answer(remote, s3):  # noqa: F811
    # stored, but the answer was a 500: the retry's 412 is our own object
    s3.fault(store_then_fail=1)
    remote.put("refs/a", b"mine", exclusive=True)
    assert remote.get("refs/a") == b"mine"
    # a 500, then 412 for someone else's object: that is a real conflict
    s3.fault(fail=1, status=500, code="InternalError")
    p = remote.put("refs/a", b"not mine", exclusive=True, rc=EXISTS)
    assert "exists" in err(p)
    assert remote.get("refs/a") == b"mine"
