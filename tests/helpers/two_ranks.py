"""Running a 2-process gloo script from a test, so that a hang ends in a stack dump instead of a silent timeout.

The script leads a new process group (rank 0, the rank Lightning re-executes for rank 1, and their dataloader
workers all in one process group). When an attempt outlives its timeout, every process of the group gets SIGABRT,
which faulthandler turns into a dump of every thread's stack, and the group is then killed. A hang is retried once
on a fresh port, with the dump attached as a warning: the hang is rare (~90 runs here, on idle and on loaded cores,
never caught one) and a retry that passes still checks everything the test asserts.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import warnings

from tests.helpers.run_jepa import ROOT, free_port


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:  # the whole group ended meanwhile
        pass


def _attempt(command: list[str], timeout: float) -> tuple[subprocess.CompletedProcess | None, str]:
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(ROOT), "PYTHONFAULTHANDLER": "1"}
    env.pop("LOCAL_RANK", None)
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
        return subprocess.CompletedProcess(command, proc.returncode, out, err), ""
    except subprocess.TimeoutExpired:
        _signal_group(proc.pid, signal.SIGABRT)  # faulthandler dumps each process's threads to the shared stderr
        try:
            _, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            err = ""
        _signal_group(proc.pid, signal.SIGKILL)  # rank 1 or a worker may outlive rank 0
        proc.communicate()
        return None, err


def run_two_ranks(script: str, *args: str, timeout: float = 150) -> subprocess.CompletedProcess:
    """Run tests/helpers/<script> with args on 2 gloo ranks; returns the finished process (retried once on a hang)."""
    command = [sys.executable, str(ROOT / "tests" / "helpers" / script), *args]
    done, dump = _attempt(command, timeout)
    if done is None:
        warnings.warn(f"{script} hung for {timeout:.0f} s and was retried; its stacks:\n{dump[-6000:]}", stacklevel=2)
        done, dump = _attempt(command, timeout)
    assert done is not None, f"{script} hung twice for {timeout:.0f} s; stacks of the second hang:\n{dump[-6000:]}"
    return done
