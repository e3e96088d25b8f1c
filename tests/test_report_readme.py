import pytest

from speech_tl.report.readme import update_readme


def test_blocks_are_replaced_and_missing_markers_named(tmp_path):
    p = tmp_path / "README.md"
    p.write_text("intro\n<!-- a:start -->\nold\n<!-- a:end -->\nmid\n<!-- b:start -->\nkeep\n<!-- b:end -->\n")
    update_readme(p, {"a": "| new |", "b": None})
    assert p.read_text() == ("intro\n<!-- a:start -->\n| new |\n<!-- a:end -->\nmid\n<!-- b:start -->\nkeep\n"
                             "<!-- b:end -->\n")
    before = p.read_text()
    with pytest.raises(ValueError, match=r"README.md: no <!-- c:start -->"):
        update_readme(p, {"a": "x", "c": "y"})
    assert p.read_text() == before  # all or nothing
