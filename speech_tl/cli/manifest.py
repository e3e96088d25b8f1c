"""`speech-tl manifest ...`: inspect, check, filter, split and export manifests."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from . import UserError, check_outputs, main, overwrite_option, user_errors  # noqa: F401

# --------------------------------------------------------------------------- manifest

@main.group()
def manifest() -> None:
    """Inspect, check, filter and split manifests."""


manifest_arg = click.argument("manifest_path", metavar="MANIFEST", type=click.Path(path_type=Path))


@manifest.command("stats")
@click.argument("manifests", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.option("--max-speakers", type=int, default=20, show_default=True, help="Speakers listed in the text output.")
@user_errors
def manifest_stats_cmd(manifests, as_json, max_speakers):
    """Hours, utterances, speakers, per-speaker counts and the character inventory."""
    from ..manifest import format_stats, manifest_stats, read_manifest

    all_stats = {str(m): manifest_stats(read_manifest(m)) for m in manifests}
    if as_json:
        click.echo(json.dumps(all_stats, ensure_ascii=False, indent=1))
    else:
        click.echo("\n\n".join(format_stats(k, v, max_speakers) for k, v in all_stats.items()))


@manifest.command("validate")
@manifest_arg
@click.option("--check-audio", is_flag=True, help="Also decode every file and check it (silence, clipping, ...).")
@user_errors
def manifest_validate_cmd(manifest_path, check_audio):
    """Check every line; with --check-audio also every audio file. Exit 1 if anything is wrong."""
    from ..audio import AudioError, load_checked
    from ..manifest import check_audio_files, read_manifest

    utts = read_manifest(manifest_path)
    problems = [f"{u.id}: {msg}" for u, msg in check_audio_files(utts)]
    if check_audio and not problems:
        for u in utts:
            try:
                load_checked(u.audio_path(), offset=u.offset or 0.0,
                             duration=u.duration if u.offset is not None else None)
            except AudioError as e:
                problems.append(f"{u.id}: {e}")
    for p in problems:
        click.echo(p, err=True)
    click.echo(f"{manifest_path}: {len(utts)} utterances, {len(problems)} problem(s)")
    sys.exit(1 if problems else 0)


@manifest.command("filter")
@manifest_arg
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--min-duration", type=float, default=0.0, show_default=True)
@click.option("--max-duration", type=float, default=float("inf"))
@click.option("--vocab", default=None, help="Allowed characters (a string, or @FILE with one per line).")
@click.option("--max-per-speaker", type=int, default=None, help="Keep at most N utterances per speaker (seeded).")
@click.option("--seed", type=int, default=0, show_default=True)
@overwrite_option(help_text="Replace OUT and its .rejected.jsonl if they exist. OUT may never be MANIFEST itself.")
@user_errors
def manifest_filter_cmd(manifest_path, out, min_duration, max_duration, vocab, max_per_speaker, seed, overwrite):
    """Keep utterances within duration bounds and a character set; the rest go to OUT's .rejected.jsonl."""
    from ..manifest import (
        cap_per_speaker,
        filter_duration,
        filter_vocabulary,
        read_manifest,
        write_jsonl,
        write_manifest,
    )

    rej = out.with_name(out.stem + ".rejected.jsonl")
    vocab_file = Path(vocab[1:]) if vocab and vocab.startswith("@") else None
    check_outputs([out, rej], overwrite, inputs=[manifest_path, vocab_file])
    utts = read_manifest(manifest_path)
    kept, rejected = filter_duration(utts, min_duration, max_duration)
    if vocab:
        chars = Path(vocab[1:]).read_text(encoding="utf-8").splitlines() if vocab.startswith("@") else list(vocab)
        kept, bad = filter_vocabulary(kept, [c if c else " " for c in chars])
        rejected += bad
    if max_per_speaker is not None:
        kept, bad = cap_per_speaker(kept, max_per_speaker, seed)
        rejected += bad
    write_manifest(out, kept)
    write_jsonl(rej, ({**u.to_dict(), "reason": why} for u, why in rejected))
    click.echo(f"kept {len(kept)} -> {out}; rejected {len(rejected)} -> {rej}")


