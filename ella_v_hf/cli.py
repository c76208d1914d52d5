"""The ``ella-v`` command line.

Every command prints progress to stderr; ``--json`` makes the final result one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from .presets import PRESETS, preset

#: Phoneme vocabulary assumed by ``ella-v params`` when none is given (an espeak English inventory
#: with word-boundary, pause and unknown symbols is about this size).
DEFAULT_NUM_PHONEMES = 80


def _count_parameters(args: argparse.Namespace) -> dict:
    import torch

    from .modeling import EllaVConfig, EllaVForCausalLM, EllaVNARConfig, EllaVNARModel

    dims = preset(args.preset)
    shared = dict(
        num_phonemes=args.num_phonemes,
        codebook_size=args.codebook_size,
        num_codebooks=args.num_codebooks,
        **dims,
    )
    result = {"preset": args.preset, **shared}
    with torch.device("meta"):  # count without allocating
        for name, model in (
            ("gar", EllaVForCausalLM(EllaVConfig(layout=args.layout, **shared))),
            ("nar", EllaVNARModel(EllaVNARConfig(**shared))),
        ):
            total = sum(p.numel() for p in model.parameters())
            embeddings = sum(p.numel() for n, p in model.named_parameters() if "embed" in n or "head" in n)
            result[f"{name}_parameters"] = total
            result[f"{name}_non_embedding_parameters"] = total - embeddings
    return result


def _cmd_params(args: argparse.Namespace) -> int:
    result = _count_parameters(args)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"preset {args.preset}: " + ", ".join(f"{k}={v}" for k, v in preset(args.preset).items()))
        for name in ("gar", "nar"):
            total = result[f"{name}_parameters"]
            print(f"  {name.upper()}: {total / 1e6:.2f} M parameters ({result[f'{name}_non_embedding_parameters'] / 1e6:.2f} M without embeddings/heads)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ella-v", description="ELLA-V codec language model TTS (transformers).")
    sub = parser.add_subparsers(dest="command", required=True)

    params = sub.add_parser("params", help="parameter counts of a model preset (GAR and NAR)")
    params.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    params.add_argument("--layout", choices=["ella-v", "vall-e"], default="ella-v")
    params.add_argument("--num-phonemes", type=int, default=DEFAULT_NUM_PHONEMES)
    params.add_argument("--codebook-size", type=int, default=1024)
    params.add_argument("--num-codebooks", type=int, default=8)
    params.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    params.set_defaults(func=_cmd_params)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ella-v`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ValueError as error:
        print(f"ella-v {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
