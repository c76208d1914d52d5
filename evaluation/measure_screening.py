"""How ``prepare``'s screening (:mod:`ella_v_hf.processing.screening`) treats a real corpus and
the garbage it must drop.

    python -m ella_v_hf.evaluation.measure_screening --data ../shared/data/kathleen [--limit N] [--json]

Prints the measures' percentiles over the corpus, every utterance it would drop (with the reason),
and the verdict on five kinds of garbage made from the corpus: 5 s of digital silence, 4 s of white
noise, 2 s of speech followed by 17.5 s of silence, an utterance with another one's (longer)
transcript, and an utterance with a three-word transcript.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from ..processing import EllaVPhonemeTokenizer, load_audio, prepare_waveform, read_corpus
from ..processing.screening import RATE, screen_waveform


def phoneme_count(tokenizer: EllaVPhonemeTokenizer, text: str) -> int:
    """Phonemes of ``text`` (word boundaries and pauses excluded)."""
    separators = set(tokenizer.separator_token_ids)
    return sum(1 for i in tokenizer(text)["input_ids"] if i not in separators)


def measure(data: str, limit: int | None = None, seed: int = 0) -> dict:
    utterances, _ = read_corpus(data)
    utterances = utterances[:limit] if limit else utterances
    tokenizer = EllaVPhonemeTokenizer()
    rows = []
    waves = []
    for u in utterances:
        wave = prepare_waveform(*load_audio(u.audio_path), RATE, name=u.id)
        waves.append(wave)
        result = screen_waveform(wave, phoneme_count(tokenizer, u.text))
        rows.append({"id": u.id, "speech_share": result.speech_share, "voiced_share": result.voiced_share,
                     "phonemes_per_second": result.phonemes_per_second, "reason": result.reason})
    rng = np.random.default_rng(seed)
    speech, text = waves[0], utterances[0].text
    longest = max(range(len(utterances)), key=lambda i: len(utterances[i].text))
    garbage = {
        "5 s digital silence": (np.zeros(5 * RATE, np.float32), text),
        "4 s white noise": ((0.1 * rng.standard_normal(4 * RATE)).astype(np.float32), text),
        "2 s speech + 17.5 s silence": (np.concatenate([speech[: 2 * RATE], np.zeros(int(17.5 * RATE), np.float32)]), text),
        "another utterance's longer transcript": (waves[1] if longest == 0 else waves[0], utterances[longest].text + " " + utterances[longest].text),
        "a three-word transcript": (waves[longest], " ".join(utterances[longest].text.split()[:3])),
    }
    verdicts = {name: screen_waveform(wave, phoneme_count(tokenizer, words)).reason for name, (wave, words) in garbage.items()}

    def percentiles(key: str) -> dict:
        values = np.array([r[key] for r in rows])
        return {f"p{q}": round(float(np.percentile(values, q)), 3) for q in (0, 1, 5, 50, 95, 99, 100)}

    return {
        "data": data,
        "utterances": len(rows),
        "percentiles": {key: percentiles(key) for key in ("speech_share", "voiced_share", "phonemes_per_second")},
        "dropped": [{"id": r["id"], "reason": r["reason"]} for r in rows if r["reason"]],
        "garbage": verdicts,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = measure(args.data, args.limit)
    if args.json:
        print(json.dumps(result, indent=1))
        return
    print(f"{result['utterances']} utterances of {result['data']}")
    for key, values in result["percentiles"].items():
        print(f"  {key}: " + ", ".join(f"{k} {v}" for k, v in values.items()))
    print(f"dropped {len(result['dropped'])}:")
    for row in result["dropped"]:
        print(f"  {row['id']}: {row['reason']}")
    print("garbage:")
    for name, reason in result["garbage"].items():
        print(f"  {name}: {reason or 'KEPT'}")


if __name__ == "__main__":
    main()
