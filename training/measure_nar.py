"""The NAR's ceiling: WER of references rebuilt from their own first codebook plus the NAR's
codebooks 2..K (a perfect GAR), beside the codec resynthesis and the first codebook alone.

    python -m ella_v_hf.training.measure_nar --model DIR --data AUDIOFOLDER --n 50 --json
"""

from __future__ import annotations

import argparse
import json
import sys

import torch
from tqdm.auto import tqdm

from ..processing import load_audio, prepare_waveform, read_corpus
from ..synthesis import load_checkpoint
from .asr import PocketsphinxASR
from .judges import wer_cer


@torch.no_grad()
def measure_nar(model_dir: str, data: str, n: int = 50, progress: bool = True) -> dict:
    """WER/CER (pocketsphinx) of: codec resynthesis, first codebook + NAR, first codebook alone."""
    model, processor = load_checkpoint(model_dir)
    utterances = read_corpus(data)[0][:n]
    asr = PocketsphinxASR()
    references, hypotheses = [], {"codec_resynthesis": [], "first_codebook_plus_nar": [], "first_codebook_only": []}
    for u in tqdm(utterances, desc="NAR ceiling", disable=not progress):
        waveform = prepare_waveform(*load_audio(u.audio_path), model.config.sampling_rate, name=u.id)
        codes = processor.codec.encode(waveform, model.config.sampling_rate)  # [K, T]
        ids = processor.tokenizer(u.text)["input_ids"]
        completed = model._nar_decode(ids, codes[0].long(), None)  # [K, T]
        references.append(u.text)
        for name, audio in (("codec_resynthesis", processor.codec.decode(codes)), ("first_codebook_plus_nar", processor.codec.decode(completed)),
                            ("first_codebook_only", processor.codec.decode(codes[:1]))):  # the codec decodes any leading K' codebooks
            hypotheses[name].append(asr.transcribe(audio, model.config.sampling_rate))
    return {"model": model_dir, "data": data, "utterances": len(references), **{k: wer_cer(references, v) for k, v in hypotheses.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True, help="audiofolder / LibriTTS / LibriSpeech directory")
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = measure_nar(args.model, args.data, args.n)
    print(json.dumps(result) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
