#!/usr/bin/env bash
# Speaker identification by transfer from GE2E (resemblyzer's English-trained weights).
#
#   recipes/speaker_id/run.sh [--stage N] [--stop-stage N] [--minutes M] [--vox-dir DIR] [--exp DIR]
#
# Stages: 0 data (synthetic multi-speaker corpus by default, VoxCeleb with --vox-dir; FSDD as real
#           speech when ../shared/data/fsdd exists)
#         1 train the adaptations at the same budget (bottom-2 frozen, all trainable), and for each a
#           WiSE-FT interpolation halfway back to the pretrained weights (<condition>-wise, --wise 0 skips)
#         2 evaluate the unadapted baseline and each adaptation on held-out speakers (and FSDD)
#         3 enroll held-out speakers with the adapted model and identify their other clips
#         4 write the results table into recipes/speaker_id/README.md
#         5 layer probe of the unadapted backbone (LDA + cosine EER per depth) -> $exp/probe/probe.json
#         6 domain confusion across languages: the synthetic cross-language corpus (espeak-ng variants reading
#           English and German), adaptation with and without a language classifier behind gradient reversal,
#           EER on English-enrolment / German-test trials of held-out variants -> $exp/xlang/
#         7 real speech (../shared/data: FSDD, Common Voice): VAD trimming and AS-Norm with a real cohort
#           -> $exp/real_speech.md (recipes/speaker_id/real_speech.py)
set -euo pipefail
cd "$(dirname "$0")/../.."
stage=0; stop_stage=7; minutes=2; wise=0.5; vox_dir=""; exp=exp/speaker_id; data=manifests
conditions="bottom2 bottom1 bottom3 full"
fsdd=../shared/data/fsdd/recordings
readme=recipes/speaker_id/README.md
while [ $# -gt 0 ]; do
  case "$1" in
    --stage) stage=$2; shift 2;;
    --stop-stage) stop_stage=$2; shift 2;;
    --minutes) minutes=$2; shift 2;;
    --vox-dir) vox_dir=$2; shift 2;;
    --exp) exp=$2; shift 2;;
    --readme) readme=$2; shift 2;;  # "none": print the table only
    --conditions) conditions=$2; shift 2;;
    --wise) wise=$2; shift 2;;  # alpha of the WiSE-FT interpolation (0: none)
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
st=${SPEECH_TL:-.venv/bin/speech-tl}
if [ -n "$vox_dir" ]; then
  train=$data/voxceleb_mul_train.jsonl; dev=$data/voxceleb_mul_dev.jsonl; test=$data/voxceleb_mul_test.jsonl
else
  train=$data/synth-speakers_mul_train.jsonl; dev=$data/synth-speakers_mul_dev.jsonl
  test=$data/synth-speakers_mul_test.jsonl
fi
real=$data/fsdd_und_50.jsonl
mkdir -p "$exp"

overrides() {
  case "$1" in
    bottom[0-9]) echo "freeze.mode=bottom freeze.bottom_layers=${1#bottom}";;
    full) echo "freeze.mode=full freeze.bottom_layers=0";;
    *) return 1;;
  esac
}
for c in $conditions; do  # a typo must stop the recipe, not train the default under a wrong name
  overrides "$c" > /dev/null || { echo "unknown condition $c (known: bottom0..bottom3, full)" >&2; exit 2; }
done

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  echo "== stage 0: data"
  if [ -n "$vox_dir" ]; then
    $st prepare voxceleb "$vox_dir" --out-dir $data
  else
    $st prepare synth-speakers --out-dir $data
  fi
  if [ -d "$fsdd" ]; then
    $st prepare folder "$fsdd" --out-dir $data --name fsdd --speaker-regex '^\d+_([a-z]+)_\d+$' --no-text
    # 50 clips per speaker keep the trial list (all target pairs) small enough for bootstrap intervals
    $st manifest filter $data/fsdd_und_all.jsonl --out "$real" --max-per-speaker 50 --seed 0 --overwrite
  fi
  $st manifest stats --max-speakers 5 "$train" "$dev" "$test"
fi

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  for c in $conditions; do
    echo "== stage 1: train $c ($minutes min)"
    if [ -f "$exp/$c/summary.json" ]; then echo "done already: $exp/$c"; continue; fi
    # an unfinished run goes on from its checkpoint; one without a checkpoint to resume is begun again: --overwrite
    # shellcheck disable=SC2046
    $st train speaker --overwrite recipes/speaker_id/conf/adapt.yaml out_dir=$exp/$c data.train=$train data.dev=$dev \
      train.max_minutes=$minutes $(overrides "$c") > "$exp/$c.log" 2>&1 || { tail -20 "$exp/$c.log"; exit 1; }
    mv "$exp/$c.log" "$exp/$c/train.log"
    grep "dev eer" "$exp/$c/train.log" | tail -1 || true
  done
  if [ "$wise" != 0 ]; then
    for c in $conditions; do
      [ -d "$exp/$c-wise/best" ] && continue
      # the training cost is the fine-tuned run's; its dev results are not this model's (--overwrite: a folder
      # without best/ is what an older, interrupted interpolation left)
      $st interpolate "$exp/$c" --alpha "$wise" --out "$exp/$c-wise" --as-run --overwrite
    done
  fi
