"""Nothing a user owns is deleted or overwritten: every writing command refuses a target it did not
create, replaces only its own files, writes through a temporary sibling and takes the run lock
(``ella_v_hf/_outputs.py``)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ella_v_hf import cli
from ella_v_hf._lock import RunLockedError, run_lock
from ella_v_hf._outputs import MARKER, OutputExistsError
from ella_v_hf.training.assemble import assemble_checkpoint


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` (relative path -> bytes), less ella-v's own bookkeeping."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name not in (MARKER, ".ella-v.lock")}


def users_folder(folder: Path, *names: str) -> dict[str, bytes]:
    """A user's own files ``names`` (relative) in ``folder``, with distinct contents; their snapshot."""
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"the user's own {name}\n")
    return {name: (folder / name).read_bytes() for name in names}


# -- assemble --------------------------------------------------------------------------------------
def test_assemble_into_dot_inside_an_earlier_output_keeps_everything(tts_dir, tmp_path, monkeypatch):
    release = tmp_path / "REL"
    assemble_checkpoint(tts_dir, release)
    (release / "MY_NOTES.md").write_text("my notes")
    monkeypatch.chdir(release)
    assemble_checkpoint(tts_dir, ".")  # was: EBUSY renaming onto '.', and the folder emptied
    assert (release / "MY_NOTES.md").read_text() == "my notes"
    assert (release / "model.safetensors").is_file() and (release / "config.json").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".ella-v-tmp-")]


def test_assemble_onto_an_earlier_output_replaces_only_its_own_files(tts_dir, tmp_path):
    release = tmp_path / "REL"
    assemble_checkpoint(tts_dir, release)
    written = set(snapshot(release))
    mine = users_folder(release, "MY_NOTES.md", "samples/first.wav")
    assemble_checkpoint(tts_dir, release, remote_code=False)  # writes fewer files than the first run
    after = snapshot(release)
    assert {k: after[k] for k in mine} == mine  # the user's files, untouched
    assert not [k for k in written if k.endswith(".py") and k in after]  # the first run's remote code, removed
    assert json.loads((release / MARKER).read_text())["command"] == "ella-v assemble"


def test_assemble_in_place_keeps_the_provenance(tts_dir, tmp_path):
    release = tmp_path / "REL"
    assemble_checkpoint(tts_dir, release)
    first = json.loads((release / "assembled_from.json").read_text())
    assemble_checkpoint(release, release)  # --gar REL --out REL
    second = json.loads((release / "assembled_from.json").read_text())
    assert second["gar_from"] == release.as_posix() and second["gar_provenance"] == first


def test_assemble_never_touches_a_users_folder_named_like_a_temporary(tts_dir, tmp_path):
    mine = users_folder(tmp_path / ".tmp-REL", "keep.txt")
    assemble_checkpoint(tts_dir, tmp_path / "REL")
    assert snapshot(tmp_path / ".tmp-REL") == mine


def test_assemble_refuses_a_folder_it_did_not_create(tts_dir, tmp_path):
    mine = users_folder(tmp_path / "mine", "notes.txt", "model.safetensors")
    with pytest.raises(OutputExistsError, match="not an output of it"):
        assemble_checkpoint(tts_dir, tmp_path / "mine")
    assert snapshot(tmp_path / "mine") == mine and not (tmp_path / "mine" / MARKER).exists()


def test_a_second_assemble_into_the_same_folder_is_refused(tts_dir, tmp_path):
    release = tmp_path / "REL"
    with run_lock(release, "ella-v assemble"):  # another assemble holds it
        with pytest.raises(RunLockedError, match="in use"):
            assemble_checkpoint(tts_dir, release)


