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
