"""The results-directory lock (bench/run/locking.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bench.errors import UsageError
from bench.run.locking import LOCK_NAME, lock_directory

HOLDER = """
import sys
from bench.run.locking import lock_directory
with lock_directory(sys.argv[1]):
    print("locked", flush=True)
    sys.stdin.read()  # hold until stdin closes or we are killed
"""


@pytest.fixture()
def holder(tmp_path):
    """Another process holding the lock on tmp_path/out."""
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[1]), *sys.path]))
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, env=env)
    assert proc.stdout.readline().strip() == "locked"
    yield out, proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def test_a_second_run_fails_at_once_naming_the_directory_and_the_holder(holder):
    out, proc = holder
    with pytest.raises(UsageError) as err:
        with lock_directory(out):
            pytest.fail("acquired a lock another process holds")
    msg = str(err.value)
    assert "\n" not in msg
    assert str(out) in msg and f"process {proc.pid}" in msg


def test_a_killed_holder_releases_the_lock(holder):
    out, proc = holder
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with lock_directory(out) as lock:
        assert lock.held
        assert (out / LOCK_NAME).read_text().strip() == str(os.getpid())


def test_the_lock_is_released_on_exit_even_after_an_exception(tmp_path):
    with pytest.raises(KeyError):
        with lock_directory(tmp_path):
            raise KeyError("boom")
    with lock_directory(tmp_path):
        # a second lock on the same directory fails even within one process
        with pytest.raises(UsageError, match=f"process {os.getpid()}"):
            lock_directory(tmp_path).acquire()
    with lock_directory(tmp_path) as lock:
        assert lock.held


def test_a_stale_lock_file_without_a_holder_does_not_block(tmp_path):
    (tmp_path / LOCK_NAME).write_text("999999\n")  # left by a run that crashed
    with lock_directory(tmp_path):
        assert (tmp_path / LOCK_NAME).read_text().strip() == str(os.getpid())


def test_the_directory_is_created(tmp_path):
    with lock_directory(tmp_path / "new" / "dir"):
        assert (tmp_path / "new" / "dir" / LOCK_NAME).is_file()
