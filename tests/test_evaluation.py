"""Evaluation: the local WER/CER metric, the pocketsphinx judge, and `ella-v evaluate` end to end."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from ella_v_hf.evaluation.evaluate_tts import evaluate_model, item_seed, parse_strategy, summarize
from ella_v_hf.evaluation.judges import wer_cer


def test_metric_module_matches_hand_computed_values():
    # "the cat sat" vs "the bat sat down": 1 substitution + 1 insertion over 3 words; chars: "c"->"b" and " down".
    result = wer_cer(["The cat sat."], ["the bat sat down"])
    assert result["wer"] == pytest.approx(2 / 3)
    assert result["cer"] == pytest.approx(6 / len("the cat sat"))
    assert wer_cer(["Two apples", "x"], ["2 apples", "x"])["wer"] == 0.0  # numbers normalised on both sides


def test_pocketsphinx_recognises_flite_speech(flite_corpus):
    from ella_v_hf.evaluation.asr import PocketsphinxASR
    from ella_v_hf.processing import load_audio, read_corpus

    asr = PocketsphinxASR()
    utterances = [u for u in read_corpus(flite_corpus)[0] if u.speaker_id == "rms"][:3]
    hypotheses = [asr.transcribe(*load_audio(u.audio_path)) for u in utterances]
    assert wer_cer([u.text for u in utterances], hypotheses)["wer"] < 0.5


def test_pocketsphinx_transcripts_do_not_depend_on_what_was_judged_before(flite_corpus):
    from ella_v_hf.evaluation.asr import PocketsphinxASR
    from ella_v_hf.processing import load_audio, read_corpus

    rng = np.random.default_rng(0)
    # A noise floor, as real recordings have: the front end's adaptation to it used to carry over
    # from one utterance to the next (6 of these 8 transcripts changed).
    waveforms = [(audio + rng.normal(0, 0.01, audio.shape).astype(np.float32), rate)
                 for audio, rate in (load_audio(u.audio_path) for u in read_corpus(flite_corpus)[0][:8])]
    shared = PocketsphinxASR()
    in_a_row = [shared.transcribe(*w) for w in waveforms]
    assert in_a_row == [PocketsphinxASR().transcribe(*w) for w in waveforms]


def test_cross_prompts_rotate_through_the_speakers_other_sentences():
    from types import SimpleNamespace as U

    from ella_v_hf.evaluation.evaluate_tts import cross_prompt_source

    corpus = [U(id="a1", speaker_id="a", prompt_id="s1"), U(id="b1", speaker_id="b", prompt_id="s1"),
              U(id="a2", speaker_id="a", prompt_id="s1"), U(id="a3", speaker_id="a", prompt_id="s2"),
              U(id="a4", speaker_id="a", prompt_id="s3"), U(id="c1", speaker_id="c", prompt_id="s1")]
    sources = [getattr(cross_prompt_source(corpus, i), "id", None) for i in range(len(corpus))]
    # a1's next same-speaker utterance a2 says the same sentence: skipped; a4 wraps around to a1
    assert sources == ["a3", None, "a3", "a4", "a1", None]


def test_strategies():
    assert parse_strategy("greedy") == {"do_sample": False}
    assert parse_strategy("top_p=0.8,temperature=0.7") == {"do_sample": True, "top_p": 0.8, "top_k": 0, "temperature": 0.7}
    assert parse_strategy("greedy,nar_decoding=argmax") == {"do_sample": False, "nar_decoding": "argmax"}
    assert parse_strategy("top_p=0.9,nar_decoding=expected")["nar_decoding"] == "expected"
    assert parse_strategy("top_p=0.9,first_level_decoding=code")["first_level_decoding"] == "code"
    assert parse_strategy("greedy,eop_quantile=0.5") == {"do_sample": False, "eop_quantile": 0.5}
    assert parse_strategy("top_p=0.9,eop_quantile=off")["eop_quantile"] is None
    for bad in ("beam=4", "greedy,top_p=0.9", "top_p"):
        with pytest.raises(ValueError, match="Unknown decoding option"):
            parse_strategy(bad)
    for bad in ("top_p=0.9,nar_decoding=mean", "top_p=0.9,first_level_decoding=mean"):
        with pytest.raises(ValueError, match="must be one of"):
            parse_strategy(bad)


def test_item_seeds_are_distinct_per_item_and_run():
    seeds = {item_seed(run, index) for run in range(3) for index in range(200)}
    assert len(seeds) == 600 and item_seed(1, 7) == item_seed(1, 7)


def test_summary_of_several_seeds_is_the_mean_of_each_runs_metrics():
    def row(seed, hypothesis, seconds):
        return {"reference": "a b c d", "hypothesis": hypothesis, "duration_ratio": seconds, "infinite": False, "cuts": 0, "seed": seed}

    rows = [row(0, "a b c d", 1.0), row(0, "a b c d", 1.0), row(1, "a b x d", 2.0), row(1, "", 2.0)]
    one = summarize(rows[:2])
    assert one["wer"] == 0 and "seeds" not in one and "wer_std" not in one
    both = summarize(rows)
    assert both["seeds"] == [0, 1] and both["utterances"] == 2
    assert both["wer_per_seed"] == [0.0, pytest.approx(5 / 8)]  # run 1: one substitution + four deletions of 8 words
    assert both["wer"] == pytest.approx(5 / 16) and both["wer_std"] == pytest.approx(np.std([0, 5 / 8], ddof=1))
    assert both["duration_ratio"] == pytest.approx(1.5) and both["empty_rate"] == pytest.approx(0.25)
    assert both["inf_rate"] == 0.0


HAVE_RESEMBLYZER = importlib.util.find_spec("resemblyzer") is not None


def test_evaluate_produces_every_field(prepared_corpus, flite_corpus, tmp_path):
    from ella_v_hf.training.trainer import TrainConfig, train

    small = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64}
    summary = train(TrainConfig(model_overrides=small, max_steps=2, warmup_steps=1, save_every=2, max_tokens_per_batch=2500),
                    prepared_corpus, tmp_path / "run", progress=False)
    result = evaluate_model(summary["model"], str(flite_corpus), str(tmp_path / "eval" / "results.json"), mode="cross",
                            sweep=["greedy", "top_p=0.9"], limit=3, progress=False)
    assert set(result["summary"]) == {"ground_truth", "codec_resynthesis", "greedy", "top_p=0.9"}
    for name, metrics in result["summary"].items():
        assert metrics["utterances"] == 3 and 0 <= metrics["wer"] and 0 <= metrics["cer"]
        assert (metrics["sim"] is not None) == HAVE_RESEMBLYZER and metrics["duration_ratio"] is not None
        if name not in ("ground_truth", "codec_resynthesis"):
            assert {"inf_rate", "cut_rate", "rtf"} <= set(metrics)
    assert result["summary"]["ground_truth"]["duration_ratio"] == pytest.approx(1.0)
    saved = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert saved["summary"] == result["summary"]
    assert (tmp_path / "eval" / "results.md").read_text().count("\n| ") == 1 + 4  # header + 4 systems
    assert (tmp_path / "eval" / "results.png").stat().st_size > 0
    prompts = [row["prompt"] for row in result["utterances"]["greedy"]]
    assert len(set(prompts)) > 1 and all(p != row["id"] for p, row in zip(prompts, result["utterances"]["greedy"]))


def test_evaluate_stages_score_the_first_codebook_alone(tts_dir, flite_corpus, tmp_path):
    result = evaluate_model(str(tts_dir), str(flite_corpus), str(tmp_path / "e.json"), mode="none", sim="none",
                            sweep=["greedy"], limit=2, progress=False, stages=True)
    assert list(result["summary"]) == ["ground_truth", "codec_resynthesis", "codec_first_codebook", "greedy", "greedy [first codebook]"]
    rows = result["utterances"]
    assert [r["seconds"] for r in rows["greedy [first codebook]"]] == [r["seconds"] for r in rows["greedy"]]  # the same frames
    assert [r["seconds"] for r in rows["codec_first_codebook"]] == [r["seconds"] for r in rows["codec_resynthesis"]]
    assert result["summary"]["greedy [first codebook]"]["inf_rate"] == result["summary"]["greedy"]["inf_rate"]


def test_evaluate_runs_sampling_strategies_once_per_seed(tts_dir, flite_corpus, tmp_path):
    result = evaluate_model(str(tts_dir), str(flite_corpus), str(tmp_path / "e.json"), mode="none", sim="none",
                            sweep=["greedy", "top_p=0.9"], limit=2, progress=False, seeds=2)
    rows, summary = result["utterances"], result["summary"]
    assert [r["seed"] for r in rows["greedy"]] == [0, 0] and "seeds" not in summary["greedy"]  # deterministic: once
    assert [r["seed"] for r in rows["top_p=0.9"]] == [0, 0, 1, 1]
    assert summary["top_p=0.9"]["seeds"] == [0, 1] and summary["top_p=0.9"]["utterances"] == 2
    assert summary["top_p=0.9"]["wer"] == pytest.approx(np.mean(summary["top_p=0.9"]["wer_per_seed"]))
    assert "±" in (tmp_path / "e.md").read_text()
    # run seed 1 on its own draws what it drew as the second of two runs: each item has its own stream
    alone = evaluate_model(str(tts_dir), str(flite_corpus), str(tmp_path / "one.json"), mode="none", sim="none",
                           sweep=["top_p=0.9"], limit=2, progress=False, seed=1)
    assert [r["seconds"] for r in alone["utterances"]["top_p=0.9"]] == [r["seconds"] for r in rows["top_p=0.9"][2:]]
    with pytest.raises(ValueError, match="seeds must be >= 1"):
        evaluate_model(str(tts_dir), str(flite_corpus), str(tmp_path / "x.json"), sweep=["greedy"], seeds=0, progress=False)


def test_an_interrupted_evaluation_resumes_where_it_stopped(tts_dir, flite_corpus, tmp_path, monkeypatch, capsys):
    from ella_v_hf.evaluation.evaluation_progress import EvaluationProgress

    arguments = {"mode": "none", "sim": "none", "sweep": ["greedy", "top_p=0.9"], "limit": 2, "progress": False,
                 "seeds": 2, "stages": True, "dnsmos": "no"}
    whole = evaluate_model(str(tts_dir), str(flite_corpus), str(tmp_path / "whole.json"), **arguments)
    assert not (tmp_path / "whole.partial.jsonl").exists()  # removed once the results are written
    units = 2 + 2 + 2 * 2  # references, greedy, two seeds of top-p; for two items
    record, recorded = EvaluationProgress.record, []

    def killed_after_three(self, unit, rows):
        if len(recorded) == 3:
            raise KeyboardInterrupt
        recorded.append(unit)
        record(self, unit, rows)

    monkeypatch.setattr(EvaluationProgress, "record", killed_after_three)
    out = tmp_path / "resumed.json"
    with pytest.raises(KeyboardInterrupt):
        evaluate_model(str(tts_dir), str(flite_corpus), str(out), **arguments)
    partial = tmp_path / "resumed.partial.jsonl"
    assert not out.exists() and len(partial.read_text().splitlines()) == 1 + 3
    with open(partial, "a") as handle:
        handle.write('{"unit": "greedy/0/1", "ro')  # a line a kill cut short: redone
    from ella_v_hf.evaluation.evaluation_progress import main as so_far

    assert so_far([str(partial)]) == 0  # the figures so far: both references, the first greedy item
    table = capsys.readouterr().out.splitlines()
    assert [line.split(" | ")[:2] for line in table[2:]] == [["| ground_truth", "2"], ["| codec_resynthesis", "2"],
                                                             ["| codec_first_codebook", "2"], ["| greedy", "1"],
                                                             ["| greedy [first codebook]", "1"]]
    with pytest.raises(ValueError, match="other settings"):  # never mixed with other settings
        evaluate_model(str(tts_dir), str(flite_corpus), str(out), **{**arguments, "seeds": 3})
    recorded.clear()
    monkeypatch.setattr(EvaluationProgress, "record", lambda self, unit, rows: (recorded.append(unit), record(self, unit, rows)))
    resumed = evaluate_model(str(tts_dir), str(flite_corpus), str(out), **arguments)
    assert len(recorded) == units - 3 and not partial.exists()
    with pytest.raises(SystemExit):  # a finished evaluation has no progress file: said so, with where its results are
        so_far([str(partial)])
    assert f"the finished evaluation's results are in {out}" in capsys.readouterr().err

    def without_timing(result):
        return {name: [{k: v for k, v in row.items() if k != "rtf"} for row in rows] for name, rows in result["utterances"].items()}

    assert without_timing(resumed) == without_timing(whole)  # each item draws from its own seed
    assert resumed["summary"]["top_p=0.9"]["wer"] == whole["summary"]["top_p=0.9"]["wer"]
    # one writer per evaluation
    holder = EvaluationProgress(tmp_path / "busy.json", {"a": 1})
    with pytest.raises(RuntimeError, match="another"):
        EvaluationProgress(tmp_path / "busy.json", {"a": 1})
    holder.close()
    assert EvaluationProgress(tmp_path / "busy.json", {"a": 2}, restart=True).done == {}


def test_eval_set_sentences_exclude_the_training_corpus(flite_corpus, tmp_path):
    from ella_v_hf.evaluation.eval_sets import make_eval_set, unseen_sentences
    from ella_v_hf.processing import read_corpus

    trained = [u.text for u in read_corpus(flite_corpus)[0]]
    candidates = [trained[0].upper(), "A brand new sentence.", trained[1], "Another unseen one!", "A brand new sentence."]
    assert unseen_sentences(candidates, [str(flite_corpus)], 2) == ["A brand new sentence.", "Another unseen one!"]
    with pytest.raises(ValueError, match="Only 2 sentences"):
        unseen_sentences(candidates, [str(flite_corpus)], 3)
    lines = tmp_path / "sentences.txt"
    lines.write_text("\n".join(candidates) + "\n")
    summary = make_eval_set(str(tmp_path / "eval"), str(lines), [str(flite_corpus)], n=2, voice="rms")
    utterances, problems = read_corpus(tmp_path / "eval")
    assert summary["utterances"] == 2 and not problems
    assert sorted(u.text for u in utterances) == ["A brand new sentence.", "Another unseen one!"]


@pytest.mark.parametrize("frame_phonemes", [False, True])
def test_measure_nar_reports_every_codebook_prefix(prepared_corpus, flite_corpus, tmp_path, frame_phonemes):
    """measure_nar: resynthesis from the first k codebooks for every k, the NAR ceiling, and the NAR's
    teacher-forced cross-entropy per codebook (near ln C for an untrained NAR); a frame_phonemes
    NAR is fed the references' forced alignment."""
    import math

    from ella_v_hf.evaluation.measure_nar import measure_nar
    from ella_v_hf.training.trainer import TrainConfig, train

    small = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64}
    summary = train(TrainConfig(model_overrides=small, max_steps=1, warmup_steps=1, save_every=1, max_tokens_per_batch=2500,
                                nar_frame_phonemes=frame_phonemes), prepared_corpus, tmp_path / "run", progress=False)

    class Recorder:  # a stand-in judge: records what it hears, "hears" the same words every time
        def __init__(self):
            self.lengths: list[int] = []

        def transcribe(self, waveform, sampling_rate):
            self.lengths.append(len(waveform))
            return "the"

    asr = Recorder()
    result = measure_nar(summary["model"], str(flite_corpus), n=2, progress=False, asr=asr)
    assert result["utterances"] == 2 and set(result["first_codebooks"]) == {"1", "2"}  # the small codec has 2 codebooks
    assert len(asr.lengths) == 2 * 3 and min(asr.lengths) > 0  # per utterance: 2 prefixes + the NAR ceiling
    assert 0 < result["first_codebook_plus_nar"]["wer"] <= 1
    assert set(result["nar_cross_entropy"]) == {"2"}
    assert result["uniform_cross_entropy"] == pytest.approx(math.log(32))
    assert abs(result["nar_cross_entropy"]["2"] - math.log(32)) < 1.0


