"""Sharing checkpoints: stage a model directory for the Hub (weights, processor, remote code and a
model card), and upload it.

Staging loads the checkpoint with the installed classes and saves it again with
``save_pretrained(remote_code=True)``, so the remote code that travels is always the code that
produced it; the bundled demos themselves hold no code.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

#: Sub-configurations every EllaVForTextToSpeech config.json holds.
SUB_CONFIGS = ("gar_config", "nar_config", "codec_config")
REQUIRED_FILES = ("config.json", "model.safetensors", "processor_config.json", "tokenizer_config.json")
FORBIDDEN_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
#: Import name -> pip name, where they differ.
PIP_NAMES = {"sklearn": "scikit-learn", "espeakng_loader": "espeakng-loader"}


def remote_code_requirements(directory: str | os.PathLike) -> list[str]:
    """The pip packages the remote-code files in ``directory`` import (beyond the standard library
    and their siblings), as transformers checks them when it loads the code."""
    from transformers.dynamic_module_utils import get_imports

    folder = Path(directory)
    siblings = {p.stem for p in folder.glob("*.py")}
    found: set[str] = set()
    for path in folder.glob("*.py"):
        for name in get_imports(str(path)):
            if name not in siblings and name not in sys.stdlib_module_names:
                found.add(PIP_NAMES.get(name, name))
    return sorted(found)


def default_card(model_dir: str | os.PathLike, repo_id: str | None = None, license: str = "apache-2.0") -> str:
    """A model card generated from a staged checkpoint's config and remote code.

    Args:
        model_dir: The staged checkpoint (with its remote-code files).
        repo_id: The Hub repository it goes to (the card's title and usage snippet); default: the folder name.
        license: The card's license field.
    """
    folder = Path(model_dir)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    gar, nar, codec = config["gar_config"], config["nar_config"], config["codec_config"]
    name = repo_id or folder.resolve().name
    packages = " ".join(remote_code_requirements(folder))
    return f"""---
library_name: transformers
pipeline_tag: text-to-speech
license: {license}
tags: [ella-v, codec-language-model, tts]
---

# {name}

An ELLA-V text-to-speech checkpoint (layout `{gar['layout']}`) made with
[ella-v-hf](https://pypi.org/project/ella-v-hf/): a GAR of {gar['num_hidden_layers']} layers x {gar['hidden_size']}
predicting the first codebook, a NAR of {nar['num_hidden_layers']} layers x {nar['hidden_size']} predicting
codebooks 2..{gar['num_codebooks']}, and the `{codec.get('model_type')}` codec at {codec.get('sampling_rate')} Hz.

Its remote code needs these pip packages besides torch and transformers:

```bash
pip install {packages}
```

```python
from transformers import pipeline
tts = pipeline("text-to-speech", model="{name}", trust_remote_code=True)
speech = tts("The birch canoe slid on the smooth planks.")   # {{"audio", "sampling_rate"}}
```

Training data, recipe, measured results and limitations: not documented by its author.
"""


def check_checkpoint(model_dir: str | os.PathLike) -> Path:
    """Check that ``model_dir`` is a complete EllaVForTextToSpeech directory with readable weights.

    Raises:
        FileNotFoundError: A required file is missing.
        ValueError: ``config.json`` is not JSON or lacks a sub-configuration; ``model.safetensors`` is truncated or corrupt.
    """
    path = Path(model_dir)
    missing = [name for name in REQUIRED_FILES if not (path / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{path} is not a complete EllaVForTextToSpeech directory: missing {missing}")
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path / 'config.json'} is not valid JSON: {error}") from error
    absent = [key for key in SUB_CONFIGS if not isinstance(config, dict) or not isinstance(config.get(key), dict)]
    if absent:
        raise ValueError(f"{path / 'config.json'} is not an EllaVForTextToSpeech config: it has no {', '.join(absent)}")
    try:
        from safetensors import safe_open

        with safe_open(str(path / "model.safetensors"), framework="pt") as handle:
            handle.keys()
    except Exception as error:  # safetensors raises its own error types for bad headers
        raise ValueError(f"{path / 'model.safetensors'} is truncated or corrupt: {error}") from error
    return path


def stage_for_hub(
    model_dir: str | os.PathLike, out: str | os.PathLike, card: str | os.PathLike | None = None, repo_id: str | None = None
) -> Path:
    """Write the upload of ``model_dir`` into ``out``: weights, processor, remote code, ``README.md``.

    ``out`` must not exist yet, or be an empty directory: staging never deletes or overwrites anything.

    Raises:
        FileNotFoundError / ValueError: An incomplete or corrupt checkpoint (:func:`check_checkpoint`).
        ValueError: Pickle-based weight files; ``out`` is a file, a non-empty directory or inside ``model_dir``.
    """
    import torch

    from .modeling import EllaVForTextToSpeech
    from .processing import EllaVProcessor

    source, target = check_checkpoint(model_dir).resolve(), Path(out).resolve()
    unsafe = [p.name for p in source.rglob("*") if p.suffix in FORBIDDEN_SUFFIXES]
    if unsafe:
        raise ValueError(f"{source} holds pickle-based files {unsafe}; only safetensors are shared")
    if target == source or source in target.parents:
        raise ValueError(f"--dry-run {out}: the staging directory must lie outside the model directory {source}")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ValueError(f"--dry-run {out}: {'not a directory' if not target.is_dir() else 'the directory is not empty'}; give a new or empty directory")
    model = EllaVForTextToSpeech.from_pretrained(source, dtype=torch.float32)
    processor = EllaVProcessor.from_pretrained(source)
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(target)
    processor.save_pretrained(target)
    if _stored_as_float16(source / "model.safetensors"):
        from .training.assemble import halve_safetensors

        halve_safetensors(target)
    if card is None and (source / "README.md").is_file():
        card = source / "README.md"
    text = Path(card).read_text(encoding="utf-8") if card else default_card(target, repo_id or source.resolve().name)
    (target / "README.md").write_text(text, encoding="utf-8")
    return target


def _stored_as_float16(path: Path) -> bool:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return any(str(handle.get_slice(key).get_dtype()) == "F16" for key in list(handle.keys())[:8])


def push_to_hub(model_dir: str | os.PathLike, repo_id: str, card: str | None = None, private: bool = False, token: str | None = None) -> str:
    """Stage and upload a checkpoint; returns the commit URL."""
    import tempfile

    from huggingface_hub import HfApi

    with tempfile.TemporaryDirectory() as tmp:
        staged = stage_for_hub(model_dir, Path(tmp) / "stage", card, repo_id)
        api = HfApi(token=token)
        api.create_repo(repo_id, private=private, exist_ok=True)
        info = api.upload_folder(folder_path=str(staged), repo_id=repo_id, commit_message="Upload ELLA-V checkpoint")
        return str(info)
