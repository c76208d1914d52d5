"""The codec recipe ablation's table (``training/recipes/codec-ablation.sh``) from its measurements.

    python -m ella_v_hf.evaluation.codec_ablation_table RUNS/codec_ablation [--file measure.json]

Reads ``NAME/FILE`` (a ``measure_codec --json`` output) of every run and prints one Markdown row per
run: WER at each measured k and unquantised, the ground truth's WER and each row's ratio to it,
and, where measured with ``--quality``, DNSMOS P.808, PESQ and STOI of all codebooks; and from
``NAME/first_level.json`` (``measure_codec --prepared``) what the GAR must learn: the first level's
entropy given each frame's aligned phoneme and its phoneme purity.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .table_cells import format_cell

#: Each run's first-level statistics (``measure_codec --prepared``).
FIRST_LEVEL_FILE = "first_level.json"


def ablation_rows(folder: str | Path, file: str = "measure.json") -> list[tuple[str, dict, dict]]:
    """``(run name, measurement, first-level statistics)`` for every run folder holding ``file`` or
    ``first_level.json`` (``measure_codec --prepared``), in name order; a missing one is ``{}``."""
    def read(path: Path) -> dict:
        return json.loads(path.read_text()) if path.is_file() else {}

    runs = sorted({path.parent for pattern in (file, FIRST_LEVEL_FILE) for path in Path(folder).glob(f"*/{pattern}")})
    return [(run.name, read(run / file), read(run / FIRST_LEVEL_FILE)) for run in runs]


def markdown(rows: list[tuple[str, dict, dict]]) -> str:
    """One table row per run (see the module docstring)."""
    if not rows:
        raise ValueError("no measurements found")
    levels = sorted({int(k) for _, m, _ in rows for k in m.get("first_codebooks", {})}) or [1]
    top = str(levels[-1])
    head = (["run", "n", "ground truth"] + [f"k={k}" for k in levels]
            + ["unquantised", f"k={top} / GT", "P.808 k=" + top, "PESQ", "STOI", "H(first level given phoneme)", "phoneme purity"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, m, first_level in rows:
        truth = m.get("ground_truth", {}).get("wer")
        codebooks = m.get("first_codebooks", {})
        cells = [name, str(m.get("utterances", "–")), format_cell(truth, percent=True)]
        cells += [format_cell(codebooks.get(str(k), {}).get("wer"), percent=True) for k in levels]
        cells.append(format_cell(m.get("stages", {}).get("unquantised", {}).get("wer"), percent=True))
        cells.append(f"{codebooks[top]['wer'] / truth:.2f} ×" if top in codebooks and truth else "–")
        quality = m.get("quality", {}).get(f"first_{top}", {})
        cells += [format_cell(quality.get(key), digits=2) for key in ("dnsmos_p808", "pesq", "stoi")]
        entropy = first_level.get("entropy_given_phoneme")
        cells += [f"{entropy:.2f} nats" if entropy is not None else "–", format_cell(first_level.get("phoneme_purity"), digits=2)]
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
