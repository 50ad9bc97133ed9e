"""The command line answers in one or two lines: exit 0, 2 for usage errors, 1 for failures."""

from __future__ import annotations

import argparse
import importlib.metadata
import io
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import dense_xp
from dense_xp import __main__ as cli
from dense_xp import _backend

ROOT = Path(__file__).resolve().parents[1]
NO_CUDA = _backend.cuda_unusable_reason(0) is not None


@pytest.fixture(autouse=True)
def _as_module(monkeypatch):
    """Run as ``python -m dense_xp`` with no device set, whatever pytest was started as."""
    monkeypatch.setattr(sys, "argv", [str(ROOT / "dense_xp" / "__main__.py")])
    monkeypatch.delenv(_backend.ENV_VAR, raising=False)


def _subparsers(parser):
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return action.choices


def _lines(text):
    return text.strip().splitlines()


def test_every_option_has_help_text():
    parser = cli.build_parser()
    parsers = {"": parser, **_subparsers(parser)}
    assert set(parsers) == {"", "info", "demo"}
    for name, p in parsers.items():
        for action in p._actions:
            assert action.help, (name, action.dest)
            assert action.help != argparse.SUPPRESS, (name, action.dest)
    assert {a.dest for a in parsers["demo"]._actions} >= {"device", "epochs", "seed", "dtype", "save"}


@pytest.mark.parametrize("argv", [["--help"], ["info", "--help"], ["demo", "--help"]])
def test_help_is_plain_text_and_shows_the_program(capsys, argv):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: python -m dense_xp {argv[0] if len(argv) == 2 else ''}".rstrip())
    assert "`" not in out
    assert ":func:" not in out


def test_the_script_shows_its_own_name(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/venv/bin/dense-xp", "--help"])
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert capsys.readouterr().out.startswith("usage: dense-xp [-h] [--version] {info,demo}")


@pytest.mark.parametrize("argv0", ["dense-xp", str(ROOT / "dense_xp" / "__main__.py")])
def test_version_names_the_distribution_whatever_the_program(capsys, monkeypatch, argv0):
    monkeypatch.setattr(sys, "argv", [argv0])
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"dense-xp {dense_xp.__version__}\n"


def test_version_of_python_m_is_the_name_pip_shows():
    result = _run("--version")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == f"dense-xp {dense_xp.__version__}\n"
    assert importlib.metadata.metadata("dense_xp")["Name"] == cli.DISTRIBUTION  # as `pip show` names it


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "error: the following arguments are required: {info,demo}"),
        (["train"], "error: argument {info,demo}: invalid choice: 'train'"),
        (["demo", "--device", "gpu"], 'demo: error: argument --device: must be "cpu", "cuda", "cuda:N" or'),
        (["demo", "--epochs", "0"], "demo: error: argument --epochs: must be an integer >= 1, got '0'"),
        (["demo", "--seed", "-1"], "demo: error: argument --seed: must be an integer >= 0, got '-1'"),
        (
            ["demo", "--save", "no/such/dir/m.npz"],
            "demo: error: argument --save: the directory 'no/such/dir'",
        ),
        (["demo", "--save", "m.png"], "demo: error: argument --save: the learning curves go to 'm.png'"),
        (
            ["demo", "--save", "out.txt"],
            "demo: error: argument --save: must name a .npz file, since the checkpoint is a .npz archive, "
            "got 'out.txt'; use 'out.npz'",
        ),
        (["demo", "--save", "m.h5"], "demo: error: argument --save: must name a .npz file, "),
        (["demo", "--save", "model"], "got 'model'; use 'model.npz'"),
    ],
)
def test_usage_errors_answer_in_two_lines_with_exit_2(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    first, second = _lines(captured.err)
    assert first.startswith("python -m dense_xp")
    assert message in first
    assert second.startswith("Try 'python -m dense_xp")
    assert second.endswith(" --help'.")


def test_a_bad_environment_device_is_a_usage_error_of_the_demo(capsys, monkeypatch):
    monkeypatch.setenv(_backend.ENV_VAR, "bogus")
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["demo"])
    assert exit_info.value.code == 2
    first, _ = _lines(capsys.readouterr().err)
    assert first.startswith("python -m dense_xp demo: error: `DENSE_XP_DEVICE` must be")
    assert first.endswith("got 'bogus'")


