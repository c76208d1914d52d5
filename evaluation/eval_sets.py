"""Evaluation audiofolders of sentences no training corpus has read.

    python -m ella_v_hf.evaluation.eval_sets --out harvard50 --n 50 \\
        --sentences ../shared/data/harvard-sentences.txt --exclude train_corpus --voice rms

The references are spoken by one of the demo corpus's flite voices, so ``ella-v evaluate`` can
report ground truth and codec resynthesis beside the models, with cross-sentence prompts from the
same voice.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from pathlib import Path

from ..processing.corpus import read_corpus, sentence_key
from ..processing.demo_corpus import make_demo_corpus


def unseen_sentences(sentences: list[str], exclude: list[str], n: int, seed: int = 0) -> list[str]:
    """``n`` sentences (seeded choice, file order kept) whose normalised text no ``exclude`` corpus holds.

    Raises:
        ValueError: Fewer than ``n`` unseen sentences remain.
    """
    seen: set[str] = set()
    for corpus in exclude:
        utterances, _ = read_corpus(corpus)
        seen |= {sentence_key(u.text) for u in utterances}
    unique = list(dict.fromkeys(s for s in sentences if s.strip() and sentence_key(s) not in seen))
    if len(unique) < n:
        raise ValueError(f"Only {len(unique)} sentences are not in {exclude}; asked for {n}")
    chosen = set(random.Random(seed).sample(range(len(unique)), n))
    return [s for i, s in enumerate(unique) if i in chosen]


def make_eval_set(out: str, sentences_file: str, exclude: list[str], n: int = 50, voice: str = "rms", seed: int = 0) -> dict:
    """Write an audiofolder of ``n`` unseen sentences spoken by flite ``voice``; returns a summary."""
    lines = [line.strip() for line in Path(sentences_file).read_text(encoding="utf-8").splitlines()]
    chosen = unseen_sentences(lines, exclude, n, seed)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "harvard-sentences.txt").write_text("\n".join(chosen) + "\n", encoding="utf-8")
        summary = make_demo_corpus(out, n=n, voices=[voice], data_dir=tmp, seed=seed, progress=False)
    return {"out": out, "utterances": summary.utterances, "seconds": round(summary.seconds, 1), "excluded_corpora": exclude}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--sentences", required=True, help="one sentence per line")
    parser.add_argument("--exclude", action="append", default=[], help="training corpus whose sentences are left out")
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--voice", default="rms")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(json.dumps(make_eval_set(args.out, args.sentences, args.exclude, args.n, args.voice, args.seed)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
