import pytest

from speech_tl.probe.recommend import recommend_depth


def test_shallowest_depth_close_to_the_best():
    # errors fall until depth 2, then stay flat: freezing deeper buys nothing
    assert recommend_depth([0.9, 0.5, 0.31, 0.30, 0.35]) == 2
    assert recommend_depth([0.9, 0.5, 0.31, 0.30, 0.35], tolerance=0.0) == 3
    assert recommend_depth([0.2, 0.3, 0.4]) == 0
    assert recommend_depth([0.5, 0.5]) == 0


def test_bad_arguments():
    with pytest.raises(ValueError, match="no probe errors"):
        recommend_depth([])
    with pytest.raises(ValueError, match="tolerance"):
        recommend_depth([0.1], tolerance=1.0)


def test_probe_markdown_puts_the_sweep_beside_the_probe():
    from speech_tl.probe.result import probe_markdown, probe_result

    layers = [{"depth": k, "cer": c, "wer": c + 0.3} for k, c in enumerate([0.9, 0.5, 0.31, 0.30, 0.35])]
    p = probe_result("asr", "x", "cer", layers, 0.1, 0.0, {})
    assert p["recommended_freeze_depth"] == 2 and p["best_depth"] == 3
    text = probe_markdown(p, {0: 0.37, 2: 0.125, 3: 0.131, 4: None}, "sweep CER")
    assert "| 2 (recommended) | 0.310 | 0.610 | 0.125 |" in text and "| 4 | 0.350 | 0.650 | - |" in text
    assert "the sweep's best froze 2 (agrees within one layer)" in text
    far = probe_markdown(p, {0: 0.1, 3: 0.2}, "sweep CER")
    assert "does NOT agree" in far


def test_a_flat_probe_curve_is_flagged():
    from speech_tl.probe.result import probe_result

    flat = probe_result("asr", "x", "cer", [{"depth": k, "cer": 1.0} for k in range(3)], 0.1, 0.0, {})
    assert flat["recommended_freeze_depth"] == 0 and "says little" in flat["note"]
    curve = probe_result("asr", "x", "cer", [{"depth": k, "cer": c} for k, c in enumerate([0.9, 0.3])], 0.1, 0.0, {})
    assert curve["note"] == ""
