#!/usr/bin/env bash
# A learned waveform stage for the bundled codec, tried in both demos against Griffin-Lim (docs/experiments.md, 2026-12-07):
#
#   bash training/recipes/vocoder.sh RUNS_DIR
#
# RUNS_DIR/combined (the demos' training corpus) and RUNS_DIR/kathleen_heldout come from step 1 of
# training/recipes/demo.sh (~3 min). Then, in RUNS_DIR/vocoder:
# 1. base: `ella-v train-vocoder` of the bundled codec (ella_v_hf/pretrained/codec) on that corpus with
#    training/configs/vocoder.json (multi-resolution STFT + mel losses; ~10 min on two threads); gan: its
#    adversarial fine-tune with training/configs/vocoder-gan.json (a spectrogram discriminator; ~45 min).
#    The codec stays frozen: its codes, and so the demos' GAR and NAR, stay valid.
# 2. STAGE-ella-v-demo, STAGE-vall-e-demo: the bundled demos with that vocoder (`ella-v assemble --gar
#    DEMO --codec RUN/model`: only the waveform stage changes; the demos' decoding defaults are kept).
# 3. For each waveform stage (griffin-lim: the bundled codec and demo as they are; base; gan):
#    codec-STAGE.json, measure_codec on the first 30 held-out Kathleen utterances (k = 1 and 8, the
#    stage's ceiling from the reference's own log-mel; DNSMOS, PESQ, STOI), and demo-STAGE.json,
#    `ella-v evaluate` of the ELLA-V demo on the first 40 without a prompt, greedy and top-p 0.9 (the
#    generated codes are the same for every stage); then one table (evaluation/waveform_stage_table.py).
# One step at a time; a step whose result exists is kept, and training resumes where it stopped.
set -euo pipefail
RUNS=$(realpath "${1:?usage: vocoder.sh RUNS_DIR}")
HERE=$(cd "$(dirname "$0")/.." && pwd)  # training/
for needed in combined kathleen_heldout; do
    [ -f "$RUNS/$needed/metadata.csv" ] || { echo "$RUNS/$needed is missing: run step 1 of training/recipes/demo.sh first" >&2; exit 2; }
done
OUT=$RUNS/vocoder
mkdir -p "$OUT"
PACKAGE=$(python3 -c 'import ella_v_hf, os; print(os.path.dirname(ella_v_hf.__file__))')
train() {  # NAME CODEC CONFIG: one vocoder run, two threads, resumed when it has checkpoints
    [ -f "$OUT/$1/summary.json" ] && return 0
    OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 ella-v train-vocoder --codec "$2" --data "$RUNS/combined" --out "$OUT/$1" \
        --config "$3" $( [ -d "$OUT/$1/checkpoints" ] && echo --resume ) > "$OUT/$1.log" 2>&1
}
train base "$PACKAGE/pretrained/codec" "$HERE/configs/vocoder.json"
train gan "$OUT/base/model" "$HERE/configs/vocoder-gan.json"

export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
for stage in griffin-lim base gan; do
    codec=$OUT/$stage/model
    if [ "$stage" = griffin-lim ]; then
        codec=$PACKAGE/pretrained/codec demos=$PACKAGE/demo_models/
    else
        for demo in ella-v vall-e; do
            [ -f "$OUT/$stage-$demo-demo/config.json" ] || ella-v assemble --gar "$PACKAGE/demo_models/$demo-demo" \
                --codec "$codec" --out "$OUT/$stage-$demo-demo" --no-remote-code \
                --card "$PACKAGE/demo_models/$demo-demo/README.md" > "$OUT/assemble-$stage-$demo.log" 2>&1
        done
        demos=$OUT/$stage-
    fi
    if [ ! -f "$OUT/codec-$stage.json" ]; then
        python3 -m ella_v_hf.evaluation.measure_codec --codec "$codec" --data "$RUNS/kathleen_heldout" \
            --n 30 --levels 1 8 --stages --quality --json \
            > "$OUT/codec-$stage.json.tmp" 2> "$OUT/codec-$stage.log" && mv "$OUT/codec-$stage.json.tmp" "$OUT/codec-$stage.json"
    fi
    [ -f "$OUT/demo-$stage.json" ] || ella-v evaluate --model "${demos}ella-v-demo" --eval "$RUNS/kathleen_heldout" \
        --prompt-mode none --limit 40 --sweep "greedy;top_p=0.9" --dnsmos yes --sim none \
        --out "$OUT/demo-$stage.json" > "$OUT/demo-$stage.log" 2>&1
done
python3 -m ella_v_hf.evaluation.waveform_stage_table \
    "Griffin-Lim (sharpening 2.0)=$OUT/codec-griffin-lim.json,$OUT/demo-griffin-lim.json" \
    "vocoder, STFT + mel losses=$OUT/codec-base.json,$OUT/demo-base.json" \
    "vocoder + adversarial fine-tune=$OUT/codec-gan.json,$OUT/demo-gan.json" | tee "$OUT/table.md"
