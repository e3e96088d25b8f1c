"""`speech-tl prepare ...`: corpus preparers and the offline synthetic corpora."""

from __future__ import annotations

from pathlib import Path

import click

from . import UserError, main, user_errors  # noqa: F401

# --------------------------------------------------------------------------- prepare

@main.group()
def prepare() -> None:
    """Write JSONL manifests for a corpus (or synthesise an offline one).

    \b
    Running a preparation again into the same --out-dir:
    - same parameters, manifests there: reused as they are, and said so (--force redoes it);
    - other parameters: refused, naming the manifests it would replace, unless --overwrite (or --force).
    """


out_dir_opt = click.option("--out-dir", required=True, type=click.Path(file_okay=False, path_type=Path),
                           help="Folder for the manifests.")
workers_opt = click.option("--workers", type=int, default=None, help="Processes (default: CPU cores, at most 8).")
force_opt = click.option("--force", is_flag=True,
                         help="Redo the preparation even when its outputs are up to date, replacing them.")


def overwrite_opt(fn):
    """``--overwrite`` beside ``--force``: a preparation whose manifests are up to date (a done-marker with the same
    parameters) is skipped; one whose manifests were made with other parameters is refused unless --overwrite
    (or --force) is given."""
    return click.option("--overwrite", is_flag=True,
                        help="Replace manifests this corpus got earlier in OUT_DIR with other parameters (without "
                             "it such a run is refused; a re-run with the same parameters is skipped either "
                             "way).")(force_opt(fn))


