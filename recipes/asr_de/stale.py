"""Is a stage-9 output still of the data it names? ``stale.py run RUN`` (a training run folder: its training
manifest, by the SHA-1 its ``summary.json`` records) or ``stale.py result FILE`` (an ``evaluate asr`` result: its
manifest, by the SHA-1 it records). Exit 0: up to date, or made before outputs recorded the digest (said, and
reused as it is); 3: the manifest was prepared again since (said: the caller trains or evaluates again); any other
status is an error the caller stops on (a missing or unreadable file)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

from speech_tl.digest import file_sha1

CHANGED = 3


def main() -> int:
    kind, path = sys.argv[1], Path(sys.argv[2])
    if kind == "run":
        recorded = json.loads((path / "summary.json").read_text(encoding="utf-8")).get("train_manifest_sha1")
        manifest = Path(yaml.safe_load((path / "config.yaml").read_text(encoding="utf-8"))["data"]["train"])
        what = f"{path.name}: its training manifest {manifest}"
    elif kind == "result":
        result = json.loads(path.read_text(encoding="utf-8"))
        recorded, manifest = result.get("manifest_sha1"), Path(result["manifest"])
        what = f"{path}: its manifest {manifest}"
    else:
        print(f"stale.py: the first argument is run or result, got {kind!r}", file=sys.stderr)
        return 2
    if recorded is None:
        print(f"{what}: made before outputs recorded their manifest's SHA-1; reused as it is")
        return 0
    if not manifest.is_file() or file_sha1(manifest) != recorded:
        print(f"{what} changed since (prepared again): made again")
        return CHANGED
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (OSError, ValueError, KeyError, TypeError, IndexError) as e:  # a missing or unreadable output: say which
        print(f"stale.py {' '.join(sys.argv[1:])}: cannot tell ({type(e).__name__}: {e}); usage: stale.py run RUN | "
              "stale.py result FILE", file=sys.stderr)
        sys.exit(2)
