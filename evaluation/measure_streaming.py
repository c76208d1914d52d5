"""How close streamed synthesis is to one-shot synthesis, and how soon it starts.

For each sentence the checkpoint generates twice with the same seed (the sentence's own,
:func:`~ella_v_hf.evaluation.evaluate_tts.item_seed`, as ``ella-v evaluate`` draws it): one-shot, and streamed
through :class:`~ella_v_hf.modeling.EllaVAudioStreamer` (the GAR sequences are identical; the
stream decodes runs of finished phonemes with limited context). Reported: the log-mel L1 distance
(natural-log magnitudes, 80 bands, 10 ms hop) between the two waveforms, the WER/CER of both
(pocketsphinx), and the time to first audio of the stream.

    python -m ella_v_hf.evaluation.measure_streaming [--model DIR] [--sentences FILE] [--n 50] --out stream.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

import numpy as np
import torch
from tqdm.auto import tqdm

from ..modeling import EllaVAudioStreamer
from ..modeling.mel import LogMel
from ..synthesis import load_checkpoint
from .bench import HARVARD_20
from .evaluate_tts import item_seed
from .judges import load_asr, wer_cer


def log_mel_distance(a: np.ndarray, b: np.ndarray, frontend: LogMel) -> float:
    """Mean absolute difference of the log-mel frames of two waveforms (cut to the shorter)."""
    n = min(a.size, b.size)
    if n == 0:
        return float("nan")
    pair = torch.from_numpy(np.stack([a[:n], b[:n]]).astype(np.float32))
    mel = frontend(pair)  # [2, T, M]
    return float((mel[0] - mel[1]).abs().mean())


@torch.no_grad()
def measure_streaming(model_dir: str | None, sentences: list[str], seed: int = 0, asr: str = "pocketsphinx", progress: bool = True,
                      **generate_kwargs) -> dict:
    """Stream vs one-shot figures over ``sentences`` (see the module docstring).

    Sentence ``i`` is generated both ways from ``item_seed(seed, i)``: the pair shares its draws (so
    the GAR sequences match), while the sentences do not share one draw (which would move every
    sentence's sampled phoneme lengths the same way and bias the WER figures).
    """
    model, processor = load_checkpoint(model_dir)
    rate = model.config.sampling_rate
    frontend = LogMel(rate, n_fft=1024, hop_length=rate // 100, n_mels=80)
    judge = load_asr(asr)
    model.generate(**processor([sentences[0]]))  # warm-up
    rows = []
    for index, sentence in enumerate(tqdm(sentences, desc="stream vs one-shot", disable=not progress)):
        inputs = processor([sentence])
        torch.manual_seed(item_seed(seed, index))
        one = model.generate(**inputs, **generate_kwargs)
        streamer = EllaVAudioStreamer(on_audio=lambda chunk: None)
        torch.manual_seed(item_seed(seed, index))
        streamed = model.generate(**inputs, streamer=streamer, **generate_kwargs)
        a = one.audio[0, : int(one.audio_lengths[0])].numpy()
        b = streamed.audio[0, : int(streamed.audio_lengths[0])].numpy()
        rows.append({
            "text": sentence,
            "same_sequence": bool(torch.equal(one.sequences, streamed.sequences)),
            "log_mel_l1": log_mel_distance(a, b, frontend),
            "one_shot": judge.transcribe(a, rate) if a.size else "",
            "streamed": judge.transcribe(b, rate) if b.size else "",
            "time_to_first_audio_seconds": streamer.first_audio_seconds,
            "chunks": streamer.chunks,
            "seconds": a.size / rate,
        })
    references = [r["text"] for r in rows]
    return {
        "model": str(model_dir or "bundled demo"),
        "sentences": len(rows),
        "same_gar_sequences": sum(r["same_sequence"] for r in rows),
        "log_mel_l1_mean": float(np.nanmean([r["log_mel_l1"] for r in rows])),
        "one_shot": wer_cer(references, [r["one_shot"] for r in rows]),
        "streamed": wer_cer(references, [r["streamed"] for r in rows]),
        "time_to_first_audio_median_seconds": statistics.median(r["time_to_first_audio_seconds"] for r in rows),
        "time_to_first_audio_max_seconds": max(r["time_to_first_audio_seconds"] for r in rows),
        "threads": torch.get_num_threads(),
        "rows": rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="checkpoint (default: the bundled demo)")
    parser.add_argument("--sentences", default=None, help="one sentence per line (default: 20 Harvard sentences)")
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--greedy", action="store_true")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    from ..synthesis import set_threads

    set_threads(args.threads)
    if args.sentences:
        with open(args.sentences, encoding="utf-8-sig") as handle:
            sentences = [line.strip() for line in handle if line.strip()][: args.n]
    else:
        sentences = list(HARVARD_20)[: args.n]
    result = measure_streaming(args.model, sentences, **({"do_sample": False} if args.greedy else {}))
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump(result, handle, indent=1)
    summary = {k: v for k, v in result.items() if k != "rows"}
    print(json.dumps(summary, indent=1), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
