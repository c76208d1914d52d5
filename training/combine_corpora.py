"""Combine corpora into one audiofolder for training, holding out a share of one corpus's prompts.

    python -m ella_v_hf.training.combine_corpora --out train_corpus \\
        --corpus ../shared/data/kathleen --corpus demo --hold-out ../shared/data/kathleen=0.1 \\
        --held-out-dir kathleen_heldout

Audio files are symlinked, not copied. The held-out utterances (split by prompt id) go to their
own audiofolder for ``ella-v evaluate``, and no held-out sentence is trained on in any corpus. Ids are prefixed with the
corpus name, so the combined ids stay unique.

``--speed CORPUS=0.9,1.1`` adds speed-perturbed copies of that corpus's training utterances (Kaldi's
recipe: resampled by the factor and played at the original rate, so tempo and pitch both change;
each factor is its own speaker, ``SPEAKER-sp0.9``). The copies are written as FLAC under
``OUT/perturbed/PREFIX-spFACTOR/`` and linked from ``OUT/audio/PREFIX-spFACTOR/`` like every other
file; the held-out utterances are never perturbed.

Like every writing command (see ``ella_v_hf._outputs``), it writes only into new or empty folders or
its own earlier outputs, each built in a temporary sibling and moved into place when complete.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import sys
from contextlib import ExitStack
from pathlib import Path

import soundfile as sf
import soxr
from tqdm.auto import tqdm

from .._lock import run_lock
from .._outputs import BOOKKEEPING, check_output_dir, install_tree, temporary_dir_beside
from ..processing.corpus import Utterance, read_corpus, sentence_key, split_by_prompt

#: The command name in an output folder's marker.
COMMAND = "python -m ella_v_hf.training.combine_corpora"


def _write(folder: Path, rows: list[tuple[str, Utterance]]) -> None:
    """Write the audiofolder ``folder`` (a new temporary one): ``metadata.csv`` and a link per row."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "metadata.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file_name", "text", "speaker_id"])
        for prefix, u in rows:
            name = Path("audio") / prefix / (u.id.replace("/", "__") + Path(u.audio_path).suffix)
            target = folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(os.path.abspath(u.audio_path), target)
            writer.writerow([name.as_posix(), u.text, f"{prefix}:{u.speaker_id}"])


def _is_combined(folder: Path) -> bool:
    """An output of this script written before the marker existed: metadata.csv, links under audio/
    and perhaps perturbed/ (and nothing else)."""
    names = {p.name for p in folder.iterdir()} - set(BOOKKEEPING)
    audio = folder / "audio"
    return ("metadata.csv" in names and names <= {"metadata.csv", "audio", "perturbed"} and audio.is_dir()
            and all(p.is_symlink() or p.is_dir() for p in audio.rglob("*")))


def _check_speed(factor: float) -> None:
    if not 0.5 <= factor <= 2.0 or factor == 1.0:
        raise ValueError(f"speed factor {factor} must be in [0.5, 2] and not 1")


def speed_perturb(utterances: list[Utterance], prefix: str, factor: float, folder: Path,
                  final_folder: Path | None = None) -> list[tuple[str, Utterance]]:
    """Write ``utterances`` played ``factor`` times faster (resampled, so pitch moves too).

    Args:
        utterances: The originals.
        prefix: Their corpus's prefix.
        factor: The speed factor.
        folder: Where the FLACs are written (under ``perturbed/``).
        final_folder: Where they will live once ``folder`` is installed (default ``folder``); the
            rows name them there.

    Returns:
        ``(prefix, utterance)`` rows for :func:`_write`: prefix ``PREFIX-spFACTOR``, the same
        prompt id (so a split by prompt keeps every copy of a sentence on one side), speaker
        ``SPEAKER-spFACTOR`` and the written FLAC as audio.
    """
    _check_speed(factor)
    tag = f"sp{factor:g}"
    rows = []
    relative = Path("perturbed") / f"{prefix}-{tag}"
    written, final = folder / relative, (final_folder or folder) / relative
    written.mkdir(parents=True, exist_ok=True)
    for u in tqdm(utterances, desc=f"{prefix} speed {factor:g}", unit="utt"):
        audio, rate = sf.read(u.audio_path, dtype="float32", always_2d=False)  # (samples,) or (samples, channels)
        faster = soxr.resample(audio, rate, rate / factor)  # (samples / factor, ...)
        name = u.id.replace("/", "__") + f"_{tag}.flac"
        sf.write(written / name, faster, rate)
        rows.append((f"{prefix}-{tag}", Utterance(id=f"{u.id}_{tag}", audio_path=str(final / name), text=u.text,
                                                  speaker_id=f"{u.speaker_id}-{tag}", prompt_id=u.prompt_id)))
    return rows


