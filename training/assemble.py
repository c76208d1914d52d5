"""``ella-v assemble``: one release checkpoint from a GAR run and a NAR run, stored in fp16.

A plain NAR's inputs (phonemes, prompt codes and the first codebook) do not depend on the GAR's
layout, so one NAR trained with ``stage: nar`` serves an ELLA-V GAR and a VALL-E GAR alike; a
``frame_phonemes`` NAR (as in the bundled ELLA-V demo) needs an ELLA-V GAR. Weights are written as float16 safetensors while the configs
keep ``dtype: float32``, so ``from_pretrained`` loads them as float32 (CPU-friendly) by default.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .._outputs import install_tree, temporary_dir_beside, writes_output_dir
from ..modeling import EllaVForTextToSpeech, EllaVGenerationConfig, EllaVTTSConfig
from ..modeling.loading import required_keys


def halve_safetensors(directory: str | os.PathLike) -> list[Path]:
    """Rewrite every ``*.safetensors`` under ``directory`` with float32 tensors cast to float16.

    Configs are left as they are (``dtype: float32``), so loading upcasts again.

    Returns:
        The rewritten files.
    """
    rewritten = []
    for path in sorted(Path(directory).rglob("*.safetensors")):
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata()
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
        tensors = {k: (v.to(torch.float16) if v.dtype == torch.float32 else v).contiguous() for k, v in tensors.items()}
        temporary = path.with_suffix(".tmp")
        save_file(tensors, str(temporary), metadata=metadata)
        os.replace(temporary, path)
        rewritten.append(path)
    return rewritten


def _differing_keys(a: torch.nn.Module, b: torch.nn.Module, skip: tuple[str, ...] = ()) -> list[str]:
    """Names of the tensors that differ between ``a`` and ``b`` (those only one of them has, or
    unequal ones), less those a weights file may leave out (``_keys_to_ignore_on_load_missing``:
    the learned codec's EMA training statistics, zero when a checkpoint saved without them loads)
    and those whose name starts with one of ``skip``."""
    sa, sb = ({k: v for k, v in m.state_dict().items() if not k.startswith(skip)} for m in (a, b))
    if sa.keys() != sb.keys():
        return sorted(sa.keys() ^ sb.keys())
    return [k for k in required_keys(a, sa.keys()) if not torch.equal(sa[k], sb[k])]


def _same_state(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    """Same tensors, less those a weights file may leave out (see :func:`_differing_keys`)."""
    return not _differing_keys(a, b)


def _code_fields(codec: torch.nn.Module) -> dict[str, Any]:
    """The codec's configuration (``to_diff_dict``) less its waveform stage's fields (those leave the codes as they are)."""
    from ..modeling.codec_learned import WAVEFORM_STAGE_FIELDS

    return {k: v for k, v in codec.config.to_diff_dict().items() if k not in WAVEFORM_STAGE_FIELDS}


def _decoder_swap(embedded: torch.nn.Module, codec_dir: str | os.PathLike) -> torch.nn.Module:
    """The codec of ``codec_dir`` if it differs from ``embedded`` in what decodes its codes only (the
    mel decoder, the waveform stage: a vocoder, Griffin-Lim's settings); else ``ValueError``."""
    from .train_codec import load_trained_codec

    codec = load_trained_codec(codec_dir)
    if type(codec) is not type(embedded) or _code_fields(codec) != _code_fields(embedded):
        raise ValueError(f"{codec_dir}: another codec configuration than the checkpoint's; --codec takes a decoder "
                         "fine-tuned from this checkpoint's codec (`ella-v train-codec --init-from CHECKPOINT --decoder-only`) "
                         "or the codec with a vocoder (`ella-v train-vocoder --codec CHECKPOINT`)")
    changed = _differing_keys(embedded, codec, skip=("decoder.", "vocoder."))  # both float32
    if changed:
        raise ValueError(f"{codec_dir}: its {', '.join(changed[:3])}{' …' if len(changed) > 3 else ''} differ from the checkpoint's "
                         "codec, so its codes would not be the ones the GAR and NAR were trained on; only the decoder and "
                         "the waveform stage may change")
    return codec


def _apply_generation(config: EllaVGenerationConfig, generation: dict[str, Any]) -> None:
    """Set ``generation``'s fields on ``config``; ``ValueError`` for an unknown or unsupported one."""
    unknown = config.update(**generation)
    if unknown:
        raise ValueError(f"unknown generation field(s): {', '.join(sorted(unknown))}")
    config.check_supported()


COMMAND = "ella-v assemble"
#: What an assembled checkpoint records about where it came from.
PROVENANCE = "assembled_from.json"


def _is_assembled(path: Path) -> bool:
    """An assemble output written before the output marker existed."""
    return (path / PROVENANCE).is_file()


def _provenance_of(folder: Path) -> dict[str, Any] | None:
    """``folder``'s own provenance when it is an assembled checkpoint (kept, nested, in the new one)."""
    try:
        return json.loads((folder / PROVENANCE).read_text())
    except (OSError, ValueError):
        return None


@writes_output_dir(COMMAND, legacy=_is_assembled)
def assemble_checkpoint(
    gar_dir: str | os.PathLike,
    out: str | os.PathLike,
    nar_dir: str | os.PathLike | None = None,
    half: bool = True,
    remote_code: bool = True,
    generation: dict[str, Any] | None = None,
    codec_dir: str | os.PathLike | None = None,
    card: str | os.PathLike | None = None,
) -> Path:
    """Write ``out``: the GAR of ``gar_dir``, the NAR of ``nar_dir`` (default: ``gar_dir``), their
    shared codec and the processor, ready for ``ella-v synthesize`` and ``from_pretrained``.

    Args:
        gar_dir: A checkpoint whose GAR is taken (e.g. ``RUN/model`` of a ``stage: gar`` run).
        out: The new checkpoint directory. A new or empty one, or an earlier assemble output, whose
            files from that run are replaced (each by an atomic rename) while files a user added
            there stay; any other non-empty directory is refused and nothing in it is touched.
        nar_dir: A checkpoint whose NAR is taken (e.g. ``RUN/model`` of a ``stage: nar`` run).
        half: Store the weights as float16.
        remote_code: Write the Hub remote code beside the weights (``False`` for the demos bundled
            with the package, which load through the installed classes).
        generation: :class:`~ella_v_hf.modeling.EllaVGenerationConfig` fields for the checkpoint's
            ``generation_config.json`` (its decoding defaults, e.g. ``{"eop_quantile": 0.5}``);
            the others are ``gar_dir``'s (so re-assembling a checkpoint keeps its defaults).
        codec_dir: A learned codec to embed instead of ``gar_dir``'s (a codec directory or a TTS
            checkpoint): a decoder fine-tuned by ``ella-v train-codec --decoder-only``, or the
            codec with a vocoder trained by ``ella-v train-vocoder``. Everything but its decoder and
            waveform stage (configuration, normalisation, encoder, quantiser) must equal the
            embedded codec's, so that the codes the GAR and NAR were trained on stay the same.
        card: A model card (Markdown) written into the checkpoint as its ``README.md``.

    Raises:
        ValueError: The two checkpoints were trained on different codecs or phoneme vocabularies,
            ``codec_dir`` would change the codes, or ``generation`` names an unknown or unsupported field.
    """
    from ..processing import EllaVProcessor

    gar_dir, out = Path(gar_dir), Path(out)
    card_text = Path(card).read_text(encoding="utf-8") if card is not None else None  # read before the (slow) loads
    nar_dir = Path(nar_dir) if nar_dir is not None else gar_dir
    if generation:  # checked before the (slow) loads; applied to the assembled model's own config below
        _apply_generation(EllaVGenerationConfig(), generation)
    gar_model = EllaVForTextToSpeech.from_pretrained(gar_dir, dtype=torch.float32)
    nar_model = gar_model if nar_dir == gar_dir else EllaVForTextToSpeech.from_pretrained(nar_dir, dtype=torch.float32)
    processor = EllaVProcessor.from_pretrained(gar_dir)
    if nar_model is not gar_model:
        if not _same_state(gar_model.codec, nar_model.codec):
            raise ValueError(f"{gar_dir} and {nar_dir} use different codecs; train both on the same prepared corpus")
        nar_vocab = EllaVProcessor.from_pretrained(nar_dir).tokenizer.get_vocab()
        if processor.tokenizer.get_vocab() != nar_vocab:
            raise ValueError(f"{gar_dir} and {nar_dir} use different phoneme vocabularies")
    codec = gar_model.codec
    if codec_dir is not None:
        codec = _decoder_swap(gar_model.codec, codec_dir)
    source = gar_model.config
    config = EllaVTTSConfig(
        gar_config=source.gar_config,
        nar_config=nar_model.config.nar_config,
        codec_config=codec.config,  # the embedded codec's, or --codec's (its waveform stage may differ)
        aligner_config=source.aligner_config,
        vall_e_max_frames_per_phone=source.vall_e_max_frames_per_phone,
        sentence_pause_seconds=source.sentence_pause_seconds,
        phoneme_vocab_sha256=processor.tokenizer.vocab_fingerprint(),
    )
    model = EllaVForTextToSpeech(config)
    model.generation_config = copy.deepcopy(gar_model.generation_config)  # an assembled --gar's decoding defaults stay
    if generation:
        _apply_generation(model.generation_config, generation)
    model.gar.load_state_dict(gar_model.gar.state_dict())
    model.nar.load_state_dict(nar_model.nar.state_dict())
    model.codec.load_state_dict(codec.state_dict())
    if model.aligner is not None:
        model.aligner.load_state_dict(gar_model.aligner.state_dict())

    provenance: dict[str, Any] = {"gar_from": gar_dir.as_posix(), "nar_from": nar_dir.as_posix(),
                                  "weights_dtype": "float16" if half else "float32"}
    if codec_dir is not None:
        provenance["codec_from"] = Path(codec_dir).as_posix()
    for name, folder in (("gar", gar_dir), ("nar", nar_dir)):
        steps = folder / "trained_steps.txt"
        if steps.is_file():
            provenance[f"{name}_trained_steps"] = int(steps.read_text())
        earlier = _provenance_of(folder)  # an assembled checkpoint as source: its history stays
        if earlier is not None:
            provenance[f"{name}_provenance"] = earlier
    temporary = temporary_dir_beside(out)  # a new folder of our own, never a user's
    try:
        model.save_pretrained(temporary, remote_code=remote_code)
        processor.save_pretrained(temporary, remote_code=remote_code)
        (temporary / PROVENANCE).write_text(json.dumps(provenance, indent=1))
        if card_text is not None:
            (temporary / "README.md").write_text(card_text, encoding="utf-8")
        if half:
            halve_safetensors(temporary)
        return install_tree(temporary, out, COMMAND)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


__all__ = ["assemble_checkpoint", "halve_safetensors"]
