"""One writer per output directory: every command that writes a folder locks it
(:func:`ella_v_hf._outputs.writes_output_dir`).

The lock is an ``flock`` on ``OUT/.ella-v.lock`` (which holds the owner's PID and command for the message). The
operating system releases it when the process ends, however it ends, so a killed run never leaves
a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
import signal
import sys
from contextlib import contextmanager
from pathlib import Path

LOCK_NAME = ".ella-v.lock"


class RunLockedError(RuntimeError):
    """Another process is writing the same output directory."""


@contextmanager
def run_lock(directory: str | os.PathLike, command: str, enabled: bool = True):
    """Hold the lock of ``directory`` for the block.

    Args:
        directory: The output directory (created if missing).
        command: What takes it, for the message (e.g. ``"ella-v train"``).
        enabled: ``False`` on the non-main processes of a distributed run (the main one holds it).

    Raises:
        RunLockedError: Another process holds it.
    """
    if not enabled:
        yield
        return
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    handle = open(folder / LOCK_NAME, "a+", encoding="utf-8")  # noqa: SIM115 (held for the block)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            pid, _, holder = handle.read().strip().partition(" ")
            raise RunLockedError(
                f"{command}: {folder} is in use by another {holder or 'process'} (process {pid or 'unknown'}); "
                "wait for it to finish or choose another output directory"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()} {command}\n")
        handle.flush()
        yield
    finally:
        handle.close()  # closing releases the flock


def die_with_parent() -> None:
    """Have Linux kill this process when its parent dies (``PR_SET_PDEATHSIG``): a worker of
    ``prepare --num-proc N``, or one process of a ``torchrun`` training, never outlives a killed
    parent (and so never holds a run lock or a collective alone)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() == 1:  # the parent died before the call
        os._exit(1)


def is_distributed_worker() -> bool:
    """Whether this process was started by a distributed launcher (``torchrun``, ``accelerate launch``)."""
    return "TORCHELASTIC_RUN_ID" in os.environ or "LOCAL_RANK" in os.environ


def is_main_process() -> bool:
    """Whether this is the main process of a (possibly distributed) ``accelerate launch`` run."""
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")) or 0) == 0


__all__ = ["LOCK_NAME", "RunLockedError", "die_with_parent", "is_distributed_worker", "is_main_process", "run_lock"]
