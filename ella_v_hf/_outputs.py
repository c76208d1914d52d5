"""The rule every writing command follows, so that nothing a user owns is deleted or overwritten.

- **Directories** (``prepare``, ``train``, ``train-codec``, ``assemble``, ``make-demo-corpus``): a target that exists and
  is not empty is refused unless the same command created it, which the marker file
  ``.ella-v-output.json`` says (outputs written before the marker existed are recognised by their
  own structure). Inside an output of its own, a command replaces only the files it wrote: the
  marker lists them, and anything else there (a user's notes, samples) stays.
- **Files** (``synthesize``, ``evaluate``, ``bench``, ``plot-alignment``): an existing file is
  refused unless ``--overwrite`` is given.
- Everything is written to a temporary sibling (named ``.ella-v-tmp-*``, created with a unique
  name, never a name a user could already have) and renamed into place once complete, so a failed
  or killed run leaves the old file or folder as it was.
- Only paths a command created are ever removed.

This module imports only the standard library.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ._lock import LOCK_NAME, die_with_parent, is_distributed_worker, is_main_process, run_lock

#: The marker a command writes into each output directory it creates.
MARKER = ".ella-v-output.json"
#: Prefix of every temporary file or folder ella-v creates (with a unique suffix).
TEMP_PREFIX = ".ella-v-tmp-"
#: Entries of ella-v's own bookkeeping, which do not make a directory "not empty".
BOOKKEEPING = (MARKER, LOCK_NAME)


class OutputExistsError(ValueError):
    """The output path holds something the command did not create."""


def read_marker(directory: str | os.PathLike) -> dict | None:
    """The marker of ``directory`` (``{"command": ..., "files": [...]}``), or ``None``."""
    path = Path(directory) / MARKER
    try:
        marker = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None


def user_entries(directory: Path) -> list[str]:
    """The names in ``directory`` other than ella-v's bookkeeping (empty for a missing directory)."""
    if not directory.is_dir():
        return []
    return sorted(p.name for p in directory.iterdir() if p.name not in BOOKKEEPING)


def check_output_dir(directory: str | os.PathLike, command: str, legacy: Callable[[Path], bool] | None = None,
                     option: str = "--out") -> bool:
    """Refuse ``directory`` unless it is missing, empty, or an output of ``command``.

    Args:
        directory: The target.
        command: The command that writes it (``"ella-v train"``); another command's output is refused too.
        legacy: Recognises an output of ``command`` written before the marker existed.
        option: The option that named the target, for the message.

    Returns:
        ``True`` when ``directory`` is an earlier output of ``command`` (to be updated), ``False``
        when it is missing or empty.

    Raises:
        OutputExistsError: ``directory`` is a file, or a non-empty folder ``command`` did not create.
    """
    path = Path(directory)
    if path.exists() and not path.is_dir():
        raise OutputExistsError(f"{option} {directory} is a file, not a directory; give a new or empty directory")
    entries = user_entries(path)
    if not entries:
        return False
    marker = read_marker(path)
    if marker is not None and marker.get("command") == command:
        return True
    if marker is None and legacy is not None and legacy(path):
        return True
    owner = f"an output of `{marker['command']}`" if marker and marker.get("command") else "not empty and not an output of it"
    shown = ", ".join(entries[:4]) + (" …" if len(entries) > 4 else "")
    raise OutputExistsError(
        f"{option} {directory} is {owner} ({shown}); `{command}` writes only into a new or empty directory "
        "or one it created itself, so nothing there is touched. Give another directory."
    )


def write_marker(directory: str | os.PathLike, command: str, files: Iterable[str] | None = None) -> None:
    """Write ``directory``'s marker atomically (``files``: the paths ``command`` wrote there, relative)."""
    marker = {"command": command}
    if files is not None:
        marker["files"] = sorted(set(files))
    with atomic_file(Path(directory) / MARKER) as temporary:
        temporary.write_text(json.dumps(marker, indent=1), encoding="utf-8")