def combine(corpora: list[str], out: str, hold_out: dict[str, float], held_out_dir: str | None, seed: int = 0,
            speeds: dict[str, list[float]] | None = None) -> dict:
    """Write the combined training audiofolder (and the held-out one); returns counts.

    Args:
        corpora: Corpus directories (see :func:`read_corpus`).
        out: The training audiofolder to write.
        hold_out: Corpus -> fraction of its prompts held out.
        held_out_dir: The held-out audiofolder (needed when ``hold_out`` holds anything out).
        seed: Seed of the held-out split.
        speeds: Corpus -> speed factors of perturbed copies of its training utterances.
    """
    speeds = speeds or {}
    unknown = set(speeds) - set(corpora)
    if unknown:
        raise ValueError(f"speed perturbation of {sorted(unknown)}, which is not one of the corpora")
    for factors in speeds.values():  # before anything is written
        for factor in factors:
            _check_speed(factor)
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
    if held_rows and not held_out_dir:
        raise ValueError("--hold-out needs --held-out-dir")
    targets = [("--out", Path(out))] + ([("--held-out-dir", Path(held_out_dir))] if held_rows else [])
    if len(targets) == 2 and targets[0][1].resolve() == targets[1][1].resolve():
        raise ValueError(f"--out and --held-out-dir are the same folder ({out})")
    for option, folder in targets:  # before anything is written
        check_output_dir(folder, COMMAND, _is_combined, option)
    with ExitStack() as stack:
        for _, folder in targets:
            stack.enter_context(run_lock(folder, COMMAND))
        temporaries = [temporary_dir_beside(folder) for _, folder in targets]  # ours: removed at the end
        stack.callback(lambda: [shutil.rmtree(t, ignore_errors=True) for t in temporaries])
        for corpus, factors in speeds.items():
            prefix = Path(corpus).resolve().name
            originals = [u for p, u in train_rows if p == prefix]
            for factor in factors:
                train_rows += speed_perturb(originals, prefix, factor, temporaries[0], final_folder=Path(out).resolve())
        for (_, folder), rows, temporary in zip(targets, (train_rows, held_rows), temporaries):
            _write(temporary, rows)
            install_tree(temporary, folder, COMMAND)
    return {"train": len(train_rows), "held_out": len(held_rows)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--corpus", action="append", required=True)
    parser.add_argument("--hold-out", action="append", default=[], help="CORPUS=FRACTION (prompt-level)")
    parser.add_argument("--held-out-dir", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--speed", action="append", default=[], help="CORPUS=F1,F2 (speed-perturbed copies, e.g. 0.9,1.1)")
    args = parser.parse_args(argv)
    hold = {}
    for item in args.hold_out:
        corpus, _, fraction = item.rpartition("=")
        if corpus not in args.corpus:
            parser.error(f"--hold-out {item}: {corpus} is not one of the --corpus arguments")
        hold[corpus] = float(fraction)
    speeds = {}
    for item in args.speed:
        corpus, _, factors = item.rpartition("=")
        if corpus not in args.corpus:
            parser.error(f"--speed {item}: {corpus} is not one of the --corpus arguments")
        try:
            speeds[corpus] = [float(f) for f in factors.split(",")]
        except ValueError:
            parser.error(f"--speed {item}: factors must be numbers, e.g. {corpus}=0.9,1.1")
    print(combine(args.corpus, args.out, hold, args.held_out_dir, args.seed, speeds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
