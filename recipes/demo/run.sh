#!/usr/bin/env bash
# The main job on the built-in offline data, at a short budget: the corpora, German ASR by transfer (the
# recommended configuration, whole Whisper base adapted for clean and telephone German, beside Whisper base
# zero-shot on real German speech when ../shared is there), speaker adaptation and the enrollment demo, one report
# per task and reports/index.html.
#
#   recipes/demo/run.sh [--asr-minutes M] [--asr-utterances N] [--speaker-minutes M] [--overwrite]  (make demo)
#
# For real numbers run the recipes themselves with their default budgets (recipes/*/README.md). The demo prepares
# its corpora in manifests/ with the recipes' own parameters, so a recipe run afterwards (or before) reuses them and
# says so. --asr-utterances N makes the German corpus another size than the recipe's 6,000, under the same names:
# whichever of the two runs second then stops, naming the corpus and the parameters that differ, unless given
# --overwrite (here it is passed on to recipes/asr_de/run.sh), which replaces it.
set -euo pipefail
cd "$(dirname "$0")/../.."
asr_minutes=3; asr_utterances=""; speaker_minutes=1; exp=exp/demo; reports=reports; asr_opts=()
while [ $# -gt 0 ]; do
  case "$1" in
    --asr-minutes) asr_minutes=$2; shift 2;;
    --asr-utterances) asr_utterances=$2; shift 2;;
    --speaker-minutes) speaker_minutes=$2; shift 2;;
    --exp) exp=$2; shift 2;;
    --overwrite) asr_opts+=(--overwrite); shift;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
st=${SPEECH_TL:-.venv/bin/speech-tl}
start=$(date +%s)

[ -z "$asr_utterances" ] || asr_opts+=(--num-utterances "$asr_utterances")

# ASR: the recommended transfer against what users could download, Whisper base zero-shot (stage 2 scores it); the
# sweep, probe, domain-confusion, multitask, lever and whole-Whisper stages are the recipe's longer experiments
# (400 utterances of real other-language speech and 400 synthetic German ones through phone calls: the recommended
# training data, a minute to render instead of the recipe's five; the recipe renders its own, replacing these). The
# clean German corpus is the recipe's (6,000 utterances, seed 0); its realistic twin (synth-asr-rm), which the
# recommended condition does not train on, is left to the recipe's later stages.
recipes/asr_de/run.sh --minutes "$asr_minutes" --exp "$exp/asr_de" --readme none --stop-stage 3 \
  --conditions "recommended" --phone-utterances 400 "${asr_opts[@]}"
recipes/speaker_id/run.sh --minutes "$speaker_minutes" --exp "$exp/speaker_id" --readme none --stop-stage 4 \
  --conditions "bottom2 full"

mkdir -p "$reports"
# a re-run reports the runs as they are now: the reports are redone (--overwrite)
$st report "$exp"/asr_de/*/ --out "$reports/asr_de.html" --title "German ASR by transfer (demo budget)" --overwrite
$st report "$exp"/speaker_id/*/ --out "$reports/speaker_id.html" \
  --title "Speaker identification by transfer (demo budget)" --overwrite
.venv/bin/python recipes/demo/summary.py --exp "$exp" --reports "$reports" --seconds $(( $(date +%s) - start ))
