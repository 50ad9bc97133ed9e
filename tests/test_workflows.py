"""Invariants of the CI script and the GitHub workflows (plain text checks, no network)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CI_RUN = ROOT / ".ci" / "run"
CI_YML = ROOT / ".github" / "workflows" / "ci.yml"
GPU_YML = ROOT / ".github" / "workflows" / "gpu.yml"
RELEASE_YML = ROOT / ".github" / "workflows" / "release.yml"
README = ROOT / "README.md"

INSTALL = 'python -m pip install -e ".[test]"'
PYTEST = "python -m pytest"

pytestmark = pytest.mark.skipif(
    not (ROOT / ".git").exists(), reason="not a source checkout: CI files are not shipped in the sdist"
)


def _commands(path: Path) -> list[str]:
    """Non-comment lines of a shell script or YAML file, stripped, with `- run:` prefixes removed."""
    lines = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        lines.append(re.sub(r"^(- )?run:\s*", "", line))
    return lines


def _flow_list(text: str, key: str) -> list[str]:
    """Items of the YAML flow sequence ``key: [a, "b", ...]`` (one occurrence expected)."""
    found = re.findall(rf"^\s*{re.escape(key)}:\s*\[([^\]]*)\]\s*$", text, flags=re.MULTILINE)
    assert len(found) == 1, f"expected one `{key}: [...]` line, found {len(found)}"
    return [item.strip() for item in found[0].split(",") if item.strip()]


def _unquote(item: str) -> str:
    return item.strip("\"'")


def test_ci_script_installs_test_extra_and_runs_pytest() -> None:
    text = CI_RUN.read_text(encoding="utf-8")
    commands = _commands(CI_RUN)
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in commands
    assert INSTALL in commands
    assert any(c.startswith(PYTEST) for c in commands), f"{CI_RUN} does not run `{PYTEST}`"
    assert "python -m dense_xp info" in commands
    # The install comes before the tests, in a fresh virtual environment.
    venv = next(i for i, c in enumerate(commands) if "-m venv" in c)
    install = commands.index(INSTALL)
    tests = next(i for i, c in enumerate(commands) if c.startswith(PYTEST))
    assert venv < install < tests


def test_ci_script_fails_when_no_test_ran() -> None:
    commands = _commands(CI_RUN)
    tests = next(i for i, c in enumerate(commands) if c.startswith(PYTEST))
    after = commands[tests:]
    assert commands[tests] == f"{PYTEST} || status=$?"
    check = next(i for i, c in enumerate(after) if re.search(r'"\$status" -eq 5', c))
    branch = after[check + 1 : check + 4]
    branch = branch[: next((i for i, c in enumerate(branch) if c.startswith(("elif", "else", "fi"))), 3)]
    assert "exit 1" in branch, "pytest's exit 5 (no tests collected) must fail CI"


def test_ci_script_runs_the_conformance_table_after_the_tests() -> None:
    commands = _commands(CI_RUN)
    tests = next(i for i, c in enumerate(commands) if c.startswith(PYTEST))
    assert "python -m benchmarks.conformance" in commands[tests:]


def test_ci_script_never_installs_torch_or_touches_openblas() -> None:
    for command in _commands(CI_RUN):
        if "pip install" in command:
            assert not re.search(r"\b(torch|jax|jaxlib|cupy\S*)\b", command), command
        assert "OPENBLAS" not in command, command


def test_readme_test_command_is_what_ci_runs() -> None:
    if not README.exists():
        pytest.skip("README.md does not exist yet")
    readme = README.read_text(encoding="utf-8")
    wanted = f"{INSTALL} && {PYTEST}"
    lines = [line.strip().lstrip("$ ").strip() for line in readme.splitlines()]
    assert wanted in lines, f"README.md has no line `{wanted}`"
    commands = _commands(CI_RUN)
    for part in wanted.split("&&"):
        part = part.strip()
        assert any(c == part or c.startswith(f"{part} ") for c in commands), f".ci/run does not run `{part}`"


def test_ci_workflow_matrix() -> None:
    text = CI_YML.read_text(encoding="utf-8")
    oses = [_unquote(i) for i in _flow_list(text, "os")]
    assert sorted(o.split("-")[0] for o in oses) == ["macos", "ubuntu", "windows"]
    versions = _flow_list(text, "python-version")
    # Quoted: an unquoted 3.10 is the YAML float 3.1.
    assert all(v[0] == v[-1] == '"' for v in versions), versions
    assert [_unquote(v) for v in versions] == ["3.10", "3.11", "3.12", "3.13"]
    assert "runs-on: ${{ matrix.os }}" in text
    assert "python-version: ${{ matrix.python-version }}" in text


def test_ci_workflow_installs_test_extra_and_runs_pytest() -> None:
    text = CI_YML.read_text(encoding="utf-8")
    commands = _commands(CI_YML)
    assert INSTALL in commands
    assert PYTEST in commands
    assert "DENSE_XP_TEST_BACKENDS" not in text
    assert re.search(r"^permissions:\n  contents: read$", text, flags=re.MULTILINE)
    assert "cancel-in-progress: true" in text
    assert "uses: actions/checkout@v4" in text
    assert "uses: actions/setup-python@v5" in text
    for command in ("ruff check", "ruff format --check", "actionlint"):
        assert any(c.startswith(command) for c in commands), f"lint job does not run `{command}`"


def test_gpu_workflow_requires_cupy_on_a_gpu_runner() -> None:
    text = GPU_YML.read_text(encoding="utf-8")
    commands = _commands(GPU_YML)
    labels = _flow_list(text, "runs-on")
    assert labels[0] == "self-hosted"
    assert "gpu" in labels
    backends = re.findall(r"^\s*DENSE_XP_TEST_BACKENDS:\s*(\S+)\s*$", text, flags=re.MULTILINE)
    assert backends == ["numpy,cupy"]
    assert PYTEST in commands
    assert "nvidia-smi" in commands
    assert "python -m dense_xp info" in commands
    assert "python -m benchmarks.gpu_check --out gpu-results" in commands


def test_gpu_workflow_installs_the_chosen_cuda_extra() -> None:
    text = GPU_YML.read_text(encoding="utf-8")
    assert [_unquote(o) for o in _flow_list(text, "options")] == ["cuda12", "cuda13"]
    install = [c for c in _commands(GPU_YML) if "pip install -e" in c]
    assert len(install) == 1
    (spec,) = [w for w in shlex.split(install[0]) if w.startswith(".[")]
    assert spec == ".[test,${CUDA_EXTRA}]"
    assert "CUDA_EXTRA: ${{ inputs.cuda || 'cuda12' }}" in text
    assert "workflow_dispatch:" in text
    assert "types: [labeled, synchronize]" in text
    assert "github.event.label.name == 'gpu'" in text
    assert "uses: actions/upload-artifact@v4" in text
    assert "path: gpu-results" in text


def test_workflows_parse_as_yaml() -> None:
    yaml = pytest.importorskip("yaml")
    for path in (CI_YML, GPU_YML, RELEASE_YML):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        triggers = doc.get("on", doc.get(True))  # PyYAML reads the key `on` as True
        assert triggers, path
        assert doc["permissions"] == {"contents": "read"}, path
    ci = yaml.safe_load(CI_YML.read_text(encoding="utf-8"))
    matrix = ci["jobs"]["test"]["strategy"]["matrix"]
    assert matrix["python-version"] == ["3.10", "3.11", "3.12", "3.13"]
    gpu = yaml.safe_load(GPU_YML.read_text(encoding="utf-8"))
    job = gpu["jobs"]["gpu"]
    assert job["runs-on"] == ["self-hosted", "linux", "x64", "gpu"]
    assert job["env"]["DENSE_XP_TEST_BACKENDS"] == "numpy,cupy"


GPU_DRY_RUN = "python -m benchmarks.gpu_check --dry-run --out"
CUDACHECK = 'python -m pip install -e ".[cudacheck]"'


def test_ci_compiles_the_cuda_kernels_and_dry_runs_the_gpu_check() -> None:
    for path in (CI_RUN, CI_YML):
        commands = _commands(path)
        assert commands.index(INSTALL) < commands.index(CUDACHECK), path
        tests = next(i for i, c in enumerate(commands) if c.startswith(PYTEST))
        dry = [i for i, c in enumerate(commands) if c.startswith(GPU_DRY_RUN)]
        assert len(dry) == 1, f"{path} does not run `{GPU_DRY_RUN} DIR` once"
        assert tests < dry[0], path
    commands = _commands(CI_RUN)
    assert commands.index(next(c for c in commands if c.startswith(GPU_DRY_RUN))) < commands.index(
        "ruff check ."
    )


def test_gpu_workflow_keeps_tf32_off() -> None:
    yaml = pytest.importorskip("yaml")
    gpu = yaml.safe_load(GPU_YML.read_text(encoding="utf-8"))
    assert gpu["jobs"]["gpu"]["env"]["CUPY_TF32"] == "0"


DOCS_BUILD = "python -m sphinx -W --keep-going"


def test_ci_script_builds_the_docs_with_warnings_as_errors_after_the_tests() -> None:
    commands = _commands(CI_RUN)
    tests = next(i for i, c in enumerate(commands) if c.startswith(PYTEST))
    install = commands.index('python -m pip install --quiet -e ".[docs]"')
    build = next(i for i, c in enumerate(commands) if c.startswith(DOCS_BUILD))
    assert tests < install < build
    assert " docs " in commands[build]


def test_ci_workflow_builds_the_docs_with_warnings_as_errors() -> None:
    yaml = pytest.importorskip("yaml")
    job = yaml.safe_load(CI_YML.read_text(encoding="utf-8"))["jobs"]["docs"]
    runs = [step.get("run", "") for step in job["steps"]]
    assert 'python -m pip install -e ".[docs]"' in runs
    assert any(r.startswith(f"{DOCS_BUILD} -b html docs ") for r in runs)


def test_ci_script_and_workflow_type_check_with_mypy() -> None:
    commands = _commands(CI_RUN)
    ruff = commands.index("ruff check .")
    install = commands.index('python -m pip install --quiet "mypy>=1.10"')
    assert ruff < install < commands.index("mypy -p dense_xp")
    yaml = pytest.importorskip("yaml")
    job = yaml.safe_load(CI_YML.read_text(encoding="utf-8"))["jobs"]["lint"]
    runs = [step.get("run", "") for step in job["steps"]]
    installs = [r for r in runs if '"mypy>=1.10"' in r]
    assert len(installs) == 1
    assert "mypy -p dense_xp" in runs
    assert runs.index(installs[0]) < runs.index("mypy -p dense_xp")


def test_release_workflow_builds_checks_and_publishes_on_version_tags() -> None:
    yaml = pytest.importorskip("yaml")
    doc = yaml.safe_load(RELEASE_YML.read_text(encoding="utf-8"))
    triggers = doc.get("on", doc.get(True))
    assert triggers["push"] == {"tags": ["v*"]}
    assert "pull_request" in triggers
    assert doc["permissions"] == {"contents": "read"}
    build, publish = doc["jobs"]["build"], doc["jobs"]["publish"]
    runs = "\n".join(step.get("run", "") for step in build["steps"])
    assert "python -m build" in runs
    assert "twine check --strict dist/*" in runs
    assert '"v$version" != "$GITHUB_REF_NAME"' in runs  # the tag must be the package version
    assert publish["needs"] == "build"
    assert publish["if"] == "startsWith(github.ref, 'refs/tags/v')"
    assert publish["permissions"] == {"id-token": "write"}  # trusted publishing, no stored token
    assert publish["environment"]["name"] == "pypi"
    uses = [step.get("uses", "") for step in publish["steps"]]
    assert uses[-1] == "pypa/gh-action-pypi-publish@release/v1"
    assert not any("password" in step.get("with", {}) for step in publish["steps"])
