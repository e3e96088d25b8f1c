"""What every benchmark script shares: a description of the machine and writing a README section."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def host() -> str:
    """``"2 CPUs (2 usable, <model>), Linux <release>, Python 3.11.7"``."""
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{os.cpu_count()} CPUs ({affinity} usable, {cpu}), {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}")


def replace_section(readme: Path, start: str, end: str, text: str) -> None:
    """Replace what stands between the ``start`` and ``end`` markers of ``readme`` with ``text``."""
    content = readme.read_text(encoding="utf-8")
    if start not in content or end not in content:
        raise SystemExit(f"{readme}: markers {start} / {end} not found")
    head, rest = content.split(start, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(f"{head}{start}\n{text}\n{end}{tail}", encoding="utf-8")


def synthetic_manifest(name: str) -> Path:
    """``name`` as given, else under the working folder, else under the repository; an error with the command
    that makes the synthetic corpus when it is in none of them."""
    src = Path(name)
    if not src.is_absolute():
        repo = Path(__file__).resolve().parent.parent
        src = (Path.cwd() / src) if (Path.cwd() / src).is_file() else repo / src
    if not src.is_file():
        raise SystemExit(f"{name}: manifest not found. Create the synthetic corpus first: `make demo`, or "
                         f"`.venv/bin/speech-tl prepare synth-asr --lang de --out-dir manifests`")
    return src
