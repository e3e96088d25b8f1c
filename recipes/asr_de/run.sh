#!/usr/bin/env bash
# German ASR by transfer from English Whisper tiny.en: the freeze sweep at one time budget.
#
#   recipes/asr_de/run.sh [--stage N] [--stop-stage N] [--minutes M] [--cv-dir DIR] [--exp DIR]
#
# Stages: 0 prepare data (synthetic German by default, Common Voice German with --cv-dir)
#         1 train every condition of the sweep at the same budget
#         2 evaluate each on the test set (greedy, and beam search with the word LM)
#         3 write the results table into recipes/asr_de/README.md
set -euo pipefail
cd "$(dirname "$0")/../.."
stage=0; stop_stage=3; minutes=10; num_utts=6000; cv_dir=""; exp=exp/asr_de; data=manifests; beam=16
conditions="full bottom1 bottom2 bottom3 feature_extraction scratch"
readme=recipes/asr_de/README.md
while [ $# -gt 0 ]; do
  case "$1" in
    --stage) stage=$2; shift 2;;
    --stop-stage) stop_stage=$2; shift 2;;
    --minutes) minutes=$2; shift 2;;
    --num-utterances) num_utts=$2; shift 2;;
    --cv-dir) cv_dir=$2; shift 2;;
    --exp) exp=$2; shift 2;;
    --readme) readme=$2; shift 2;;  # "none": print the table only
    --conditions) conditions=$2; shift 2;;
    --beam) beam=$2; shift 2;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
st=${SPEECH_TL:-.venv/bin/speech-tl}
if [ -n "$cv_dir" ]; then corpus=commonvoice; else corpus=synth-asr; fi
train=$data/${corpus}_de_train.jsonl; dev=$data/${corpus}_de_dev.jsonl; test=$data/${corpus}_de_test.jsonl
mkdir -p "$(dirname "$exp")"

overrides() {  # the freeze policy (and init) of one condition
  case "$1" in
    full) echo "freeze.mode=full freeze.bottom_layers=0";;
    bottom*) echo "freeze.mode=bottom freeze.bottom_layers=${1#bottom}";;
    feature_extraction) echo "freeze.mode=feature_extraction";;
    scratch) echo "freeze.mode=full freeze.bottom_layers=0 model.pretrained=false";;
    *) echo "unknown condition $1" >&2; exit 2;;
  esac
}

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  echo "== stage 0: data ($corpus)"
  if [ -n "$cv_dir" ]; then
    $st prepare commonvoice "$cv_dir" --lang de --out-dir $data
  else
    $st prepare synth-asr --lang de --out-dir $data --num-utterances $num_utts
  fi
  $st manifest stats --max-speakers 5 "$train" "$dev" "$test"
fi

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  for c in $conditions; do
    echo "== stage 1: train $c ($minutes min)"
    if [ -f "$exp/$c/summary.json" ]; then echo "done already: $exp/$c"; continue; fi
    # shellcheck disable=SC2046
    $st train asr recipes/asr_de/conf/transfer.yaml out_dir=$exp/$c data.train=$train data.dev=$dev \
      train.max_minutes=$minutes decode.lm_order=3 $(overrides "$c") > "$exp.$c.log" 2>&1 \
      || { tail -20 "$exp.$c.log"; exit 1; }
    mkdir -p "$exp/$c" && mv "$exp.$c.log" "$exp/$c/train.log"
    tail -3 "$exp/$c/train.log"
  done
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  for c in $conditions; do
    echo "== stage 2: evaluate $c"
    [ -f "$exp/$c/test_greedy.json" ] || $st evaluate asr "$exp/$c" "$test" --out "$exp/$c/test_greedy.json"
    [ -f "$exp/$c/test_beam.json" ] || $st evaluate asr "$exp/$c" "$test" --beam "$beam" --out "$exp/$c/test_beam.json"
  done
fi

if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  echo "== stage 3: results table"
  .venv/bin/python recipes/asr_de/table.py --exp "$exp" --conditions "$conditions" --minutes "$minutes" \
    $([ "$readme" = none ] || echo --readme "$readme")
fi
