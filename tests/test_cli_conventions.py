"""Conventions every `cvd` command shares: usage errors exit 2, one `--no-progress`, bars only on a
terminal, missing optional extras named in one line."""

from __future__ import annotations

import io
import sys

import pytest

from cvd import progress as console
from cvd.cli import build_parser, main
from cvd.errors import MissingExtraError
from cvd.extras import require_extra


def test_no_command_prints_help_and_exits_2_like_a_missing_action(capsys):
    assert main([]) == 2
    out = capsys.readouterr()
    assert out.out == "" and "usage: cvd" in out.err and "localize" in out.err
    assert main(["index"]) == 2
    out = capsys.readouterr()
    # the whole help, with the actions to choose from, not argparse's bare usage line
    assert out.out == "" and "usage: cvd index" in out.err
    assert all(action in out.err for action in ("build", "cut", "info"))
    assert "embed gallery tiles" in out.err


@pytest.mark.parametrize(
    "command",
    [
        ["fit", "--config", "x.yaml"],
        ["demo"],
        ["synth", "--out", "x"],
        ["index", "build", "--model", "m", "--tiles", "t.csv", "--out", "o"],
        ["index", "cut", "--map", "m.png", "--out", "o"],
    ],
)
def test_every_command_with_progress_bars_takes_no_progress(command):
    parser = build_parser()
    assert parser.parse_args(command).no_progress is False
    assert parser.parse_args([*command, "--no-progress"]).no_progress is True


def test_old_quiet_spelling_of_index_still_works_but_is_hidden(capsys):
    parser = build_parser()
    args = parser.parse_args(["index", "cut", "--map", "m.png", "--out", "o", "-q"])
    assert args.no_progress is True
    with pytest.raises(SystemExit):
        parser.parse_args(["index", "cut", "--help"])
    text = capsys.readouterr().out
    assert "--no-progress" in text and "--quiet" not in text


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bars_only_on_a_terminal_and_not_under_no_progress(monkeypatch):
    monkeypatch.setattr(sys, "stderr", _Terminal())
    assert console.progress_bar(range(3)).disable is False
    assert console.progress_bar(range(3), enabled=False).disable is True  # e.g. rank != 0
    previous = console.allow_progress(False)
    try:
        assert console.progress_bar(range(3)).disable is True
    finally:
        console.allow_progress(previous)
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # a pipe or a log file
    assert console.progress_bar(range(3)).disable is True


def test_main_restores_progress_after_a_no_progress_command(tmp_path):
    assert main(["synth", "--no-progress"]) == 2  # fails (no --out) after the flag was applied
    assert console.allow_progress(True) is True


def test_require_extra_names_the_extra_in_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # what a missing package looks like
    with pytest.raises(MissingExtraError) as error:
        require_extra("onnxruntime", "onnx", "running an .onnx model")
    message = str(error.value)
    assert message.startswith("running an .onnx model needs the onnx extra: pip install 'cvd[onnx]'")
    assert "\n" not in message
    assert require_extra("json", "none", "x") is sys.modules["json"]