# -- synthesize ------------------------------------------------------------------------------------
def test_synthesize_refuses_an_existing_file_without_overwrite(tmp_path, capsys):
    notes = tmp_path / "notes.wav"
    notes.write_text("my own text file")
    assert cli.main(["synthesize", "Hello.", "-o", str(notes)]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err and notes.read_text() == "my own text file"
    plot = tmp_path / "speech.png"
    plot.write_text("my picture")
    assert cli.main(["synthesize", "Hello.", "-o", str(tmp_path / "speech.wav"), "--plot"]) == 2
    assert plot.read_text() == "my picture" and not (tmp_path / "speech.wav").exists()


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("text", ["😀", " "])
def test_a_refused_text_leaves_an_existing_output_as_it_was(tmp_path, capsys, text, stream):
    existing = tmp_path / "existing.wav"
    existing.write_bytes(b"RIFF my earlier audio")
    args = ["synthesize", text, "-o", str(existing), "--overwrite", *(["--stream"] if stream else [])]
    assert cli.main(args) == 2
    assert existing.read_bytes() == b"RIFF my earlier audio"
    assert not [p.name for p in tmp_path.iterdir() if p.name != "existing.wav"]  # no temporary left behind
    capsys.readouterr()


def test_overwrite_replaces_the_file_in_one_piece(tmp_path):
    existing = tmp_path / "speech.wav"
    existing.write_bytes(b"old")
    assert cli.main(["synthesize", "Hello.", "-o", str(existing), "--overwrite", "--greedy"]) == 0
    assert existing.read_bytes()[:4] == b"RIFF" and existing.stat().st_size > 1000
    assert [p.name for p in tmp_path.iterdir()] == ["speech.wav"]


# -- train and prepare -----------------------------------------------------------------------------
def test_train_refuses_a_folder_it_did_not_create(prepared_corpus, tmp_path):
    from ella_v_hf.training.trainer import TrainConfig, train

    mine = users_folder(tmp_path / "run", "model/my_weights.bin", "summary.json", "train_config.json", "log.jsonl")
    with pytest.raises(OutputExistsError, match="not an output of it"):
        train(TrainConfig(max_steps=1), prepared_corpus, tmp_path / "run", progress=False)
    assert snapshot(tmp_path / "run") == mine
    prepared = snapshot(prepared_corpus)
    with pytest.raises(OutputExistsError, match="an output of `ella-v prepare`"):
        train(TrainConfig(max_steps=1), prepared_corpus, prepared_corpus, progress=False)
    assert snapshot(prepared_corpus) == prepared


def test_train_with_bad_data_or_recipe_creates_nothing(prepared_corpus, tmp_path):
    from ella_v_hf.training.trainer import TrainConfig, train

    with pytest.raises(ValueError, match="not a prepared corpus"):
        train(TrainConfig(max_steps=1), tmp_path / "nothing", tmp_path / "run1", progress=False)
    with pytest.raises(ValueError, match="learning_rate"):
        train(TrainConfig(max_steps=1, learning_rate=-1.0), prepared_corpus, tmp_path / "run2", progress=False)
    assert not (tmp_path / "run1").exists() and not (tmp_path / "run2").exists()


def test_prepare_refuses_a_folder_it_did_not_create(flite_corpus, tmp_path):
    from ella_v_hf.processing.prepare import prepare_corpus

    mine = users_folder(tmp_path / "prep", "dataset/my_data.csv", "codec/my_codec.txt", "cache/tmp_important.txt")
    with pytest.raises(OutputExistsError, match="not an output of it"):
        prepare_corpus(flite_corpus, tmp_path / "prep", progress=False)
    assert snapshot(tmp_path / "prep") == mine


def test_an_earlier_output_without_a_marker_is_still_recognised(prepared_corpus, tmp_path):
    """Outputs written before the marker existed: an assembled checkpoint, a prepared corpus."""
    from ella_v_hf._outputs import check_output_dir
    from ella_v_hf.processing.prepare import _is_prepared
    from ella_v_hf.training.assemble import _is_assembled

    old = tmp_path / "old"
    old.mkdir()
    (old / "assembled_from.json").write_text("{}")
    assert check_output_dir(old, "ella-v assemble", legacy=_is_assembled) is True
    assert _is_prepared(prepared_corpus)
    with pytest.raises(OutputExistsError):
        check_output_dir(old, "ella-v prepare", legacy=_is_prepared)
    assert os.listdir(old) == ["assembled_from.json"]


def test_files_written_in_one_rename_get_the_permissions_open_would_give(tmp_path):
    """atomic_file (and the marker, which it writes) must not leave owner-only files where a plain
    open() would have made them readable: a run's recipe, a synthesised WAV, a directory's marker."""
    from ella_v_hf._outputs import atomic_file, write_marker

    previous = os.umask(0o022)  # open(path, "w") makes 0o644 files
    try:
        with atomic_file(tmp_path / "atomic.json") as temporary:
            temporary.write_text("{}")
        write_marker(tmp_path, "ella-v test")
    finally:
        os.umask(previous)
    assert (tmp_path / "atomic.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / MARKER).stat().st_mode & 0o777 == 0o644
    assert json.loads((tmp_path / MARKER).read_text()) == {"command": "ella-v test"}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([MARKER, "atomic.json"])  # no temporary left
