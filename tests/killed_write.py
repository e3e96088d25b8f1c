"""What a process SIGKILLed while writing an output through :mod:`speech_tl.atomic` leaves beside it: made by a
real process that is killed there, for the tests of the commands that must clean it up on their next run."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

SCRIPT = """
import os, signal, sys
from pathlib import Path
from speech_tl.atomic import atomic_path, replace_dir, temporary_dir_beside

path, how = Path(sys.argv[1]), sys.argv[2]
if how == "file":  # killed inside atomic_path, the temporary file half written
    with atomic_path(path) as tmp:
        tmp.write_text("half written")
        os.kill(os.getpid(), signal.SIGKILL)
new = temporary_dir_beside(path)
(new / "half written").write_text("new")
if how == "dir":  # killed while filling the folder that would replace path
    os.kill(os.getpid(), signal.SIGKILL)
real, calls = os.replace, []

def replace(src, dst):  # killed inside replace_dir: path moved away, the new folder not yet in its place
    calls.append(dst)
    if len(calls) == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    real(src, dst)

os.replace = replace
replace_dir(new, path)
"""


def killed_while_writing(path: Path, how: str = "file") -> list[Path]:
    """Run a process that writes ``path`` and SIGKILL it there: ``file`` inside ``atomic_path``, ``dir`` while
    filling a ``temporary_dir_beside`` folder, ``swap`` inside ``replace_dir`` (``path``, a folder, moved away).
    Returns the hidden entries it left beside ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    before = set(path.parent.iterdir())
    res = subprocess.run([sys.executable, "-c", SCRIPT, str(path), how], capture_output=True, text=True)
    assert res.returncode == -signal.SIGKILL, res.stderr
    left = sorted(set(path.parent.iterdir()) - before)
    assert left and all(p.name.startswith(f".{path.name}.") for p in left), left
    return left
