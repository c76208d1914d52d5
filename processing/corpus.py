"""Corpus readers: audiofolder (``metadata.csv`` with file_name,text[,speaker_id]), LibriTTS and
LibriSpeech directory layouts. Problems with single entries are reported, never fatal."""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Utterance:
    """One corpus entry. ``id`` is unique within the corpus; ``prompt_id`` groups recordings of the
    same sentence (for held-out splits by prompt, not by file)."""

    id: str
    audio_path: str
    text: str
    speaker_id: str
    prompt_id: str


@dataclass
class CorpusProblem:
    """An entry that was skipped while reading the corpus, and why."""

    id: str
    reason: str


_ARCTIC = re.compile(r"(arctic_[ab]\d{4})")


def _prompt_id(file_name: str, text: str) -> str:
    match = _ARCTIC.search(file_name)
    return match.group(1) if match else re.sub(r"\W+", " ", text.lower()).strip()


def read_corpus(root: str | os.PathLike) -> tuple[list[Utterance], list[CorpusProblem]]:
    """Read an audiofolder, LibriTTS or LibriSpeech directory.

    Returns:
        ``(utterances, problems)``: entries with a missing audio file, an empty transcript or a
        duplicated id are listed in ``problems`` and left out.

    Raises:
        ValueError: If ``root`` is not a directory of one of the supported layouts.
    """
    utterances, problems = [], []
    for entry in iter_corpus(root):
        (problems if isinstance(entry, CorpusProblem) else utterances).append(entry)
    return utterances, problems


def iter_corpus(root: str | os.PathLike) -> Iterator[Utterance | CorpusProblem]:
    """:func:`read_corpus` one entry at a time, in the same order (the layout is recognised
    first, so a wrong directory fails before anything is yielded): memory stays flat however large
    the corpus, but for the set of ids seen (to report duplicates).

    Raises:
        ValueError: If ``root`` is not a directory of one of the supported layouts.
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"Corpus directory {str(root)!r} does not exist")
    if (root / "metadata.csv").is_file():
        entries = _read_audiofolder(root)
    elif _has_file(root, "*.normalized.txt"):
        entries = _read_libritts(root)
    elif _has_file(root, "*.trans.txt"):
        entries = _read_librispeech(root)
    else:
        raise ValueError(
            f"{str(root)!r} is not a supported corpus: expected metadata.csv (audiofolder), "
            "LibriTTS *.normalized.txt files or LibriSpeech *.trans.txt files"
        )
    return _checked(entries)


def _has_file(root: Path, pattern: str) -> bool:
    return next(iter(root.rglob(pattern)), None) is not None


def _checked(entries: Iterable[Utterance | CorpusProblem]) -> Iterator[Utterance | CorpusProblem]:
    seen: set[str] = set()
    for utt in entries:
        if isinstance(utt, CorpusProblem):
            yield utt
        elif utt.id in seen:
            yield CorpusProblem(utt.id, "duplicated id")
        elif not utt.text.strip():
            yield CorpusProblem(utt.id, "empty transcript")
        elif not os.path.isfile(utt.audio_path):
            yield CorpusProblem(utt.id, f"missing audio file: {utt.audio_path}")
        else:
            yield utt
        seen.add(utt.id)


def read_text(path: Path) -> str:
    """A corpus text file as UTF-8 (a byte-order mark is allowed).

    Raises:
        ValueError: The file is not UTF-8 (the message names it and how to fix it).
    """
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise ValueError(f"{path} is not UTF-8 text ({error}); save it as UTF-8 (e.g. iconv -f latin1 -t utf-8)") from error


def _read_audiofolder(root: Path) -> list[Utterance | CorpusProblem]:
    reader = csv.DictReader(io.StringIO(read_text(root / "metadata.csv"), newline=""))
    if not reader.fieldnames or not {"file_name", "text"} <= set(reader.fieldnames):
        raise ValueError(f"{root / 'metadata.csv'} needs the columns file_name,text (got {reader.fieldnames})")
    out: list[Utterance | CorpusProblem] = []
    for line, row in enumerate(reader, start=2):
        name = (row.get("file_name") or "").strip()
        if not name:
            out.append(CorpusProblem(f"metadata.csv line {line}", "empty file_name"))
            continue
        out.append(
            Utterance(
                id=Path(name).with_suffix("").as_posix(),
                audio_path=str(root / name),
                text=row.get("text") or "",
                speaker_id=row.get("speaker_id") or "default",
                prompt_id=_prompt_id(name, row.get("text") or ""),
            )
        )
    return out


def _read_libritts(root: Path) -> Iterator[Utterance]:
    for text_file in _sorted_walk(root, ".normalized.txt"):
        utt_id = text_file.name[: -len(".normalized.txt")]
        yield Utterance(
            id=utt_id,
            audio_path=str(text_file.with_name(utt_id + ".wav")),
            text=read_text(text_file).strip(),
            speaker_id=utt_id.split("_")[0],
            prompt_id=utt_id,
        )


def _read_librispeech(root: Path) -> Iterator[Utterance]:
    for trans in _sorted_walk(root, ".trans.txt"):
        for line in read_text(trans).splitlines():
            if not line.strip():
                continue
            utt_id, _, text = line.partition(" ")
            yield Utterance(
                id=utt_id,
                audio_path=str(trans.with_name(utt_id + ".flac")),
                text=text.strip(),
                speaker_id=utt_id.split("-")[0],
                prompt_id=utt_id,
            )


def _sorted_walk(root: Path, suffix: str) -> Iterator[Path]:
    """The files under ``root`` whose names end in ``suffix``, in the order of ``sorted(rglob)``
    (path order), one directory at a time: only one folder's listing is held at once."""
    entries = sorted(os.scandir(root), key=lambda entry: entry.name)
    files = [Path(e.path) for e in entries if e.name.endswith(suffix) and e.is_file()]
    folders = [Path(e.path) for e in entries if e.is_dir()]
    # sorted(rglob) orders full paths: a file "a/x" and a folder "a/b/" interleave by name.
    for _name, kind, path in sorted([(p.name, 0, p) for p in files] + [(p.name, 1, p) for p in folders]):
        if kind == 0:
            yield path
        else:
            yield from _sorted_walk(path, suffix)


def sentence_key(text: str) -> str:
    """A sentence's identity across corpora: lower case, letters, digits and single spaces only."""
    return " ".join("".join(ch for ch in text.lower() if ch.isalnum() or ch.isspace()).split())


def held_out_prompts(prompt_ids: list[str], fraction: float, seed: int = 0) -> set[str]:
    """The prompt ids to hold out: a seeded random ``fraction`` of the distinct ones (at least one
    when ``fraction > 0``; none when it is 0)."""
    import random

    if fraction <= 0:
        return set()
    prompts = sorted(set(prompt_ids))
    random.Random(seed).shuffle(prompts)
    return set(prompts[: max(1, round(len(prompts) * fraction))]) if prompts else set()


def split_by_prompt(utterances: list[Utterance], held_out_fraction: float = 0.1, seed: int = 0) -> tuple[list[Utterance], list[Utterance]]:
    """Split into (train, held-out) so that no prompt (sentence) appears on both sides."""
    held = held_out_prompts([u.prompt_id for u in utterances], held_out_fraction, seed)
    return [u for u in utterances if u.prompt_id not in held], [u for u in utterances if u.prompt_id in held]
