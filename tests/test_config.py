"""Typed config from YAML with dotted overrides; every mistake is named."""

from __future__ import annotations

import pytest

from speech_tl.asr.task import AsrConfig
from speech_tl.config import ConfigError, dump_config, load_config


def write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_yaml_and_overrides(tmp_path):
    p = write(tmp_path, "out_dir: exp/x\ndata:\n  train: t.jsonl\ntrain:\n  max_minutes: 3\n")
    cfg = load_config(AsrConfig, p, ["train.lr=3e-4", "freeze.bottom_layers=1", "model.pretrained=false",
                                     "data.speed_perturb=[0.9, 1.0, 1.1]", "train.max_steps=null"])
    assert cfg.train.lr == pytest.approx(3e-4) and isinstance(cfg.train.lr, float)
    assert cfg.freeze.bottom_layers == 1 and cfg.model.pretrained is False
    assert cfg.data.speed_perturb == [0.9, 1.0, 1.1] and cfg.train.max_steps is None
    assert cfg.train.max_minutes == 3.0 and cfg.out_dir == "exp/x"
    dump_config(cfg, tmp_path / "resolved.yaml")
    again = load_config(AsrConfig, tmp_path / "resolved.yaml")
    assert again == cfg


@pytest.mark.parametrize("text, overrides, message", [
    ("data:\n  train: t\n", ["train.learning_rate=1"], r"train\.learning_rate: no such key; allowed here: .*lr"),
    ("data:\n  train: t\n  bogus: 1\n", [], r"data\.bogus: no such key"),
    ("data:\n  train: t\n", ["train.max_steps=ten"], r"train\.max_steps: expected int or null, got .ten."),
    ("data:\n  train: t\n", ["model.pretrained=maybe"], r"model\.pretrained: expected true or false"),
    ("data:\n  train: t\n", ["train.amp=fp8"], r"train\.amp='fp8': allowed auto, bf16, fp16, off"),
    ("data: {}\n", [], r"data\.train: required"),
    ("- a\n- b\n", [], "expected a mapping"),
    ("data: [1\n", [], "not valid YAML"),
    ("data:\n  train: t\ntrain:\n  max_minutes: null\n", [], "give at least one limit"),
    ("data:\n  train: t\n", ["freeze.bottom_layers"], "expected key=value"),
])
def test_mistakes_are_named(tmp_path, text, overrides, message):
    with pytest.raises(ConfigError, match=message) as err:
        load_config(AsrConfig, write(tmp_path, text), overrides)
    if not any("=" not in o for o in overrides):  # a malformed override is not the file's fault
        assert str(tmp_path / "c.yaml") in str(err.value)


def test_yaml_never_builds_objects(tmp_path):
    p = write(tmp_path, "out_dir: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(AsrConfig, p)


def test_off_and_no_stay_strings(tmp_path):
    p = write(tmp_path, "data:\n  train: t\ntrain:\n  prefix_cache: off\n  max_epochs: 1\n")
    assert load_config(AsrConfig, p).train.prefix_cache == "off"
    assert load_config(AsrConfig, p, ["train.prefix_cache=off", "train.resume=false"]).train.resume is False


def test_a_key_given_twice_is_refused_with_its_lines(tmp_path):
    p = write(tmp_path, "data:\n  train: a.jsonl\ntrain:\n  lr: 0.001\n  max_steps: 5\n  lr: 0.1\n")
    with pytest.raises(ConfigError, match=r"c\.yaml:6: not valid YAML: key .lr. given twice \(first on line 4\)"):
        load_config(AsrConfig, p)


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_non_finite_numbers_are_refused(tmp_path, value):
    p = write(tmp_path, "data:\n  train: t\ntrain:\n  max_steps: 5\n")
    with pytest.raises(ConfigError, match="train.lr: expected a finite number"):
        load_config(AsrConfig, p, [f"train.lr={value}"])
    with pytest.raises(ConfigError, match="expected a finite number"):
        load_config(AsrConfig, write(tmp_path, f"data:\n  train: t\ntrain:\n  max_steps: 5\n  lr: {value}\n"))