@manifest.command("merge")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@overwrite_option(help_text="Replace OUT if it exists (it may never be one of the INPUTS).")
@user_errors
def manifest_merge_cmd(inputs, out, overwrite):
    """Concatenate manifests into OUT (audio paths rebased onto OUT's folder); ids must be unique across them."""
    from ..manifest import ManifestError, read_manifest, write_manifest

    if out.resolve() in {p.resolve() for p in inputs}:
        raise ManifestError(f"--out {out} is one of the inputs; write the merge to a new file")
    check_outputs([out], overwrite)
    seen: dict[str, str] = {}
    utts = []
    for path in inputs:
        for u in read_manifest(path):
            where = f"{path}:{u.line}"
            if u.id in seen:
                raise ManifestError(f"{where}: id {u.id!r} is also in {seen[u.id]}; ids must be unique in the merge "
                                    "(prepare the corpora under different names)")
            seen[u.id] = where
            u.audio = str(u.audio_path().resolve())
            utts.append(u)
    n = write_manifest(out, utts)
    click.echo(f"merged {n} utterances from {len(inputs)} manifests -> {out}")


@manifest.command("split")
@manifest_arg
@click.option("--out-dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--by", type=click.Choice(["speaker", "text", "speaker+text"]), default="speaker", show_default=True)
@click.option("--fractions", default="train=0.8,dev=0.1,test=0.1", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@overwrite_option(help_text="Replace part files (and <stem>_split-rejected.jsonl) that exist in OUT_DIR, and remove "
                            "those an earlier split of <stem> wrote there that this one does not.")
@user_errors
def manifest_split_cmd(manifest_path, out_dir, by, fractions, seed, overwrite):
    """Seeded split into parts disjoint by speaker and/or text: writes <stem>_<part>.jsonl (and lists them in
    OUT_DIR/.<stem>_split.json)."""
    from ..atomic import atomic_write_text
    from ..manifest import read_manifest, split_manifest, write_jsonl, write_manifest

    try:
        fr = {k.strip(): float(v) for k, v in (p.split("=") for p in fractions.split(","))}
    except ValueError:
        raise UserError(f"--fractions {fractions!r}: expected name=share pairs, e.g. train=0.8,dev=0.1,test=0.1") \
            from None
    parts, rejected = split_manifest(read_manifest(manifest_path), fr, by, seed)
    stem = manifest_path.stem.removesuffix("_all")
    rej = out_dir / f"{stem}_split-rejected.jsonl"
    outputs = [out_dir / f"{stem}_{name}.jsonl" for name in parts] + ([rej] if rejected else [])
    check_outputs(outputs, overwrite, inputs=[manifest_path])
    record = out_dir / f".{stem}_split.json"
    written = [p.name for p in outputs]
    earlier = [n for n in _split_files(record, stem, manifest_path) if n not in written]
    if overwrite and rej.name not in written and rej.is_file() and rej.name not in earlier:
        earlier.append(rej.name)  # its name is this command's alone, listed or not
    listed = written + ([n for n in earlier if (out_dir / n).is_file()] if not overwrite else earlier)

    def write_record(names: list[str]) -> None:
        atomic_write_text(record, json.dumps({"manifest": str(manifest_path), "by": by, "fractions": fr, "seed": seed,
                                              "files": names}, ensure_ascii=False, indent=1) + "\n")

    write_record(listed)  # first: a kill part way leaves every file this split may have written listed
    for name, utts in parts.items():
        n = write_manifest(out_dir / f"{stem}_{name}.jsonl", utts)
        click.echo(f"{name:<8} {n:>7} utterances, {len({u.speaker for u in utts}):>5} speakers")
    if rejected:
        write_jsonl(rej, ({**u.to_dict(), "reason": why} for u, why in rejected))
        click.echo(f"not placed: {len(rejected)} utterances (speaker and text in different parts) -> {rej}")
    if overwrite:
        for n in earlier:  # an earlier split's files this one does not write
            if (out_dir / n).is_file():
                (out_dir / n).unlink()
                click.echo(f"removed {out_dir / n}: an earlier split's output this one does not write", err=True)
        write_record(written)


def _split_files(record: Path, stem: str, manifest_path: Path) -> list[str]:
    """The files an earlier split of ``stem`` listed in ``record``: only names of this command's scheme
    (``<stem>_*.jsonl`` directly in the folder), never the manifest being split."""
    try:
        names = json.loads(record.read_text(encoding="utf-8"))["files"]
        if not isinstance(names, list):
            raise TypeError(f"'files' is a {type(names).__name__}, not a list")
    except FileNotFoundError:
        return []
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"{record}: not a readable list of an earlier split's files ({e}); remove it (and that "
                        "split's part files, if they are not wanted) and run again") from None
    source = manifest_path.resolve()
    return [n for n in names if isinstance(n, str) and Path(n).name == n and n.startswith(f"{stem}_")
            and n.endswith(".jsonl") and (record.parent / n).resolve() != source]


