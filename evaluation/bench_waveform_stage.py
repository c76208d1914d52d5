"""What the learned codec's waveform stage costs: ``decode`` with Griffin-Lim against the vocoder.

    python -m ella_v_hf.evaluation.bench_waveform_stage --codec CODEC_WITH_VOCODER --data CORPUS \
        [--n 10] [--repeats 3] [--threads 1] [--json]

The first ``--n`` utterances of ``--data`` are encoded once; then every utterance's codes are
decoded with each waveform stage (``waveform_decoder="griffin-lim"`` at the codec's iterations, and
``"vocos"``), the two taking turns, best of ``--repeats``. Printed: seconds of decoding per second
of audio (the real-time factor this stage adds to synthesis) for each, and their ratio.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from ..processing.audio import load_audio
from ..processing.corpus import read_corpus
from .resynthesis import encode_waveform


def bench_waveform_stage(codec_dir: str, data: str, n: int = 10, repeats: int = 3) -> dict:
    """Decoding seconds per audio second of each waveform stage (see the module docstring).

    Raises:
        ValueError: ``codec_dir`` holds no learned codec with a vocoder.
    """
    from ..processing.prepare import load_codec

    codec = load_codec("auto", codec_dir).eval()
    if getattr(codec, "vocoder", None) is None:
        raise ValueError(f"{codec_dir} has no vocoder to compare with Griffin-Lim: train one with `ella-v train-vocoder`")
    codes = [encode_waveform(codec, *load_audio(u.audio_path)) for u in read_corpus(data)[0][:n]]  # [K, T] each
    audio_seconds = sum(c.shape[-1] for c in codes) / codec.config.frame_rate
    best = {"griffin-lim": float("inf"), "vocos": float("inf")}
    with torch.inference_mode():
        for stage in best:  # warm-up
            codec.decode(codes[0][None], waveform_decoder=stage)
        for _ in range(repeats):
            for stage in best:
                start = time.perf_counter()
                for c in codes:
                    codec.decode(c[None], waveform_decoder=stage)
                best[stage] = min(best[stage], time.perf_counter() - start)
    return {
        "codec": codec_dir,
        "utterances": len(codes),
        "audio_seconds": round(audio_seconds, 2),
        "griffin_lim_iters": codec.config.griffin_lim_iters,
        "threads": torch.get_num_threads(),
        "rtf_griffin_lim": round(best["griffin-lim"] / audio_seconds, 4),
        "rtf_vocos": round(best["vocos"] / audio_seconds, 4),
        "vocos_speedup": round(best["griffin-lim"] / best["vocos"], 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--codec", required=True, help="a learned codec with a vocoder (`ella-v train-vocoder`'s OUT/model)")
    parser.add_argument("--data", required=True)
    parser.add_argument("--n", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        result = bench_waveform_stage(args.codec, args.data, args.n, args.repeats)
    except ValueError as error:
        parser.error(str(error))
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['utterances']} utterances, {result['audio_seconds']} s of audio, {result['threads']} thread(s): "
              f"Griffin-Lim ({result['griffin_lim_iters']} iterations) RTF {result['rtf_griffin_lim']}, "
              f"vocoder RTF {result['rtf_vocos']} ({result['vocos_speedup']} x faster)", file=sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
