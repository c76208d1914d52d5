"""Speed benchmark: ELLA-V GAR generation and training against a stock ``LlamaForCausalLM`` of the same size.

For batch sizes 1 and 16 it times, in the same run and with the same prompt lengths, taking
turns (best of ``repeats`` rounds each): the GAR with the ELLA-V LogitsProcessor (the real decoding
path), the same with ``decode_weight_dtype="float16"`` (:mod:`~ella_v_hf.modeling.decode_weights`:
its decoding steps read float16 copies of the weights), the GAR without the processor, a stock
Llama with the same dimensions generating exactly as many tokens (and, on CPU, the same Llama cast
to float16, the stock way to halve the weights), and the same ``generate()`` call on a one-layer,
8-wide Llama (the loop's own cost per step: the fastest any model with this vocabulary can decode
through stock ``generate()``); at batch 1 also the float16-decoding GAR with ``jump_forward=True``
(:mod:`~ella_v_hf.modeling.jump_forward`: stock assisted decoding fed the rule's forced tokens,
which share a forward with the token before them). Each run's tokens per second count its own
tokens (float16 decoding can draw other tokens, and end elsewhere; jump-forward counts every token
of its sequence, forced ones included). It also times a training step (forward, backward, AdamW)
of both on the same batches, and end-to-end synthesis (GAR + NAR + codec) for the real-time factor. With ``compile=True`` (``ella-v bench --compile``)
it also times the GAR with float16 decoding weights through generate's own static cache and
``torch.compile`` (a :class:`~transformers.CompileConfig`; transformers compiles on CUDA only
unless asked), after one warm-up call whose compile time is reported, taking turns with stock
Llama again, and whether it drew the same tokens as eager decoding with the same weights.

Then the bundled demo checkpoint on real sentences (20 Harvard sentences by default): the median
end-to-end real-time factor of one-shot synthesis, and the median time to first audio of
streaming synthesis (:class:`~ella_v_hf.modeling.EllaVAudioStreamer`), both after the model is loaded.

    ella-v bench [--device cpu|cuda] [--preset tiny] [--threads N] [--compile] [--json]
"""

from __future__ import annotations

import copy
import functools
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from transformers import CompileConfig, LlamaConfig, LlamaForCausalLM, LogitsProcessorList

from ..modeling import (
    EllaVCodecConfig,
    EllaVConfig,
    EllaVForCausalLM,
    EllaVForTextToSpeech,
    EllaVPhonemeAdvanceLogitsProcessor,
    EllaVTTSConfig,
    build_gar_sequence,
)
from ..modeling.transformers_compat import jump_forward_unsupported
from ..presets import preset
from ..processing.demo_corpus import FALLBACK_SENTENCES

#: ``decode_weight_dtype`` of the bench's half-decode row and compiled figures.
HALF_DECODE = "float16"

#: Harvard sentences (lists 1-2, public domain): the real text of the end-to-end figures.
HARVARD_20 = tuple(FALLBACK_SENTENCES[:20])