def test_evaluate_reports_skips_and_picks_qualifying_items(prepared_corpus, flite_corpus, tmp_path, capsys):
    from ella_v_hf.training.trainer import TrainConfig, train

    small = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64}
    summary = train(TrainConfig(model_overrides=small, max_steps=1, warmup_steps=1, save_every=1, max_tokens_per_batch=2500),
                    prepared_corpus, tmp_path / "run", progress=False)
    # A prompt of 2.5 s leaves too little of most short flite sentences: those are skipped, and the
    # evaluation goes on through the corpus until it has --limit items that qualify.
    result = evaluate_model(summary["model"], str(flite_corpus), str(tmp_path / "e.json"), mode="continuation", prompt_seconds=2.5,
                            sweep=["greedy"], limit=2, sim=None, progress=False)
    err = capsys.readouterr().err
    used = result["summary"]["greedy"]["utterances"]
    assert f"ella-v evaluate: {used} item(s) (continuation prompts)" in err
    if result["skipped"]:
        assert f"skipped {len(result['skipped'])}: " in err and result["skipped"][0]["reason"] in err
    assert used == 2 or len(result["skipped"]) > 0
    assert "empty_rate" in result["summary"]["greedy"]


def test_continuation_cut_never_splits_a_word_espeak_joins(tts_model):
    from ella_v_hf.evaluation.evaluate_tts import _continuation_split
    from ella_v_hf.processing import EllaVProcessor
    from ella_v_hf.processing.tokenization_ella_v import EllaVPhonemeTokenizer

    processor = EllaVProcessor(EllaVPhonemeTokenizer(), sampling_rate=tts_model.config.sampling_rate)
    rng = np.random.default_rng(0)
    waveform = (0.1 * rng.standard_normal(3 * tts_model.config.sampling_rate)).astype(np.float32)
    text = "Sit on the mat and wait"  # espeak: "on the" is one word
    prompts = set()
    for seconds in np.linspace(0.1, 2.9, 15):
        split = _continuation_split(tts_model, processor, waveform, text, float(seconds))
        assert split is not None
        prompt_audio, prompt_text, target_audio, target_text = split
        assert f"{prompt_text} {target_text}" == text and len(prompt_audio) + len(target_audio) == len(waveform)
        prompts.add(prompt_text)
    assert "Sit on" not in prompts and len(prompts) >= 2


