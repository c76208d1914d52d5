"""The ``ella-v`` command line.

Every command prints progress to stderr; ``--json`` makes the final result one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
from collections.abc import Sequence

from ._decoding import add_decoding_flags, decoding_arguments
from ._lock import is_main_process
from ._outputs import atomic_file, check_output_file
from .presets import PRESETS, preset


def read_batch_file(path: str) -> list[tuple[int, str]]:
    """``(physical line number, text)`` of each non-blank line of a UTF-8 text file.

    Raises:
        ValueError: The file is not UTF-8 text, or has no text line.
    """
    try:
        with open(path, encoding="utf-8-sig") as handle:
            content = handle.read()
    except UnicodeDecodeError as error:
        raise ValueError(f"--batch-file {path} is not UTF-8 text (byte {error.start}: {error.reason}); give one text per line") from None
    if "\x00" in content:
        raise ValueError(f"--batch-file {path} holds binary data (NUL bytes); give a text file with one text per line")
    lines = [(number, line.strip()) for number, line in enumerate(content.splitlines(), 1) if line.strip()]
    if not lines:
        raise ValueError(f"--batch-file {path} has no text lines")
    return lines

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


def _cmd_make_demo_corpus(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from .processing.demo_corpus import make_demo_corpus

    summary = make_demo_corpus(args.out, n=args.n, voices=args.voices, data_dir=args.data_dir, seed=args.seed)
    if args.json:
        print(json.dumps(asdict(summary)))
    else:
        print(f"{summary.utterances} utterances, {summary.speakers} speakers, {summary.seconds / 3600:.2f} h -> {summary.out}")
    return 0


def _cmd_prepare(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from .processing.prepare import prepare_corpus

    summary = prepare_corpus(
        args.data,
        args.out,
        codec=args.codec,
        aligner=args.aligner,
        codec_model=args.codec_model,
        aligner_model=args.aligner_model,
        textgrid_dir=args.textgrid_dir,
        language=args.language,
        min_seconds=args.min_seconds,
        max_seconds=args.max_seconds,
        fit_utterances=args.fit_utterances,
        num_proc=args.num_proc,
        seed=args.seed,
    )
    if args.json:
        print(json.dumps(asdict(summary), ensure_ascii=False))
    else:
        print(
            f"{summary.utterances} utterances ({summary.hours:.2f} h) -> {summary.out}/dataset; "
            f"{len(summary.skipped)} skipped {summary.skipped_by_reason}; "
            f"{summary.utterances_per_second} utt/s in the audio step",
            file=sys.stderr,
        )
        for item in summary.skipped[:20]:
            print(f"  skipped {item['id']}: {item['reason']}", file=sys.stderr)
    return 0


def _cmd_plot_alignment(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .modeling import EllaVAlignerModel, EllaVForTextToSpeech
    from .processing import EllaVProcessor, load_audio, prepare_waveform
    from .processing.plot import plot_speech, spans_from_durations

    check_output_file(args.output, args.overwrite)
    processor = EllaVProcessor.from_pretrained(args.processor)
    prepared_aligner = Path(args.processor).parent / "aligner"
    if (prepared_aligner / "config.json").is_file():  # a prepared corpus: PREPARED/processor + PREPARED/aligner
        aligner = EllaVAlignerModel.from_pretrained(prepared_aligner).eval()
    else:  # a checkpoint directory
        aligner = EllaVForTextToSpeech.from_pretrained(args.processor).aligner
    if aligner is None:
        raise ValueError(f"{args.processor} has no aligner")
    rate = aligner.config.sampling_rate
    waveform = prepare_waveform(*load_audio(args.audio), rate, name=args.audio)
    ids = processor.tokenizer(args.text)["input_ids"]
    alignment = aligner.align(waveform, ids, check=not args.no_check)
    tokens = processor.tokenizer.convert_ids_to_tokens(ids)
    frame_rate = aligner.config.frame_rate
    with atomic_file(args.output) as temporary:
        plot_speech(waveform, rate, temporary, args.text, spans_from_durations(tokens, alignment.durations, frame_rate), frame_rate)
    result = {"output": args.output, "score": alignment.score, "tokens": tokens, "durations": alignment.durations}
    print(json.dumps(result, ensure_ascii=False) if args.json else f"wrote {args.output} (score {alignment.score:.2f})")
    return 0


#: Output formats ``ella-v synthesize`` writes (soundfile formats, by extension).
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")


def check_output_path(path: str) -> None:
    """Refuse an output path before any long work: a directory, no audio extension, or a missing folder.

    Raises:
        ValueError: With what is wrong and what to give instead.
    """
    if os.path.isdir(path):
        raise ValueError(f"-o {path} is a directory; give a file name such as {os.path.join(path, 'speech.wav')}")
    if os.path.splitext(path)[1].lower() not in AUDIO_EXTENSIONS:
        raise ValueError(f"-o {path}: give a file name ending in one of {', '.join(AUDIO_EXTENSIONS)}")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(f"-o {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"-o {path}: the folder {folder} is not writable")


def _stream_to_file(args: argparse.Namespace, model, processor, prompt, prompt_rate) -> int:
    """``ella-v synthesize --stream``: each chunk is appended to the WAV file (and flushed) as it is made."""
    import soundfile as sf

    from .synthesis import synthesize_stream

    # The chunks go to a temporary sibling, renamed onto OUTPUT only once the utterance is complete.
    with atomic_file(args.output) as temporary:
        with sf.SoundFile(temporary, "w", samplerate=model.config.sampling_rate, channels=1, subtype="PCM_16") as handle:

            def write(chunk):
                handle.write(chunk)
                handle.flush()

            result, first = synthesize_stream(
                model, processor, args.text, write, prompt_audio=prompt, prompt_text=args.prompt_text,
                prompt_sampling_rate=prompt_rate, seed=args.seed, **decoding_arguments(args),
            )
        if result.audio.size == 0:
            raise RuntimeError("the model generated no audio (it ended the utterance at once); try sampling (drop --greedy) or another --seed")
    seconds = len(result.audio) / result.sampling_rate
    report = {"output": args.output, "seconds": round(seconds, 3), "cuts": result.cuts, "infinite": result.infinite,
              "time_to_first_audio_seconds": round(first, 3)}
    print(json.dumps(report) if args.json else f"streamed {args.output}: {seconds:.2f} s, first audio after {first:.2f} s, "
          f"{result.cuts} forced EOPs", file=None if args.json else sys.stderr)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .web_demo import main as serve

    if not 0 < args.port < 65536:
        raise ValueError(f"--port must be in 1..65535, got {args.port}")
    serve(args.model, port=args.port, host=args.host, threads=args.threads)
    return 0


def _decode_weights_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(  # choices: synthesis.DECODE_WEIGHT_CHOICES (not imported here: the parser stays torch-free)
        "--decode-weights", choices=("checkpoint", "float32", "float16", "bfloat16"), default="checkpoint",
        help="weights the GAR's decoding steps read on CPU: the checkpoint's decode_weight_dtype (the demos: float16), "
        "or float32 for exact float32 decoding",
    )


def _cmd_synthesize(args: argparse.Namespace) -> int:
    import numpy as np
    import soundfile as sf
    from tqdm.auto import tqdm

    from .processing import load_audio
    from .synthesis import check_seed, load_checkpoint, set_decode_weights, set_threads, synthesize

    check_output_path(args.output)
    set_threads(args.threads)
    check_seed(args.seed)
    from .modeling import EllaVGenerationConfig

    EllaVGenerationConfig(**decoding_arguments(args)).check_supported()  # before the model loads
    prompt, prompt_rate = (None, None)
    if args.prompt_text is not None and not args.prompt_audio:
        raise ValueError("--prompt-text is the transcript of --prompt-audio: give both, or neither")
    if args.prompt_audio:
        if not args.prompt_text:
            raise ValueError("--prompt-audio needs --prompt-text (its transcript)")
        if os.path.isdir(args.prompt_audio):
            raise ValueError(f"--prompt-audio {args.prompt_audio} is a directory; give an audio file")
        if not os.path.isfile(args.prompt_audio):
            raise FileNotFoundError(f"--prompt-audio {args.prompt_audio} does not exist")
        prompt, prompt_rate = load_audio(args.prompt_audio)
    jobs = [(args.text, args.output, None)]  # (text, output, physical line of the batch file)
    if args.batch_file:
        lines = read_batch_file(args.batch_file)
        stem, suffix = os.path.splitext(args.output)
        jobs = [(line, f"{stem}_{i:04d}{suffix}", number) for i, (number, line) in enumerate(lines)]
    elif args.text is None:
        raise ValueError("give TEXT or --batch-file")
    for _, path, _ in jobs:  # before any work: nothing of the user's is replaced without --overwrite
        check_output_file(path, args.overwrite)
        if args.plot:
            check_output_file(os.path.splitext(path)[0] + ".png", args.overwrite, option="--plot")
    model, processor = load_checkpoint(args.model)
    set_decode_weights(model, args.decode_weights)
    if args.stream:
        if args.batch_file:
            raise ValueError("--stream synthesises one text; drop --batch-file")
        return _stream_to_file(args, model, processor, prompt, prompt_rate)
    results, failures = [], []
    for text, path, number in tqdm(jobs, desc="synthesize", disable=len(jobs) == 1, file=sys.stderr):
        try:
            result = synthesize(
                model,
                processor,
                text,
                prompt_audio=prompt,
                prompt_text=args.prompt_text,
                prompt_sampling_rate=prompt_rate,
                seed=args.seed,
                **decoding_arguments(args),
            )
            if result.audio.size == 0:
                raise RuntimeError("the model generated no audio (it ended the utterance at once); try sampling (drop --greedy) or another --seed")
            if not np.isfinite(result.audio).all():
                raise RuntimeError("the model generated non-finite samples")
        except (ValueError, RuntimeError) as error:
            if len(jobs) == 1:
                raise
            failures.append({"line": number, "text": text, "error": str(error)})
            print(f"line {number}: {error}", file=sys.stderr)
            continue
        with atomic_file(path) as temporary:
            sf.write(temporary, result.audio, result.sampling_rate)
        if args.plot:
            from .processing.plot import plot_speech

            with atomic_file(os.path.splitext(path)[0] + ".png") as temporary:
                plot_speech(result.audio, result.sampling_rate, temporary, text, result.segments)
        seconds = len(result.audio) / result.sampling_rate
        results.append({"output": path, "seconds": round(seconds, 3), "cuts": result.cuts, "infinite": result.infinite})
        print(f"wrote {path}: {seconds:.2f} s, {result.cuts} forced EOPs", file=sys.stderr)
    if args.json:
        print(json.dumps(results[0] if len(results) == 1 and not args.batch_file else {"results": results, "failures": failures}))
    if failures:
        print(f"ella-v synthesize: error: {len(failures)} of {len(jobs)} lines failed (lines {[f['line'] for f in failures]})", file=sys.stderr)
        return 2
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    import torch

    from .evaluation.bench import markdown, run_benchmark
    from .synthesis import set_threads

    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda but no CUDA device is available")
    if args.out:
        for suffix in (".json", ".md"):
            check_output_file(os.path.splitext(args.out)[0] + suffix, args.overwrite, option="--out")
    set_threads(args.threads)
    from .evaluation.bench import HARVARD_20

    sentences = () if args.no_demo else HARVARD_20
    results = run_benchmark(device=args.device, preset_name=args.preset, phonemes=args.phonemes, repeats=args.repeats,
                            demo_sentences=sentences, demo_model=args.model, compile=args.compile)
    if args.out:
        base = os.path.splitext(args.out)[0]
        for suffix, text in ((".json", json.dumps(results, indent=1)), (".md", markdown(results) + "\n")):
            with atomic_file(base + suffix) as temporary:
                temporary.write_text(text, encoding="utf-8")
    print(json.dumps(results) if args.json else markdown(results))
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from .training.trainer import TrainConfig, train

    config = TrainConfig.from_file(args.config)
    changes = {k: v for k, v in (("layout", args.layout), ("stage", args.stage), ("max_steps", args.max_steps)) if v is not None}
    config = replace(config, **changes)
    summary = train(config, args.data, args.out, resume=args.resume)
    if not is_main_process():  # one report for a distributed run
        return 0
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"trained {summary['step']} steps -> {summary['model']} (eval {summary['eval']})", file=sys.stderr)
    return 0


def _cmd_train_codec(args: argparse.Namespace) -> int:
    from .training.train_codec import CodecTrainConfig, train_codec

    config = CodecTrainConfig.from_file(args.config) if args.config else CodecTrainConfig()
    if args.max_steps is not None:
        config.max_steps = args.max_steps
    if args.init_from is not None:
        config.init_from = args.init_from
    if args.decoder_only:
        config.train_decoder_only = True
    if args.nar_fraction is not None:
        config.nar_fraction = args.nar_fraction
    summary = train_codec(config, args.data, args.out, resume=args.resume, alignments=args.alignments)
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"trained {summary['step']} steps -> {summary['model']} (held-out {summary['eval']})", file=sys.stderr)
    return 0


def _cmd_train_vocoder(args: argparse.Namespace) -> int:
    from .training.train_vocoder import VocoderTrainConfig, train_vocoder

    config = VocoderTrainConfig.from_file(args.config) if args.config else VocoderTrainConfig()
    if args.max_steps is not None:
        config.max_steps = args.max_steps
    summary = train_vocoder(config, args.codec, args.data, args.out, resume=args.resume)
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"trained {summary['step']} steps -> {summary['model']} (held-out {summary['eval']})", file=sys.stderr)
    return 0


def _cmd_assemble(args: argparse.Namespace) -> int:
    from .training.assemble import assemble_checkpoint

    generation = {}
    for item in args.generation:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--generation takes KEY=VALUE (a JSON value, e.g. eop_quantile=0.5), got {item!r}")
        try:
            generation[key] = json.loads(value)
        except json.JSONDecodeError:
            generation[key] = value  # a bare string, e.g. nar_decoding=argmax
    out = assemble_checkpoint(args.gar, args.out, nar_dir=args.nar, half=not args.fp32, remote_code=not args.no_remote_code,
                              generation=generation, codec_dir=args.codec, card=args.card)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(json.dumps({"out": str(out), "bytes": size}) if args.json else f"wrote {out} ({size / 2**20:.1f} MiB)")
    return 0


def _cmd_push(args: argparse.Namespace) -> int:
    from .hub import push_to_hub, stage_for_hub

    if args.dry_run:
        staged = stage_for_hub(args.model, args.dry_run, args.card, args.repo_id)
        files = sorted(p.name for p in staged.iterdir())
        print(json.dumps({"staged": str(staged), "files": files}) if args.json else f"staged {len(files)} files in {staged}")
        return 0
    if not args.repo_id:
        raise ValueError("push needs --repo-id (or --dry-run DIR to only stage the upload)")
    url = push_to_hub(args.model, args.repo_id, args.card, private=args.private)
    print(json.dumps({"repo_id": args.repo_id, "commit": url}) if args.json else f"uploaded to {args.repo_id}: {url}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluation.evaluate_tts import evaluate_model

    result = evaluate_model(
        args.model,
        args.eval,
        args.out,
        asr=args.asr,
        sim=args.sim,
        dnsmos=args.dnsmos,
        sweep=[s.strip() for s in args.sweep.split(";") if s.strip()],
        mode=args.prompt_mode,
        prompt_seconds=args.prompt_seconds,
        limit=args.limit,
        seed=args.seed,
        seeds=args.seeds,
        prompt_audio=args.prompt_audio,
        prompt_text=args.prompt_text,
        stages=args.stages,
        decode_weights=args.decode_weights,
        overwrite=args.overwrite,
    )
    if args.json:
        print(json.dumps(result["summary"]))
    else:
        from .evaluation.evaluate_tts import markdown_table

        print(markdown_table(result))
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

    demo = sub.add_parser("make-demo-corpus", help="synthesise a multi-voice English corpus with flite")
    demo.add_argument("--out", required=True)
    demo.add_argument("--n", type=int, default=1000)
    demo.add_argument("--voices", nargs="*", default=None, help="speaker ids (default: all)")
    demo.add_argument("--data-dir", default=None, help="folder with harvard-sentences.txt / cmuarctic-a.data")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--json", action="store_true")
    demo.set_defaults(func=_cmd_make_demo_corpus)

    prep = sub.add_parser("prepare", help="corpus -> phonemes, codes, durations (datasets.save_to_disk)")
    prep.add_argument("--data", required=True, help="audiofolder, LibriTTS or LibriSpeech directory")
    prep.add_argument("--out", required=True)
    # Names are checked by prepare_corpus against the registries (modeling/registry.py's CODECS,
    # processing/aligners' ALIGNERS), so adding a codec or an aligner needs no change here.
    prep.add_argument("--codec", default="learned",
                      help="a registered codec (modeling/registry.py: learned, the bundled one; mel, k-means fitted here; "
                           "encodec, EnCodec 24 kHz; ...) or auto: any saved codec (--codec-model)")
    prep.add_argument("--aligner", default="builtin", help="a registered aligner: builtin (alias ctc), textgrid, ...")
    prep.add_argument("--codec-model", default=None,
                      help="a saved codec directory (encodec: also a model id; auto: also a text-to-speech checkpoint, for fine-tuning)")
    prep.add_argument("--aligner-model", default=None,
                      help="a saved EllaVAlignerModel directory, or a text-to-speech checkpoint (its aligner) (builtin)")
    prep.add_argument("--textgrid-dir", default=None)
    prep.add_argument("--language", default="en-us")
    prep.add_argument("--min-seconds", type=float, default=0.5)
    prep.add_argument("--max-seconds", type=float, default=20.0)
    prep.add_argument("--fit-utterances", type=int, default=400)
    prep.add_argument("--num-proc", type=int, default=2)
    prep.add_argument("--seed", type=int, default=0)
    prep.add_argument("--json", action="store_true")
    prep.set_defaults(func=_cmd_prepare)

    plot = sub.add_parser("plot-alignment", help="PNG of a spectrogram with the aligned phoneme boundaries")
    plot.add_argument("--processor", required=True, help="a saved EllaVProcessor (e.g. PREPARED/processor)")
    plot.add_argument("--audio", required=True)
    plot.add_argument("--text", required=True)
    plot.add_argument("-o", "--output", required=True)
    plot.add_argument("--no-check", action="store_true", help="plot even if the transcript looks mismatched")
    plot.add_argument("--overwrite", action="store_true", help="replace an existing output file (refused otherwise)")
    plot.add_argument("--json", action="store_true")
    plot.set_defaults(func=_cmd_plot_alignment)

    synth = sub.add_parser("synthesize", help="text -> speech (default model: the bundled demo checkpoint)")
    synth.add_argument("text", nargs="?", default=None)
    synth.add_argument("-o", "--output", required=True, help="WAV path (with --batch-file: a name pattern)")
    synth.add_argument("--model", default=None, help="an EllaVForTextToSpeech directory")
    synth.add_argument("--prompt-audio", default=None)
    synth.add_argument("--prompt-text", default=None)
    synth.add_argument("--seed", type=int, default=0)
    add_decoding_flags(synth)  # one flag per row of modeling/decoding_options.py
    synth.add_argument("--batch-file", default=None, help="one text per line; writes OUTPUT_0000.wav, …")
    synth.add_argument("--plot", action="store_true", help="also write a PNG of the waveform and spectrogram")
    synth.add_argument("--overwrite", action="store_true", help="replace existing output files (refused otherwise)")
    synth.add_argument("--stream", action="store_true", help="write the audio to OUTPUT as it is generated (phoneme runs)")
    synth.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: half the cores, 1-4)")
    _decode_weights_argument(synth)
    synth.add_argument("--json", action="store_true")
    synth.set_defaults(func=_cmd_synthesize)

    tr = sub.add_parser("train", help="train the GAR and/or NAR on a prepared corpus (Accelerate)")
    tr.add_argument("--config", required=True, help="JSON recipe, e.g. training/configs/tiny-ella-v.json")
    tr.add_argument("--data", required=True, help="`ella-v prepare` output directory")
    tr.add_argument("--out", required=True, help="run directory")
    tr.add_argument("--stage", choices=["gar", "nar", "both", "ar"], default=None, help="ar = gar (alias)")
    tr.add_argument("--layout", choices=["ella-v", "vall-e"], default=None)
    tr.add_argument("--max-steps", type=int, default=None)
    tr.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    tr.add_argument("--json", action="store_true")
    tr.set_defaults(func=_cmd_train)

    ev = sub.add_parser("evaluate", help="WER/CER/SIM/DNSMOS/INF/CUT/RTF of a checkpoint vs ground truth and codec resynthesis")
    ev.add_argument("--model", required=True)
    ev.add_argument("--eval", required=True, help="audiofolder / LibriTTS / LibriSpeech directory, or a text file")
    ev.add_argument("--out", required=True, help="results JSON (a .md table and a .png chart are written beside it)")
    ev.add_argument("--asr", default="pocketsphinx", help="pocketsphinx or a transformers ASR model id/path")
    ev.add_argument("--sim", default="auto", help="auto (resemblyzer if installed), resemblyzer, none, or a transformers x-vector model id/path")
    ev.add_argument("--dnsmos", choices=["auto", "yes", "no"], default="auto",
                    help="judge every output's quality with DNSMOS P.808 / P.835 (auto: where the [eval] extra installed it)")
    ev.add_argument("--sweep", default="top_p=0.9", help="';'-separated strategies, e.g. 'greedy;top_p=0.8;top_p=0.9,nar_decoding=argmax'")
    ev.add_argument("--prompt-mode", choices=["continuation", "cross", "none"], default="continuation")
    ev.add_argument("--prompt-seconds", type=float, default=3.0)
    ev.add_argument("--prompt-audio", default=None, help="fixed prompt for a text-file --eval")
    ev.add_argument("--prompt-text", default=None)
    ev.add_argument("--limit", type=int, default=None)
    ev.add_argument("--seed", type=int, default=0, help="the first run's seed (each item draws from its own stream)")
    ev.add_argument("--seeds", type=int, default=1,
                    help="runs of each sampling strategy (seeds SEED, SEED+1, ...); the table gives the mean and spread; greedy runs once")
    ev.add_argument("--stages", action="store_true",
                    help="also score the first codebook alone: the reference's (codec_first_codebook) and each strategy's generated one")
    _decode_weights_argument(ev)
    ev.add_argument("--overwrite", action="store_true", help="replace existing result files (refused otherwise) and start an interrupted evaluation again instead of resuming it")
    ev.add_argument("--json", action="store_true")
    ev.set_defaults(func=_cmd_evaluate)

    tc = sub.add_parser("train-codec", help="train the learned embedded codec on an audio corpus (Accelerate)")
    tc.add_argument("--data", required=True, help="audiofolder, LibriTTS or LibriSpeech directory")
    tc.add_argument("--out", required=True, help="run directory (the codec lands in OUT/model)")
    tc.add_argument("--config", default=None, help="JSON recipe, e.g. training/configs/codec-50hz.json")
    tc.add_argument("--max-steps", type=int, default=None)
    tc.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    tc.add_argument("--alignments", default=None,
                    help="an `ella-v prepare` output of --data: its forced alignments are the targets of the recipe's "
                         "phoneme_loss_weight, and the NAR's phonemes for --nar-fraction")
    tc.add_argument("--init-from", default=None, metavar="DIR",
                    help="start from a trained codec (a codec directory, or a TTS checkpoint whose embedded codec is taken)")
    tc.add_argument("--decoder-only", action="store_true",
                    help="with --init-from: freeze the encoder and quantiser (the codes stay the same, so GARs and NARs "
                         "trained on them stay valid) and train the decoder alone; `ella-v assemble --codec` swaps it in")
    tc.add_argument("--nar-fraction", type=float, default=None, metavar="F",
                    help="with --decoder-only and --init-from a TTS checkpoint: the share of crops decoded from the latents "
                         "its NAR gives at synthesis (true first codebook, the NAR's expected codebooks 2..K) instead of the "
                         "true codes' (needs --alignments)")
    tc.add_argument("--json", action="store_true")
    tc.set_defaults(func=_cmd_train_codec)

    tv = sub.add_parser("train-vocoder", help="train the learned codec's waveform stage (a Vocos-style vocoder; the codec stays frozen)")
    tv.add_argument("--codec", required=True, help="a trained learned codec (a codec directory, or a TTS checkpoint whose codec is taken)")
    tv.add_argument("--data", required=True, help="audiofolder, LibriTTS or LibriSpeech directory")
    tv.add_argument("--out", required=True, help="run directory (the codec with its vocoder lands in OUT/model)")
    tv.add_argument("--config", default=None, help="JSON recipe, e.g. training/configs/vocoder.json")
    tv.add_argument("--max-steps", type=int, default=None)
    tv.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    tv.add_argument("--json", action="store_true")
    tv.set_defaults(func=_cmd_train_vocoder)

    asm = sub.add_parser("assemble", help="one release checkpoint (fp16) from a GAR run and a NAR run")
    asm.add_argument("--gar", required=True, help="checkpoint whose GAR is taken (e.g. RUN/model of a stage-ar run)")
    asm.add_argument("--nar", default=None, help="checkpoint whose NAR is taken (default: --gar)")
    asm.add_argument("--out", required=True)
    asm.add_argument("--codec", default=None, metavar="DIR",
                     help="embed this codec instead of --gar's: a decoder fine-tuned with `ella-v train-codec --decoder-only`, "
                          "or the codec with a vocoder from `ella-v train-vocoder` (its encoder and quantiser must equal the "
                          "checkpoint's: the GAR and NAR were trained on their codes)")
    asm.add_argument("--card", default=None, metavar="FILE", help="a model card (Markdown), written into the checkpoint as README.md")
    asm.add_argument("--fp32", action="store_true", help="keep float32 weights")
    asm.add_argument("--no-remote-code", action="store_true", help="write no Hub remote code (demos bundled with the package)")
    asm.add_argument("--generation", action="append", default=[], metavar="KEY=VALUE",
                     help="a decoding default for generation_config.json (repeatable), e.g. eop_quantile=0.5")
    asm.add_argument("--json", action="store_true")
    asm.set_defaults(func=_cmd_assemble)

    push = sub.add_parser("push", help="upload a checkpoint (with its model card) to the Hugging Face Hub")
    push.add_argument("--model", required=True)
    push.add_argument("--repo-id", default=None, help="Hub repository (required unless --dry-run)")
    push.add_argument("--card", default=None, help="model card Markdown (default: generated from the config)")
    push.add_argument("--private", action="store_true")
    push.add_argument("--dry-run", metavar="DIR", default=None, help="only stage the upload into DIR")
    push.add_argument("--json", action="store_true")
    push.set_defaults(func=_cmd_push)

    demo = sub.add_parser("demo", help="a web page (Gradio) to try a checkpoint; offline with the bundled demo")
    demo.add_argument("--model", default=None, help="an EllaVForTextToSpeech directory (default: the bundled demo)")
    demo.add_argument("--port", type=int, default=7860)
    demo.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to serve other machines")
    demo.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: half the cores, 1-4)")
    demo.set_defaults(func=_cmd_demo)

    bench = sub.add_parser("bench", help="GAR generation speed vs a stock Llama of the same size, and RTF")
    bench.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    bench.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    bench.add_argument("--phonemes", type=int, default=24, help="phonemes in the benchmark text")
    bench.add_argument("--repeats", type=int, default=3)
    bench.add_argument("--threads", type=int, default=None)
    bench.add_argument("--model", default=None, help="checkpoint for the real-sentence figures (default: the bundled demo)")
    bench.add_argument("--no-demo", action="store_true", help="skip the real-sentence figures (end_to_end_demo, streaming)")
    bench.add_argument("--compile", action="store_true",
                       help="also time the GAR with a static cache and torch.compile (needs a C++ compiler on CPU)")
    bench.add_argument("--out", default=None, help="also write OUT.json and OUT.md")
    bench.add_argument("--overwrite", action="store_true", help="replace existing OUT.json / OUT.md (refused otherwise)")
    bench.add_argument("--json", action="store_true")
    bench.set_defaults(func=_cmd_bench)
    return parser


#: How each command picks up after an interruption (the advice after a full disk or Ctrl-C).
RESTART_ADVICE = {
    "train": "run it again with --resume to continue from the last checkpoint",
    "train-codec": "run it again with --resume to continue from the last checkpoint",
    "train-vocoder": "run it again with --resume to continue from the last checkpoint",
    "prepare": "run the same command again: finished steps are reused",
}


def describe_error(error: BaseException, command: str | None = None) -> str:
    """One line a person can act on; a full disk is named as such (libraries word it in many ways)."""
    text = str(error)
    full = getattr(error, "errno", None) == errno.ENOSPC or "No space left on device" in text or "StorageFull" in text
    full = full or text.strip() == "System error."  # libsndfile's whole message for a failed write
    if full or "inline_container" in text:  # torch's checkpoint writer says only "enforce fail at inline_container.cc"
        advice = RESTART_ADVICE.get(command, "run it again")
        return f"writing failed, most likely because the disk is full ({text.splitlines()[0][:200]}); free some space and {advice}"
    return text


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ella-v`` console script: expected failures become one line and exit code 2."""
    from safetensors import SafetensorError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, RuntimeError, OSError, ImportError, SafetensorError) as error:
        print(f"ella-v {args.command}: error: {describe_error(error, args.command)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        advice = RESTART_ADVICE.get(args.command)
        print(f"ella-v {args.command}: interrupted{'; ' + advice if advice else ''}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