def run_demo_benchmark(model_dir=None, sentences=HARVARD_20, device: str = "cpu", seed: int = 0) -> dict:
    """The bundled demo (or ``model_dir``) on real sentences: median end-to-end RTF (one-shot,
    top-p 0.9), the shares of that time spent in the GAR, the NAR and the codec's decode, the share
    of the GAR's forward calls (``gar_forward_share``) and the median RTF of everything else
    (``rtf_outside_gar_forward``: what no faster forward can remove), and median time to first
    audio (streaming), all after loading. When the checkpoint decodes with
    half-precision weights (``decode_weight_dtype``, on CPU), each sentence is also synthesised
    with float32 decoding right after: ``rtf_float32_decoding``, the median per-sentence
    ``speedup_of_half_decoding`` and how many sentences drew the same GAR sequence. For the ELLA-V
    layouts, where the installed transformers supports it, each sentence is also synthesised with
    the opt-in jump-forward decoding (``jump_forward=True``): ``rtf_with_jump_forward`` and the
    median per-sentence ``speedup_of_jump_forward``.

    Returns:
        ``{"end_to_end_demo": {...}, "streaming": {...}}``.
    """
    from ..modeling import EllaVAudioStreamer
    from ..synthesis import load_checkpoint

    model, processor = load_checkpoint(model_dir)
    model = model.to(device).eval()
    rate = model.config.sampling_rate
    warm = processor([sentences[0]])
    model.generate(**warm)  # warm-up (first-call allocations)
    stages = {"nar": 0.0, "codec": 0.0, "gar_forward": 0.0}
    outside_forward = []  # per sentence: the RTF of everything but the GAR's forward calls

    def timed(stage: str, function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)  # generate() inspects the GAR forward's signature (logits_to_keep)
        def call(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                stages[stage] += time.perf_counter() - start

        return call

    rtfs, seconds, audio = [], 0.0, 0.0
    half = model.gar.config.decode_weight_dtype
    exact_rtfs, same = [], 0  # with half decoding weights: the same sentences decoded in float32, in turns
    jumped_rtfs = []  # the same sentences with jump-forward, in turns
    for sentence in sentences:
        inputs = processor([sentence])

        def synthesis(**options: Any) -> tuple[float, float, Any]:
            """Seconds, audio seconds and output of one seeded synthesis of the sentence."""
            torch.manual_seed(seed)
            elapsed, out = _timed(lambda: model.generate(**inputs, **options))
            return elapsed, float(out.audio_lengths[0]) / rate, out

        # Instance attributes shadow the three methods during the timed runs: where the time goes.
        model._nar_decode, model._codec_decode = timed("nar", model._nar_decode), timed("codec", model._codec_decode)
        model.gar.forward = timed("gar_forward", model.gar.forward)
        forward_before = stages["gar_forward"]
        try:
            elapsed, length, out = synthesis()
        finally:
            del model._nar_decode, model._codec_decode, model.gar.forward
        rtfs.append(elapsed / max(length, 1e-9))
        outside_forward.append((elapsed - (stages["gar_forward"] - forward_before)) / max(length, 1e-9))
        seconds, audio = seconds + elapsed, audio + length
        if half is not None and device == "cpu":
            with _decode_weight_dtype(model.gar.config, None):
                elapsed, length, exact = synthesis()
            exact_rtfs.append(elapsed / max(length, 1e-9))
            same += int(torch.equal(exact.sequences, out.sequences))
        if model.config.gar_config.layout_spec.interleaved and jump_forward_unsupported() is None:  # opt-in, in turns
            elapsed, length, _ = synthesis(jump_forward=True)
            jumped_rtfs.append(elapsed / max(length, 1e-9))
    first = []
    for sentence in sentences:
        streamer = EllaVAudioStreamer(on_audio=lambda chunk: None)
        torch.manual_seed(seed)
        model.generate(**processor([sentence]), streamer=streamer)
        first.append(streamer.first_audio_seconds)
    words = statistics.median(len(s.split()) for s in sentences)
    comparisons = {}
    if exact_rtfs:  # what the checkpoint's half decoding weights change, measured in turns with it
        comparisons |= {
            "rtf_float32_decoding": round(statistics.median(exact_rtfs), 3),
            "speedup_of_half_decoding": round(statistics.median(e / h for e, h in zip(exact_rtfs, rtfs)), 3),
            "same_sequences_as_float32": same,
        }
    if jumped_rtfs:  # what jump-forward gains (other draws, same distributions)
        comparisons |= {
            "rtf_with_jump_forward": round(statistics.median(jumped_rtfs), 3),
            "speedup_of_jump_forward": round(statistics.median(s / j for s, j in zip(rtfs, jumped_rtfs)), 3),
        }
    return {
        "end_to_end_demo": {
            "rtf": round(statistics.median(rtfs), 3),
            "rtf_mean": round(seconds / max(audio, 1e-9), 3),
            **comparisons,
            # What no faster GAR forward can remove: generate()'s loop (processors, sampling, input
            # preparation, cache bookkeeping), the NAR, the codec, the text.
            "rtf_outside_gar_forward": round(statistics.median(outside_forward), 3),
            "sentences": len(sentences),
            "audio_seconds": round(audio, 2),
            # Shares of the one-shot time: the GAR's generate() (and parsing) is what the other two leave.
            "stage_shares": {
                "gar": round(1 - (stages["nar"] + stages["codec"]) / max(seconds, 1e-9), 3),
                "nar": round(stages["nar"] / max(seconds, 1e-9), 3),
                "codec_decode": round(stages["codec"] / max(seconds, 1e-9), 3),
            },
            "gar_forward_share": round(stages["gar_forward"] / max(seconds, 1e-9), 3),  # part of the GAR's share
            "decode_weight_dtype": half,
            "note": "bundled demo checkpoint, median over the sentences, one-shot synthesis at top-p 0.9 after loading",
        },
        "streaming": {
            "time_to_first_audio_seconds": round(statistics.median(first), 3),
            "max_time_to_first_audio_seconds": round(max(first), 3),
            "median_words": words,
            "note": "EllaVAudioStreamer defaults (8-frame chunks), after loading",
        },
    }


@dataclass
class Timing:
    seconds: float
    tokens: int

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds ``fn()`` took (CUDA synchronised) and its result."""
    start = time.perf_counter()
    result = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, result


def _interleaved_best(repeats: int, runs: dict[str, Callable[[], Any]]) -> dict[str, float]:
    """Best seconds of each run over ``repeats`` rounds, the runs taking turns within a round, so a
    machine whose speed drifts (a shared VM) slows every run alike."""
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeats):
        for name, run in runs.items():
            best[name] = min(best[name], _timed(run)[0])
    return best


def _best_of(repeats: int, fn) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeats):
        seconds, result = _timed(fn)
        best = min(best, seconds)
    return best, result


@contextmanager
def _decode_weight_dtype(config: EllaVConfig, value: str | None) -> Iterator[None]:
    """``config.decode_weight_dtype`` set to ``value`` for the block, then restored."""
    saved, config.decode_weight_dtype = config.decode_weight_dtype, value
    try:
        yield
    finally:
        config.decode_weight_dtype = saved


def run_benchmark(
    device: str = "cpu",
    preset_name: str = "tiny",
    num_phonemes: int = 65,
    codebook_size: int = 256,
    phonemes: int = 24,
    repeats: int = 3,
    seed: int = 0,
    overrides: dict | None = None,
    demo_sentences=HARVARD_20,
    demo_model=None,
    compile: bool = False,
) -> dict:
    """Run the benchmark and return its figures (see the module docstring).

    Args:
        device: ``"cpu"`` or ``"cuda"``.
        preset_name: Model dimensions (:data:`~ella_v_hf.presets.PRESETS`).
        num_phonemes / codebook_size: Token space (the demo model's by default).
        phonemes: Phonemes of the benchmark text.
        repeats: Timed repetitions (the best is kept).
        seed: Sampling seed.
        overrides: Dimension overrides on top of the preset (tests use tiny ones).
        demo_sentences: Sentences for the demo figures (empty: skip them).
        demo_model: Checkpoint for the demo figures (default: the bundled demo).
        compile: Also time the GAR (float16 decoding weights) with a static cache and
            ``torch.compile`` (generate's options).
    """
    torch.manual_seed(seed)
    dims = {**preset(preset_name), **(overrides or {})}
    config = EllaVConfig(num_phonemes=num_phonemes, codebook_size=codebook_size, frame_rate=50.0, sampling_rate=16000, **dims)
    gar = EllaVForCausalLM(config).to(device).eval()
    llama = stock_llama(config).to(device).eval()
    floor = generate_floor_model(config.vocab_size, device)
    space, spec = config.token_space, config.layout_spec
    text = [(7 * i + 3) % num_phonemes for i in range(phonemes)]
    prompt = build_gar_sequence(text, None, None, space, spec).input_ids
    cap = config.max_frames_per_phone
    results: dict = {"device": device, "preset": preset_name, "parameters": sum(p.numel() for p in gar.parameters()), "batches": {}}
    llama_half = copy.deepcopy(llama).to(torch.float16) if device == "cpu" else None  # the stock way to halve the weights
    for batch in (1, 16):
        ids = torch.tensor([prompt] * batch, device=device)

        def ours(processor: bool, half: bool = False, **options):
            processors = LogitsProcessorList([EllaVPhonemeAdvanceLogitsProcessor(space, spec, cap)] if processor else [])
            generator_args = dict(do_sample=True, top_p=0.9, eos_token_id=space.EOS, pad_token_id=space.PAD, **options)
            torch.manual_seed(seed)
            with _decode_weight_dtype(gar.config, HALF_DECODE if half else None):
                return gar.generate(ids, logits_processor=processors, max_new_tokens=phonemes * (cap + 2) + 2, **generator_args)

        with torch.no_grad():
            out = ours(True)  # warm-up, and the tokens every timed run must draw
        generated = out[:, len(prompt) :]
        new_tokens = generated.shape[1]
        lengths = [(row.tolist().index(space.EOS) + 1) if space.EOS in row.tolist() else new_tokens for row in generated]
        frames = int(space.acoustic_mask(generated).sum())

        def stock(model) -> Callable[[], Any]:
            """Plain generate() drawing exactly ``new_tokens`` per row (top-p 0.9)."""
            return lambda: model.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=True, top_p=0.9, pad_token_id=0)

        runs = {"ella_v": lambda: ours(True), "ella_v_half_decode": lambda: ours(True, half=True),
                "ella_v_no_processor": stock(gar), "llama": stock(llama), "floor": stock(floor)}
        if llama_half is not None:
            runs["llama_float16"] = stock(llama_half)
        if batch == 1 and jump_forward_unsupported() is None:  # stock assisted decoding fed the rule's forced tokens: one row only
            runs["ella_v_jump_forward"] = lambda: ours(True, half=True, jump_forward=True)
        with torch.no_grad():
            for model in (gar, llama, floor, *([llama_half] if llama_half is not None else [])):
                model.generate(ids, max_new_tokens=4, min_new_tokens=4, do_sample=False)  # warm-up
            half_out = ours(True, half=True)  # warm-up; its tokens can differ from float32's (top-p draws)
            jumped = ours(True, half=True, jump_forward=True) if "ella_v_jump_forward" in runs else None  # warm-up, its tokens
            best = _interleaved_best(repeats, runs)
        half_steps = batch * (half_out.shape[1] - len(prompt))
        seconds, llama_seconds = best["ella_v"], best["llama"]
        steps = batch * new_tokens  # decoding steps x rows, identical for every run
        row = results["batches"][str(batch)] = {
            "new_tokens_per_row": new_tokens,
            "useful_tokens": sum(lengths),
            "acoustic_frames": frames,
            "ella_v_seconds": round(seconds, 4),
            "ella_v_no_processor_seconds": round(best["ella_v_no_processor"], 4),
            "llama_seconds": round(llama_seconds, 4),
            "ella_v_tokens_per_second": round(steps / seconds, 1),
            "ella_v_frames_per_second": round(frames / seconds, 1),
            "llama_tokens_per_second": round(steps / llama_seconds, 1),
            "ratio_vs_llama": round(llama_seconds / seconds, 3),
            "ella_v_half_decode_tokens_per_second": round(half_steps / best["ella_v_half_decode"], 1),
            "ratio_half_decode_vs_llama": round((half_steps / best["ella_v_half_decode"]) / (steps / llama_seconds), 3),
            "processor_overhead": round(seconds / best["ella_v_no_processor"] - 1.0, 4),
            "generate_floor_tokens_per_second": round(steps / best["floor"], 1),
            "max_ratio_vs_llama_through_generate": round(llama_seconds / best["floor"], 3),
        }
        if "llama_float16" in best:
            row["llama_float16_tokens_per_second"] = round(steps / best["llama_float16"], 1)
        if jumped is not None:  # tokens of the sequence (forced ones included) per second
            jump_rate = (jumped.shape[1] - len(prompt)) / best["ella_v_jump_forward"]
            row["ella_v_half_decode_jump_forward_tokens_per_second"] = round(jump_rate, 1)
            row["ratio_half_decode_jump_forward_vs_llama"] = round(jump_rate / (steps / llama_seconds), 3)
        if compile:
            options = compiled_options()  # one CompileConfig for the warm-up and the timed calls
            row.update(_compiled_figures(lambda: ours(True, half=True, **options), half_out, len(prompt), repeats, runs["llama"], llama_seconds, steps))
    b1, b16 = results["batches"]["1"], results["batches"]["16"]
    results["batch16_throughput_over_batch1"] = round(b16["ella_v_tokens_per_second"] / b1["ella_v_tokens_per_second"], 2)

    results["training"] = run_training_benchmark(llama, gar, steps=repeats, seed=seed)

    # End-to-end real-time factor (random weights of the same size; the demo checkpoint replaces them).
    tts_config = EllaVTTSConfig(
        gar_config=dict(num_phonemes=num_phonemes, **dims),
        nar_config=dict(num_phonemes=num_phonemes, **dims),
        codec_config=EllaVCodecConfig(codebook_size=codebook_size),
    )
    tts = EllaVForTextToSpeech(tts_config).to(device).eval()
    inputs = {"input_ids": torch.tensor([text], device=device)}
    tts.generate(**inputs)
    seconds, out = _best_of(repeats, lambda: tts.generate(**inputs))
    audio_seconds = float(out.audio_lengths[0]) / tts_config.sampling_rate
    results["end_to_end"] = {
        "seconds": round(seconds, 3),
        "audio_seconds": round(audio_seconds, 3),
        "rtf": round(seconds / max(audio_seconds, 1e-9), 3),
        "note": "random weights of the preset; forced structure bounds the length",
    }
    if demo_sentences:
        results.update(run_demo_benchmark(demo_model, demo_sentences, device=device, seed=seed))
    results["threads"] = torch.get_num_threads()
    return results


def stock_llama(config: EllaVConfig) -> LlamaForCausalLM:
    """A stock ``LlamaForCausalLM`` of the GAR's size and vocabulary (random weights): the baseline."""
    return LlamaForCausalLM(
        LlamaConfig(
            vocab_size=config.vocab_size,
            hidden_size=config.hidden_size,
            intermediate_size=config.intermediate_size,
            num_hidden_layers=config.num_hidden_layers,
            num_attention_heads=config.num_attention_heads,
            num_key_value_heads=config.num_key_value_heads,
            hidden_act=config.hidden_act,
            max_position_embeddings=config.max_position_embeddings,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=3,
        )
    )


def generate_floor_model(vocab_size: int, device: str = "cpu") -> LlamaForCausalLM:
    """A one-layer, 8-wide stock Llama with ``vocab_size`` tokens: its ``generate()`` time is the
    decoding loop's own cost (sampling, stopping checks, cache bookkeeping), a floor under any model
    with this vocabulary decoded through stock ``generate()``."""
    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=8, intermediate_size=8, num_hidden_layers=1, num_attention_heads=1,
        num_key_value_heads=1, pad_token_id=0, bos_token_id=1, eos_token_id=3,
    )
    return LlamaForCausalLM(config).to(device).eval()


def compiled_options() -> dict:
    """generate() options for a static cache and a compiled forward, on any device.

    transformers compiles the decoding step only on accelerators unless the
    :class:`~transformers.CompileConfig` says otherwise. No CUDA graphs (``"reduce-overhead"``,
    absent on CPU); instead inductor's ``cpp_wrapper``, which calls the compiled kernels from C++
    rather than Python: on a 2-core CPU it decoded the tiny GAR at batch 1 about 1.2x faster than
    ``mode="default"`` (272-300 vs 231-252 tokens/s, one measurement each, README).
    """
    compile_config = CompileConfig(fullgraph=False, dynamic=False, mode=None, options={"cpp_wrapper": True})
    compile_config._compile_all_devices = True  # transformers' own switch (not a constructor argument)
    return {"cache_implementation": "static", "compile_config": compile_config}


def _compiled_figures(
    generate: Callable[[], torch.Tensor], eager_out: torch.Tensor, prompt_length: int, repeats: int,
    llama: Callable[[], Any], llama_seconds: float, llama_steps: int,
) -> dict:
    """Warm-up (compile) time, best time, ratio vs Llama and token equality of compiled decoding.

    The compiled runs take turns with stock Llama's again (``llama`` draws ``llama_steps`` tokens,
    rows x new tokens); the ratio of tokens per second is against the fastest Llama run of the whole
    benchmark (``llama_seconds`` or one of these). The compiled run's own tokens are counted."""
    with torch.no_grad():
        start = time.perf_counter()
        out = generate()
        warm_up = time.perf_counter() - start
        best = _interleaved_best(repeats, {"compiled": generate, "llama": llama})
    llama_tokens_per_second = llama_steps / min(llama_seconds, best["llama"])
    steps = out.shape[0] * (out.shape[1] - prompt_length)  # rows x new tokens
    seconds = best["compiled"]
    same = out.shape == eager_out.shape and bool((out == eager_out).all())
    return {
        "ella_v_compiled_seconds": round(seconds, 4),
        "ella_v_compiled_tokens_per_second": round(steps / seconds, 1),
        "ratio_compiled_vs_llama": round(steps / seconds / llama_tokens_per_second, 3),
        "compile_warmup_seconds": round(warm_up, 2),
        "compiled_same_tokens": same,
    }


def run_training_benchmark(llama: LlamaForCausalLM, gar: EllaVForCausalLM, batch: int = 8, length: int = 300, steps: int = 3, seed: int = 0) -> dict:
    """Training tokens/s (forward + backward + AdamW step) of the GAR vs the stock Llama on the same batches."""
    generator = torch.Generator().manual_seed(seed)
    space = gar.config.token_space
    device = next(gar.parameters()).device
    ids = torch.randint(space.acoustic_offset, space.vocab_size, (batch, length), generator=generator).to(device)
    labels = ids.clone()
    figures = {}
    for name, model in (("ella_v", gar), ("llama", llama)):
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step():
            loss = model(input_ids=ids, labels=labels, use_cache=False).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()

        step()  # warm-up
        seconds, _ = _best_of(steps, step)
        figures[f"{name}_tokens_per_second"] = round(batch * length / seconds, 1)
        model.eval()
    figures["ratio_vs_llama"] = round(figures["ella_v_tokens_per_second"] / figures["llama_tokens_per_second"], 3)
    figures["batch"], figures["length"] = batch, length
    return figures


def markdown(results: dict) -> str:
    """The figures as a Markdown table."""
    lines = [
        f"GAR `{results['preset']}` ({results['parameters'] / 1e6:.2f} M parameters) on {results['device']}",
        "",
        "| batch | ELLA-V tok/s | ELLA-V frames/s | Llama tok/s | ratio vs Llama | ELLA-V float16 decode weights tok/s "
        "| its ratio vs Llama | Llama all float16 tok/s | processor overhead "
        "| generate() floor tok/s (1 layer, 8 wide) | floor / Llama |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for batch, row in results["batches"].items():
        lines.append(
            f"| {batch} | {row['ella_v_tokens_per_second']} | {row['ella_v_frames_per_second']} | {row['llama_tokens_per_second']} "
            f"| {row['ratio_vs_llama']} | {row['ella_v_half_decode_tokens_per_second']} | {row['ratio_half_decode_vs_llama']} "
            f"| {row.get('llama_float16_tokens_per_second', '-')} | {row['processor_overhead'] * 100:.1f} % "
            f"| {row['generate_floor_tokens_per_second']} | {row['max_ratio_vs_llama_through_generate']} |"
        )
    jumped = results["batches"].get("1", {})
    if "ella_v_half_decode_jump_forward_tokens_per_second" in jumped:
        lines += ["", f"batch 1, ELLA-V float16 decode weights with jump-forward (stock assisted decoding fed the rule's forced "
                  f"tokens): {jumped['ella_v_half_decode_jump_forward_tokens_per_second']} tok/s of the sequence, "
                  f"{jumped['ratio_half_decode_jump_forward_vs_llama']}x Llama"]
    compiled = {batch: row for batch, row in results["batches"].items() if "ella_v_compiled_seconds" in row}
    if compiled:
        lines += ["", "| batch | ELLA-V float16 decode weights, static cache + torch.compile tok/s | ratio vs Llama (eager) "
                  "| compile warm-up | same tokens as eager |",
                  "|---|---|---|---|---|"]
        lines += [f"| {batch} | {row['ella_v_compiled_tokens_per_second']} | {row['ratio_compiled_vs_llama']} | "
                  f"{row['compile_warmup_seconds']} s | {row['compiled_same_tokens']} |" for batch, row in compiled.items()]
    e2e = results["end_to_end"]
    training = results["training"]
    lines += [
        "",
        f"training (batch {training['batch']} x {training['length']} tokens, fwd+bwd+AdamW): ELLA-V "
        f"{training['ella_v_tokens_per_second']} tok/s, Llama {training['llama_tokens_per_second']} tok/s, "
        f"ratio {training['ratio_vs_llama']}",
        "",
        f"batch 16 / batch 1 throughput: {results['batch16_throughput_over_batch1']}x; end-to-end RTF {e2e['rtf']} "
        f"({e2e['seconds']} s for {e2e['audio_seconds']} s of audio)",
    ]
    if "end_to_end_demo" in results:
        demo, stream = results["end_to_end_demo"], results["streaming"]
        lines += [
            "",
            f"bundled demo on {demo['sentences']} real sentences ({results.get('threads')} threads): median RTF {demo['rtf']}, "
            f"median time to first audio (streaming) {stream['time_to_first_audio_seconds']} s "
            f"(max {stream['max_time_to_first_audio_seconds']} s); time shares GAR / NAR / codec decode "
            f"{demo['stage_shares']['gar']} / {demo['stage_shares']['nar']} / {demo['stage_shares']['codec_decode']}",
            f"the GAR's forward calls take {demo['gar_forward_share']} of the time; everything else (generate()'s loop, "
            f"NAR, codec, text) alone has median RTF {demo['rtf_outside_gar_forward']}",
        ]
        if "rtf_float32_decoding" in demo:
            lines.append(
                f"the same sentences decoded with float32 weights ({demo['decode_weight_dtype']} decoding weights off), in turns: "
                f"median RTF {demo['rtf_float32_decoding']}, per-sentence speed-up of {demo['decode_weight_dtype']} decoding "
                f"{demo['speedup_of_half_decoding']}x, same GAR sequences {demo['same_sequences_as_float32']} of {demo['sentences']}"
            )
        if "rtf_with_jump_forward" in demo:
            lines.append(
                f"the same sentences with jump-forward (opt-in: forced tokens ride along), in turns: median RTF "
                f"{demo['rtf_with_jump_forward']}, per-sentence speed-up of jump-forward {demo['speedup_of_jump_forward']}x"
            )
    return "\n".join(lines)