def test_card_table_and_targets_from_real_evaluations(tts_dir, flite_corpus, tmp_path, capsys):
    from ella_v_hf.evaluation.card_table import main, targets

    result = evaluate_model(str(tts_dir), str(flite_corpus), str(tmp_path / "ella-v-kathleen-none.json"), mode="none",
                            sim="none", sweep=["greedy", "top_p=0.9", "greedy,eop_quantile=off"], limit=2, progress=False, seeds=2, stages=True, dnsmos="no")
    (tmp_path / "vall-e-hard.json").write_text((tmp_path / "ella-v-kathleen-none.json").read_text())
    summary = result["summary"]
    main([str(tmp_path), "--targets"])
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("| set | system | WER | CER | SIM | DNSMOS P.808 | INF | EMPTY | CUT |")
    truth = summary["ground_truth"]
    assert lines[2] == f"| Kathleen (held out), no prompt | ground truth | {100 * truth['wer']:.1f} % | {100 * truth['cer']:.1f} % | – | – | – | {100 * truth['empty_rate']:.1f} % | – |"
    names = [line.split(" | ")[1] for line in lines[2:] if line.startswith("|")]
    assert names == ["ground truth", "codec resynthesis, all codebooks", "codec resynthesis, first codebook",
                     "ELLA-V greedy", "ELLA-V top-p 0.9", "ELLA-V greedy, EOP sampled (the paper's decoding)",
                     "ground truth", "codec resynthesis, all codebooks", "codec resynthesis, first codebook",
                     "VALL-E greedy", "VALL-E top-p 0.9", "VALL-E greedy, EOP sampled (the paper's decoding)"]
    # the Kathleen set: the ELLA-V file only; the hard set: the VALL-E file only (here a copy of it)
    top_p = summary["top_p=0.9"]
    assert f"| ELLA-V top-p 0.9 | {100 * top_p['wer']:.1f} ± {100 * top_p['wer_std']:.1f} % |" in out
    figures = targets({"kathleen-none": {"ella-v": result}, "hard": {"vall-e": result}})
    assert figures["ella_v_top_p_over_ground_truth"] == (top_p["wer"] / truth["wer"] if truth["wer"] else None)
    assert figures["codec_first_over_ground_truth"] == (summary["codec_first_codebook"]["wer"] / truth["wer"] if truth["wer"] else None)
    assert figures["ella_v_max_inf_rate"] == max(summary[name]["inf_rate"] for name in ("greedy", "top_p=0.9", "greedy,eop_quantile=off"))
    assert figures["vall_e_hard_over_ella_v"] is None and figures["dnsmos_p808_gap_to_ground_truth"] is None  # not measured
    assert json.loads(out[out.index("{"):]) == figures
    with pytest.raises(FileNotFoundError, match="no evaluation"):
        main([str(tmp_path / "nothing")])
