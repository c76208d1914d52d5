"""Corpus readers: audiofolder, LibriTTS and LibriSpeech layouts, problems listed, split by prompt."""

from __future__ import annotations

import shutil

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
