"""Where GE2E's weights come from without the resemblyzer package: the user cache, filled by ``fetch`` (offline here:
pip's download is replaced by a wheel built in tmp_path)."""

from __future__ import annotations

import importlib.util
import subprocess
import zipfile
from pathlib import Path

import pytest

from speech_tl.backbones import ge2e, load_backbone
from speech_tl.backbones.ge2e import FETCH_COMMAND, WeightsMissing


def hide_package(monkeypatch, tmp_path) -> Path:
    """No resemblyzer package importable, an empty cache in tmp_path; returns where ``fetch`` writes."""
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "resemblyzer" else real(name, *a))
    monkeypatch.setenv("SPEECH_TL_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "ge2e" / "resemblyzer-0.1.4-pretrained.pt"


@pytest.fixture
def no_package(monkeypatch, tmp_path):
    return hide_package(monkeypatch, tmp_path)


def fake_pip(monkeypatch, payload: bytes, calls: list):
    """``pip download`` writing a resemblyzer wheel whose pretrained.pt is ``payload``."""

    def run(cmd, **kw):
        calls.append(cmd)
        dest = Path(cmd[cmd.index("--dest") + 1])
        with zipfile.ZipFile(dest / "Resemblyzer-0.1.4-py3-none-any.whl", "w") as z:
            z.writestr("resemblyzer/pretrained.pt", payload)
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(ge2e.subprocess, "run", run)


def test_cache_location_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("SPEECH_TL_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert ge2e.cache_dir() == tmp_path / "xdg" / "speech-tl"
    monkeypatch.setenv("SPEECH_TL_CACHE", str(tmp_path / "mine"))
    assert ge2e.cached_weights_path() == tmp_path / "mine" / "ge2e" / "resemblyzer-0.1.4-pretrained.pt"


def test_missing_weights_name_the_fetch_command(no_package):
    with pytest.raises(WeightsMissing, match="python -m speech_tl.backbones.ge2e fetch") as err:
        load_backbone("ge2e:resemblyzer")
    assert str(no_package) in str(err.value)
    assert load_backbone("ge2e:resemblyzer", pretrained=False).output_dim == 256  # no weights needed
    assert ge2e.main(["where"]) == 1


def test_fetch_keeps_only_checked_weights(no_package, monkeypatch):
    calls = []
    fake_pip(monkeypatch, b"not the weights", calls)
    with pytest.raises(ge2e.BackboneError, match="not the expected file"):
        ge2e.fetch_resemblyzer_weights()
    assert not no_package.exists() and not no_package.with_name(no_package.name + ".part").exists()
    assert calls[0][1:4] == ["-m", "pip", "download"] and "--no-deps" in calls[0]
    assert calls[0][-1] == "resemblyzer==0.1.4"
    assert FETCH_COMMAND == "python -m speech_tl.backbones.ge2e fetch"


def test_fetch_then_load(monkeypatch, tmp_path):
    try:
        payload = ge2e.resemblyzer_weights().read_bytes()  # the real weights, served as the fake download
    except WeightsMissing:
        pytest.skip(f"GE2E's weights are not here to serve as the fake download: `{FETCH_COMMAND}`")
    target = hide_package(monkeypatch, tmp_path)
    calls = []
    fake_pip(monkeypatch, payload, calls)
    assert ge2e.main(["fetch"]) == 0 and target.is_file() and len(calls) == 1
    assert ge2e.fetch_resemblyzer_weights() == target and len(calls) == 1  # already there: no second download
    assert ge2e.resemblyzer_weights() == target and ge2e.main(["where"]) == 0
    backbone = load_backbone("ge2e:resemblyzer")
    assert backbone.layers[0].weight_ih_l0.abs().sum() > 0
