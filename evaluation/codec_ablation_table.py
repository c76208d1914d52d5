"""The codec recipe ablation's table (``training/recipes/codec-ablation.sh``) from its measurements.

    python -m ella_v_hf.evaluation.codec_ablation_table RUNS/codec_ablation [--file measure.json]

Reads ``NAME/FILE`` (a ``measure_codec --json`` output) of every run and prints one Markdown row per
run: WER at each measured k and unquantised, the ground truth's WER and each row's ratio to it,
and, where measured with ``--quality``, DNSMOS P.808, PESQ and STOI of all codebooks.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .table_cells import format_cell


def ablation_rows(folder: str | Path, file: str = "measure.json") -> list[tuple[str, dict]]:
    """``(run name, measurement)`` for every ``folder/NAME/file``, in name order."""
    return [(path.parent.name, json.loads(path.read_text())) for path in sorted(Path(folder).glob(f"*/{file}"))]


def markdown(rows: list[tuple[str, dict]]) -> str:
    """One table row per run (see the module docstring)."""
    if not rows:
        raise ValueError("no measurements found")
    levels = sorted({int(k) for _, m in rows for k in m["first_codebooks"]})
    top = str(levels[-1])
    head = ["run", "n", "ground truth"] + [f"k={k}" for k in levels] + ["unquantised", f"k={top} / GT", "P.808 k=" + top, "PESQ", "STOI"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, m in rows:
        truth = m["ground_truth"]["wer"]
        cells = [name, str(m["utterances"]), format_cell(truth, percent=True)]
        cells += [format_cell(m["first_codebooks"].get(str(k), {}).get("wer"), percent=True) for k in levels]
        cells.append(format_cell(m.get("stages", {}).get("unquantised", {}).get("wer"), percent=True))
        cells.append(f"{m['first_codebooks'][top]['wer'] / truth:.2f} ×" if top in m["first_codebooks"] and truth else "–")
        quality = m.get("quality", {}).get(f"first_{top}", {})
        cells += [format_cell(quality.get(key), digits=2) for key in ("dnsmos_p808", "pesq", "stoi")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", help="the ablation's codec_ablation/ folder")
    parser.add_argument("--file", default="measure.json", help="each run's measurement file name")
    args = parser.parse_args(argv)
    try:
        print(markdown(ablation_rows(args.folder, args.file)), end="")
    except ValueError as error:
        parser.error(f"{args.folder}: {error}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
