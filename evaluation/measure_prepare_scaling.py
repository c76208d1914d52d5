"""How ``ella-v prepare`` scales with the corpus: peak memory and utterances per core-second.

    python -m ella_v_hf.evaluation.measure_prepare_scaling --source ../shared/data/kathleen \
        --work RUNS/prepare_scaling [--sizes 1000 4000 16000] [--num-proc 1] \
        [--codec learned] [--codec-model DIR] [--json]

For each size N it builds a corpus of N utterances in the LibriTTS layout
(``SPEAKER/CHAPTER/SPEAKER_CHAPTER_PARA_SENT.wav`` + ``.normalized.txt``; the audio files are
symbolic links to the source corpus's recordings, cycled, 250 utterances per speaker), runs
``ella-v prepare`` on it in a fresh output folder as a child process, and samples the memory of that
process and its workers every 0.25 s: the peak resident set of the main process, the peak of the
summed proportional set size (PSS: pages shared between the forked workers counted once) over the
whole process tree, that peak once the fixed-cost fitting is over (from when prepare writes its
aligner: the memory of the steps that grow with the corpus), and the peak of the tree's anonymous
resident memory (``RssAnon``): PSS also counts the page cache of the memory-mapped Arrow files a
step reads, which the kernel drops under pressure; anonymous memory it cannot. Throughput is read from the run's ``summary.json``, whose CPU seconds per
step count the process and its workers (so the figures hold on a machine busy with other work):
utterances (and audio seconds) per core-second of the screening and audio (encode + align) steps,
the two that grow with the corpus; fitting the codec and training the aligner on
``--fit-utterances`` recordings is a fixed cost, reported apart.

The projection for LibriTTS (585 h, 375,086 utterances in its full release) divides its audio hours
by the audio seconds per core-second measured at the largest size and adds the fixed costs once;
memory at LibriTTS's size is extrapolated from the slope of peak PSS over the sizes measured.

Each size's result is written to ``WORK/N/result.json`` once it is measured: a re-run skips it
(resumable). ``WORK`` may not hold anything else this script did not create.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from .._optional import require

#: LibriTTS's full release (train-clean-100/360, train-other-500, dev and test sets).
LIBRITTS_HOURS = 585.0
LIBRITTS_UTTERANCES = 375_086
#: Utterances per synthetic speaker (enough for the per-speaker mismatch thresholds).
PER_SPEAKER = 250
PER_CHAPTER = 50
#: Marks a work folder as this script's.
MARKER = ".prepare_scaling"


def build_libritts_layout(source: str | os.PathLike, target: Path, size: int) -> int:
    """Write ``size`` utterances in the LibriTTS layout under ``target`` (audio: symbolic links to the
    recordings of the corpus at ``source``, cycled). Returns the number written."""
    from ..processing.corpus import read_corpus

    utterances, _ = read_corpus(source)
    if not utterances:
        raise ValueError(f"No usable utterances in {source}")
    partial = target.with_name(target.name + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    for index in range(size):
        utterance = utterances[index % len(utterances)]
        speaker, chapter = 100 + index // PER_SPEAKER, 1000 + index // PER_CHAPTER
        name = f"{speaker}_{chapter}_{index // 10:06d}_{index % 10:06d}"
        folder = partial / str(speaker) / str(chapter)
        folder.mkdir(parents=True, exist_ok=True)
        link = folder / f"{name}.wav"
        if not link.is_symlink():
            link.symlink_to(Path(utterance.audio_path).resolve())
        (folder / f"{name}.normalized.txt").write_text(utterance.text.strip() + "\n", encoding="utf-8")
    os.replace(partial, target)
    return size


def random_encodec(target: Path) -> Path:
    """EnCodec 24 kHz's architecture with random weights, saved at ``target`` (once)."""
    if not (target / "config.json").is_file():
        import torch

        from ..modeling import EllaVEncodecConfig, EllaVEncodecModel

        torch.manual_seed(0)
        EllaVEncodecModel(EllaVEncodecConfig(bandwidth=6.0)).save_pretrained(target)
    return target