def writes_output_dir(command: str, legacy: Callable[[Path], bool] | None = None,
                      check: Callable[[dict], None] | None = None, directory_argument: str = "out") -> Callable:
    """Decorator for a command that writes a directory: before anything is created, ``check`` (the
    call's arguments by name) and :func:`check_output_dir`; then, holding the directory's run lock
    (:func:`~ella_v_hf._lock.run_lock`, main process only), the marker is written and the function
    runs. A directory the call created and left with nothing but ella-v's bookkeeping (the call
    failed before writing anything) is removed again."""

    def decorate(function: Callable) -> Callable:
        signature = inspect.signature(function)

        @functools.wraps(function)
        def guarded(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            if check is not None:
                check(bound.arguments)
            directory = Path(bound.arguments[directory_argument])
            check_output_dir(directory, command, legacy)
            if is_distributed_worker():  # a killed launcher takes its workers (and their lock) along
                die_with_parent()
            existed, main = directory.exists(), is_main_process()
            with run_lock(directory, command, enabled=main):
                if main and read_marker(directory) is None:
                    write_marker(directory, command)
                try:
                    return function(*args, **kwargs)
                except BaseException:
                    if main and not existed and not user_entries(directory):
                        for name in BOOKKEEPING:
                            (directory / name).unlink(missing_ok=True)
                        directory.rmdir()
                    raise

        return guarded

    return decorate


def temporary_dir_beside(target: str | os.PathLike) -> Path:
    """A new, empty temporary directory beside ``target`` (same filesystem, so a rename is atomic)."""
    target = Path(target).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{target.name}-", dir=target.parent))


def files_under(directory: Path) -> list[str]:
    """Relative paths of the files below ``directory``."""
    return sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file() or p.is_symlink())


def install_tree(written: Path, target: str | os.PathLike, command: str) -> Path:
    """Move the files of the finished temporary folder ``written`` into ``target``, each by an
    atomic rename, and remove the files an earlier run of ``command`` wrote there that this run did
    not write again. Files a user added to ``target`` stay. ``written`` is removed (it is ours).

    ``target`` must have passed :func:`check_output_dir` for ``command`` (the caller holds its lock).

    Returns:
        ``target``.
    """
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    new = files_under(written)
    marker = read_marker(target)
    old = marker.get("files", []) if marker and marker.get("command") == command else []
    write_marker(target, command, [*old, *new])  # while files move, the marker covers both runs' files
    for name in new:
        destination = target / name
        if destination.is_dir() and not destination.is_symlink():
            raise OutputExistsError(f"{target}: {name} is a directory of yours where `{command}` writes a file; move it away")
        destination.parent.mkdir(parents=True, exist_ok=True)
        os.replace(written / name, destination)
    for name in sorted(set(old) - set(new), reverse=True):
        stale = target / name
        if stale.is_file() or stale.is_symlink():
            stale.unlink()
        _remove_empty_parents(stale.parent, target)
    write_marker(target, command, new)
    shutil.rmtree(written)  # only the (now empty) folders of our own temporary tree are left
    return target


def _remove_empty_parents(folder: Path, root: Path) -> None:
    while folder != root and root in folder.parents:
        try:
            folder.rmdir()  # only an empty folder: never a user's file
        except OSError:
            return
        folder = folder.parent


def check_output_file(path: str | os.PathLike, overwrite: bool, option: str = "-o") -> None:
    """Refuse an existing ``path`` unless ``overwrite`` (and a directory always).

    Raises:
        OutputExistsError: It exists (or is a directory).
    """
    path = Path(path)
    if path.is_dir():
        raise OutputExistsError(f"{option} {path} is a directory; give a file name")
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise OutputExistsError(f"{option} {path} exists; pass --overwrite to replace it, or give another name")


@contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` (same extension) to write; on success it replaces
    ``path`` in one rename, on any failure it is removed and ``path`` is left as it was.

    The file gets the permissions a plain ``open(path, "w")`` would give it (``0o666`` less the
    umask), not ``tempfile.mkstemp``'s owner-only ``0o600``.
    """
    path = Path(path)
    while True:  # a new name, created exclusively (as mkstemp does), with open()'s default mode
        temporary = path.parent / f"{TEMP_PREFIX}{secrets.token_hex(8)}{path.suffix}"
        try:
            os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            break
        except FileExistsError:
            continue
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


__all__ = [
    "BOOKKEEPING",
    "MARKER",
    "TEMP_PREFIX",
    "OutputExistsError",
    "atomic_file",
    "check_output_dir",
    "check_output_file",
    "files_under",
    "install_tree",
    "read_marker",
    "temporary_dir_beside",
    "user_entries",
    "write_marker",
    "writes_output_dir",
]
