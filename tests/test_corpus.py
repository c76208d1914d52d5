"""Corpus readers: audiofolder, LibriTTS and LibriSpeech layouts, problems listed, split by prompt."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import soundfile as sf

from ella_v_hf.processing import read_corpus, split_by_prompt


def test_libritts_and_librispeech_layouts(flite_corpus, tmp_path):
    wav = next((flite_corpus / "audio" / "slt").glob("*.wav"))
    libritts = tmp_path / "LibriTTS" / "train-clean-100" / "19" / "198"
    libritts.mkdir(parents=True)
    shutil.copy(wav, libritts / "19_198_000000_000000.wav")
    (libritts / "19_198_000000_000000.normalized.txt").write_text("Northanger Abbey.")
    (libritts / "19_198_000000_000001.normalized.txt").write_text("No audio for this one.")
    utterances, problems = read_corpus(tmp_path / "LibriTTS")
    assert [(u.id, u.speaker_id, u.text) for u in utterances] == [("19_198_000000_000000", "19", "Northanger Abbey.")]
    assert problems[0].id == "19_198_000000_000001" and problems[0].reason.startswith("missing audio file")

    librispeech = tmp_path / "LibriSpeech" / "test-clean" / "1089" / "134686"
    librispeech.mkdir(parents=True)
    audio, rate = sf.read(wav)
    sf.write(librispeech / "1089-134686-0000.flac", audio, rate)
    (librispeech / "1089-134686.trans.txt").write_text("1089-134686-0000 HE HOPED THERE WOULD BE STEW\n")
    utterances, problems = read_corpus(tmp_path / "LibriSpeech")
    assert [(u.id, u.speaker_id, u.text) for u in utterances] == [("1089-134686-0000", "1089", "HE HOPED THERE WOULD BE STEW")]
    assert not problems


def _libritts_tree(flite_corpus, root, names):
    wav = next((flite_corpus / "audio" / "slt").glob("*.wav"))
    for name in names:
        speaker, chapter = name.split("_")[:2]
        folder = root / speaker / chapter
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}.wav").symlink_to(wav)
        (folder / f"{name}.normalized.txt").write_text(f"Sentence {name}.")


def test_streamed_reader_keeps_the_path_order(flite_corpus, tmp_path):
    """iter_corpus walks one folder at a time yet yields what sorted(rglob) would (the cache keys
    depend on the order): speakers "2" and "10", chapter folders beside files, nested deeper."""
    from ella_v_hf.processing.corpus import iter_corpus

    names = ["10_5_000000_000001", "10_5_000000_000000", "2_7_000001_000000", "2_7_000000_000003", "2_30_000000_000000"]
    _libritts_tree(flite_corpus, tmp_path / "LibriTTS", names)
    extra = tmp_path / "LibriTTS" / "2" / "7" / "deeper"
    extra.mkdir()
    (extra / "2_7_9_9.normalized.txt").write_text("Deeper.")
    (extra / "2_7_9_9.wav").symlink_to(next((flite_corpus / "audio" / "slt").glob("*.wav")))
    expected = [p.name[: -len(".normalized.txt")] for p in sorted((tmp_path / "LibriTTS").rglob("*.normalized.txt"))]
    assert [u.id for u in iter_corpus(tmp_path / "LibriTTS")] == expected
    assert [u.id for u in read_corpus(tmp_path / "LibriTTS")[0]] == expected


def test_prepare_streams_the_corpus_into_arrow_batches(flite_corpus, tmp_path, monkeypatch):
    """prepare's corpus table is written in record batches (never the whole corpus in memory), holds
    every usable entry in order, lists the problems, and a failed read leaves no partial file."""
    import pyarrow as pa

    from ella_v_hf.processing import prepare

    names = [f"19_198_000000_{i:06d}" for i in range(7)]
    _libritts_tree(flite_corpus, tmp_path / "LibriTTS", names)
    (tmp_path / "LibriTTS" / "19" / "198" / "19_198_000001_000000.normalized.txt").write_text("No audio.")
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setattr(prepare, "CORPUS_BATCH_ROWS", 3)
    dataset, skipped, key = prepare._corpus_dataset(tmp_path / "LibriTTS", cache)
    assert dataset["id"] == names and dataset["speaker_id"] == ["19"] * 7
    assert [s["id"] for s in skipped] == ["19_198_000001_000000"]
    (table,) = cache.glob("corpus-*")
    assert table.name == f"corpus-{key}.arrow"
    with pa.memory_map(str(table)) as source:
        assert [len(batch) for batch in pa.ipc.open_stream(source)] == [3, 3, 1]
    assert prepare._corpus_dataset(tmp_path / "LibriTTS", cache)[2] == key  # same corpus, same key

    (tmp_path / "LibriTTS" / "19" / "198" / f"{names[0]}.wav").unlink()
    (tmp_path / "LibriTTS" / "19" / "198" / f"{names[0]}.wav").write_bytes(b"RIFF-changed")
    assert prepare._corpus_dataset(tmp_path / "LibriTTS", cache)[2] != key  # the audio changed: a new key

    real = prepare.iter_corpus

    def broken(root):
        yield from real(root)
        raise OSError("disk gone")

    monkeypatch.setattr(prepare, "iter_corpus", broken)
    with pytest.raises(OSError, match="disk gone"):
        prepare._corpus_dataset(tmp_path / "LibriTTS", cache)
    assert not list(cache.glob("*.partial"))


def test_audiofolder_needs_its_columns(tmp_path):
    (tmp_path / "metadata.csv").write_text("path,sentence\na.wav,hello\n")
    with pytest.raises(ValueError, match="needs the columns file_name,text"):
        read_corpus(tmp_path)


def test_split_by_prompt_keeps_prompts_on_one_side(flite_corpus):
    utterances, _ = read_corpus(flite_corpus)
    train, held = split_by_prompt(utterances, held_out_fraction=0.25, seed=0)
    assert held and train and len(train) + len(held) == len(utterances)
    assert not {u.prompt_id for u in train} & {u.prompt_id for u in held}


def test_combine_corpora_holds_out_sentences_everywhere(flite_corpus, tmp_path):
    from ella_v_hf.training.combine_corpora import combine

    other = tmp_path / "other"
    shutil.copytree(flite_corpus, other)  # the same sentences read again: a held-out one must not leak back in
    counts = combine([str(flite_corpus), str(other)], str(tmp_path / "train"), {str(flite_corpus): 0.25}, str(tmp_path / "held"))
    train, _ = read_corpus(tmp_path / "train")
    held, _ = read_corpus(tmp_path / "held")
    assert counts == {"train": len(train), "held_out": len(held)} and held
    assert not {u.text for u in train} & {u.text for u in held}
    assert len({u.id for u in train}) == len(train)
    assert all(u.speaker_id.split(":")[0] in (flite_corpus.name, "other") for u in train)


def test_combine_corpora_adds_speed_perturbed_copies(flite_corpus, tmp_path):
    from ella_v_hf.training.combine_corpora import combine

    counts = combine([str(flite_corpus)], str(tmp_path / "train"), {str(flite_corpus): 0.25}, str(tmp_path / "held"),
                     speeds={str(flite_corpus): [0.9, 1.1]})
    train, _ = read_corpus(tmp_path / "train")
    held, _ = read_corpus(tmp_path / "held")
    originals = [u for u in train if "-sp" not in u.speaker_id]
    assert counts["train"] == 3 * len(originals) == len(train)
    by_name = {u.id.rsplit("/", 1)[-1]: u for u in train}  # ids are audio/PREFIX[-spF]/NAME
    for u in originals:
        for factor in (0.9, 1.1):
            copy = by_name[u.id.rsplit("/", 1)[-1] + f"_sp{factor:g}"]
            assert copy.text == u.text and copy.prompt_id == u.prompt_id and copy.speaker_id.endswith(f"-sp{factor:g}")
            original, rate = sf.read(u.audio_path)
            faster, copy_rate = sf.read(copy.audio_path)
            assert copy_rate == rate and abs(len(faster) - len(original) / factor) <= 2
    assert not [u for u in held if "sp" in u.id.rsplit("_", 1)[-1]]  # held-out utterances are never perturbed
    with pytest.raises(ValueError, match="not one of the corpora"):
        combine([str(flite_corpus)], str(tmp_path / "t2"), {}, None, speeds={"elsewhere": [0.9]})
    with pytest.raises(ValueError, match="must be in"):
        combine([str(flite_corpus)], str(tmp_path / "t3"), {}, None, speeds={str(flite_corpus): [1.0]})


def test_combine_corpora_never_touches_a_users_folder(flite_corpus, tmp_path):
    from ella_v_hf._outputs import OutputExistsError
    from ella_v_hf.training.combine_corpora import combine

    users = tmp_path / "mine"
    users.mkdir()
    (users / "metadata.csv").write_text("file_name,text\nmy.wav,my words\n")
    before = (users / "metadata.csv").read_bytes()
    for out, held in ((users, tmp_path / "held"), (tmp_path / "train", users)):
        with pytest.raises(OutputExistsError, match="not empty"):
            combine([str(flite_corpus)], str(out), {str(flite_corpus): 0.25}, str(held))
        assert (users / "metadata.csv").read_bytes() == before and sorted(p.name for p in users.iterdir()) == ["metadata.csv"]
        assert not (tmp_path / "train").exists() and not (tmp_path / "held").exists()  # nothing written on either side
    with pytest.raises(ValueError, match="needs --held-out-dir"):
        combine([str(flite_corpus)], str(tmp_path / "train"), {str(flite_corpus): 0.25}, None)
    assert not (tmp_path / "train").exists()
    # its own output is rewritten in place (perturbed copies included); a user's note there stays
    first = combine([str(flite_corpus)], str(tmp_path / "train"), {}, None, speeds={str(flite_corpus): [1.1]})
    (tmp_path / "train" / "notes.txt").write_text("keep me")
    assert combine([str(flite_corpus)], str(tmp_path / "train"), {}, None, speeds={str(flite_corpus): [1.1]}) == first
    train, _ = read_corpus(tmp_path / "train")
    assert len(train) == first["train"] and all(Path(u.audio_path).is_file() for u in train)
    assert (tmp_path / "train" / "notes.txt").read_text() == "keep me"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".ella-v-tmp-")]
