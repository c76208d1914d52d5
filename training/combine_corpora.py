"""Combine corpora into one audiofolder for training, holding out a share of one corpus's prompts.

    python -m ella_v_hf.training.combine_corpora --out train_corpus \\
        --corpus ../shared/data/kathleen --corpus demo --hold-out ../shared/data/kathleen=0.1 \\
        --held-out-dir kathleen_heldout

Audio files are symlinked, not copied. The held-out utterances (split by prompt id) go to their
own audiofolder for ``ella-v evaluate``, and no held-out sentence is trained on in any corpus. Ids are prefixed with the
corpus name, so the combined ids stay unique.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path

from ..processing.corpus import Utterance, read_corpus, sentence_key, split_by_prompt


def _write(folder: Path, rows: list[tuple[str, Utterance]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "metadata.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file_name", "text", "speaker_id"])
        for prefix, u in rows:
            name = Path("audio") / prefix / (u.id.replace("/", "__") + Path(u.audio_path).suffix)
            target = folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.is_symlink() or target.exists():
                target.unlink()
            os.symlink(os.path.abspath(u.audio_path), target)
            writer.writerow([name.as_posix(), u.text, f"{prefix}:{u.speaker_id}"])


def combine(corpora: list[str], out: str, hold_out: dict[str, float], held_out_dir: str | None, seed: int = 0) -> dict:
    """Write the combined training audiofolder (and the held-out one); returns counts."""
    train_rows: list[tuple[str, Utterance]] = []
    held_rows: list[tuple[str, Utterance]] = []
    for corpus in corpora:
        utterances, problems = read_corpus(corpus)
        prefix = Path(corpus).resolve().name
        fraction = hold_out.get(corpus, 0.0)
        train, held = split_by_prompt(utterances, fraction, seed) if fraction > 0 else (utterances, [])
        train_rows += [(prefix, u) for u in train]
        held_rows += [(prefix, u) for u in held]
        print(f"{corpus}: {len(train)} for training, {len(held)} held out, {len(problems)} unusable", file=sys.stderr)
    # A held-out sentence must not be trained on in any voice (the corpora may share sentence lists).
    held_texts = {sentence_key(u.text) for _, u in held_rows}
    leaking = [row for row in train_rows if sentence_key(row[1].text) in held_texts]
    train_rows = [row for row in train_rows if sentence_key(row[1].text) not in held_texts]
    if leaking:
        print(f"dropped {len(leaking)} training utterances that read a held-out sentence", file=sys.stderr)
    _write(Path(out), train_rows)
    if held_rows:
        if not held_out_dir:
            raise ValueError("--hold-out needs --held-out-dir")
        _write(Path(held_out_dir), held_rows)
    return {"train": len(train_rows), "held_out": len(held_rows)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--corpus", action="append", required=True)
    parser.add_argument("--hold-out", action="append", default=[], help="CORPUS=FRACTION (prompt-level)")
    parser.add_argument("--held-out-dir", default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    hold = {}
    for item in args.hold_out:
        corpus, _, fraction = item.rpartition("=")
        if corpus not in args.corpus:
            parser.error(f"--hold-out {item}: {corpus} is not one of the --corpus arguments")
        hold[corpus] = float(fraction)
    print(combine(args.corpus, args.out, hold, args.held_out_dir, args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