corpus_arg = click.argument("corpus_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))


def _report(result) -> None:
    click.echo(result.summary())


@prepare.command("commonvoice")
@corpus_arg
@out_dir_opt
@click.option("--lang", default="de", show_default=True, help="Language code of this Common Voice folder.")
@click.option("--use-validated", is_flag=True, help="Train on validated.tsv minus dev/test clips and speakers.")
@click.option("--validated-split", type=click.Choice(["train", "dev", "test"]), default="train", show_default=True,
              help="With --use-validated: the split validated.tsv becomes (dev or test: a sample kept for evaluation, "
                   "e.g. ../shared/data/commonvoice/de).")
@workers_opt
@overwrite_opt
@user_errors
def prepare_commonvoice_cmd(corpus_dir, out_dir, lang, use_validated, validated_split, workers, force, overwrite):
    """Common Voice: CORPUS_DIR holds train.tsv, dev.tsv, test.tsv and clips/."""
    from ..prepare import prepare_commonvoice

    _report(prepare_commonvoice(corpus_dir, out_dir, lang, use_validated, workers, force,
                                validated_split=validated_split, overwrite=overwrite))


@prepare.command("librispeech")
@corpus_arg
@out_dir_opt
@workers_opt
@overwrite_opt
@user_errors
def prepare_librispeech_cmd(corpus_dir, out_dir, workers, force, overwrite):
    """LibriSpeech: one subset folder, or a folder of subsets."""
    from ..prepare import prepare_librispeech

    _report(prepare_librispeech(corpus_dir, out_dir, workers, force, overwrite=overwrite))


@prepare.command("voxceleb")
@corpus_arg
@out_dir_opt
@click.option("--split-file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="VoxCeleb1 iden_split.txt (default: CORPUS_DIR/iden_split.txt if present).")
@workers_opt
@overwrite_opt
@user_errors
def prepare_voxceleb_cmd(corpus_dir, out_dir, split_file, workers, force, overwrite):
    """VoxCeleb: wav/idNNNNN/<video>/<utt>.wav."""
    from ..prepare import prepare_voxceleb

    _report(prepare_voxceleb(corpus_dir, out_dir, split_file, workers, force, overwrite=overwrite))


@prepare.command("mailabs")
@corpus_arg
@out_dir_opt
@click.option("--lang", default="de", show_default=True)
@workers_opt
@overwrite_opt
@user_errors
def prepare_mailabs_cmd(corpus_dir, out_dir, lang, workers, force, overwrite):
    """M-AILABS: by_book/<female|male|mix>/<speaker>/<book>/metadata.csv + wavs/."""
    from ..prepare import prepare_mailabs

    _report(prepare_mailabs(corpus_dir, out_dir, lang, workers, force, overwrite=overwrite))


@prepare.command("folder")
@corpus_arg
@out_dir_opt
@click.option("--lang", default="und", show_default=True, help="Language code written into the manifest.")
@click.option("--name", default="folder", show_default=True, help="Corpus name used in the manifest file names.")
@click.option("--speaker-level", type=int, default=1, show_default=True,
              help="Folder level naming the speaker (1 = the file's parent folder, 0 = one speaker per file).")
@click.option("--speaker-regex", default=None, help="Take the speaker from the file name: first group of this regex.")
@click.option("--no-text", is_flag=True, help="Transcripts are optional (speaker corpora).")
@workers_opt
@overwrite_opt
@user_errors
def prepare_folder_cmd(corpus_dir, out_dir, lang, name, speaker_level, speaker_regex, no_text, workers, force,
                       overwrite):
    """A folder of audio files with same-name .txt transcripts."""
    from ..prepare import prepare_folder

    _report(prepare_folder(corpus_dir, out_dir, lang, name, speaker_level, speaker_regex, not no_text, workers,
                           force, overwrite=overwrite))


@prepare.command("kaldi")
@corpus_arg
@out_dir_opt
@click.option("--lang", default="und", show_default=True)
@click.option("--name", default="kaldi", show_default=True, help="Corpus name used in the manifest file names.")
@workers_opt
@overwrite_opt
@user_errors
def prepare_kaldi_cmd(corpus_dir, out_dir, lang, name, workers, force, overwrite):
    """A Kaldi data dir: wav.scp, text, utt2spk (+ segments)."""
    from ..prepare import prepare_kaldi

    _report(prepare_kaldi(corpus_dir, out_dir, lang, name, workers, force, overwrite=overwrite))


@prepare.command("lhotse")
@click.argument("cuts", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--recordings", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="A lhotse RecordingSet file (with --supervisions, instead of CUTS).")
@click.option("--supervisions", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="A lhotse SupervisionSet file (with --recordings, instead of CUTS).")
@out_dir_opt
@click.option("--lang", default="und", show_default=True, help="Language of supervisions that name none.")
@click.option("--name", default="lhotse", show_default=True, help="Corpus name used in the manifest file names.")
@workers_opt
@overwrite_opt
@user_errors
def prepare_lhotse_cmd(cuts, recordings, supervisions, out_dir, lang, name, workers, force, overwrite):
    """A lhotse CutSet file CUTS (or --recordings with --supervisions): one utterance per supervision segment."""
    from ..prepare.lhotse_io import prepare_lhotse

    _report(prepare_lhotse(cuts, out_dir, lang, name, workers, force, overwrite=overwrite, recordings=recordings,
                           supervisions=supervisions))


@prepare.command("nemo")
@click.argument("manifest", type=click.Path(dir_okay=False, path_type=Path))
@out_dir_opt
@click.option("--lang", default="und", show_default=True, help="Language of lines that name none (lang/language).")
@click.option("--name", default="nemo", show_default=True, help="Corpus name used in the manifest file names.")
@workers_opt
@overwrite_opt
@user_errors
def prepare_nemo_cmd(manifest, out_dir, lang, name, workers, force, overwrite):
    """A NeMo ASR manifest MANIFEST (JSON Lines: audio_filepath, duration, text, offset, speaker)."""
    from ..prepare.nemo import prepare_nemo

    _report(prepare_nemo(manifest, out_dir, lang, name, workers, force, overwrite=overwrite))


@prepare.command("hf-datasets")
@click.argument("dataset_dir", metavar="DIR", type=click.Path(file_okay=False, path_type=Path))
@out_dir_opt
@click.option("--lang", default="und", show_default=True, help="Language of rows that name none (language/locale).")
@click.option("--name", default="hf", show_default=True, help="Corpus name used in the manifest file names.")
@click.option("--config", default=None, help="The configuration to read, for a Parquet folder whose dataset card "
                                             "lists several.")
@click.option("--audio-column", default=None, help="Column holding the audio (default: the Audio feature).")
@click.option("--text-column", default=None,
              help="Column holding the transcript (default: text, sentence, transcription, normalized_text, ...).")
@click.option("--speaker-column", default=None, help="Column naming the speaker (default: speaker_id, client_id, "
                                                     "speaker; else the utterance id).")
@click.option("--id-column", default=None, help="Column holding the utterance id (default: id, utterance_id, ...; "
                                                "else the audio file's stem).")
@workers_opt
@overwrite_opt
@user_errors
def prepare_hf_datasets_cmd(dataset_dir, out_dir, lang, name, config, audio_column, text_column, speaker_column,
                            id_column, workers, force, overwrite):
    """A Hugging Face datasets folder DIR: what save_to_disk wrote, or a folder of Parquet files (as on the hub)
    with an audio column. One manifest per split; embedded audio is written under OUT_DIR/<name>_<lang>_audio/."""
    from ..prepare.hf_datasets import prepare_hf_datasets

    _report(prepare_hf_datasets(dataset_dir, out_dir, lang, name, workers, force, overwrite=overwrite, config=config,
                                audio_column=audio_column, text_column=text_column, speaker_column=speaker_column,
                                id_column=id_column))


@prepare.command("speechbrain-csv")
@click.argument("csv_file", metavar="FILE.csv", type=click.Path(dir_okay=False, path_type=Path))
@out_dir_opt
@click.option("--data-root", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The folder $data_root (or $data_folder, $root) stands for in the audio paths.")
@click.option("--segment-unit", type=click.Choice(["samples", "seconds"]), default="samples", show_default=True,
              help="Unit of the start/stop columns (SpeechBrain's read_audio takes samples).")
@click.option("--lang", default="und", show_default=True, help="Language of rows that name none.")
@click.option("--name", default="speechbrain", show_default=True, help="Corpus name used in the manifest file names.")
@workers_opt
@overwrite_opt
@user_errors
def prepare_speechbrain_csv_cmd(csv_file, out_dir, data_root, segment_unit, lang, name, workers, force, overwrite):
    """A SpeechBrain CSV data manifest (ID, duration, wav, spk_id, wrd; optional start/stop)."""
    from ..prepare.speechbrain_csv import prepare_speechbrain_csv

    _report(prepare_speechbrain_csv(csv_file, out_dir, lang, name, data_root, segment_unit, workers, force,
                                    overwrite=overwrite))


@prepare.command("synth-asr")
@out_dir_opt
@click.option("--lang", default="de", show_default=True)
@click.option("--num-utterances", type=int, default=3000, show_default=True)
@click.option("--sentences", type=click.Path(exists=True, dir_okay=False), default=None,
              help="One sentence per line (default: sentences of Debian's trans-de-en in --lang, de or en).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--channel", type=click.Choice(["clean", "realistic", "phone"]), default="clean", show_default=True,
              help="realistic: each training and dev utterance through a simulated recording channel (room, noise, "
                   "microphone, level, MP3/Opus coding); phone: through a phone call at 8 kHz (noise, band, level, "
                   "AMR-NB/GSM/G.711/Opus/Speex, packet loss); the test set stays clean.")
@click.option("--voices", type=click.Choice(["few", "many"]), default="few", show_default=True,
              help="many: train on MBROLA, pico and ~50 espeak-ng speaker variants instead of 7 voices.")
@click.option("--name", default="synth-asr", show_default=True,
              help="Corpus name: manifests <name>_<lang>_*.jsonl, audio under OUT_DIR/<name>/.")
@workers_opt
@overwrite_opt
@user_errors
def prepare_synth_asr_cmd(out_dir, lang, num_utterances, sentences, seed, channel, voices, name, workers, force,
                          overwrite):
    """Offline German ASR corpus spoken by espeak-ng, MBROLA and pico voices."""
    from ..prepare import prepare_synth_asr

    _report(prepare_synth_asr(out_dir, lang, num_utterances, sentences, seed, workers, force, channel=channel,
                              voices=voices, name=name, overwrite=overwrite))


@prepare.command("synth-speakers")
@out_dir_opt
@click.option("--utterances-per-speaker", type=int, default=24, show_default=True)
@click.option("--num-test-speakers", type=int, default=20, show_default=True)
@click.option("--num-dev-speakers", type=int, default=10, show_default=True)
@click.option("--max-speakers", type=int, default=None, help="Use at most this many voices (quick runs).")
@click.option("--seed", type=int, default=0, show_default=True)
@workers_opt
@overwrite_opt
@user_errors
def prepare_synth_speakers_cmd(out_dir, utterances_per_speaker, num_test_speakers, num_dev_speakers, max_speakers,
                               seed, workers, force, overwrite):
    """Offline speaker-ID corpus from MBROLA, pico and espeak-ng voices, with augmentation."""
    from ..prepare import prepare_synth_speakers

    _report(prepare_synth_speakers(out_dir, utterances_per_speaker, num_test_speakers, num_dev_speakers, seed,
                                   workers, force, max_speakers, overwrite=overwrite))


@prepare.command("synth-crosslingual")
@out_dir_opt
@click.option("--utterances-per-language", type=int, default=12, show_default=True)
@click.option("--num-test-speakers", type=int, default=8, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@workers_opt
@overwrite_opt
@user_errors
def prepare_synth_crosslingual_cmd(out_dir, utterances_per_language, num_test_speakers, seed, workers, force,
                                   overwrite):
    """Cross-language speaker corpus: each espeak-ng voice variant reads English and German texts.

    Also writes synth-xlang_mul_test_trials.txt: English enrolment against German test utterances.
    """
    from ..prepare import prepare_synth_crosslingual

    _report(prepare_synth_crosslingual(out_dir, utterances_per_language, num_test_speakers, seed, workers, force,
                                       overwrite=overwrite))


@prepare.command("channel")
@click.argument("manifest", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--channel", "kind", type=click.Choice(["phone"]), default="phone", show_default=True,
              help="phone: 8 kHz telephone calls (talker noise or babble, handset band, level and clipping, a real "
                   "AMR-NB / GSM / G.711 / Opus / Speex round trip, packet loss), one draw per utterance.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The twin manifest (…jsonl); its audio goes to <out stem>_audio/.")
@click.option("--seed", type=int, default=0, show_default=True, help="The same seed gives the same draws and audio.")
@click.option("--codec", type=click.Choice(["amr-nb", "gsm", "mulaw", "alaw", "opus", "speex"]), default=None,
              help="Every call through this codec (at a drawn bit rate) instead of the usual mix.")
@click.option("--babble", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Take babble talkers from this manifest (default: the other utterances of MANIFEST).")
@click.option("--babble-language", type=click.Choice(["same", "any"]), default="same", show_default=True,
              help="same: babble talkers speak the caller's language (where the pool has 4+ utterances of it); "
                   "any: from the whole pool.")
@click.option("--max-utterances", type=int, default=None,
              help="The twin of a seeded sample of this many utterances (default: all).")
@workers_opt
@overwrite_opt
@user_errors
def prepare_channel_cmd(manifest, kind, out, seed, codec, babble, babble_language, max_utterances, workers, force,
                        overwrite):
    """The telephone twin of MANIFEST (real or synthetic, any language): the same utterances, through phone calls."""
    from ..prepare.channel_twin import prepare_channel_twin

    _report(prepare_channel_twin(manifest, out, kind, seed, codec, babble, workers, force, overwrite,
                                 max_utterances, babble_language))


@prepare.command("pack")
@click.argument("manifest", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The packed manifest (…jsonl); its audio goes to <out stem>_audio/.")
@click.option("--min-seconds", type=float, default=5.0, show_default=True, help="Shortest window drawn.")
@click.option("--max-seconds", type=float, default=28.0, show_default=True, help="Longest window drawn (at most 30).")
@click.option("--seed", type=int, default=0, show_default=True)
@workers_opt
@overwrite_opt
@user_errors
def prepare_pack_cmd(manifest, out, min_seconds, max_seconds, seed, workers, force, overwrite):
    """Pack utterances of one language and domain into Whisper windows (several per 30 s encoder pass)."""
    from ..prepare.pack import prepare_pack

    _report(prepare_pack(manifest, out, min_seconds, max_seconds, seed, workers, force, overwrite))