@manifest.command("to-kaldi")
@manifest_arg
@click.argument("data_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--audio", type=click.Choice(["convert", "pipe", "path"]), default="convert", show_default=True,
              help="What wav.scp names for audio Kaldi cannot read itself at one rate (anything but mono "
                   "integer-PCM WAV at 16 kHz: MP3, FLAC, m4a, 8 kHz WAV, ...): convert = 16 kHz mono WAVs written "
                   "to DATA_DIR/wav/; pipe = an ffmpeg command decoding the file to the same (ffmpeg needed where "
                   "Kaldi reads it); path = the file as it is.")
@click.option("--workers", type=int, default=None, help="Processes converting audio (default: CPU cores, at most 8).")
@overwrite_option(help_text="Replace the tables of a Kaldi data dir already in DATA_DIR (stale text/segments "
                            "tables are removed) and, with --audio convert, the folder DATA_DIR/wav/ of WAVs converted "
                            "earlier (as a whole: WAVs no longer named go too).")
@user_errors
def manifest_to_kaldi_cmd(manifest_path, data_dir, audio, workers, overwrite):
    """Export a manifest as a Kaldi data dir (wav.scp, text, utt2spk, spk2utt, segments)."""
    import shutil

    from ..atomic import clean_leftovers
    from ..manifest import read_manifest
    from ..prepare import export_kaldi

    tables = [data_dir / t for t in ("wav.scp", "text", "utt2spk", "spk2utt", "segments")]
    for path in [*tables, data_dir / "wav"]:  # what a killed export left beside its tables and WAV folder
        clean_leftovers(path)
    check_outputs(tables, overwrite, inputs=[manifest_path], what="Kaldi table")
    if audio == "convert":
        check_outputs([data_dir / "wav"], overwrite, inputs=[manifest_path], what="folder of converted WAVs",
                      nested=True)
    utts = read_manifest(manifest_path)
    export_kaldi(utts, data_dir, audio=audio, workers=workers)
    values = [line.split(None, 1)[1] for line in (data_dir / "wav.scp").read_text(encoding="utf-8").splitlines()]
    wav_dir = str((data_dir / "wav").resolve()) + "/"
    converted = sum(v.startswith(wav_dir) for v in values)
    piped = sum(v.endswith("|") for v in values)
    how = (f"; {converted} file(s) converted to 16 kHz WAV in {data_dir / 'wav'}" if converted else "") + \
        (f"; {piped} file(s) decoded by ffmpeg pipes in wav.scp" if piped else "")
    click.echo(f"{len(utts)} utterances -> {data_dir}{how}")
    if audio != "convert" and not converted and (data_dir / "wav").is_dir():
        click.echo(f"note: {data_dir / 'wav'} is left as it was; wav.scp names nothing in it now (WAVs of an earlier "
                   "--audio convert export?): remove it if nothing needs it", err=True)
    if piped and shutil.which("ffmpeg") is None:
        click.echo("note: ffmpeg is not installed here; wav.scp's pipes need it wherever Kaldi reads the dir "
                   "(apt install ffmpeg)", err=True)


@manifest.command("to-nemo")
@manifest_arg
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@overwrite_option(help_text="Replace OUT if it exists (it may never be MANIFEST itself).")
@user_errors
def manifest_to_nemo_cmd(manifest_path, out, overwrite):
    """Export a manifest as a NeMo ASR manifest OUT (JSON Lines: audio_filepath, duration, text, offset, ...)."""
    from ..manifest import read_manifest
    from ..prepare.nemo import export_nemo

    check_outputs([out], overwrite, inputs=[manifest_path], what="NeMo manifest")
    utts = read_manifest(manifest_path)
    export_nemo(utts, out)
    click.echo(f"{len(utts)} utterances -> {out}")


@manifest.command("to-lhotse")
@manifest_arg
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@overwrite_option(help_text="Replace OUT if it exists (it may never be MANIFEST itself).")
@user_errors
def manifest_to_lhotse_cmd(manifest_path, out, overwrite):
    """Export a manifest as a lhotse CutSet OUT (.jsonl.gz or .jsonl): one cut and supervision per utterance."""
    from ..manifest import read_manifest
    from ..prepare.lhotse_io import export_lhotse

    if not out.name.endswith((".jsonl", ".jsonl.gz")):
        raise UserError(f"{out}: a lhotse CutSet is written as .jsonl.gz or .jsonl; name the output so")
    check_outputs([out], overwrite, inputs=[manifest_path], what="CutSet")
    n = export_lhotse(read_manifest(manifest_path), out)
    click.echo(f"{n} utterances -> {out}")
