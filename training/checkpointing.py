"""Run directories shared by the trainers: atomic numbered checkpoints with keep-last-K, and the
newest model exported as a ready-to-use directory.

Layout of a run directory ``OUT``::

    OUT/checkpoints/step-N/   accelerator state + trainer_state.json (complete or absent)
    OUT/model/                the newest model (save_pretrained), replaced atomically
    OUT/log.jsonl             one JSON record per logged step

Only paths this module creates are ever removed: ``step-*`` checkpoint folders it wrote, its own
``.tmp-*`` folders and ``OUT/model``.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from .._outputs import atomic_file

STATE_FILE = "trainer_state.json"


class JsonRecipe:
    """Mixin of the training recipe dataclasses: ``from_file`` reads a JSON recipe, refuses unknown
    keys and validates (subclasses define ``validate``)."""

    @classmethod
    def from_file(cls, path: str | os.PathLike):
        """Read, type-check and validate a JSON recipe.

        Raises:
            ValueError: Not JSON, not an object, unknown keys, or a value of the wrong type (the
                message names the file and the key).
        """
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not valid JSON: {error}") from error
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a recipe is a JSON object of settings, got {type(data).__name__}")
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"{path}: unknown config keys {sorted(unknown)}")
        defaults = cls()
        for key, value in data.items():
            expected = type(getattr(defaults, key))
            ok = isinstance(value, expected) and not (expected is not bool and isinstance(value, bool))
            if expected is float and isinstance(value, int) and not isinstance(value, bool):
                ok = True
            if getattr(defaults, key) is None or ok:
                continue
            names = {int: "an integer", float: "a number", str: "a string", bool: "true or false", dict: "an object"}
            raise ValueError(f"{path}: {key} must be {names.get(expected, expected.__name__)}, got {value!r}")
        config = cls(**data)
        config.validate()
        return config

    def validate(self) -> None:
        raise NotImplementedError


def write_json(path: Path, value: dict) -> None:
    """Replace ``path`` with ``value`` as JSON in one rename: a reader sees the old file or the new one."""
    with atomic_file(path) as temporary:
        temporary.write_text(json.dumps(value, indent=1), encoding="utf-8")


#: Recipe fields a resumed run may change: how long it runs and how often it evaluates, saves and logs.
RESUMABLE_CHANGES = frozenset({"max_steps", "eval_every", "save_every", "keep_last", "log_every", "max_nonfinite_steps", "eval_utterances"})


def record_recipe(run: Path, name: str, config: JsonRecipe, resuming: bool, write: bool = True) -> None:
    """Write the run's recipe (a recipe dataclass) to ``run/name``; when resuming, first refuse a different one.

    A field the saved recipe lacks (one added to the recipe class after the run started) counts as
    the class's default, so a newer version still resumes an older run that did not set it.

    Raises:
        ValueError: ``resuming`` and ``run/name`` holds a recipe that differs in a field outside
            :data:`RESUMABLE_CHANGES` (a later ``--resume`` must not continue a different model).
    """
    path = run / name
    recipe = asdict(config)
    if resuming and path.is_file():
        saved = {**asdict(type(config)()), **json.loads(path.read_text(encoding="utf-8"))}
        changed = sorted(k for k in saved.keys() | recipe.keys() if k not in RESUMABLE_CHANGES and saved.get(k) != recipe.get(k))
        if changed:
            raise ValueError(
                f"{run} was trained with another recipe ({path}: {', '.join(changed)} differ); "
                "resume with the same --config or choose a new --out"
            )
    if write:  # the main process of a distributed run; the others may be reading it (one rename, never a half-written file)
        write_json(path, recipe)


def record_corpus(run: Path, data: Path, resuming: bool, write: bool = True) -> None:
    """Write which prepared corpus ``run`` trains on (``run/corpus.json``: its path and the
    fingerprint datasets keeps of its rows); when resuming, first refuse another corpus.

    Raises:
        ValueError: ``resuming`` and the recorded corpus differs from ``data``'s.
    """
    path = run / "corpus.json"
    try:
        fingerprint = json.loads((data / "dataset" / "state.json").read_text(encoding="utf-8"))["_fingerprint"]
    except (OSError, ValueError, KeyError):
        fingerprint = None
    record = {"data": str(data), "fingerprint": fingerprint}
    if resuming and path.is_file():
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved.get("fingerprint") != fingerprint:
            raise ValueError(
                f"{run} was trained on another prepared corpus ({saved.get('data')}, fingerprint {saved.get('fingerprint')}) "
                f"than --data {data} (fingerprint {fingerprint}); resume with the same --data or choose a new --out"
            )
    if write:  # the main process of a distributed run; the others may be reading it (one rename, never a half-written file)
        write_json(path, record)


def step_seed(seed: int, step: int) -> int:
    """The seed of one step's random draws, from the run's ``seed`` and the step alone, so a resumed
    run draws what an uninterrupted one would (pass ``step * processes + process_index`` when
    several processes draw different rows)."""
    return seed * 1_000_003 + step


def list_checkpoints(run: Path) -> list[Path]:
    """Complete checkpoints of ``run``, oldest first."""
    folder = run / "checkpoints"
    if not folder.is_dir():
        return []
    done = (p for p in folder.iterdir() if p.name.startswith("step-") and p.name[5:].isdigit() and (p / STATE_FILE).is_file())
    return sorted(done, key=lambda p: int(p.name[5:]))


def has_checkpoints(run: Path) -> bool:
    """Whether ``run`` holds a complete checkpoint (a run directory written before the output marker existed)."""
    return bool(list_checkpoints(run))


def resume_from(accelerator, run: Path, checkpoints: list[Path], state: dict) -> Path:
    """Restore the newest readable checkpoint of ``checkpoints`` (oldest first): its accelerator
    state into the prepared objects and its trainer state into ``state``; drop the log records of
    the steps the run will redo. A checkpoint that cannot be read (a corrupt file) is reported and
    the previous one is tried.

    Returns:
        The checkpoint resumed from.

    Raises:
        ValueError: No checkpoint could be read (each one's error is named).
    """
    from safetensors import SafetensorError

    failures = []
    for checkpoint in reversed(checkpoints):
        try:
            accelerator.load_state(str(checkpoint))
            restored = json.loads((checkpoint / STATE_FILE).read_text())
        except (OSError, RuntimeError, ValueError, SafetensorError) as error:
            reason = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
            failures.append(f"{checkpoint}: {reason}")
            warnings.warn(f"cannot resume from {checkpoint} ({reason}); trying the previous checkpoint", stacklevel=2)
            continue
        state.update(restored)
        accelerator.print(f"resumed from {checkpoint} at step {state['step']}")
        if accelerator.is_main_process:
            trim_log(run, state["step"])
        return checkpoint
    raise ValueError("no checkpoint of " + str(run) + " can be read: " + "; ".join(failures))


def remove_stale(run: Path) -> None:
    """Remove the temporary folders a killed run left behind (only this module's own)."""
    for stale in [*(run / "checkpoints").glob(".tmp-step-*"), run / ".tmp-model"]:
        shutil.rmtree(stale, ignore_errors=True)


def save_checkpoint(accelerator, run: Path, state: dict, keep_last: int, export: Callable[[Path], None]) -> Path:
    """Write ``run/checkpoints/step-N`` atomically, drop all but the newest ``keep_last`` and export the model.

    Args:
        accelerator: The run's ``accelerate.Accelerator`` (its ``save_state`` writes model,
            optimizer, scheduler and RNG states).
        run: Run directory.
        state: JSON-serialisable trainer state; ``state["step"]`` names the checkpoint.
        keep_last: Checkpoints to keep.
        export: Writes the ready-to-use model into the folder it is given (see :func:`export_atomically`).

    Returns:
        The checkpoint folder.
    """
    folder = run / "checkpoints"
    final = folder / f"step-{state['step']}"
    temporary = folder / f".tmp-step-{state['step']}"
    if accelerator.is_main_process:
        shutil.rmtree(temporary, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(temporary))
    accelerator.wait_for_everyone()  # every process's RNG state is in before the folder is committed
    if accelerator.is_main_process:
        (temporary / STATE_FILE).write_text(json.dumps(state))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(temporary, final)  # a checkpoint exists completely or not at all
        for old in list_checkpoints(run)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
        export_atomically(run, export)
    return final


def export_atomically(run: Path, export: Callable[[Path], None]) -> Path:
    """Call ``export(tmp)`` and move ``tmp`` to ``run/model``, so ``run/model`` is never half-written."""
    target, temporary = run / "model", run / ".tmp-model"
    shutil.rmtree(temporary, ignore_errors=True)
    export(temporary)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(temporary, target)
    return target


def trim_log(run: Path, step: int) -> None:
    """Drop the records of steps after ``step`` from ``run/log.jsonl``: a resumed run redoes them,
    and the log keeps one record per step."""
    path = run / "log.jsonl"
    if not path.is_file():
        return
    lines = path.read_text(encoding="utf-8").splitlines()
    kept = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            if number == len(lines):  # the half-written last record of a killed run: the step is redone
                warnings.warn(f"{path}: skipping its torn last line {number} (a killed run was writing it)", stacklevel=2)
                continue
            raise ValueError(f"{path}, line {number}: not a JSON record; repair or remove that line, then --resume") from None
        if record.get("step", 0) <= step:
            kept.append(line)
    if len(kept) != len(lines):
        with atomic_file(path) as temporary:
            temporary.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")


def append_log(run: Path, record: dict) -> None:
    """Append one JSON record to ``run/log.jsonl``."""
    with open(run / "log.jsonl", "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")


__all__ = ["RESUMABLE_CHANGES", "STATE_FILE", "JsonRecipe", "append_log", "finish_run", "record_recipe", "export_atomically", "has_checkpoints", "list_checkpoints", "record_corpus", "remove_stale", "resume_from", "save_checkpoint", "step_bookkeeping", "step_seed", "trim_log", "write_json"]


def step_bookkeeping(accelerator, run: Path, config, state: dict, parts: dict[str, float], scheduler, bar,
                     evaluate: Callable[[], dict], export: Callable[[Path], None]) -> dict | None:
    """What a training loop does after each step: log ``parts`` (and the learning rate) every
    ``config.log_every`` steps, run ``evaluate`` every ``config.eval_every`` steps and at the last
    (its figures logged as ``eval_*``), and checkpoint every ``config.save_every`` steps and at the
    last (:func:`save_checkpoint`, exporting with ``export``).

    Returns:
        The evaluation's figures when one ran this step, else ``None``.
    """
    step, evaluation = state["step"], None
    if step % config.log_every == 0 and accelerator.is_main_process:
        record = {"step": step, "lr": scheduler.get_last_lr()[0], **parts}
        bar.set_postfix({k: (f"{v:.2e}" if k == "lr" else round(v, 4)) for k, v in record.items() if k != "step"})
        append_log(run, record)
    if step % config.eval_every == 0 or step == config.max_steps:
        evaluation = evaluate()
        if accelerator.is_main_process:
            append_log(run, {"step": step, **{f"eval_{k}": v for k, v in evaluation.items()}})
    if step % config.save_every == 0 or step == config.max_steps:
        save_checkpoint(accelerator, run, state, config.keep_last, export)
    return evaluation


def finish_run(accelerator, run: Path, state: dict, parts: dict[str, float], export: Callable[[Path], None], **figures) -> dict:
    """The end of a finished training loop: export ``run/model`` once (:func:`export_atomically`;
    a resumed run that finds it keeps it) and write ``run/summary.json``.

    Returns:
        The summary: ``state`` (step, seconds), the last step's ``parts`` as ``last``, the final
        model's path as ``model`` and ``figures`` (held-out losses, corpus sizes, parameter counts).
    """
    final = run / "model"
    if accelerator.is_main_process and not (final / "config.json").is_file():
        export_atomically(run, export)
    summary = {**state, "last": parts, **figures, "model": str(final)}
    if accelerator.is_main_process:  # whoever waits for summary.json never reads half of it
        write_json(run / "summary.json", summary)
    return summary
