"""How much intelligibility the codec puts in each codebook, and how much of it the NAR recovers.

For each reference utterance (pocketsphinx WER/CER):

- ``first_codebooks``: the codec's resynthesis from its first ``k`` codebooks, ``k = 1..K``
  (``k = K`` is the full resynthesis; ``k = 1`` is all a perfect GAR gives without a NAR);
- ``first_codebook_plus_nar``: the true first codebook with codebooks 2..K from the NAR (greedy),
  i.e. the ceiling of the whole model with a perfect GAR (a ``frame_phonemes`` NAR gets the
  reference's forced alignment, as the GAR sequence would give it);
- ``nar_cross_entropy``: the NAR's per-codebook cross-entropy (nats) on the true codes, given the
  true lower codebooks, beside ``ln(codebook_size)`` (a NAR that knows nothing).

    python -m ella_v_hf.evaluation.measure_nar --model DIR --data AUDIOFOLDER --n 50 --json
"""

from __future__ import annotations

import argparse
import json
import math
import sys

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..modeling import frame_phoneme_ids
from ..processing import load_audio, prepare_waveform, read_corpus
from ..synthesis import load_checkpoint
from .asr import PocketsphinxASR
from .judges import wer_cer
from .resynthesis import decode_codes, encode_waveform


@torch.no_grad()
def measure_nar(model_dir: str, data: str, n: int = 50, progress: bool = True, asr=None) -> dict:
    """Measure the codec's per-codebook intelligibility and the NAR's share of it.

    Args:
        model_dir: An ``EllaVForTextToSpeech`` checkpoint with its processor.
        data: A corpus directory with reference audio and transcripts.
        n: How many utterances (the first ``n``).
        progress: Show a progress bar.
        asr: Anything with ``transcribe(waveform, sampling_rate) -> str`` (default: pocketsphinx).

    Returns:
        A JSON-able dict; see the module docstring.
    """
    model, processor = load_checkpoint(model_dir)
    utterances = read_corpus(data)[0][:n]
    asr = asr or PocketsphinxASR()
    rate = model.config.sampling_rate
    space = model.config.gar_config.token_space
    num_codebooks = model.config.nar_config.num_codebooks
    aligned_input = model.config.nar_config.frame_phonemes
    references: list[str] = []
    first_k: dict[int, list[str]] = {k: [] for k in range(1, num_codebooks + 1)}
    with_nar: list[str] = []
    nll = torch.zeros(num_codebooks)  # summed over frames, codebook 0 unused
    frames = 0
    for u in tqdm(utterances, desc="NAR ceiling", disable=not progress):
        waveform = prepare_waveform(*load_audio(u.audio_path), rate, name=u.id)
        aligned = None
        ids = processor.tokenizer(u.text)["input_ids"]
        if aligned_input:  # the reference's own forced alignment stands in for the GAR's
            codes, durations = model.encode_prompt(torch.from_numpy(waveform), ids, check_alignment=False)  # [K, T]
            aligned = torch.tensor(frame_phoneme_ids(ids, durations, space, codes.shape[-1]))[None]  # [1, T]
        else:
            codes = encode_waveform(model.codec, waveform, rate)  # [K, T]
        phoneme_ids = space.phoneme_tensor(ids)[None]  # [1, Lp]
        for j in range(1, num_codebooks):  # teacher-forced: the true codebooks < j are the input
            logits = model.nar(phoneme_ids=phoneme_ids, codes=codes[None], codebook_index=j, frame_phoneme_ids=aligned).logits[0]  # [T, C]
            nll[j] += F.cross_entropy(logits.float(), codes[j], reduction="sum")
        frames += codes.shape[-1]
        references.append(u.text)
        completed = model.nar.decode_codebooks(phoneme_ids, codes[None, 0], frame_phoneme_ids=aligned)[0]  # [K, T]
        with_nar.append(asr.transcribe(decode_codes(model.codec, completed), rate))
        for k in first_k:  # the codec decodes any leading k codebooks
            first_k[k].append(asr.transcribe(decode_codes(model.codec, codes[:k]), rate))
    return {
        "model": model_dir,
        "data": data,
        "utterances": len(references),
        "first_codebooks": {str(k): wer_cer(references, v) for k, v in first_k.items()},
        "first_codebook_plus_nar": wer_cer(references, with_nar),
        "nar_cross_entropy": {str(j + 1): float(nll[j] / max(frames, 1)) for j in range(1, num_codebooks)},
        "uniform_cross_entropy": math.log(model.config.nar_config.codebook_size),
    }


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
