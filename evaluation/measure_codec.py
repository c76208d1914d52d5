"""Measure a codec's resynthesis intelligibility: pocketsphinx WER of the source audio and of its
resynthesis from the first k codebooks, for every k = 1 … K.

    python -m ella_v_hf.evaluation.measure_codec --codec RUN/model --data kathleen_heldout --n 110 --json

``--codec`` is any saved codec (``AutoModel.from_pretrained``: the learned codec, the k-means mel
codec, EnCodec). Measure on held-out utterances the codec never saw.

``--stages`` adds where a log-mel codec loses intelligibility: ``waveform_stage`` (the reference's
own log-mel through the codec's mel inversion and Griffin-Lim: what a decoder that reproduced the
log-mel exactly would score) and, for the learned codec, ``unquantised`` (the encoder's latents through the
decoder without any codebook). ``--griffin-lim-iters N`` replaces the codec's iteration count in
every row, ``--griffin-lim-sharpening X`` its within-band sharpening exponent (1: none).
``--quality`` adds, per row, the mean DNSMOS (P.808, P.835 SIG/BAK/OVRL) and, for every
resynthesis against its reference, PESQ (wide band), STOI and the log-mel distance
(:mod:`ella_v_hf.evaluation.quality`; the ``[eval]`` extra).

How hard the first codebook is for a GAR, from an ``ella-v prepare`` output made with the codec
(its codes and forced alignments; no audio is decoded):

    python -m ella_v_hf.evaluation.measure_codec --prepared PREPARED --json

reports the plug-in entropies ``H(c1)`` and ``H(c1 | aligned phoneme)`` in nats (what a GAR that
knew only the current phoneme would still have to guess per frame), the first codebook's
phoneme purity (how often a code's most frequent phoneme is the frame's) and the mean run length
of repeated codes; ``--by-speaker`` adds them for each speaker alone.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
from tqdm.auto import tqdm

from ..modeling.mel import check_mel_fields
from ..modeling.sequence_layout import LayoutError, frame_phonemes
from ..processing.audio import load_audio, prepare_waveform
from ..processing.corpus import read_corpus
from .asr import PocketsphinxASR
from .judges import wer_cer
from .quality import DNSMOS, mean_scores, reference_scores
from .resynthesis import decode_codes, encode_waveform, unquantised_resynthesis, waveform_stage_ceiling


def measure_codec(
    codec_dir: str,
    data: str,
    n: int | None = None,
    levels: list[int] | None = None,
    progress: bool = True,
    asr=None,
    stages: bool = False,
    griffin_lim_iters: int | None = None,
    quality: bool = False,
    waveform_decoder: str | None = None,
    griffin_lim_sharpening: float | None = None,
) -> dict:
    """WER/CER of ground truth and of resynthesis from the first k codebooks.

    Args:
        codec_dir: A saved codec directory.
        data: Corpus with reference audio and transcripts.
        n: How many utterances (the first ``n``; all by default).
        levels: Which k to measure (default: every k from 1 to K).
        progress: Show a progress bar.
        asr: Anything with ``transcribe(waveform, sampling_rate) -> str`` (default: pocketsphinx).
        stages: Also measure the waveform stage's ceiling and the unquantised autoencoder (where the
            codec has them; see the module docstring).
        griffin_lim_iters: Griffin-Lim iterations for every row (default: the codec's own).
        quality: Also DNSMOS of every row and PESQ / STOI / log-mel distance of every resynthesis
            (``result["quality"][row]``, means over the utterances).
        waveform_decoder: The learned codec's waveform stage for every row (``"griffin-lim"`` or
            ``"vocos"``; default: the codec's own).
        griffin_lim_sharpening: The within-band sharpening exponent before Griffin-Lim for every
            row (1.0: none; default: the codec's own).

    Raises:
        ValueError: ``griffin_lim_iters`` or ``griffin_lim_sharpening`` for a codec without
            Griffin-Lim, iterations below 1 or a sharpening exponent that is not positive; a
            ``waveform_decoder`` the codec does not have.
    """
    from ..processing.prepare import load_codec

    codec = load_codec("auto", codec_dir).eval()
    config = codec.config
    if griffin_lim_iters is not None:
        if not hasattr(config, "griffin_lim_iters"):
            raise ValueError(f"{codec_dir}: a {config.model_type} codec has no Griffin-Lim stage to set iterations for.")
        if griffin_lim_iters < 1:
            raise ValueError(f"griffin_lim_iters must be at least 1, got {griffin_lim_iters}.")
        config.griffin_lim_iters = griffin_lim_iters
    if griffin_lim_sharpening is not None:
        if not hasattr(config, "griffin_lim_sharpening"):
            raise ValueError(f"{codec_dir}: a {config.model_type} codec has no Griffin-Lim stage to sharpen.")
        config.griffin_lim_sharpening = griffin_lim_sharpening
        check_mel_fields(config)  # the configs' own check: a positive exponent
    if waveform_decoder is not None:
        if not hasattr(config, "waveform_decoder"):
            raise ValueError(f"{codec_dir}: a {config.model_type} codec has one waveform stage; --waveform-decoder does not apply.")
        if waveform_decoder == "vocos" and getattr(codec, "vocoder", None) is None:
            raise ValueError(f"{codec_dir} has no vocoder: train one with `ella-v train-vocoder`.")
        config.waveform_decoder = waveform_decoder
    levels = levels or list(range(1, config.num_codebooks + 1))
    utterances = read_corpus(data)[0][:n]
    asr = asr or PocketsphinxASR()
    references, source = [], []
    first_k: dict[int, list[str]] = {k: [] for k in levels}
    stage_functions = {"waveform_stage": waveform_stage_ceiling, "unquantised": unquantised_resynthesis} if stages else {}
    stage_rows: dict[str, list[str]] = {name: [] for name in stage_functions}
    dnsmos = DNSMOS() if quality else None
    scores: dict[str, list[dict[str, float]]] = {}

    def judge(row: str, audio: np.ndarray, rate: int, reference: tuple[np.ndarray, int] | None) -> str:
        if dnsmos is not None:
            row_scores = {f"dnsmos_{key}": value for key, value in dnsmos(audio, rate).items()}
            if reference is not None:
                row_scores.update(reference_scores(*reference, audio, rate))
            scores.setdefault(row, []).append(row_scores)
        return asr.transcribe(audio, rate)

    for u in tqdm(utterances, desc="codec resynthesis", disable=not progress, file=sys.stderr):
        waveform, rate = load_audio(u.audio_path)
        references.append(u.text)
        source.append(judge("ground_truth", waveform, rate, None))
        waveform, rate = prepare_waveform(waveform, rate, config.sampling_rate), config.sampling_rate  # resampled once
        codes = encode_waveform(codec, waveform, rate)
        for k in levels:
            first_k[k].append(judge(f"first_{k}", decode_codes(codec, codes[:k]), rate, (waveform, rate)))
        for name, function in stage_functions.items():
            audio = function(codec, waveform, rate)
            if audio is not None:
                stage_rows[name].append(judge(name, audio, rate, (waveform, rate)))
    result = {
        "codec": codec_dir,
        "data": data,
        "utterances": len(references),
        "config": {key: getattr(config, key) for key in ("model_type", "sampling_rate", "frame_rate", "num_codebooks", "codebook_size")},
        "ground_truth": wer_cer(references, source),
        "first_codebooks": {str(k): wer_cer(references, v) for k, v in first_k.items()},
    }
    if hasattr(config, "griffin_lim_iters"):
        result["config"]["griffin_lim_iters"] = config.griffin_lim_iters
        result["config"]["griffin_lim_sharpening"] = config.griffin_lim_sharpening
    if hasattr(config, "waveform_decoder"):
        result["config"]["waveform_decoder"] = config.waveform_decoder
    if stages:  # rows the codec has no stage for are absent
        result["stages"] = {name: wer_cer(references, rows) for name, rows in stage_rows.items() if rows}
    if quality:
        result["quality"] = {row: mean_scores(rows) for row, rows in scores.items()}
    return result


def first_codebook_statistics(prepared: str, by_speaker: bool = False) -> dict:
    """Entropy of the first codebook, with and without the aligned phoneme (see the module docstring).

    Args:
        prepared: An ``ella-v prepare`` output directory (``dataset/`` with codes and durations).
        by_speaker: Also the same statistics for each speaker's utterances alone (``"by_speaker"``:
            ``{speaker_id: statistics}``; e.g. whether a codec's first level stays phonetic for voices
            it was not trained on).

    Returns:
        ``{"frames", "entropy", "entropy_given_phoneme", "phoneme_purity", "mean_run_length"}``
        (and ``"by_speaker"``).
    """
    import numpy as np
    from datasets import load_from_disk

    dataset = load_from_disk(f"{prepared}/dataset")
    if by_speaker and "speaker_id" not in dataset.column_names:
        raise ValueError(f"{prepared}: the dataset has no speaker_id column to group by.")
    dataset = dataset.select_columns(["codes", "phoneme_ids", "durations"] + (["speaker_id"] if by_speaker else []))
    rows: dict[str, tuple[list, list, list]] = {}  # speaker -> (first-level codes, frame phonemes, run lengths)
    for row in dataset:
        first = np.asarray(row["codes"][0], dtype=np.int64)  # [T]
        try:
            phones = np.asarray(frame_phonemes(row["phoneme_ids"], row["durations"], len(first)), dtype=np.int64)  # [T]
        except LayoutError as error:
            raise ValueError(f"{prepared}: an utterance's alignment does not match its codes: {error}") from error
        changes = np.flatnonzero(np.diff(first)) if len(first) > 1 else np.zeros(0, dtype=np.int64)
        codes_all, phones_all, runs = rows.setdefault(str(row["speaker_id"]) if by_speaker else "", ([], [], []))
        codes_all.append(first)
        phones_all.append(phones)
        runs.append(len(first) / (len(changes) + 1))
    everyone = tuple(sum((group[i] for group in rows.values()), []) for i in range(3))
    result = _first_level_statistics(*everyone)
    if by_speaker:
        result["by_speaker"] = {speaker: _first_level_statistics(*group) for speaker, group in sorted(rows.items())}
    return result


def _first_level_statistics(codes_all: list, phones_all: list, runs: list) -> dict:
    """The statistics of :func:`first_codebook_statistics` over utterances' first-level codes ``[T]``,
    frame phonemes ``[T]`` and mean run lengths."""
    import numpy as np

    codes, phones = np.concatenate(codes_all), np.concatenate(phones_all)
    joint = np.zeros((phones.max() + 1, codes.max() + 1))
    np.add.at(joint, (phones, codes), 1)
    p_joint = joint / joint.sum()
    p_code, p_phone = p_joint.sum(0), p_joint.sum(1)

    def entropy(p):
        p = p[p > 0]
        return float(-(p * np.log(p)).sum())

    return {
        "frames": int(len(codes)),
        "entropy": entropy(p_code),
        "entropy_given_phoneme": entropy(p_joint.ravel()) - entropy(p_phone),
        "phoneme_purity": float(joint.max(0).sum() / joint.sum()),
        "mean_run_length": float(np.mean(runs)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--codec", default=None, help="a saved codec directory")
    parser.add_argument("--data", default=None, help="audiofolder / LibriTTS / LibriSpeech directory")
    parser.add_argument("--prepared", default=None, help="instead: first-codebook entropies of an `ella-v prepare` output")
    parser.add_argument("--by-speaker", action="store_true", help="with --prepared: also each speaker's statistics")
    parser.add_argument("--n", type=int, default=None, help="utterances to measure (default: all)")
    parser.add_argument("--levels", type=int, nargs="*", default=None, help="k values (default: 1..K)")
    parser.add_argument("--stages", action="store_true", help="also the waveform stage's ceiling and the unquantised autoencoder")
    parser.add_argument("--griffin-lim-iters", type=int, default=None, help="Griffin-Lim iterations (default: the codec's)")
    parser.add_argument("--griffin-lim-sharpening", type=float, default=None,
                        help="within-band sharpening exponent before Griffin-Lim (1: none; default: the codec's)")
    parser.add_argument("--quality", action="store_true", help="also DNSMOS, PESQ, STOI and log-mel distance per row ([eval] extra)")
    parser.add_argument("--waveform-decoder", choices=("griffin-lim", "vocos"), default=None,
                        help="the learned codec's waveform stage (default: the codec's own)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.prepared:
        try:
            result = first_codebook_statistics(args.prepared, by_speaker=args.by_speaker)
        except ValueError as error:
            parser.error(str(error))
    elif args.codec and args.data:
        try:
            result = measure_codec(
                args.codec, args.data, args.n, args.levels, stages=args.stages, griffin_lim_iters=args.griffin_lim_iters,
                quality=args.quality, waveform_decoder=args.waveform_decoder, griffin_lim_sharpening=args.griffin_lim_sharpening,
            )
        except ValueError as error:
            parser.error(str(error))
    else:
        parser.error("give --codec and --data (resynthesis WER), or --prepared (first-codebook entropies)")
    print(json.dumps(result) if args.json else json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
