"""The preparation scaling benchmark (evaluation/measure_prepare_scaling.py) end to end on a tiny
LibriTTS-layout corpus: every figure measured from the run, results reused on a re-run, and a folder
the script did not create refused."""

from __future__ import annotations

import json

import pytest

from ella_v_hf.evaluation import measure_prepare_scaling as scaling
from ella_v_hf.processing import read_corpus


def test_libritts_layout_cycles_the_source(flite_corpus, tmp_path):
    source = read_corpus(flite_corpus)[0]
    assert scaling.build_libritts_layout(flite_corpus, tmp_path / "corpus", len(source) + 3) == len(source) + 3
    utterances, problems = read_corpus(tmp_path / "corpus")
    assert not problems and len(utterances) == len(source) + 3
    assert {u.speaker_id for u in utterances} == {"100"}
    first = next(u for u in utterances if u.id == "100_1000_000000_000000")
    assert first.text == source[0].text.strip()
    assert not (tmp_path / "corpus.partial").exists()


def test_scaling_benchmark_runs_prepare_and_projects(flite_corpus, tmp_path, capsys):
    work = tmp_path / "work"
    scaling.main(["--source", str(flite_corpus), "--work", str(work), "--sizes", "4", "8", "--fit-utterances", "4", "--json"])
    report = json.loads(capsys.readouterr().out)
    small, large = report["results"]
    assert (small["utterances"], large["utterances"]) == (4, 8)
    for row in (small, large):
        assert row["kept"] > 0 and row["audio_hours"] > 0 and row["memory_samples"] > 0
        # (the peak after fitting can be 0 here: a tiny corpus may finish before the next sample)
        assert row["peak_tree_pss_mb"] > 0 and row["peak_tree_pss_after_fit_mb"] <= row["peak_tree_pss_mb"]
        assert row["peak_tree_anonymous_mb"] > 0
        assert row["audio_utterances_per_core_second"] == pytest.approx(row["utterances"] / row["cpu_seconds"]["audio"], rel=0.01)
        assert (work / str(row["utterances"]) / "result.json").is_file()
    projection = report["projection"]
    rate = large["audio_seconds_per_core_second"]
    assert projection["core_hours"] == pytest.approx(585 / rate + large["fixed_core_seconds"] / 3600, abs=0.1)
    # A re-run reuses the measured sizes (no prepare runs again).
    scaling.main(["--source", str(flite_corpus), "--work", str(work), "--sizes", "4", "8", "--json"])
    assert json.loads(capsys.readouterr().out)["results"] == report["results"]
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit):
        scaling.main(["--source", str(flite_corpus), "--work", str(foreign), "--sizes", "4"])
    assert (foreign / "notes.txt").read_text() == "mine"
