"""Measure the built-in aligner: agreement of two independently trained aligners (different seeds
and training samples), agreement with flite's own segmentation where the corpus has it
(``segments.jsonl`` from ``ella-v make-demo-corpus``), and mismatch detection on swapped transcripts.

    python -m ella_v_hf.evaluation.measure_aligner --data DEMO_CORPUS --n 200 --json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..modeling.aligner_ella_v import EllaVAlignerConfig
from ..processing.aligners.builtin import train_aligner
from ..processing.audio import load_audio, prepare_waveform
from ..processing.corpus import read_corpus
from ..processing.tokenization_ella_v import EllaVPhonemeTokenizer


def _boundaries(durations: list[int]) -> np.ndarray:
    return np.cumsum(durations)[:-1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--n", type=int, default=200, help="utterances measured (not used for training)")
    parser.add_argument("--train", type=int, default=300, help="training utterances per aligner")
    parser.add_argument("--iterations", type=int, default=4)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    utterances, _ = read_corpus(args.data)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(utterances))
    measured = [utterances[i] for i in order[: args.n]]
    pools = [order[args.n :][k :: 2][: args.train] for k in range(2)]  # disjoint training samples
    tok = EllaVPhonemeTokenizer()
    cache: dict[str, tuple[np.ndarray, list[int]]] = {}

    def example(index: int):
        u = utterances[index]
        if u.id not in cache:
            cache[u.id] = (prepare_waveform(*load_audio(u.audio_path), 16000), tok(u.text)["input_ids"])
        return cache[u.id]

    config = EllaVAlignerConfig(vocab_size=tok.vocab_size, separator_ids=tok.separator_token_ids)
    aligners = [
        train_aligner([example(i) for i in pool], config, iterations=args.iterations, seed=seed).eval()
        for seed, pool in enumerate(pools)
    ]
    diffs, onset_a, onset_flite, own, swapped = [], [], [], [], []
    segments = {}
    seg_file = Path(args.data) / "segments.jsonl"
    if seg_file.is_file():
        for line in seg_file.read_text().splitlines():
            item = json.loads(line)
            segments[Path(item["file_name"]).with_suffix("").as_posix()] = item["segments"]
    for k, u in enumerate(tqdm(measured, desc="align", file=sys.stderr)):
        waveform, ids = prepare_waveform(*load_audio(u.audio_path), 16000), tok(u.text)["input_ids"]
        a, b = (al.align(waveform, ids, check=False) for al in aligners)
        diffs.append(np.abs(_boundaries(a.durations) - _boundaries(b.durations)))
        own.append(a.score)
        other = measured[(k + 1) % len(measured)]
        swapped.append(aligners[0].align(waveform, tok(other.text)["input_ids"], check=False).score)
        segs = segments.get(u.id)
        if segs and segs[0][0] == "pau":
            onset_flite.append(segs[0][1] * 50.0)  # flite's leading pause end, in 50 Hz frames
            onset_a.append(a.durations[0])
    diffs_all = np.concatenate(diffs)
    threshold = aligners[0].config.mismatch_threshold
    result = {
        "data": args.data,
        "measured_utterances": len(measured),
        "train_utterances_per_aligner": args.train,
        "boundaries": int(diffs_all.size),
        "agreement": {
            "mean_abs_boundary_difference_frames": round(float(diffs_all.mean()), 3),
            "within_1_frame": round(float((diffs_all <= 1).mean()), 4),
            "within_2_frames": round(float((diffs_all <= 2).mean()), 4),
            "frame_ms": 20.0,
        },
        "speech_onset_vs_flite": (
            {
                "mean_abs_difference_frames": round(float(np.mean(np.abs(np.array(onset_a) - np.array(onset_flite)))), 3),
                "utterances": len(onset_a),
            }
            if onset_a
            else None
        ),
        "mismatch_detection": {
            "threshold": round(float(threshold), 3),
            "own_transcript_flagged": round(float(np.mean(np.array(own) < threshold)), 4),
            "swapped_transcript_flagged": round(float(np.mean(np.array(swapped) < threshold)), 4),
        },
    }
    print(json.dumps(result) if args.json else json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
