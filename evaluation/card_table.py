"""The demos' model-card table and targets from ``evaluation/recipes/evaluate_demo.sh``'s results.

    python -m ella_v_hf.evaluation.card_table RUNS/eval [--models ella-v vall-e] [--targets]

Reads ``MODEL-SET.json`` (``ella-v evaluate`` outputs) for every model and set in :data:`SETS` that
exists and prints one Markdown table: per set, ground truth and codec resynthesis (all codebooks and
the first alone) from the first model's file (the demos share their codec), then each model at
greedy and top-p 0.9 (and the paper's decoding where it was run) — WER, CER, SIM, DNSMOS P.808,
INF, EMPTY, CUT (mean ± spread over the seeds of sampled rows). ``--targets`` adds the ratios the
demos are judged by (:func:`targets`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .table_cells import format_cell

#: (file suffix, the set as the card names it).
SETS: tuple[tuple[str, str], ...] = (
    ("kathleen-none", "Kathleen (held out), no prompt"),
    ("kathleen", "Kathleen (held out), cross-sentence prompt"),
    ("harvard50", "50 unseen Harvard sentences, cross prompt"),
    ("hard", "hard sentences, fixed Kathleen prompt"),
)
#: (system name in an evaluation's summary, as the card names it).
REFERENCE_SYSTEMS: tuple[tuple[str, str], ...] = (
    ("ground_truth", "ground truth"),
    ("codec_resynthesis", "codec resynthesis, all codebooks"),
    ("codec_first_codebook", "codec resynthesis, first codebook"),
)
#: (strategy in an evaluation's summary, as the card names it); the paper's decoding (EOP sampled
#: like any token) where the evaluation ran it (ELLA-V without a prompt).
STRATEGIES: tuple[tuple[str, str], ...] = (
    ("greedy", "greedy"),
    ("top_p=0.9", "top-p 0.9"),
    ("greedy,eop_quantile=off", "greedy, EOP sampled (the paper's decoding)"),
    ("top_p=0.9,eop_quantile=off", "top-p 0.9, EOP sampled (the paper's decoding)"),
)
_MODEL_NAMES = {"ella-v": "ELLA-V", "vall-e": "VALL-E"}


def load_results(folder: str | Path, models: list[str]) -> dict[str, dict[str, dict]]:
    """``{set suffix: {model: evaluation result}}`` for the files that exist.

    Raises:
        FileNotFoundError: not one ``MODEL-SET.json`` in ``folder``.
    """
    folder = Path(folder)
    results: dict[str, dict[str, dict]] = {}
    for suffix, _ in SETS:
        for model in models:
            path = folder / f"{model}-{suffix}.json"
            if path.is_file():
                results.setdefault(suffix, {})[model] = json.loads(path.read_text(encoding="utf-8"))
    if not results:
        raise FileNotFoundError(f"{folder}: no evaluation of {', '.join(models)} ({', '.join(f'MODEL-{s}.json' for s, _ in SETS)})")
    return results


def _cells(metrics: dict) -> list[str]:
    def rate(key: str) -> str:
        return format_cell(metrics.get(key), percent=True, std=metrics.get(f"{key}_std"))

    return [rate("wer"), rate("cer"), format_cell(metrics.get("sim")), format_cell(metrics.get("dnsmos_p808"), digits=2),
            *(rate(key) for key in ("inf_rate", "empty_rate", "cut_rate"))]


def markdown(results: dict[str, dict[str, dict]], models: list[str]) -> str:
    """The card's table (see the module docstring)."""
    head = ["set", "system", "WER", "CER", "SIM", "DNSMOS P.808", "INF", "EMPTY", "CUT"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for suffix, title in SETS:
        if suffix not in results:
            continue
        by_model = results[suffix]
        rows: list[list[str]] = []
        first = by_model[next(m for m in models if m in by_model)]["summary"]
        rows += [[name, *_cells(first[key])] for key, name in REFERENCE_SYSTEMS if key in first]
        for model in models:
            summary = by_model.get(model, {}).get("summary", {})
            rows += [[f"{_MODEL_NAMES.get(model, model)} {name}", *_cells(summary[key])] for key, name in STRATEGIES if key in summary]
        for index, row in enumerate(rows):
            lines.append("| " + " | ".join([title if index == 0 else "", *row]) + " |")
    return "\n".join(lines) + "\n"


def targets(results: dict[str, dict[str, dict]]) -> dict[str, float | None]:
    """The ratios the demos are judged by (None where a result is missing).

    On held-out Kathleen without a prompt: codec resynthesis (all codebooks, first codebook) and
    ELLA-V at top-p 0.9 and greedy as multiples of the ground truth's WER, ELLA-V's highest INF rate
    over every set and strategy, and ground truth's DNSMOS P.808 minus ELLA-V's at top-p 0.9; on the
    hard sentences VALL-E's top-p 0.9 WER as a multiple of ELLA-V's.
    """
    def summary(suffix: str, model: str) -> dict:
        return results.get(suffix, {}).get(model, {}).get("summary", {})

    kathleen = summary("kathleen-none", "ella-v")
    truth = kathleen.get("ground_truth", {}).get("wer")

    def ratio(metrics: dict, base: float | None, key: str = "wer") -> float | None:
        return None if not metrics or metrics.get(key) is None or not base else metrics[key] / base

    infs = [m["inf_rate"] for s, _ in SETS for m in summary(s, "ella-v").values() if m.get("inf_rate") is not None]
    p808_truth, p808_top_p = (kathleen.get(k, {}).get("dnsmos_p808") for k in ("ground_truth", "top_p=0.9"))
    hard_ella_v = summary("hard", "ella-v").get("top_p=0.9", {}).get("wer")
    return {
        "codec_all_over_ground_truth": ratio(kathleen.get("codec_resynthesis", {}), truth),
        "codec_first_over_ground_truth": ratio(kathleen.get("codec_first_codebook", {}), truth),
        "ella_v_top_p_over_ground_truth": ratio(kathleen.get("top_p=0.9", {}), truth),
        "ella_v_greedy_over_ground_truth": ratio(kathleen.get("greedy", {}), truth),
        "ella_v_max_inf_rate": max(infs) if infs else None,
        "dnsmos_p808_gap_to_ground_truth": None if p808_truth is None or p808_top_p is None else p808_truth - p808_top_p,
        "vall_e_hard_over_ella_v": ratio(summary("hard", "vall-e").get("top_p=0.9", {}), hard_ella_v),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="evaluate_demo.sh's RUNS/eval")
    parser.add_argument("--models", nargs="+", default=["ella-v", "vall-e"])
    parser.add_argument("--targets", action="store_true", help="also print the ratios the demos are judged by (JSON)")
    args = parser.parse_args(argv)
    results = load_results(args.folder, args.models)
    sys.stdout.write(markdown(results, args.models))
    if args.targets:
        sys.stdout.write("\n" + json.dumps(targets(results), indent=1) + "\n")


if __name__ == "__main__":
    main()