def _anonymous_bytes(pid: int) -> int:
    """A process's resident anonymous memory (``RssAnon``: heap and stacks, what the kernel cannot
    drop), without the file-backed pages of the memory-mapped Arrow files it reads (page cache)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0


class TreeMemory:
    """Samples a process's resident set and its process tree's summed PSS in a thread; once the file
    ``fitted`` exists (prepare's aligner, written when the fixed-cost fitting is over), also the peak
    from then on: the memory of the steps that grow with the corpus."""

    def __init__(self, pid: int, fitted: Path, interval: float = 0.25):
        psutil = require("psutil", "train", "measure_prepare_scaling (psutil comes with accelerate)")
        self._psutil = psutil
        self.process = psutil.Process(pid)
        self.fitted = fitted
        self.interval = interval
        self.peak_main_rss = 0
        self.peak_tree_pss = 0
        self.peak_tree_pss_after_fit = 0
        self.peak_tree_anonymous = 0
        self.peak_tree_anonymous_after_fit = 0
        self.peak_processes = 1
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        psutil = self._psutil
        while not self._stop.is_set():
            try:
                after_fit = self.fitted.exists()
                children = self.process.children(recursive=True)
                main = self.process.memory_full_info()  # raises once the process is gone: no partial sample
                total, anonymous = main.pss, _anonymous_bytes(self.process.pid)
                for child in children:
                    try:
                        total += child.memory_full_info().pss
                        anonymous += _anonymous_bytes(child.pid)
                    except (psutil.NoSuchProcess, psutil.AccessDenied, OSError):
                        continue
            except (psutil.NoSuchProcess, psutil.ZombieProcess):
                return
            self.peak_main_rss = max(self.peak_main_rss, main.rss)
            self.peak_tree_pss = max(self.peak_tree_pss, total)
            self.peak_tree_anonymous = max(self.peak_tree_anonymous, anonymous)
            if after_fit:
                self.peak_tree_pss_after_fit = max(self.peak_tree_pss_after_fit, total)
                self.peak_tree_anonymous_after_fit = max(self.peak_tree_anonymous_after_fit, anonymous)
            self.peak_processes = max(self.peak_processes, 1 + len(children))
            self.samples += 1
            self._stop.wait(self.interval)


def measure_size(args: argparse.Namespace, size: int) -> dict[str, Any]:
    """Build the corpus of ``size`` utterances (once) and time a fresh ``prepare`` of it."""
    folder = Path(args.work) / str(size)
    result_file = folder / "result.json"
    if result_file.is_file():
        return json.loads(result_file.read_text(encoding="utf-8"))
    corpus = folder / "corpus"
    if not corpus.is_dir():
        build_libritts_layout(args.source, corpus, size)
    out = folder / f"prepared-{time.strftime('%Y%m%d-%H%M%S')}"
    command = [sys.executable, "-m", "ella_v_hf.cli", "prepare", "--data", str(corpus), "--out", str(out),
               "--num-proc", str(args.num_proc), "--codec", args.codec, "--fit-utterances", str(args.fit_utterances), "--json"]
    if args.codec_model:
        command += ["--codec-model", args.codec_model]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    start = time.time()
    with open(folder / "prepare.log", "w") as log:
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, env=environment, text=True)
        with TreeMemory(child.pid, out / "aligner" / "config.json") as memory:
            stdout, _ = child.communicate()
    wall = time.time() - start
    if child.returncode != 0:
        raise RuntimeError(f"prepare failed on {size} utterances (exit {child.returncode}); see {folder / 'prepare.log'}")
    summary = json.loads(stdout)
    cpu = summary["cpu_seconds"]  # per step, this process and its workers: right however busy the machine is
    audio_seconds = summary["hours"] * 3600
    result = {
        "utterances": size,
        "kept": summary["utterances"],
        "audio_hours": summary["hours"],
        "num_proc": args.num_proc,
        "codec": args.codec,
        "codec_model": args.codec_model,
        "wall_seconds": round(wall, 1),
        "seconds": summary["seconds"],
        "cpu_seconds": cpu,
        "peak_main_rss_mb": round(memory.peak_main_rss / 2**20, 1),
        "peak_tree_pss_mb": round(memory.peak_tree_pss / 2**20, 1),
        "peak_tree_pss_after_fit_mb": round(memory.peak_tree_pss_after_fit / 2**20, 1),
        "peak_tree_anonymous_mb": round(memory.peak_tree_anonymous / 2**20, 1),
        "peak_tree_anonymous_after_fit_mb": round(memory.peak_tree_anonymous_after_fit / 2**20, 1),
        "peak_processes": memory.peak_processes,
        "memory_samples": memory.samples,
        "screen_utterances_per_core_second": round(size / max(cpu["screen"], 1e-9), 2),
        "audio_utterances_per_core_second": round(size / max(cpu["audio"], 1e-9), 2),
        "audio_seconds_per_core_second": round(audio_seconds / max(cpu["audio"] + cpu["screen"], 1e-9), 2),
        "fixed_core_seconds": round(cpu.get("codec", 0) + cpu.get("aligner", 0), 1),
        "output": str(out),
    }
    result_file.write_text(json.dumps(result, indent=1), encoding="utf-8")
    return result


def project(results: list[dict[str, Any]]) -> dict[str, Any]:
    """LibriTTS's preparation time per core and its peak memory, from the measured sizes."""
    largest = max(results, key=lambda r: r["utterances"])
    rate = largest["audio_seconds_per_core_second"]  # audio seconds per core-second (screen + audio steps)
    core_hours = LIBRITTS_HOURS * 3600 / rate / 3600
    projection = {
        "libritts_hours": LIBRITTS_HOURS,
        "libritts_utterances": LIBRITTS_UTTERANCES,
        "audio_seconds_per_core_second": rate,
        "core_hours": round(core_hours + largest["fixed_core_seconds"] / 3600, 1),
        "hours_on_16_cores": round(core_hours / 16 + largest["fixed_core_seconds"] / 3600, 2),
    }
    if len(results) >= 2:
        import numpy as np

        sizes = np.array([r["utterances"] for r in results], dtype=float)
        for key, column in (("peak_pss", "peak_tree_pss_mb"), ("peak_pss_after_fit", "peak_tree_pss_after_fit_mb"),
                            ("peak_anonymous", "peak_tree_anonymous_mb")):
            pss = np.array([r[column] for r in results], dtype=float)
            slope, intercept = np.polyfit(sizes, pss, 1)
            projection[f"{key}_mb_per_1000_utterances"] = round(float(slope) * 1000, 2)
            # A flat or falling fit (noise around a constant) extrapolates to no more than was measured.
            projection[f"{key}_mb_at_libritts"] = round(max(float(pss.max()), float(intercept + slope * LIBRITTS_UTTERANCES)), 1)
    return projection


def markdown(results: list[dict[str, Any]], projection: dict[str, Any]) -> str:
    lines = [
        "| utterances | audio h | processes | peak RSS main (MB) | peak PSS tree (MB) | peak PSS after fitting (MB) | peak anonymous (MB) | screen utt/core-s | encode+align utt/core-s | audio s/core-s | fixed core-s | wall s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['utterances']:,} | {r['audio_hours']:.2f} | {r['num_proc']} | {r['peak_main_rss_mb']:.0f} | {r['peak_tree_pss_mb']:.0f} | {r['peak_tree_pss_after_fit_mb']:.0f} | {r['peak_tree_anonymous_mb']:.0f} | "
            f"{r['screen_utterances_per_core_second']:.1f} | {r['audio_utterances_per_core_second']:.1f} | "
            f"{r['audio_seconds_per_core_second']:.1f} | {r['fixed_core_seconds']:.0f} | {r['wall_seconds']:.0f} |"
        )
    text = "\n".join(lines) + "\n\n"
    text += (f"LibriTTS ({projection['libritts_hours']:.0f} h): {projection['core_hours']} core-hours "
             f"({projection['hours_on_16_cores']} h on 16 cores)")
    if "peak_pss_mb_per_1000_utterances" in projection:
        text += (f"; per 1,000 utterances the peak PSS changes by {projection['peak_pss_mb_per_1000_utterances']} MB, the peak "
                 f"anonymous memory by {projection['peak_anonymous_mb_per_1000_utterances']} MB (extrapolated to LibriTTS's size: "
                 f"{projection['peak_pss_mb_at_libritts']:.0f} MB PSS, {projection['peak_anonymous_mb_at_libritts']:.0f} MB anonymous)")
    return text + ".\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", required=True, help="a corpus whose recordings and texts are cycled (any layout prepare reads)")
    parser.add_argument("--work", required=True, help="folder for the corpora, the prepared outputs and the results")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000, 16000])
    parser.add_argument("--num-proc", type=int, default=1)
    parser.add_argument("--codec", default="learned")
    parser.add_argument("--codec-model", default=None)
    parser.add_argument("--random-encodec", action="store_true",
                        help="time the paper's codec without its weights: EnCodec 24 kHz's architecture (EncodecConfig's "
                             "defaults) with random weights, saved in WORK and used as --codec encodec --codec-model "
                             "(the same computation as facebook/encodec_24khz; its codes mean nothing)")
    parser.add_argument("--fit-utterances", type=int, default=400)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    work = Path(args.work)
    if work.exists() and not (work / MARKER).is_file() and any(work.iterdir()):
        parser.error(f"{work} holds files this script did not create; give an empty or new folder")
    work.mkdir(parents=True, exist_ok=True)
    (work / MARKER).touch()
    if args.random_encodec:
        args.codec, args.codec_model = "encodec", str(random_encodec(work / "encodec-24khz-random"))
    results = []
    for size in sorted(args.sizes):
        results.append(measure_size(args, size))
        print(f"{size} utterances: peak PSS {results[-1]['peak_tree_pss_mb']} MB, "
              f"{results[-1]['audio_utterances_per_core_second']} utt/core-s (encode + align)", file=sys.stderr)
    projection = project(results)
    report = {"results": results, "projection": projection}
    (work / "scaling.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    print(json.dumps(report, indent=1) if args.json else markdown(results, projection))


if __name__ == "__main__":
    main()
