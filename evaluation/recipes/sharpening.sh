#!/usr/bin/env bash
# The Griffin-Lim stage's within-band sharpening (griffin_lim_sharpening, modeling/mel.py), measured
# for each exponent on the bundled codec and the bundled ELLA-V demo (docs/experiments.md, 2026-12-07):
#
#   bash evaluation/recipes/sharpening.sh RUNS_DIR
#
# RUNS_DIR/kathleen_heldout: the held-out Kathleen utterances (made by training/recipes/demo.sh or
# codec-ablation.sh). For each exponent in EXPONENTS (default "1.0 1.5 2.0"; 1.0 is plain Griffin-Lim):
#   RUNS_DIR/sharpening/codec-X.json  measure_codec on the first 30 (k = 1 and 8, the waveform stage's
#                                     ceiling, the unquantised latents; DNSMOS, PESQ, STOI);
#   RUNS_DIR/sharpening/demo-X.json   ella-v evaluate of a copy of the ELLA-V demo whose codec uses the
#                                     exponent, on the first 40 without a prompt, greedy and top-p 0.9
#                                     (the generated codes are the same for every exponent).
# One CPU thread each, one at a time; an existing result is kept (a rerun resumes).
set -euo pipefail
RUNS=$(realpath "${1:?usage: sharpening.sh RUNS_DIR}")
[ -f "$RUNS/kathleen_heldout/metadata.csv" ] || { echo "$RUNS/kathleen_heldout is missing: run training/recipes/demo.sh or codec-ablation.sh first" >&2; exit 2; }
OUT=$RUNS/sharpening
mkdir -p "$OUT"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
PACKAGE=$(python3 -c 'import ella_v_hf, os; print(os.path.dirname(ella_v_hf.__file__))')
for x in ${EXPONENTS:-1.0 1.5 2.0}; do
    if [ ! -f "$OUT/codec-$x.json" ]; then
        python3 -m ella_v_hf.evaluation.measure_codec --codec "$PACKAGE/pretrained/codec" --data "$RUNS/kathleen_heldout" \
            --n 30 --levels 1 8 --stages --quality --griffin-lim-sharpening "$x" --json \
            > "$OUT/codec-$x.json.tmp" 2> "$OUT/codec-$x.log" && mv "$OUT/codec-$x.json.tmp" "$OUT/codec-$x.json"
    fi
    if [ ! -f "$OUT/demo-$x.json" ]; then
        if [ ! -f "$OUT/ella-v-$x/config.json" ]; then  # a copy of the demo whose codec sharpens by x
            rm -rf "$OUT/ella-v-$x.tmp"
            cp -r "$PACKAGE/demo_models/ella-v-demo" "$OUT/ella-v-$x.tmp"
            python3 - "$OUT/ella-v-$x.tmp/config.json" "$x" <<'EOF'
import json, sys
path, exponent = sys.argv[1], float(sys.argv[2])
config = json.load(open(path))
config["codec_config"]["griffin_lim_sharpening"] = exponent
json.dump(config, open(path, "w"), indent=2)
EOF
            mv "$OUT/ella-v-$x.tmp" "$OUT/ella-v-$x"
        fi
        ella-v evaluate --model "$OUT/ella-v-$x" --eval "$RUNS/kathleen_heldout" --prompt-mode none --limit 40 \
            --sweep "greedy;top_p=0.9" --dnsmos yes --sim none --out "$OUT/demo-$x.json" > "$OUT/demo-$x.log" 2>&1
    fi
done
rows=()
for x in ${EXPONENTS:-1.0 1.5 2.0}; do rows+=("$x=$OUT/codec-$x.json,$OUT/demo-$x.json"); done
python3 -m ella_v_hf.evaluation.waveform_stage_table --label-header exponent "${rows[@]}"
