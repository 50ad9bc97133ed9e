"""Every Python block of the README runs exactly as written, and the docs' examples are those blocks.

A block whose first line is ``# needs: a, b`` is skipped, with the reason,
where one of those distributions (or ``gpu``: a usable CUDA device) is
missing. Nothing is injected into or replaced in the blocks.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest

from dense_xp import _backend

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(
    r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"), flags=re.DOTALL | re.MULTILINE
)
MODULES = {"scikit-learn": "sklearn", "array-api-strict": "array_api_strict", "pyyaml": "yaml"}


def _needs(block: str) -> list[str]:
    first = block.splitlines()[0]
    match = re.fullmatch(r"# needs: (.+)", first.strip())
    return [name.strip() for name in match[1].split(",")] if match else []


def _missing(name: str) -> str | None:
    if name == "gpu":
        reason = _backend.cuda_unusable_reason(0)
        return None if reason is None else f"needs a GPU: {reason}"
    module = MODULES.get(name, name.replace("-", "_"))
    return None if importlib.util.find_spec(module) is not None else f"needs {name} (not installed)"


def run_block(block: str) -> dict:
    for name in _needs(block):
        reason = _missing(name)
        if reason is not None:
            pytest.skip(reason)
    namespace: dict = {"__name__": "__main__"}  # as a script runs
    exec(compile(block, str(README), "exec"), namespace)
    return namespace


def test_readme_has_the_examples():
    assert len(BLOCKS) >= 3
    assert all(block.strip() for block in BLOCKS)


def test_needs_lines_are_understood():
    assert _needs("# needs: torch, array-api-strict\nimport torch\n") == ["torch", "array-api-strict"]
    assert _needs("import numpy\n# needs: torch\n") == []
    assert _missing("numpy") is None
    assert _missing("surely-not-installed-anywhere") == "needs surely-not-installed-anywhere (not installed)"


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """``run(index)``: the namespace of a block, each block run once, in one scratch folder."""
    folder, done = tmp_path_factory.mktemp("readme"), {}

    def run(index: int) -> tuple[dict, Path]:
        if index not in done:
            with pytest.MonkeyPatch.context() as mp:
                mp.chdir(folder)  # files a block writes land here
                mp.delenv(_backend.ENV_VAR, raising=False)
                done[index] = run_block(BLOCKS[index])
        return done[index], folder

    return run


@pytest.mark.parametrize("index", range(len(BLOCKS)), ids=[f"block{i + 1}" for i in range(len(BLOCKS))])
def test_block_runs_as_written(index, executed):
    executed(index)


def _index_of(text: str) -> int:
    (index,) = [i for i, b in enumerate(BLOCKS) if text in b]
    return index


def test_quickstart_names_what_it_shows(executed):
    namespace, _ = executed(_index_of("layer = DenseLayer(3, 2"))
    assert namespace["y"].shape == (1, 2)
    assert namespace["host"].shape == (256, 1024)
    assert namespace["layer"].device == "cpu"


def test_training_example_names_logits_probabilities_and_classes(executed):
    namespace, folder = executed(_index_of("digits.npz"))
    assert len(namespace["history"]["val_accuracy"]) == 20
    assert namespace["history"]["val_accuracy"][-1] > 0.95
    logits = _backend.to_numpy(namespace["logits"])
    proba = _backend.to_numpy(namespace["proba"])
    labels = _backend.to_numpy(namespace["labels"])
    assert logits.shape == proba.shape == (450, 10)
    assert logits.min() < 0  # logits, not probabilities
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)
    np.testing.assert_array_equal(labels, logits.argmax(axis=1))
    assert "probs" not in namespace
    assert (folder / "digits.npz").exists()
    assert (folder / "digits.png").read_bytes()[:4] == b"\x89PNG"


def test_scale_out_example_trains_on_a_local_cluster(executed):
    namespace, folder = executed(_index_of("LocalCluster("))
    assert len(namespace["history"]["loss"]) == 2
    assert namespace["scores"]["accuracy"] > 0.9
    assert namespace["logits"].shape == (20_000, 2)
    assert (folder / "model.npz").exists()


DOCS = README.parent / "docs"


def _rst_blocks(path: Path) -> list[str]:
    """The ``.. code-block:: python`` blocks of an rst page, dedented as the README writes them."""
    pattern = r"^\.\. code-block:: python\n\n((?:(?: {3}.*)?\n)+)"
    blocks = re.findall(pattern, path.read_text(encoding="utf-8"), flags=re.MULTILINE)
    return [re.sub(r"^ {3}", "", block, flags=re.MULTILINE).rstrip("\n") + "\n" for block in blocks]


@pytest.mark.parametrize("page", ["examples.rst", "dask.rst"])
def test_the_docs_examples_are_the_readmes_which_run_above(page):
    blocks = _rst_blocks(DOCS / page)
    runnable = [b for b in blocks if not b.startswith("import cupy")]  # the several-GPU sketch is not run
    assert runnable
    for block in runnable:
        assert block in BLOCKS, f"{page}: a block that is not one of the README's:\n{block}"
    if page == "examples.rst":
        # every README example, once
        assert sorted(BLOCKS.index(b) for b in blocks) == list(range(len(BLOCKS)))


def test_the_testing_page_runs_as_written(monkeypatch, tmp_path):
    from dense_xp.testing import backends

    monkeypatch.chdir(tmp_path)
    conftest, test_mine, loop, gradients = (run_block(b) for b in _rst_blocks(DOCS / "testing.rst"))
    assert callable(conftest["backend"])  # the fixture
    for entry in backends(["numpy", "strict"]):
        test_mine["test_forward_has_the_output_shape"](entry.activate())
    assert {"d_input", "layers.0.W", "layers.0.b", "layers.1.W", "layers.1.b"} == set(gradients["errors"])
    assert loop["entry"].id in {b.id for b in backends()}
