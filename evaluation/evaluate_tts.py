"""``ella-v evaluate``: WER, CER, SIM, INF, EMPTY (no word recognised), CUT, duration ratio and RTF of a TTS
checkpoint, beside the same metrics for the ground truth and the codec resynthesis of the references.

Inputs:
- an audiofolder/LibriTTS/LibriSpeech directory. The ``continuation`` prompt is the first
  ``prompt_seconds`` of each reference, cut at the word boundary the aligner finds nearest, and the
  rest of the sentence is the target. The ``cross`` prompt is another utterance of the same speaker
  (the next one in the corpus's order with a different sentence, so prompts vary across items),
  and the whole sentence is the target.
- a text file (one target per line), synthesised with a fixed prompt or none.

Decoding strategies are swept in one call (``greedy``, ``top_p=0.9``, ``top_k=50,temperature=0.8`` …)
with fixed seeds: every item draws from its own seed (:func:`item_seed`), and a sampling strategy can
be run ``seeds`` times (run seeds ``seed``, ``seed + 1``, …), its metrics then the mean over runs with
their spread (one run of a sampling strategy on ~100 items moves WER by several points from seed to
seed). Greedy strategies are deterministic and run once. Output: JSON (per utterance and overall), a
Markdown table and a PNG bar chart.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .._optional import require
from .._outputs import atomic_file, check_output_file
from ..modeling.decoding_options import parse_strategy
from ..processing import EllaVProcessor, load_audio, prepare_waveform, read_corpus
from ..processing.tokenization_ella_v import token_words
from ..synthesis import load_checkpoint, set_decode_weights
from .evaluation_progress import EvaluationProgress
from .judges import load_asr, load_similarity, wer_cer
from .quality import DNSMOS_FIELDS, load_dnsmos
from .resynthesis import decode_codes, encode_waveform
from .table_cells import format_cell

#: Continuation items need at least this much reference speech after the prompt.
MIN_TARGET_SECONDS = 1.0


@dataclass
class EvalItem:
    id: str
    target_text: str
    reference_audio: np.ndarray | None  # the target part of the reference, at the codec rate
    prompt_audio: np.ndarray | None
    prompt_text: str | None
    prompt_id: str | None = None  # the corpus utterance the prompt comes from (cross prompts)


def cross_prompt_source(utterances: list, index: int):
    """The utterance that prompts ``utterances[index]`` in ``cross`` mode, or None.

    The next utterance after it (in the corpus's order, wrapping around) of the same speaker with a
    different ``prompt_id``: every item gets a prompt from another sentence, and the prompts rotate
    through the speaker's utterances instead of one utterance prompting them all.
    """
    target = utterances[index]
    for step in range(1, len(utterances)):
        other = utterances[(index + step) % len(utterances)]
        if other.speaker_id == target.speaker_id and other.prompt_id != target.prompt_id:
            return other
    return None


def item_seed(run_seed: int, index: int) -> int:
    """The torch seed of item ``index`` in the run seeded ``run_seed``: each item draws from its own
    stream (independent of the items before it and of ``--limit``), and runs with different seeds
    share no item's stream."""
    return int(np.random.SeedSequence([run_seed, index]).generate_state(1)[0])


def summarize(rows: list[dict]) -> dict:
    """Metrics of one system's rows: WER, CER, SIM, DNSMOS (``dnsmos_p808``, ``dnsmos_sig``,
    ``dnsmos_bak``, ``dnsmos_ovrl``, where judged), duration ratio, RTF, EMPTY, INF, CUT, utterances.

    Rows from several seeded runs (a ``"seed"`` field with more than one value) are scored run by run
    and averaged; ``seeds`` lists the run seeds, ``wer_per_seed`` / ``cer_per_seed`` each run's value
    and ``wer_std`` / ``cer_std`` their standard deviation. ``utterances`` counts one run's items.
    """
    runs: dict = {}
    for row in rows:
        runs.setdefault(row.get("seed"), []).append(row)
    per_run = []
    for run_rows in runs.values():
        metrics = wer_cer([r["reference"] for r in run_rows], [r["hypothesis"] for r in run_rows])
        for key in ("sim", *(f"dnsmos_{field}" for field in DNSMOS_FIELDS), "duration_ratio", "rtf"):
            values = [r[key] for r in run_rows if key in r]
            metrics[key] = float(np.mean(values)) if values else None
        metrics["empty_rate"] = float(np.mean([not r["hypothesis"].strip() for r in run_rows]))
        if "infinite" in run_rows[0]:
            metrics["inf_rate"] = float(np.mean([r["infinite"] for r in run_rows]))
            metrics["cut_rate"] = float(np.mean([r["cuts"] > 0 for r in run_rows]))
        metrics["utterances"] = len(run_rows)
        per_run.append(metrics)
    if len(per_run) == 1:
        return per_run[0]
    summary = {}
    for key, value in per_run[0].items():
        values = [m[key] for m in per_run]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        if key == "utterances" or not numeric:
            summary[key] = value if all(v == value for v in values) else None
        else:
            summary[key] = float(np.mean(values))
    summary["seeds"] = list(runs)
    for key in ("wer", "cer"):
        summary[f"{key}_per_seed"] = [float(m[key]) for m in per_run]
        summary[f"{key}_std"] = float(np.std(summary[f"{key}_per_seed"], ddof=1))
    return summary


def _continuation_split(model, processor: EllaVProcessor, waveform: np.ndarray, text: str, seconds: float):
    """(prompt audio, prompt text, target audio, target text) cut at the word boundary nearest ``seconds``.

    The cut must fall between two of the text's words that are also two of the tokenizer's words
    (espeak joins some pairs, such as "on the", into one); None when there is no such boundary.
    """
    aligner, tok = model.aligner, processor.tokenizer
    ids = tok(text)["input_ids"]
    words = token_words(tok.convert_ids_to_tokens(ids))
    spoken = text.split()
    phones = [p for p, _ in words]
    cuts = []  # (text words before the cut, tokenizer words before it)
    for k in range(1, len(spoken)):
        prefix = [p for p, _ in token_words(tok.convert_ids_to_tokens(tok(" ".join(spoken[:k]))["input_ids"]))]
        if 1 <= len(prefix) < len(words) and prefix == phones[: len(prefix)]:
            cuts.append((k, len(prefix)))
    if not cuts:
        return None
    durations = aligner.align(waveform, ids, check=False).durations
    frame = aligner.config.hop_length
    ends, position, index = [], durations[0], 1
    for word_phones in phones:
        position += sum(durations[index : index + len(word_phones)])
        index += len(word_phones)
        ends.append(position)  # frame where the word ends (before its separator)
        position += durations[index]
        index += 1
    k, m = min(cuts, key=lambda c: abs(ends[c[1] - 1] * frame / aligner.config.sampling_rate - seconds))
    cut = ends[m - 1] * frame
    return waveform[:cut], " ".join(spoken[:k]), waveform[cut:], " ".join(spoken[k:])


def build_items(model, processor: EllaVProcessor, eval_path: str, mode: str, prompt_seconds: float, limit: int | None,
                prompt_audio: str | None = None, prompt_text: str | None = None, skipped: list | None = None) -> list[EvalItem]:
    """Evaluation items; unusable utterances are appended to ``skipped`` as ``{"id", "reason"}``."""
    skipped = [] if skipped is None else skipped
    rate = model.config.sampling_rate
    path = Path(eval_path)
    if path.is_file():
        fixed = prepare_waveform(*load_audio(prompt_audio), rate) if prompt_audio else None
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        return [EvalItem(f"line{i:04d}", t, None, fixed, prompt_text) for i, t in enumerate(lines[:limit])]
    utterances, _ = read_corpus(path)
    items = []
    for index, u in enumerate(utterances):
        if limit and len(items) >= limit:
            break
        try:
            waveform = prepare_waveform(*load_audio(u.audio_path), rate, name=u.id)
        except ValueError as error:
            skipped.append({"id": u.id, "reason": str(error)})
            continue
        if mode == "continuation":
            if model.aligner is None:
                raise ValueError("Continuation prompts need a checkpoint with an aligner; use --prompt-mode cross or none")
            split = _continuation_split(model, processor, waveform, u.text, prompt_seconds)
            if split is None:
                skipped.append({"id": u.id, "reason": "no word boundary to cut a continuation prompt at"})
                continue
            p_audio, p_text, t_audio, t_text = split
            if len(t_audio) < MIN_TARGET_SECONDS * rate:
                skipped.append({"id": u.id, "reason": f"less than {MIN_TARGET_SECONDS} s of speech after the prompt"})
                continue
            items.append(EvalItem(u.id, t_text, t_audio, p_audio, p_text))
        elif mode == "cross":
            other = cross_prompt_source(utterances, index)
            if other is None:
                skipped.append({"id": u.id, "reason": "no other utterance of the speaker for a cross-sentence prompt"})
                continue
            try:
                prompt = prepare_waveform(*load_audio(other.audio_path), rate, name=other.id)
            except ValueError as error:
                skipped.append({"id": u.id, "reason": f"prompt {other.id}: {error}"})
                continue
            items.append(EvalItem(u.id, u.text, waveform, prompt, other.text, other.id))
        else:
            items.append(EvalItem(u.id, u.text, waveform, None, None))
    return items


def skip_report(used: int, skipped: list[dict], mode: str) -> str:
    """One line: items used, and how many were skipped for which reason (most frequent first)."""
    line = f"ella-v evaluate: {used} item(s) ({mode} prompts)"
    if not skipped:
        return line + ", none skipped"
    reasons = Counter(entry["reason"] for entry in skipped)
    listed = "; ".join(f"{count} x {reason}" for reason, count in reasons.most_common(5))
    more = f"; {len(reasons) - 5} other reasons" if len(reasons) > 5 else ""
    return f"{line}; skipped {len(skipped)}: {listed}{more} (ids and reasons in the JSON's \"skipped\")"


def evaluate_model(
    model_dir: str,
    eval_path: str,
    out: str,
    asr: str = "pocketsphinx",
    sim: str | None = "auto",
    sweep: list[str] = ("top_p=0.9",),
    mode: str = "continuation",
    prompt_seconds: float = 3.0,
    limit: int | None = None,
    seed: int = 0,
    prompt_audio: str | None = None,
    prompt_text: str | None = None,
    progress: bool = True,
    stages: bool = False,
    seeds: int = 1,
    decode_weights: str = "checkpoint",
    overwrite: bool = False,
    dnsmos: str = "auto",
) -> dict:
    """Evaluate a checkpoint (see the module docstring). Writes ``out`` (JSON), ``.md`` and ``.png``
    beside it; existing ones are refused before any work unless ``overwrite``. An interrupted run
    resumes where it stopped when called again with the same arguments
    (:class:`~ella_v_hf.evaluation.evaluation_progress.EvaluationProgress`; ``overwrite`` starts again).

    Each sampling strategy runs ``seeds`` times (run seeds ``seed`` … ``seed + seeds - 1``; item
    ``i`` of a run draws from :func:`item_seed`); its summary is the mean over runs (:func:`summarize`).

    With ``stages`` two diagnostic rows per system locate the loss: ``codec_first_codebook`` (the
    reference resynthesised from its first codebook only: all a perfect GAR could give without a
    NAR) and ``STRATEGY [first codebook]`` (the generated first codebook decoded alone, i.e. the GAR
    without the NAR's codebooks).

    ``dnsmos`` (``auto``, ``yes``, ``no``): judge every non-empty output's quality with DNSMOS
    (:mod:`ella_v_hf.evaluation.quality`); ``auto`` where its packages are installed.

    ``decode_weights`` (:data:`~ella_v_hf.synthesis.DECODE_WEIGHT_CHOICES`) overrides the GAR's
    ``decode_weight_dtype`` (``"float32"``: exact float32 decoding); the result records the one used.
    """
    if mode not in ("continuation", "cross", "none"):
        raise ValueError(f"Unknown prompt mode {mode!r}; expected continuation, cross or none")
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    strategies = {s: parse_strategy(s) for s in sweep}
    out_path = Path(out)
    outputs = (out_path, out_path.with_suffix(".md"), out_path.with_suffix(".png"))
    for path in outputs:
        check_output_file(path, overwrite, option="--out")
    model, processor = load_checkpoint(model_dir)
    decode_weight_dtype = set_decode_weights(model, decode_weights)
    rate = model.config.sampling_rate
    skipped: list[dict] = []
    items = build_items(model, processor, eval_path, mode, prompt_seconds, limit, prompt_audio, prompt_text, skipped)
    print(skip_report(len(items), skipped, mode), file=sys.stderr)
    if not items:
        reasons = "; ".join(f"{s['id']}: {s['reason']}" for s in skipped[:5]) + (" …" if len(skipped) > 5 else "")
        raise ValueError(f"No usable evaluation items in {eval_path}: {len(skipped)} skipped ({reasons or 'the folder holds none'})")
    judge, similarity, quality = load_asr(asr), load_similarity(sim), load_dnsmos(dnsmos)
    weights = Path(model_dir) / "model.safetensors"
    progress_file = EvaluationProgress(out_path, {
        "model": str(Path(model_dir).resolve()),
        "weights": [weights.stat().st_size, weights.stat().st_mtime_ns] if weights.is_file() else None,
        "eval": str(Path(eval_path).resolve()), "items": [item.id for item in items], "mode": mode,
        "prompt_seconds": prompt_seconds, "prompt_audio": prompt_audio, "prompt_text": prompt_text,
        "asr": asr, "sim": sim, "dnsmos": quality is not None, "sweep": list(strategies), "seed": seed, "seeds": seeds,
        "stages": stages, "decode_weight_dtype": decode_weight_dtype,
    }, restart=overwrite)
    if progress_file.done:
        print(f"resuming: {len(progress_file.done)} finished units from {progress_file.path}", file=sys.stderr)
    rows: dict[str, list[dict]] = {}

    def score(item: EvalItem, audio: np.ndarray, extra: dict) -> dict:
        row = {"id": item.id, "reference": item.target_text, "hypothesis": judge.transcribe(audio, rate) if audio.size else ""}
        row["seconds"] = len(audio) / rate
        if item.prompt_id is not None:
            row["prompt"] = item.prompt_id
        if item.reference_audio is not None and item.reference_audio.size:
            row["duration_ratio"] = row["seconds"] / (len(item.reference_audio) / rate)
        if similarity is not None and audio.size and (item.prompt_audio is not None or item.reference_audio is not None):
            anchor = item.prompt_audio if item.prompt_audio is not None else item.reference_audio
            row["sim"] = similarity.similarity(audio, rate, anchor, rate)
        if quality is not None and audio.size:
            row.update({f"dnsmos_{key}": value for key, value in quality(audio, rate).items()})
        row.update(extra)
        return row

    def unit(key: str, compute: Callable[[], list[tuple[str, dict]]]) -> None:
        """One unit's ``(system, row)`` pairs: recorded by an interrupted run, or computed and recorded now."""
        pairs = progress_file.done.get(key)
        if pairs is None:
            pairs = compute()
            progress_file.record(key, pairs)
        for name, row in pairs:
            rows.setdefault(name, []).append(row)

    def references(item: EvalItem) -> list[tuple[str, dict]]:
        pairs = [("ground_truth", score(item, item.reference_audio, {}))]
        codes = encode_waveform(model.codec, item.reference_audio, rate)
        pairs.append(("codec_resynthesis", score(item, decode_codes(model.codec, codes), {})))
        if stages:
            pairs.append(("codec_first_codebook", score(item, decode_codes(model.codec, codes[:1]), {})))
        return pairs

    def synthesis(name: str, kwargs: dict, run_seed: int, index: int, item: EvalItem) -> list[tuple[str, dict]]:
        torch.manual_seed(item_seed(run_seed, index))
        inputs = processor(item.target_text, prompt_audio=item.prompt_audio, prompt_text=item.prompt_text,
                           sampling_rate=rate if item.prompt_audio is not None else None)
        started = time.perf_counter()
        generated = model.generate(**inputs, check_alignment=False, **kwargs)
        elapsed = time.perf_counter() - started
        audio = generated.audio[0, : int(generated.audio_lengths[0])].numpy()
        outcome = {"infinite": bool(generated.infinite[0]), "cuts": int(generated.cuts[0]), "seed": run_seed}
        pairs = [(name, score(item, audio, {**outcome, **({"rtf": elapsed / (len(audio) / rate)} if audio.size else {})}))]
        if stages:
            first = generated.codes[0][:1]  # [1, T] the GAR's codebook alone
            drawn = generated.first_code_probabilities  # decoded as the system decoded it
            pairs.append((f"{name} [first codebook]", score(
                item, decode_codes(model.codec, first, None if drawn is None else drawn[0]) if first.shape[-1]
                else np.zeros(0, np.float32), outcome)))
        return pairs

    try:
        with_audio = [(index, item) for index, item in enumerate(items) if item.reference_audio is not None]
        for index, item in tqdm(with_audio, desc="ground truth + resynthesis", disable=not progress):
            unit(f"reference/{index}", lambda item=item: references(item))
        for name, kwargs in strategies.items():
            run_seeds = range(seed, seed + (seeds if kwargs["do_sample"] else 1))  # greedy is deterministic: once
            for run_seed in run_seeds:
                label = name if len(run_seeds) == 1 else f"{name} (seed {run_seed})"
                for index, item in enumerate(tqdm(items, desc=label, disable=not progress)):
                    unit(f"{name}/{run_seed}/{index}",
                         lambda name=name, kwargs=kwargs, run_seed=run_seed, index=index, item=item: synthesis(name, kwargs, run_seed, index, item))
    except BaseException:
        progress_file.close()  # kept: a rerun with the same arguments resumes from it
        raise
    summary = {name: summarize(items_rows) for name, items_rows in rows.items()}
    layout = model.config.gar_config.layout
    if Path(eval_path).is_file():  # a text file: one fixed prompt for every line, or none
        mode = "fixed" if prompt_audio else "none"
    result = {"model": str(model_dir), "decode_weight_dtype": decode_weight_dtype, "layout": layout, "eval": str(eval_path), "prompt_mode": mode, "asr": asr, "sim": sim,
              "dnsmos": quality is not None, "seed": seed, "seeds": seeds, "summary": summary, "skipped": skipped, "utterances": rows}
    out_path.parent.mkdir(parents=True, exist_ok=True)
    writers = (lambda f: f.write_text(json.dumps(result, indent=1, ensure_ascii=False), encoding="utf-8"),
               lambda f: f.write_text(markdown_table(result), encoding="utf-8"),
               lambda f: bar_chart(result, f))
    for path, write in zip(outputs, writers):
        with atomic_file(path) as temporary:
            write(temporary)
    progress_file.finish()
    return result


def markdown_table(result: dict) -> str:
    """The summary as a Markdown table; a system run with several seeds shows WER / CER as mean ± std."""
    lines = [f"`{result['model']}` ({result['layout']}) on `{result['eval']}`, prompts: {result['prompt_mode']}, ASR: {result['asr']}", "",
             "| system | WER | CER | SIM | DNSMOS P.808 | DNSMOS OVRL | INF | EMPTY | CUT | duration ratio | RTF | n | seeds |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]

    for name, m in result["summary"].items():
        seeds = ", ".join(map(str, m["seeds"])) if "seeds" in m else "–"
        lines.append(f"| {name} | {format_cell(m['wer'], True, m.get('wer_std'))} | {format_cell(m['cer'], True, m.get('cer_std'))} | {format_cell(m['sim'])} "
                     f"| {format_cell(m.get('dnsmos_p808'))} | {format_cell(m.get('dnsmos_ovrl'))} "
                     f"| {format_cell(m.get('inf_rate'), True)} | {format_cell(m.get('empty_rate'), True)} | {format_cell(m.get('cut_rate'), True)} "
                     f"| {format_cell(m['duration_ratio'])} | {format_cell(m['rtf'])} | {m['utterances']} | {seeds} |")
    return "\n".join(lines) + "\n"


def bar_chart(result: dict, path: str | os.PathLike) -> None:
    matplotlib = require("matplotlib", "plot", "The evaluation chart")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result["summary"])
    wers = [100 * result["summary"][n]["wer"] for n in names]
    fig, ax = plt.subplots(figsize=(max(5, 1.3 * len(names)), 3.5))
    ax.bar(names, wers, color=["#888888" if n in ("ground_truth", "codec_resynthesis") else "#3366cc" for n in names])
    ax.set_ylabel("WER (%)")
    ax.set_title(f"{Path(result['model']).name}: WER by system")
    plt.setp(ax.get_xticklabels(), rotation=20, ha="right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