fi
evaluated=$conditions
[ "$wise" = 0 ] || for c in $conditions; do evaluated="$evaluated $c-wise"; done

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  echo "== stage 2: evaluate"
  mkdir -p "$exp/baseline"
  # each evaluation runs unless its results are there; it writes <stem>.embeddings.pt before them, so --overwrite
  # replaces what a killed one left (here and in stage 6)
  [ -f "$exp/baseline/test.json" ] || \
    $st evaluate speaker ge2e:resemblyzer "$test" --out "$exp/baseline/test.json" --overwrite
  [ ! -f "$real" ] || [ -f "$exp/baseline/fsdd.json" ] || \
    $st evaluate speaker ge2e:resemblyzer "$real" --out "$exp/baseline/fsdd.json" --overwrite
  for c in $evaluated; do
    [ -f "$exp/$c/test.json" ] || $st evaluate speaker "$exp/$c" "$test" --out "$exp/$c/test.json" --overwrite
    [ ! -f "$real" ] || [ -f "$exp/$c/fsdd.json" ] || \
      $st evaluate speaker "$exp/$c" "$real" --out "$exp/$c/fsdd.json" --overwrite
  done
fi

if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  echo "== stage 3: enroll held-out speakers with the adapted model, identify their other clips"
  model=$exp/$(echo $conditions | cut -d' ' -f1)
  .venv/bin/python recipes/speaker_id/enroll_demo.py --model "$model" --manifest "$test" --db "$exp/speakers.db" \
    --speakers 10 --enroll-clips 3 --calibration "$model/test.json" --out "$exp/enroll_demo.json"
fi

if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
  echo "== stage 4: results table"
  .venv/bin/python recipes/speaker_id/table.py --exp "$exp" --conditions "$evaluated" --minutes "$minutes" \
    $([ "$readme" = none ] || echo --readme "$readme")
fi

if [ "$stage" -le 5 ] && [ "$stop_stage" -ge 5 ]; then
  echo "== stage 5: layer probe of the unadapted backbone (fitted on the training speakers, EER on the dev speakers)"
  [ -f "$exp/probe/probe.json" ] || $st probe speaker ge2e:resemblyzer "$train" --eval "$dev" --out "$exp/probe/probe.json"
fi

if [ "$stage" -le 6 ] && [ "$stop_stage" -ge 6 ]; then
  echo "== stage 6: domain confusion across languages"
  $st prepare synth-crosslingual --out-dir $data
  xl=$exp/xlang; mkdir -p "$xl/baseline"
  trials=$data/synth-xlang_mul_test_trials.txt
  for c in plain confusion; do
    [ -f "$xl/$c/summary.json" ] && continue
    extra=""; [ "$c" = confusion ] && extra="domain.field=language domain.weight=1.0"
    # shellcheck disable=SC2086
    $st train speaker --overwrite recipes/speaker_id/conf/adapt.yaml out_dir=$xl/$c \
      data.train=$data/synth-xlang_mul_train.jsonl data.dev=null train.max_minutes=$minutes $extra > "$xl/$c.log" 2>&1 \
      || { tail -20 "$xl/$c.log"; exit 1; }
    mv "$xl/$c.log" "$xl/$c/train.log"
  done
  [ -f "$xl/baseline/xlang.json" ] || $st evaluate speaker ge2e:resemblyzer $data/synth-xlang_mul_test.jsonl \
    --trials "$trials" --out "$xl/baseline/xlang.json" --overwrite
  for c in plain confusion; do
    [ -f "$xl/$c/xlang.json" ] || $st evaluate speaker "$xl/$c" $data/synth-xlang_mul_test.jsonl --trials "$trials" \
      --out "$xl/$c/xlang.json" --overwrite
  done
  .venv/bin/python recipes/speaker_id/table.py --exp "$exp" --conditions "$evaluated" --minutes "$minutes" \
    $([ "$readme" = none ] || echo --readme "$readme")
fi

if [ "$stage" -le 7 ] && [ "$stop_stage" -ge 7 ]; then
  echo "== stage 7: real speech (FSDD, Common Voice): VAD trimming and AS-Norm with a real cohort"
  if [ -d ../shared/data/commonvoice ] && [ -d ../shared/data/fsdd ]; then
    .venv/bin/python recipes/speaker_id/real_speech.py --json "$exp/real_speech.json" | tee "$exp/real_speech.md"
  else
    echo "skipped: ../shared/data/commonvoice and ../shared/data/fsdd not found"
  fi
fi
