#!/usr/bin/env bash
# The GPU check: 50 ASR training steps with bf16 autocast, then WER/CER and EER evaluation on the GPU, printing
# throughput and peak memory. Real speech from ../shared/data/commonvoice (Common Voice 6.1, CC0) when it is
# there; it needs CUDA and an environment with speech-tl installed (pip install -e .).
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]          (prints a Markdown table for benchmarks/README.md)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-/tmp/speech-tl-gpu-check}
st=${SPEECH_TL:-speech-tl}
py=${PYTHON:-python}
cv=${CV_DIR:-../shared/data/commonvoice}
$py -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: the GPU check needs one')"
[ -d "$cv/de" ] || { echo "no Common Voice clips at $cv (set CV_DIR)" >&2; exit 1; }
mkdir -p "$out"
m=$out/manifests
# German clips to train on (a check of the GPU path, not of accuracy: 50 steps on the dev clips themselves)
for lang in de en nl fr es it pl sv-SE; do
  $st prepare commonvoice "$cv/$lang" --lang "$lang" --use-validated --out-dir "$m/$lang" >> "$out/prepare.log"
done
train=$m/de/commonvoice_de_train.jsonl
start=$(date +%s)
$st train asr recipes/asr_de/conf/transfer.yaml out_dir="$out/asr" data.train="$train" data.dev="$train" \
  train.device=cuda train.amp=bf16 train.max_steps=50 train.max_minutes=null train.eval_every=50 \
  train.prefix_cache="'off'" train.num_workers=8 decode.tune_on="''" decode.lm_texts=[] decode.lm_unigrams="''" \
  decode.lm_order=0 > "$out/train.log" 2>&1 || { tail -30 "$out/train.log"; exit 1; }
train_s=$(( $(date +%s) - start ))
$st evaluate asr "$out/asr" "$train" --out "$out/asr_eval.json" --device cuda --batch-size 16 > "$out/eval.log" 2>&1 \
  || { tail -30 "$out/eval.log"; exit 1; }
cat "$m"/{en,nl,fr,es,it,pl,sv-SE}/commonvoice_*_train.jsonl > "$out/speakers.jsonl"
$st evaluate speaker ge2e:resemblyzer "$out/speakers.jsonl" --out "$out/spk_eval.json" --device cuda \
  > "$out/spk.log" 2>&1 || { tail -30 "$out/spk.log"; exit 1; }
$py - "$out" "$train_s" <<'PY'
import json, sys, torch
from pathlib import Path
out, train_s = Path(sys.argv[1]), int(sys.argv[2])
log = [json.loads(x) for x in (out / "asr" / "train_log.jsonl").read_text().splitlines()]
steps = [r for r in log if "loss" in r]
asr = json.loads((out / "asr_eval.json").read_text())
spk = json.loads((out / "spk_eval.json").read_text())
print(f"GPU: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
print("| what | value |\n|---|---:|")
print(f"| training, 50 steps bf16: audio seconds per second (last window) | {steps[-1]['audio_s_per_s']:.0f} |")
print(f"| training: utterances per second (last window) | {steps[-1]['utt_per_s']:.1f} |")
print(f"| training: peak GPU memory | {max(r['memory_mb'] for r in steps):.0f} MiB |")
print(f"| training command, wall clock (model load, prefix, 50 steps, eval) | {train_s} s |")
print(f"| ASR evaluation on the GPU: WER / CER | {asr['wer']:.3f} / {asr['cer']:.3f} |")
print(f"| speaker evaluation on the GPU (GE2E, Common Voice speakers): EER | {spk['eer']:.3f} |")
PY
