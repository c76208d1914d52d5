"""Measure a codec's resynthesis quality: pocketsphinx WER of source audio vs codec resynthesis.

    python -m ella_v_hf.training.measure_codec --data ../shared/data/kathleen --n 100 --json

Fits the embedded mel codec on the corpus (minus the measured prompts) unless ``--codec DIR`` is given.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from tqdm.auto import tqdm

from ..modeling.codec_mel import EllaVMelCodecConfig
from ..processing.audio import load_audio
from ..processing.codecs import MelCodec, fit_mel_codec
from ..processing.corpus import read_corpus, split_by_prompt
from .asr import PocketsphinxASR
from .judges import wer_cer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--n", type=int, default=100, help="utterances to measure")
    parser.add_argument("--codec", help="a saved EllaVMelCodecModel directory (else fit one)")
    parser.add_argument("--save-codec", help="where to save the fitted codec")
    parser.add_argument("--sampling-rate", type=int, default=16000)
    parser.add_argument("--hop-length", type=int, default=320)
    parser.add_argument("--n-mels", type=int, default=80)
    parser.add_argument("--num-codebooks", type=int, default=8)
    parser.add_argument("--codebook-size", type=int, default=256)
    parser.add_argument("--fit-utterances", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    utterances, _ = read_corpus(args.data)
    train, held = split_by_prompt(utterances, held_out_fraction=0.15, seed=args.seed)
    measured = held[: args.n]
    start = time.time()
    if args.codec:
        codec = MelCodec.from_pretrained(args.codec)
    else:
        config = EllaVMelCodecConfig(
            sampling_rate=args.sampling_rate,
            hop_length=args.hop_length,
            n_fft=max(1024, 2 * args.hop_length),
            n_mels=args.n_mels,
            num_codebooks=args.num_codebooks,
            codebook_size=args.codebook_size,
        )
        codec = MelCodec(fit_mel_codec((load_audio(u.audio_path) for u in train[: args.fit_utterances]), config, seed=args.seed))
        if args.save_codec:
            codec.save_pretrained(args.save_codec)
    fit_seconds = time.time() - start
    asr = PocketsphinxASR()
    refs, source_hyps, resynth_hyps, partial_hyps = [], [], [], []
    for utt in tqdm(measured, desc="ASR", file=sys.stderr):
        waveform, rate = load_audio(utt.audio_path)
        codes = codec.encode(waveform, rate)
        refs.append(utt.text)
        source_hyps.append(asr.transcribe(waveform, rate))
        resynth_hyps.append(asr.transcribe(codec.decode(codes), codec.sampling_rate))
        partial_hyps.append(asr.transcribe(codec.decode(codes[:1]), codec.sampling_rate))
    result = {
        "data": args.data,
        "utterances": len(measured),
        "codec": {
            "sampling_rate": codec.sampling_rate,
            "frame_rate": codec.frame_rate,
            "num_codebooks": codec.num_codebooks,
            "codebook_size": codec.codebook_size,
        },
        "fit_seconds": round(fit_seconds, 1),
        "source": wer_cer(refs, source_hyps),
        "resynthesis": wer_cer(refs, resynth_hyps),
        "first_codebook_only": wer_cer(refs, partial_hyps),
    }
    print(json.dumps(result) if args.json else json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
