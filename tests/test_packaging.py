"""The sdist and wheel: what they ship, license and project metadata."""

from __future__ import annotations

import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

import dense_xp

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def builders():
    pytest.importorskip("hatchling", reason="hatchling (the build backend) is not installed")
    from hatchling.builders.sdist import SdistBuilder
    from hatchling.builders.wheel import WheelBuilder

    return SdistBuilder, WheelBuilder


def _build(builder_class, tmp_path):
    (artifact,) = builder_class(str(ROOT)).build(directory=str(tmp_path), versions=["standard"])
    return Path(artifact)


def test_sdist_ships_the_benchmarks_with_their_readme(builders, tmp_path):
    sdist = _build(builders[0], tmp_path)
    with tarfile.open(sdist) as tar:
        top = f"dense_xp-{dense_xp.__version__}/"
        names = {name.removeprefix(top) for name in tar.getnames()}
    for required in ("README.md", "LICENSE", "CHANGELOG.md", "pyproject.toml", "dense_xp/__init__.py"):
        assert required in names
    assert ("benchmarks/README.md" in names) == ("benchmarks/bench_dense.py" in names) == True  # noqa: E712
    assert "tests/test_benchmarks.py" in names
    assert "docs/conf.py" in names
    assert not any(name.startswith(("benchmarks/runs/", "docs/_build/", ".git/")) for name in names)


def test_wheel_carries_license_authors_and_project_urls(builders, tmp_path):
    wheel = _build(builders[1], tmp_path)
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        info = f"dense_xp-{dense_xp.__version__}.dist-info"
        metadata = Parser().parsestr(zf.read(f"{info}/METADATA").decode())
    assert f"{info}/licenses/LICENSE" in names
    assert not any(name.startswith(("tests/", "benchmarks/", "docs/")) for name in names)
    assert metadata["License-Expression"] == "MIT"
    assert metadata["Author"] == "the dense_xp developers"
    urls = dict(u.split(", ", 1) for u in metadata.get_all("Project-URL"))
    assert urls["Source"] == "https://github.com/dense-xp/dense-xp"
    assert {"Homepage", "Issues", "Changelog"} <= set(urls)
    extras = set(metadata.get_all("Provides-Extra"))
    assert {"demo", "test", "docs", "cuda12", "cuda13"} <= extras
    demo = [r for r in metadata.get_all("Requires-Dist") if r.replace('"', "'").endswith("extra == 'demo'")]
    assert any(r.startswith("matplotlib") for r in demo)
    assert any(r.startswith("scikit-learn") for r in demo)
