"""Offline multi-voice English demo corpus synthesised with Debian's flite voices.

Speakers are flite's voices (awb, rms, slt, kal16) and pitch/rate variants of them. Sentences
come from ``../shared/data`` (Harvard sentences, CMU ARCTIC a-prompts) when present, else from
the short list shipped here. Output: an audiofolder (``metadata.csv`` with
file_name,text,speaker_id) plus flite's own phone segmentation (``segments.jsonl``: per file,
flite's phones with end times in seconds), which alignment evaluation can compare against.

Needs the ``flite`` Debian package (``apt-get install flite``).
"""

from __future__ import annotations

import csv
import json
import os
import random
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from .._outputs import install_tree, temporary_dir_beside, writes_output_dir

#: (speaker id, flite voice, duration_stretch, f0 mean in Hz or None for the voice's own)
VOICES: list[tuple[str, str, float, float | None]] = [
    ("slt", "slt", 1.0, None),
    ("rms", "rms", 1.0, None),
    ("awb", "awb", 1.0, None),
    ("kal16", "kal16", 1.0, None),
    ("slt_high_fast", "slt", 0.85, 210.0),
    ("rms_low_slow", "rms", 1.15, 85.0),
    ("awb_high", "awb", 1.0, 150.0),
    ("kal16_slow", "kal16", 1.2, 95.0),
]

FALLBACK_SENTENCES = [
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It's easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.",
    "The hogs were fed chopped corn and garbage.",
    "Four hours of steady work faced us.",
    "A large size in stockings is hard to sell.",
    "The boy was there when the sun rose.",
    "A rod is used to catch pink salmon.",
    "The source of the huge river is the clear spring.",
    "Kick the ball straight and follow through.",
    "Help the woman get back to her feet.",
    "A pot of tea helps to pass the evening.",
    "Smoky fires lack flame and heat.",
    "The soft cushion broke the man's fall.",
    "The salt breeze came across from the sea.",
    "The girl at the booth sold fifty bonds.",
]


@dataclass
class DemoCorpusSummary:
    out: str
    utterances: int
    speakers: int
    seconds: float


def shared_sentences(data_dir: str | os.PathLike | None = None) -> list[str]:
    """Harvard sentences and ARCTIC a-prompts from ``data_dir`` (default ``../shared/data``), or the fallback list."""
    root = Path(data_dir) if data_dir else Path.cwd().parent / "shared" / "data"
    sentences: list[str] = []
    harvard = root / "harvard-sentences.txt"
    if harvard.is_file():
        sentences += [line.strip() for line in harvard.read_text(encoding="utf-8").splitlines() if line.strip()]
    arctic = root / "cmuarctic-a.data"
    if arctic.is_file():
        sentences += [m.group(1) for m in re.finditer(r'"(.*?)"', arctic.read_text(encoding="utf-8"))]
    return sentences or list(FALLBACK_SENTENCES)


def _synthesise(flite: str, speaker: tuple[str, str, float, float | None], text: str, path: Path) -> list[tuple[str, float]]:
    _, voice, stretch, f0 = speaker
    command = [flite, "-voice", voice, "--setf", f"duration_stretch={stretch}"]
    if f0 is not None:
        command += ["--setf", f"int_f0_target_mean={f0}"]
    command += ["-psdur", "-t", text, "-o", str(path)]
    out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=120).stdout
    segments = []
    for item in out.split():
        phone, _, end = item.rpartition(":")
        try:
            segments.append((phone, float(end)))
        except ValueError:
            continue
    return segments


def _check_demo_corpus(arguments: dict) -> None:
    """flite and the voice names, before the output directory is created."""
    if shutil.which("flite") is None:
        raise RuntimeError("make-demo-corpus needs Debian's flite: apt-get install flite")
    known = {v[0] for v in VOICES}
    unknown = [v for v in arguments["voices"] or [] if v not in known]
    if unknown:
        raise ValueError(f"Unknown voices {unknown}; available: {sorted(known)}")


def _is_demo_corpus(path: Path) -> bool:
    """A demo corpus written before the output marker existed."""
    return (path / "metadata.csv").is_file() and (path / "segments.jsonl").is_file()


@writes_output_dir("ella-v make-demo-corpus", legacy=_is_demo_corpus, check=_check_demo_corpus)
def make_demo_corpus(
    out: str | os.PathLike,
    n: int = 400,
    voices: list[str] | None = None,
    data_dir: str | os.PathLike | None = None,
    seed: int = 0,
    workers: int = 2,
    progress: bool = True,
) -> DemoCorpusSummary:
    """Synthesise ``n`` utterances, spread over the chosen voices.

    Args:
        out: Output directory: new, empty, or an earlier demo corpus (whose files are replaced;
            files a user added stay).
        n: Number of utterances.
        voices: Speaker ids from :data:`VOICES` (default: all).
        data_dir: Where the shared sentence lists are.
        seed: Sentence/speaker assignment seed.
        workers: Parallel flite processes.
        progress: Show a progress bar.

    Raises:
        RuntimeError: If the ``flite`` program is not installed.
        ValueError: For unknown voice names.
    """
    flite = shutil.which("flite")
    known = {v[0]: v for v in VOICES}
    chosen = [known[v] for v in voices] if voices else list(VOICES)
    sentences = shared_sentences(data_dir)
    rng = random.Random(seed)
    order = list(range(len(sentences)))
    rng.shuffle(order)
    jobs = []
    for i in range(n):
        speaker = chosen[i % len(chosen)]
        sentence_index = order[i % len(order)]
        jobs.append((speaker, sentences[sentence_index], f"audio/{speaker[0]}/{speaker[0]}_{i:05d}.wav"))
    root = temporary_dir_beside(out)  # written here, then moved into OUT file by file
    try:
        for speaker in chosen:
            (root / "audio" / speaker[0]).mkdir(parents=True, exist_ok=True)

        def run(job):
            speaker, text, name = job
            return _synthesise(flite, speaker, text, root / name)

        with ThreadPoolExecutor(max(1, workers)) as pool:
            segments = list(tqdm(pool.map(run, jobs), total=len(jobs), desc="flite", disable=not progress))
        with open(root / "metadata.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["file_name", "text", "speaker_id"])
            for speaker, text, name in jobs:
                writer.writerow([name, text, speaker[0]])
        with open(root / "segments.jsonl", "w", encoding="utf-8") as handle:
            for (_, _, name), segs in zip(jobs, segments):
                handle.write(json.dumps({"file_name": name, "segments": segs}) + "\n")
        install_tree(root, out, "ella-v make-demo-corpus")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    seconds = sum(segs[-1][1] for segs in segments if segs)
    return DemoCorpusSummary(out=str(out), utterances=len(jobs), speakers=len(chosen), seconds=seconds)


__all__ = ["FALLBACK_SENTENCES", "VOICES", "DemoCorpusSummary", "make_demo_corpus", "shared_sentences"]