def test_info_reports_a_bad_environment_device_then_exits_2(capsys, monkeypatch):
    monkeypatch.setenv(_backend.ENV_VAR, "bogus")
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["info"])
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    lines = _lines(captured.out)
    assert lines[0].startswith("numpy ")  # the whole report first
    assert any(line.startswith("cupy ") for line in lines)
    assert "DENSE_XP_DEVICE" in lines[-1]
    assert "'bogus'" in lines[-1]
    first, second = _lines(captured.err)
    assert first == (
        "python -m dense_xp info: error: `DENSE_XP_DEVICE` must be "
        '"cpu", "cuda", "cuda:N" or "auto", got \'bogus\''
    )
    assert second == "Try 'python -m dense_xp info --help'."


def test_info_with_a_good_environment_device_exits_0(capsys, monkeypatch):
    monkeypatch.setenv(_backend.ENV_VAR, "cpu")
    assert cli.main(["info"]) == 0
    captured = capsys.readouterr()
    assert _lines(captured.out)[-1] == "default device request 'cpu' -> numpy on 'cpu'"
    assert captured.err == ""


@pytest.mark.skipif(not NO_CUDA, reason="CUDA works here: the error cannot happen")
def test_demo_on_missing_cuda_fails_in_one_line_with_the_public_name(capsys):
    assert cli.main(["demo", "--device", "cuda"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = _lines(captured.err)
    assert line.startswith("python -m dense_xp: error: dense_xp.DeviceUnavailableError: device 'cuda'")
    assert line.endswith("; or pass --device auto to fall back to the CPU.")  # an option, not Python
    assert 'device="auto"' not in line


@pytest.mark.skipif(not NO_CUDA, reason="CUDA works here: the error cannot happen")
def test_demo_on_missing_cuda_from_the_environment_says_where_the_request_came_from(capsys, monkeypatch):
    monkeypatch.setenv(_backend.ENV_VAR, "cuda:0")
    assert cli.main(["demo"]) == 1
    (line,) = _lines(capsys.readouterr().err)
    assert "device 'cuda:0' (requested by DENSE_XP_DEVICE='cuda:0') is unavailable: " in line
    assert line.endswith("; or pass --device auto to fall back to the CPU.")


def test_demo_compute_dtype_reaches_the_model(capsys, monkeypatch, tmp_path):
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    seen = {}

    def train(**kwargs):
        seen.update(kwargs)

    monkeypatch.setattr("dense_xp.demo.train_digits", train)
    argv = ["demo", "--device", "cpu", "--compute-dtype", "float16", "--save", str(tmp_path / "m.npz")]
    assert cli.main(argv) == 0
    assert (seen["dtype"], seen["compute_dtype"]) == ("float32", "float16")
    assert capsys.readouterr().out.startswith(
        f"dense_xp {dense_xp.__version__} demo: a 64-128-10 MLP on scikit-learn's digits, "
        "float32 (computing in float16)"
    )


def test_demo_without_scikit_learn_says_what_to_install(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    assert cli.main(["demo", "--device", "cpu"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = _lines(captured.err)
    assert line == "python -m dense_xp: error: ImportError: " + (
        'the digits demo needs scikit-learn: pip install "dense-xp[demo]"'
    )


def test_demo_reports_each_part_and_saves_model_and_curves(capsys, tmp_path):
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    save = tmp_path / "m.npz"
    assert cli.main(["demo", "--device", "cpu", "--epochs", "2", "--save", str(save)]) == 0
    lines = _lines(capsys.readouterr().out)
    assert lines[0].startswith(f"dense_xp {dense_xp.__version__} demo:")
    assert lines[1] == "device: 'cpu' -> numpy on 'cpu'"
    steps = [line for line in lines if line.startswith("[")]
    assert [s[:5] for s in steps] == ["[1/4]", "[2/4]", "[3/4]", "[4/4]"]
    assert "scikit-learn's MLPClassifier" in steps[2]
    timed = [line for line in lines if line.startswith("      ")]
    assert len(timed) == 4
    assert all(line.endswith(" s)") for line in timed)
    assert lines[-1].startswith("done in ")
    assert dense_xp.load(save).layers[0].input_size == 64
    assert save.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"


def test_failures_are_named_by_their_public_names():
    assert cli._public_name(dense_xp.DeviceUnavailableError) == "dense_xp.DeviceUnavailableError"
    assert cli._public_name(dense_xp.CheckpointError) == "dense_xp.CheckpointError"
    assert cli._public_name(dense_xp.TrainingDivergedError) == "dense_xp.TrainingDivergedError"
    assert cli._public_name(FileNotFoundError) == "FileNotFoundError"
    assert cli._public_name(argparse.ArgumentError) == "argparse.ArgumentError"


def _run(*args, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "dense_xp", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        **kwargs,
    )


def test_python_m_shows_python_m_in_usage():
    result = _run("info", "--bogus")
    assert result.returncode == 2
    assert result.stderr == (
        "python -m dense_xp: error: unrecognized arguments: --bogus\nTry 'python -m dense_xp --help'.\n"
    )


class _ClosedPipe:
    def write(self, text):
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self):
        raise BrokenPipeError(32, "Broken pipe")

    def fileno(self):
        raise io.UnsupportedOperation("fileno")


def test_info_into_a_closed_pipe_ends_quietly_with_status_0(capsys, monkeypatch):
    """``dense-xp info | head -1``: the reader has gone before the report is written."""
    monkeypatch.setattr(sys, "stdout", _ClosedPipe())
    assert cli.main(["info"]) == 0
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("argv", [["--help"], ["--version"]])
def test_help_and_version_into_a_closed_pipe_end_quietly_with_status_0(capsys, monkeypatch, argv):
    monkeypatch.setattr(sys, "stdout", _ClosedPipe())
    assert cli.main(argv) == 0
    assert capsys.readouterr().err == ""


def test_a_closed_pipe_leaves_no_traceback_at_exit():
    code = (  # `info` without the slow-to-import backends
        "import sys; sys.modules.update(torch=None, jax=None, dask=None); "
        "from dense_xp.__main__ import main; sys.exit(main(['info']))"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    proc.stdout.close()  # before the child writes: it meets a broken pipe
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=120) == 0
    assert err == ""


def _pipefail(command, tmp_path):
    """``command`` run by bash with ``set -o pipefail``, as a careful shell script runs it."""
    return subprocess.run(
        ["bash", "-c", f"set -o pipefail; {command}"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )


needs_bash = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash (set -o pipefail)")


@needs_bash
@pytest.mark.parametrize("reader", ["head -1", "true"])
def test_info_piped_into_a_reader_that_stops_keeps_a_pipefail_script_going(tmp_path, reader):
    result = _pipefail(f"{shlex.quote(sys.executable)} -m dense_xp info | {reader}", tmp_path)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == ("" if reader == "true" else result.stdout.splitlines()[0] + "\n")
    assert reader == "true" or result.stdout.startswith("numpy ")


@needs_bash
def test_demo_piped_into_head_keeps_a_pipefail_script_going(tmp_path):
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    python = shlex.quote(sys.executable)
    demo = f"{python} -m dense_xp demo --device cpu --epochs 1 --no-baseline --save m.npz"
    result = _pipefail(f"{demo} | head -1", tmp_path)  # head is gone long before the training ends
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.startswith(f"dense_xp {dense_xp.__version__} demo: ")
    assert result.stdout.count("\n") == 1
