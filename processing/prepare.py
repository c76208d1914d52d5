"""``ella-v prepare``: corpus -> phoneme ids, codec codes and per-token durations (a saved ``datasets`` dataset).

Pipeline (each step a ``datasets.map`` with an explicit cache file named by a fingerprint of its
inputs and settings, so a re-run reuses finished work; the audio step runs in chunks of
``AUDIO_CHUNK_ROWS`` rows with one cache file per chunk and process, so a killed run keeps every
finished chunk, and the temporary files it left are removed by the next run):

1. read the corpus (audiofolder / LibriTTS / LibriSpeech), streamed into a memory-mapped Arrow
   table in the cache (memory stays flat however large the corpus: no step holds the corpus's
   codes in memory, and the saved dataset is written in shards of at most 500 MB); entries with
   missing audio, empty transcripts or duplicated ids are skipped and listed;
2. ``text``: phonemise (batched espeak calls);
3. ``screen``: drop recordings without signal, without voiced speech, mostly silent, or whose
   transcript has far too many or too few phonemes for their speech (:mod:`.screening`), before
   anything is fitted on them;
4. load the codec (``--codec``: the bundled learned codec, EnCodec, or a saved one; the k-means
   ``mel`` codec is fitted on a sample of the corpus) and build the aligner by name (the built-in
   one is trained on the same sample unless given; see :mod:`ella_v_hf.processing.aligners`);
5. ``audio``: load, check length, encode with the codec, align; the aligner's score then flags
   transcripts that do not match (per corpus and per speaker).

Rows that fail a step (unreadable audio, too short/long, transcript mismatch…) are skipped with
their reason, never fatal. Output directory::

    OUT/dataset/     datasets.save_to_disk: id, speaker_id, prompt_id, text, phoneme_ids, durations,
                     codes [K][T], num_frames
    OUT/processor/   EllaVProcessor (tokenizer + audio settings) for training and synthesis
    OUT/codec/       the codec (a registered codec model: ``AutoModel.from_pretrained``)
    OUT/aligner/     the built-in aligner, when it was used
    OUT/summary.json utterances, hours, skipped (with reasons), wall and CPU seconds per step, utterances/s
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
import shutil
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .._lock import die_with_parent
from .._outputs import temporary_dir_beside, writes_output_dir
from ..modeling.aligner_ella_v import AlignmentError, EllaVAlignerModel
from ..modeling.registry import CODECS
from .aligners import ALIGNERS, AlignerContext, build_aligner
from .aligners.builtin import mismatch_threshold
from .aligners.textgrid import TextGridMismatch
from .audio import AudioError, load_audio, prepare_waveform
from .corpus import CorpusProblem, iter_corpus
from .processing_ella_v import EllaVProcessor
from .screening import RATE as SCREEN_RATE
from .screening import screen_waveform
from .tokenization_ella_v import EllaVPhonemeTokenizer

#: Bumped whenever a step's output changes, so older caches are not reused.
PIPELINE_VERSION = 2
#: Version of the screening step's rules (:mod:`.screening`): a change re-screens the corpus.
SCREEN_VERSION = 1
#: Rows per cache file of the screening and audio steps (the work a killed run can lose per process).
AUDIO_CHUNK_ROWS = 2000


@dataclass
class PrepareSummary:
    """What ``prepare`` produced."""

    out: str
    utterances: int
    hours: float
    skipped: list[dict] = field(default_factory=list)
    skipped_by_reason: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    utterances_per_second: float = 0.0


def _cpu_seconds() -> float:
    """CPU seconds used so far by this process and by every worker process it has waited for."""
    import resource

    own, workers = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + workers.ru_utime + workers.ru_stime


class _StepClock:
    """Wall and CPU seconds of each step (CPU: this process and its finished ``--num-proc`` workers,
    so a step's core-seconds stay right on a busy machine, where its wall time does not)."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self._created = self._started = (time.time(), _cpu_seconds())

    def start(self) -> None:
        self._started = (time.time(), _cpu_seconds())

    def stop(self, name: str, since_creation: bool = False) -> None:
        wall, cpu = self._created if since_creation else self._started
        self.wall[name] = time.time() - wall
        self.cpu[name] = _cpu_seconds() - cpu


@contextmanager
def _atomic_dir(target: Path):
    """Yield a temporary directory that replaces ``target`` only once it is completely written,
    so a killed run never leaves a half-written codec, aligner, processor or dataset behind."""
    temporary = temporary_dir_beside(target)  # a new folder of our own, never a user's
    try:
        yield temporary
        shutil.rmtree(target, ignore_errors=True)  # this run's output directory's own sub-folder
        os.replace(temporary, target)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def _without_parametrizations(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` (already saved) with its parametrizations (EnCodec's weight norm) folded into plain
    weights: the same outputs, and a module the ``--num-proc`` workers can receive (parametrized
    modules cannot be pickled)."""
    from torch.nn.utils import parametrize

    for module in model.modules():
        if parametrize.is_parametrized(module):
            for name in list(module.parametrizations):
                parametrize.remove_parametrizations(module, name, leave_parametrized=True)
    return model


def _chunked_map(dataset, function, key: str, name: str, cache: Path, num_proc: int | None, desc: str | None = None):
    """``dataset.map(function)`` in chunks of :data:`AUDIO_CHUNK_ROWS` rows, each cached in
    ``cache/NAME-KEY-FIRSTROW.arrow``: a killed run keeps every finished chunk, and a re-run reuses
    them. Worker processes (``num_proc``) die with this process."""
    from datasets import concatenate_datasets

    chunks = []
    with _children_die_with(os.getpid()):
        for first in range(0, len(dataset), AUDIO_CHUNK_ROWS):
            rows_here = range(first, min(first + AUDIO_CHUNK_ROWS, len(dataset)))
            chunk_key = f"{key}-{first:09d}"
            chunks.append(
                dataset.select(rows_here).map(
                    function,
                    num_proc=num_proc if num_proc and num_proc > 1 and len(rows_here) > 1 else None,
                    cache_file_name=str(cache / f"{name}-{chunk_key}.arrow"),
                    new_fingerprint=chunk_key,
                    desc=f"{desc or name} (rows {first}-{rows_here[-1]} of {len(dataset)})",
                )
            )
    return concatenate_datasets(chunks)


def _fingerprint(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _reason(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"


def _check_arguments(arguments: dict) -> None:
    """Refuse unknown codec/aligner names and a missing corpus before anything is created."""
    if arguments["codec"] not in codec_names():
        raise ValueError(f"Unknown codec {arguments['codec']!r}; expected one of {codec_names()}")
    if arguments["aligner"] not in ALIGNERS:
        raise ValueError(f"Unknown aligner {arguments['aligner']!r}; expected one of {sorted(ALIGNERS)}")
    if not Path(arguments["data"]).is_dir():
        raise ValueError(f"Corpus directory {str(arguments['data'])!r} does not exist")


def _is_prepared(path: Path) -> bool:
    """A prepare output written before the output marker existed: its processor or its summary."""
    if (path / "processor" / "processor_config.json").is_file():
        return True
    try:
        summary = json.loads((path / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(summary, dict) and {"utterances", "hours", "skipped"} <= set(summary)


#: Corpus entries per Arrow record batch while the corpus is read (the most held in memory at once).
CORPUS_BATCH_ROWS = 10_000
#: Suffix of the corpus table while it is written.
_PARTIAL = ".arrow.partial"
_CORPUS_COLUMNS = ("id", "audio_path", "text", "speaker_id", "prompt_id")


def _corpus_dataset(data: str | os.PathLike, cache: Path, progress: bool = False):
    """The corpus's entries as a memory-mapped ``datasets.Dataset`` (columns id, audio_path, text,
    speaker_id, prompt_id), written to ``cache/corpus-KEY.arrow`` in record batches of
    :data:`CORPUS_BATCH_ROWS` while the corpus is read, so memory stays flat however large the
    corpus; KEY fingerprints every entry and its audio file's content (:func:`_file_key`).

    Returns:
        ``(dataset, skipped, key)``: ``skipped`` lists the entries the reader left out, with why.

    Raises:
        ValueError: Nothing usable in the corpus.
    """
    import tempfile

    import pyarrow as pa
    from datasets import Dataset

    schema = pa.schema([(name, pa.string()) for name in _CORPUS_COLUMNS])
    digest = hashlib.sha256(f"corpus-{PIPELINE_VERSION}".encode())
    skipped: list[dict] = []
    count = 0
    with tempfile.NamedTemporaryFile(dir=cache, prefix="corpus-", suffix=_PARTIAL, delete=False) as sink:
        partial = Path(sink.name)
        try:
            with pa.ipc.new_stream(sink, schema) as writer:
                batch: list[dict] = []
                for entry in tqdm(iter_corpus(data), desc="read corpus", unit=" entries", disable=not progress):
                    if isinstance(entry, CorpusProblem):
                        skipped.append({"id": entry.id, "reason": entry.reason})
                        continue
                    row = asdict(entry)
                    digest.update(json.dumps([row[c] for c in _CORPUS_COLUMNS] + list(_file_key(row["audio_path"]))).encode())
                    batch.append(row)
                    count += 1
                    if len(batch) == CORPUS_BATCH_ROWS:
                        writer.write_batch(pa.RecordBatch.from_pylist(batch, schema=schema))
                        batch = []
                if batch:
                    writer.write_batch(pa.RecordBatch.from_pylist(batch, schema=schema))
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    if count == 0:
        partial.unlink(missing_ok=True)
        raise ValueError(f"No usable utterances in {data!s} ({len(skipped)} skipped)")
    key = digest.hexdigest()[:16]
    table = cache / f"corpus-{key}.arrow"
    os.replace(partial, table)
    return Dataset.from_file(str(table)), skipped, key


#: Names of the temporary files datasets writes into the cache (``tempfile``'s ``tmpXXXXXXXX``).
_DATASETS_TEMPORARY = re.compile(r"tmp[a-z0-9_]{8}")


@writes_output_dir("ella-v prepare", legacy=_is_prepared, check=_check_arguments)
def prepare_corpus(
    data: str | os.PathLike,
    out: str | os.PathLike,
    codec: str = "learned",
    aligner: str = "builtin",
    codec_model: str | None = None,
    aligner_model: str | None = None,
    textgrid_dir: str | None = None,
    language: str = "en-us",
    min_seconds: float = 0.5,
    max_seconds: float = 20.0,
    fit_utterances: int = 400,
    aligner_iterations: int = 4,
    num_proc: int = 2,
    seed: int = 0,
    progress: bool = True,
) -> PrepareSummary:
    """Prepare a corpus for training (see the module docstring).

    Args:
        data: Corpus directory.
        out: Output directory (reused: finished steps are not redone).
        codec: A registered codec's name (:data:`~ella_v_hf.modeling.registry.CODECS`) or ``"auto"``.
        aligner: A name in :data:`~ella_v_hf.processing.aligners.ALIGNERS`: ``"builtin"`` (trained
            here unless ``aligner_model``; ``"ctc"`` is an alias) or ``"textgrid"`` (MFA TextGrids
            next to the audio files or in ``textgrid_dir``).
        codec_model: A saved codec directory (or, for ``encodec``, a model id).
        aligner_model: A saved EllaVAlignerModel directory.
        textgrid_dir: Where ``<utterance id>.TextGrid`` files are (default: beside the audio).
        language: espeak language code.
        min_seconds / max_seconds: Utterances outside this length are skipped.
        fit_utterances: Utterances used to fit the codec and train the aligner.
        aligner_iterations: Viterbi re-alignment rounds of the built-in aligner.
        num_proc: Processes for the audio step.
        seed: Seed for fitting.
        progress: Progress bars on stderr.

    Raises:
        ValueError: Unknown codec/aligner, unsupported corpus layout, or nothing usable left.
    """
    from datasets import disable_progress_bars, enable_progress_bars

    (enable_progress_bars if progress else disable_progress_bars)()
    out = Path(out)
    cache = out / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    for stale in cache.glob("tmp*"):  # datasets' temporary writers, left behind by a killed run
        if _DATASETS_TEMPORARY.fullmatch(stale.name) and stale.is_file():
            stale.unlink(missing_ok=True)
    for stale in cache.glob(f"corpus-*{_PARTIAL}"):  # our own corpus table, half-written by a killed run
        stale.unlink(missing_ok=True)
    clock = _StepClock()

    dataset, skipped, corpus_key = _corpus_dataset(data, cache, progress)

    tokenizer = EllaVPhonemeTokenizer(language=language)

    def phonemize(batch: dict) -> dict:
        ids, errors = [], []
        try:
            ids = tokenizer.batch_encode_phonemes(batch["text"])
            errors = [""] * len(ids)
        except ValueError:  # find the offending rows one by one
            for text in batch["text"]:
                try:
                    ids.append(tokenizer.batch_encode_phonemes([text])[0])
                    errors.append("")
                except ValueError as error:
                    ids.append([])
                    errors.append(_reason(error))
        return {"phoneme_ids": ids, "error": errors}

    clock.start()
    text_key = _fingerprint("text", corpus_key, language, tokenizer.get_vocab())
    dataset = dataset.map(
        phonemize,
        batched=True,
        batch_size=256,
        cache_file_name=str(cache / f"text-{text_key}.arrow"),
        new_fingerprint=text_key,
        desc="phonemise",
    )
    clock.stop("text")

    # Screening: nothing the codec or the aligner is fitted on, and nothing kept, is garbage.
    clock.start()
    separators = set(tokenizer.separator_token_ids)

    def screen(row: dict) -> dict:
        if row["error"]:
            return {"error": row["error"]}
        try:
            waveform = prepare_waveform(*load_audio(row["audio_path"]), SCREEN_RATE, name=row["id"])
        except (AudioError, ValueError, OSError) as error:
            return {"error": _reason(error)}
        phonemes = sum(1 for i in row["phoneme_ids"] if i not in separators)
        return {"error": screen_waveform(waveform, phonemes).reason or ""}

    dataset = _chunked_map(dataset, screen, _fingerprint("screen", SCREEN_VERSION, text_key), "screen", cache, num_proc)
    clock.stop("screen")

    # Codec and aligner, fitted on a sample of the text-valid rows (or loaded).
    clock.start()
    valid = [i for i, e in enumerate(dataset["error"]) if not e]
    sample = _fitting_sample(dataset["audio_path"], valid, fit_utterances, min_seconds, max_seconds, seed)
    audio_codec = _without_parametrizations(_load_or_fit_codec(codec, codec_model, out, dataset, sample, seed, progress).eval())
    clock.stop("codec")
    clock.start()
    rate, frame_rate = audio_codec.config.sampling_rate, float(audio_codec.config.frame_rate)
    trained = out / "aligner"
    saved = aligner_model or (str(trained) if (trained / "model.safetensors").is_file() else None)
    context = AlignerContext(
        tokenizer=tokenizer,
        sampling_rate=rate,
        frame_rate=frame_rate,
        model=saved,
        textgrid_dir=textgrid_dir,
        training_examples=lambda: [(w, row["phoneme_ids"]) for row, w in _sample_waveforms(dataset, sample, rate, progress, "read for aligner")],
        seed=seed,
        iterations=aligner_iterations,
        progress=progress,
    )
    align_model = build_aligner(aligner, context)
    if abs(align_model.frame_rate - frame_rate) > 1e-6 or align_model.sampling_rate != rate:
        raise ValueError(f"The aligner works at {align_model.frame_rate} frames/s, the codec at {frame_rate}: durations must be in codec frames.")
    if isinstance(align_model, EllaVAlignerModel) and (saved is None or Path(saved).resolve() != trained.resolve()):
        with _atomic_dir(trained) as folder:  # trained here, or given: the corpus carries the aligner it was aligned with
            align_model.save_pretrained(folder)
    clock.stop("aligner")
    processor = EllaVProcessor(tokenizer, sampling_rate=rate)
    with _atomic_dir(out / "processor") as folder:
        processor.save_pretrained(folder, remote_code=False)

    def encode_and_align(row: dict) -> dict:
        torch.set_num_threads(1)
        result = {"codes": [], "durations": [], "num_frames": 0, "align_score": 0.0, "error": row["error"]}
        if row["error"]:
            return result
        try:
            waveform = prepare_waveform(*load_audio(row["audio_path"]), rate, name=row["id"])
            seconds = len(waveform) / rate
            if not min_seconds <= seconds <= max_seconds:
                raise AudioError(f"{seconds:.2f} s is outside [{min_seconds}, {max_seconds}] s")
            codes = audio_codec.encode(torch.from_numpy(waveform)[None, None])[0]  # [K, T]
            num_frames = int(codes.shape[-1])
            alignment = align_model.align(waveform, row["phoneme_ids"], check=False, source=row["audio_path"], utterance_id=row["id"])
            durations, result["align_score"] = alignment.durations, alignment.score
            if sum(durations) != num_frames or len(durations) != len(row["phoneme_ids"]):
                raise AlignmentError(f"alignment covers {sum(durations)} of {num_frames} frames")
            result.update(codes=codes.to(torch.int16).tolist(), durations=durations, num_frames=num_frames)
        except (AudioError, AlignmentError, TextGridMismatch, ValueError, RuntimeError, OSError) as error:
            result["error"] = _reason(error)
        return result

    clock.start()
    audio_key = _fingerprint(
        "audio",
        PIPELINE_VERSION,
        text_key,
        _model_key(audio_codec),
        aligner,
        _model_key(align_model) if isinstance(align_model, EllaVAlignerModel) else None,
        textgrid_dir,
        min_seconds,
        max_seconds,
    )
    dataset = _chunked_map(dataset, encode_and_align, audio_key, "audio", cache, num_proc, desc="encode + align")
    clock.stop("audio")

    if isinstance(align_model, EllaVAlignerModel):
        dataset = _flag_mismatches(dataset, align_model.config.mismatch_threshold)
    errors = dataset["error"]
    skipped += [{"id": i, "reason": e} for i, e in zip(dataset["id"], errors) if e]
    good = dataset.select([i for i, e in enumerate(errors) if not e])  # an index mapping: nothing copied
    if len(good) == 0:
        raise ValueError(f"Every utterance was skipped; first reasons: {skipped[:5]}")
    good = good.remove_columns([c for c in ("error", "audio_path", "align_score") if c in good.column_names])
    with _atomic_dir(out / "dataset") as folder:
        good.save_to_disk(str(folder))
    hours = float(np.sum(good["num_frames"])) / frame_rate / 3600
    clock.stop("total", since_creation=True)
    timings = clock.wall
    reasons = Counter(s["reason"].split(":")[0] for s in skipped)
    summary = PrepareSummary(
        out=str(out),
        utterances=len(good),
        hours=round(hours, 4),
        skipped=skipped,
        skipped_by_reason=dict(reasons),
        seconds={k: round(v, 2) for k, v in timings.items()},
        cpu_seconds={k: round(v, 2) for k, v in clock.cpu.items()},
        utterances_per_second=round(len(dataset) / max(timings["audio"], 1e-9), 2),
    )
    (out / ".summary.json").write_text(json.dumps(asdict(summary), indent=1, ensure_ascii=False), encoding="utf-8")
    os.replace(out / ".summary.json", out / "summary.json")
    return summary


#: Speakers with fewer aligned utterances than this are judged by the corpus threshold alone.
MIN_UTTERANCES_PER_SPEAKER_THRESHOLD = 10


def speaker_thresholds(speakers: list[str], scores: list[float]) -> dict[str, float]:
    """Per-speaker mismatch thresholds: median minus max(8 MAD, 0.5) of the speaker's scores."""
    by_speaker: dict[str, list[float]] = {}
    for speaker, score in zip(speakers, scores):
        by_speaker.setdefault(speaker, []).append(score)
    out = {}
    for speaker, values in by_speaker.items():
        if len(values) >= MIN_UTTERANCES_PER_SPEAKER_THRESHOLD:
            out[speaker] = mismatch_threshold(values)
    return out


def _flag_mismatches(dataset, corpus_threshold: float | None):
    """Flag transcript mismatches: a score below the aligner's corpus threshold *and* below the
    speaker's own threshold (recording conditions shift a speaker's scores as a whole; a wrong
    transcript is an outlier for its speaker too)."""
    if corpus_threshold is None:
        return dataset
    errors = dataset["error"]
    ok = [i for i, e in enumerate(errors) if not e]
    speakers, scores = dataset["speaker_id"], dataset["align_score"]
    per_speaker = speaker_thresholds([speakers[i] for i in ok], [scores[i] for i in ok])
    flagged = list(errors)
    for i in ok:
        limit = min(corpus_threshold, per_speaker.get(speakers[i], corpus_threshold))
        if scores[i] < limit:
            flagged[i] = (f"AlignmentError: transcript does not match the audio: alignment score "
                          f"{scores[i]:.2f} is below the threshold {limit:.2f}")
    # A new column beside the memory-mapped ones: the codes are not copied (a map would rewrite them).
    return dataset.remove_columns("error").add_column("error", flagged)


#: Config entries that say where a model was loaded from or by what, not what it computes.
_PROVENANCE_KEYS = ("_name_or_path", "architectures", "transformers_version", "auto_map", "dtype", "torch_dtype")
#: Bytes hashed at each end of an audio file for its cache key.
_FILE_KEY_BLOCK = 1 << 16


def _file_key(path: str) -> tuple[int, int, str]:
    """An audio file's content key: size, modification time and a hash of its first and last 64 KiB,
    so a file replaced in place (normalised, denoised: often the same size) is encoded again."""
    stat = os.stat(path)
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        digest.update(handle.read(_FILE_KEY_BLOCK))
        if stat.st_size > 2 * _FILE_KEY_BLOCK:
            handle.seek(-_FILE_KEY_BLOCK, os.SEEK_END)
        digest.update(handle.read(_FILE_KEY_BLOCK))
    return stat.st_size, stat.st_mtime_ns, digest.hexdigest()[:16]


def _model_key(model) -> str:
    """Fingerprint of a codec's or aligner's weights and config (the same for a trained model and
    the same model saved and loaded again)."""
    config = {k: v for k, v in model.config.to_dict().items() if k not in _PROVENANCE_KEYS}
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().float().numpy().tobytes())
    return digest.hexdigest()[:16]


def _fitting_sample(paths: list[str], valid: list[int], n: int, min_seconds: float, max_seconds: float, seed: int) -> list[int]:
    """Up to ``n`` random rows to fit the codec/aligner on, among those whose audio length (read
    from the file header, without decoding) lies in ``[min_seconds, max_seconds]``: files the audio
    step will reject are never fitted on."""
    import soundfile as sf

    order = np.random.default_rng(seed).permutation(valid).tolist()
    chosen = []
    for index in order:
        try:
            seconds = sf.info(paths[index]).duration
        except (RuntimeError, sf.LibsndfileError, OSError):
            continue  # unreadable: reported by the audio step
        if min_seconds <= seconds <= max_seconds:
            chosen.append(index)
            if len(chosen) == n:
                break
    return sorted(chosen)


_DIE_WITH: int | None = None  # while prepare maps with workers: its pid; processes it forks then die with it


def _after_fork_in_child() -> None:
    """``os.register_at_fork`` hook: a process forked by prepare while it maps with workers (the
    pool's workers, and the manager process ``datasets`` starts beside them) dies with it."""
    if _DIE_WITH is not None and os.getppid() == _DIE_WITH:
        die_with_parent()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


@contextmanager
def _children_die_with(pid: int):
    """Within the block, every process that ``pid`` forks dies when ``pid`` does (Linux)."""
    global _DIE_WITH
    _DIE_WITH = pid
    try:
        yield
    finally:
        _DIE_WITH = None


def _sample_waveforms(dataset, sample: list[int], rate: int, progress: bool, desc: str):
    for index in tqdm(sample, desc=desc, disable=not progress):
        row = dataset[index]
        try:
            waveform, source_rate = load_audio(row["audio_path"])
            yield row, prepare_waveform(waveform, source_rate, rate, name=row["id"])
        except AudioError:
            continue  # reported by the audio step


def load_codec(name: str, codec_model: str | None = None):
    """The codec registered as ``name`` (:data:`~ella_v_hf.modeling.registry.CODECS`), from
    ``codec_model`` or its own default; or, with ``name`` ``"auto"``, whatever codec is saved at
    ``codec_model`` (a codec directory, transformers' EnCodec format, or a text-to-speech
    checkpoint, whose codec is taken: to fine-tune it).

    Raises:
        ValueError: Unknown name, or a codec that must be given or trained first.
    """
    if name == "auto":
        from transformers import AutoConfig, AutoModel

        if not codec_model:
            raise ValueError("--codec auto needs --codec-model (a saved codec directory)")
        model_type = AutoConfig.from_pretrained(codec_model).model_type
        if model_type == "encodec":  # transformers' own EnCodec format
            return CODECS["encodec"].load(codec_model)
        if model_type == "ella_v_tts":  # a text-to-speech checkpoint: its own codec (to fine-tune it)
            from ..modeling import EllaVForTextToSpeech

            return EllaVForTextToSpeech.from_pretrained(codec_model).codec
        return AutoModel.from_pretrained(codec_model)
    if name not in CODECS:
        raise ValueError(f"Unknown codec {name!r}; expected one of {codec_names()}")
    return CODECS[name].load(codec_model)


def codec_names() -> tuple[str, ...]:
    """What ``--codec`` takes: every registered codec, and ``auto``."""
    return (*CODECS, "auto")


def _load_or_fit_codec(codec: str, codec_model: str | None, out: Path, dataset, sample, seed: int, progress: bool):
    """The codec to prepare with; it is saved to ``OUT/codec`` (the k-means codec is fitted there once)."""
    target = out / "codec"
    if codec == "mel" and not codec_model and (target / "model.safetensors").is_file():
        return load_codec("mel", str(target))
    if codec == "mel" and not codec_model:
        from ..modeling.codec_mel import EllaVMelCodecConfig
        from .fit_mel_codec import fit_mel_codec

        config = EllaVMelCodecConfig()
        waves = ((w, config.sampling_rate) for _, w in _sample_waveforms(dataset, sample, config.sampling_rate, progress, "read for codec"))
        model = fit_mel_codec(waves, config, seed=seed, progress=progress)
    else:
        model = load_codec(codec, codec_model)
    with _atomic_dir(target) as folder:
        model.save_pretrained(folder)
    return model


#: The learned codec bundled with the package (``ella-v prepare --codec learned`` without --codec-model),
#: inside the installed ``ella_v_hf`` package whether it is installed from a wheel or editable.
DEFAULT_CODEC_DIR = str(Path(importlib.import_module(__name__.split(".")[0]).__file__).resolve().parent / "pretrained" / "codec")

__all__ = ["DEFAULT_CODEC_DIR", "codec_names", "PrepareSummary", "load_codec", "prepare_corpus"]
