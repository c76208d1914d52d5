"""One table comparing waveform stages (Griffin-Lim settings, vocoders) on the same codes.

    python -m ella_v_hf.evaluation.waveform_stage_table [--label-header NAME] LABEL=CODEC_JSON,DEMO_JSON ...

Each row: a ``measure_codec --stages --quality --json`` output (the codec's resynthesis with all
codebooks, and the waveform stage's ceiling: the reference's own log-mel through the stage) and an
``ella-v evaluate --sweep "greedy;top_p=0.9"`` output of a demo decoding with that stage (the
generated codes are the same in every row when the seed is). Used by
``evaluation/recipes/sharpening.sh`` and ``training/recipes/vocoder.sh``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .table_cells import format_cell

HEADER = ("codec k=8 WER", "P.808", "SIG / BAK / OVRL", "PESQ", "STOI", "ceiling WER", "ceiling P.808",
          "demo greedy WER", "P.808", "demo top-p WER", "P.808")


def row(label: str, codec: dict, demo: dict) -> list[str]:
    """The cells of one waveform stage (see the module docstring); a missing figure prints "–"."""
    k8 = codec.get("quality", {}).get("first_8", {})
    ceiling = codec.get("quality", {}).get("waveform_stage", {})
    greedy, top_p = demo.get("summary", {}).get("greedy", {}), demo.get("summary", {}).get("top_p=0.9", {})
    return [label, format_cell(codec.get("first_codebooks", {}).get("8", {}).get("wer"), True),
            format_cell(k8.get("dnsmos_p808"), digits=2),
            " / ".join(format_cell(k8.get(f"dnsmos_{key}"), digits=2) for key in ("sig", "bak", "ovrl")),
            format_cell(k8.get("pesq"), digits=2), format_cell(k8.get("stoi")),
            format_cell(codec.get("stages", {}).get("waveform_stage", {}).get("wer"), True),
            format_cell(ceiling.get("dnsmos_p808"), digits=2), format_cell(greedy.get("wer"), True),
            format_cell(greedy.get("dnsmos_p808"), digits=2), format_cell(top_p.get("wer"), True),
            format_cell(top_p.get("dnsmos_p808"), digits=2)]


def markdown(rows: list[tuple[str, dict, dict]], label_header: str = "waveform stage") -> str:
    """A Markdown table, one row per ``(label, measure_codec output, ella-v evaluate output)``."""
    lines = ["| " + " | ".join((label_header, *HEADER)) + " |", "|" + "---|" * (len(HEADER) + 1)]
    return "\n".join(lines + ["| " + " | ".join(row(*entry)) + " |" for entry in rows])


def _entry(text: str) -> tuple[str, dict, dict]:
    label, _, files = text.partition("=")
    paths = files.split(",")
    if not label or len(paths) != 2:
        raise argparse.ArgumentTypeError(f"{text!r}: expected LABEL=CODEC_JSON,DEMO_JSON")
    try:
        return label, *(json.loads(Path(path).read_text()) for path in paths)
    except (OSError, ValueError) as error:
        raise argparse.ArgumentTypeError(f"{text!r}: {error}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", nargs="+", type=_entry, metavar="LABEL=CODEC_JSON,DEMO_JSON")
    parser.add_argument("--label-header", default="waveform stage", help="the first column's name")
    args = parser.parse_args(argv)
    print(markdown(args.rows, args.label_header))
    return 0


if __name__ == "__main__":
    sys.exit(main())
