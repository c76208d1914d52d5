"""Resuming ``ella-v evaluate``: every finished unit of work is appended to ``OUT.partial.jsonl``.

    python -m ella_v_hf.evaluation.evaluation_progress OUT.partial.jsonl   # the figures so far

A unit is one item's reference rows (ground truth, codec resynthesis, first codebook) or one item
under one strategy and run seed. Every item draws from its own seed, so a run resumed from the
file scores exactly what an uninterrupted one would; the file's first line holds the settings, and
a file started with other settings is refused rather than mixed in. The file is removed once the
results are written.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import sys
from pathlib import Path
from typing import IO


class EvaluationProgress:
    """The units an interrupted evaluation finished, and the file that records new ones.

    Args:
        out: The evaluation's results path (``OUT.json``); the progress file is ``OUT.partial.jsonl``.
        settings: Everything that decides the rows (model, data, judges, strategies, seeds …), JSON-able.
        restart: Discard a progress file left by earlier settings (``--overwrite``) instead of refusing it.

    Raises:
        ValueError: The progress file was started with other settings (and not ``restart``).
        RuntimeError: Another process is writing the same evaluation.
    """

    def __init__(self, out: str | os.PathLike, settings: dict, restart: bool = False) -> None:
        self.path = Path(out).with_suffix(".partial.jsonl")
        self.done: dict[str, list[list]] = {}
        settings = json.loads(json.dumps(settings))  # as the file stores it (tuples become lists)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] = open(self.path, "a+", encoding="utf-8")  # appends; nothing is cut before the lock
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.close()
            raise RuntimeError(f"another `ella-v evaluate` is writing {self.path}") from None
        self._file.seek(0)
        text = self._file.read()
        lines = text.splitlines()
        header = _parse(lines[0]) if lines else None
        if header is not None and header.get("settings") != settings and not restart:
            self._file.close()
            raise ValueError(f"{self.path} holds an interrupted evaluation with other settings; rerun with the same "
                             "arguments to resume it, or give --overwrite to start again")
        if header is None or header.get("settings") != settings:  # new, cut short before its first unit, or restarted
            self._file.truncate(0)
            self._write({"settings": settings})
            return
        for line in lines[1:]:
            unit = _parse(line)
            if unit is not None and "unit" in unit:  # a line cut short by a kill is redone
                self.done[unit["unit"]] = unit["rows"]
        if not text.endswith("\n"):
            self._file.write("\n")  # end the line a kill cut short

    def _write(self, record: dict) -> None:
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()

    def record(self, unit: str, rows: list[tuple[str, dict]]) -> None:
        """Append a finished unit: its ``(system name, row)`` pairs."""
        self._write({"unit": unit, "rows": [list(pair) for pair in rows]})

    def finish(self) -> None:
        """The results are written: close and remove the progress file."""
        self._file.close()
        self.path.unlink(missing_ok=True)

    def close(self) -> None:
        """Stop recording (an interrupted evaluation keeps its file for the next run)."""
        self._file.close()


def rows_so_far(path: str | os.PathLike) -> dict[str, list[dict]]:
    """``{system: rows}`` of the units a progress file holds, in the order they were finished (read only)."""
    rows: dict[str, list[dict]] = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines()[1:]:
        unit = _parse(line)
        for name, row in (unit or {}).get("rows", []):
            rows.setdefault(name, []).append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    """Print the figures of a running or interrupted evaluation so far (a run seed still under way
    counts with the items it has finished)."""
    from .evaluate_tts import summarize
    from .table_cells import format_cell

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("progress", help="an evaluation's OUT.partial.jsonl")
    args = parser.parse_args(argv)
    if not os.path.isfile(args.progress):
        finished = args.progress.removesuffix(".partial.jsonl") + ".json"
        hint = f"; the finished evaluation's results are in {finished}" if os.path.isfile(finished) else ""
        parser.error(f"{args.progress}: no such progress file{hint}")
    rows = rows_so_far(args.progress)
    if not rows:
        print(f"{args.progress}: no finished items yet", file=sys.stderr)
        return 1
    print("| system | rows | WER | CER | DNSMOS P.808 | INF | CUT |\n|---|---|---|---|---|---|---|")
    for name, system_rows in rows.items():
        m = summarize(system_rows)
        print(f"| {name} | {len(system_rows)} | {format_cell(m['wer'], True, m.get('wer_std'))} | {format_cell(m['cer'], True)} "
              f"| {format_cell(m.get('dnsmos_p808'), digits=2)} | {format_cell(m.get('inf_rate'), True)} | {format_cell(m.get('cut_rate'), True)} |")
    return 0


def _parse(line: str) -> dict | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


if __name__ == "__main__":
    sys.exit(main())
