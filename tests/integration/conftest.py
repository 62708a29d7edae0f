"""Fixtures for the artifs CLI integration tests.

Every test drives the real binary (``$ARTIFS_BIN``, set by CMake) against
its own store in a temporary directory.  Data is generated from fixed seeds,
so a failure reproduces with the same bytes.  The runner and the generators
live in clihelpers.py.
"""

import shutil

import pytest

from clihelpers import MiB, Artifs, base_env, find_binary, write_random


@pytest.fixture(scope="session")
def artifs_bin():
    b = find_binary()
    if b is None or not b.exists():
        pytest.exit("set ARTIFS_BIN to the artifs binary (ctest does this)", returncode=4)
    return b


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture(autouse=True)
def _drop_tmp_after_success(request, tmp_path):
    """The data is large: remove a test's directory once it passed (kept on failure)."""
    yield
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.passed:
        shutil.rmtree(tmp_path, ignore_errors=True)


@pytest.fixture
def env(tmp_path):
    return base_env(tmp_path)


@pytest.fixture
def cli(artifs_bin, tmp_path, env):
    """A fresh, initialised store in tmp_path/store."""
    return Artifs(artifs_bin, tmp_path / "store", env).init()


@pytest.fixture
def bare(artifs_bin, tmp_path, env):
    """A runner whose store does not exist yet."""
    return Artifs(artifs_bin, tmp_path / "store", env)


@pytest.fixture(scope="session")
def big_file(tmp_path_factory):
    """One 256 MiB seeded random file, shared by the tests that need that much data."""
    d = tmp_path_factory.mktemp("big")
    path = d / "big.bin"
    digest = write_random(path, 256, 256 * MiB)
    yield path, digest
    shutil.rmtree(d, ignore_errors=True)
