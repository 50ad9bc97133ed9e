"""The fused hot-path kernels (NumPy ufunc chains, CuPy elementwise kernels) against the generic path."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from dense_xp import DenseLayer, _backend, _fused
from dense_xp.activations import ACTIVATIONS
from tests.helpers import host, tol, wide

NAMES = [name for name in ACTIVATIONS if name is not None]


def _pair(xp, device, activation, dtype, use_bias=True):
    fused = DenseLayer(
        9, 6, activation, seed=3, init="he_normal", dtype=dtype, device=device, xp=xp, use_bias=use_bias
    )
    generic = DenseLayer(
        9, 6, activation, seed=3, init="he_normal", dtype=dtype, device=device, xp=xp, use_bias=use_bias
    )
    generic._fused = None
    if use_bias:
        b = np.linspace(-1.0, 1.0, 6)[None, :]
        fused.b = xp.asarray(b, dtype=fused.dtype, device=device)
        generic.b = xp.asarray(b, dtype=fused.dtype, device=device)
    return fused, generic


@pytest.mark.parametrize("activation", NAMES)
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
@pytest.mark.parametrize("use_bias", [True, False])
def test_fused_matches_generic(fused_backend, activation, dtype, use_bias):
    xp, device = fused_backend
    assert _backend.fused_ops(xp) is not None
    fused, generic = _pair(xp, device, activation, dtype, use_bias)
    rng = np.random.default_rng(1)
    X = rng.normal(size=(17, 9)) * 4
    g = rng.normal(size=(17, 6))
    scale = 8.0 if dtype == "float16" else 64.0
    for _ in range(2):
        y_f, y_g = host(fused.forward(X)), host(generic.forward(X))
        assert np.abs(y_g).max() > 0.1
        np.testing.assert_allclose(
            y_f, y_g, rtol=tol(fused.dtype, xp, scale), atol=tol(fused.dtype, xp, scale)
        )
        d_f, d_g = host(fused.backward(g, lr=0.05)), host(generic.backward(g, lr=0.05))
        np.testing.assert_allclose(
            d_f, d_g, rtol=tol(fused.dtype, xp, scale), atol=tol(fused.dtype, xp, scale)
        )
        for name in fused.grads:
            np.testing.assert_allclose(
                host(fused.grads[name]),
                host(generic.grads[name]),
                rtol=tol(fused.dtype, xp, scale),
                atol=tol(fused.dtype, xp, scale),
            )
        assert fused.forward(X).dtype == fused.dtype


def test_sigmoid_saturates_without_warnings(backend):
    xp, device = backend
    for dtype in sorted({"float32", wide(xp, device)}):
        layer = DenseLayer(1, 1, "sigmoid", dtype=dtype, device=device, xp=xp)
        layer.W = xp.asarray([[1.0]], dtype=layer.dtype, device=device)
        y = host(layer.forward([[-1e4], [1e4], [0.0]]))
        np.testing.assert_array_equal(y[:, 0] >= 0, True)
        assert y[0, 0] < 1e-30
        assert y[1, 0] == 1.0
        assert y[2, 0] == 0.5
        assert np.all(np.isfinite(host(layer.backward([[1.0], [1.0], [1.0]]))))


def test_cuda_kernel_sources_compile(tmp_path):
    """Every CuPy kernel body compiles for Hopper in float64, float32 and float16 (needs nvcc, not a GPU)."""
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc is not installed; the GPU job compiles the kernels for real")
    parts = ["#include <cuda_fp16.h>"]
    for i, (name, kind, T) in enumerate(
        (name, kind, T)
        for name, (_, backward) in _fused.CUDA_BODIES.items()
        for kind in ("forward", "forward_keep", "backward")[: 3 if backward else 2]
        for T in ("double", "float", "__half")
    ):
        params, out, op, preamble = _fused.kernel_spec(name, kind, double=T == "double")
        outs = ", ".join(p.replace("T ", "T& ") for p in out.split(", "))
        args = ", ".join(f"a[{j}]" for j in range(params.count(",") + 1 + out.count(",") + 1))
        parts.append(
            f"namespace k{i} {{ typedef {T} T; {preamble}\n"
            f"__device__ void body({params}, {outs}) {{ {op} }}\n"
            f"__global__ void run(T* a) {{ body({args}); }} }}"
        )
    source = tmp_path / "kernels.cu"
    source.write_text("\n".join(parts))
    result = subprocess.run(
        [nvcc, "-arch=sm_90", "--ptx", "-diag-suppress", "177", "-o", str(tmp_path / "k.ptx"), str(source)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]


def _c_doubles(values):
    return "{" + ", ".join("NAN" if np.isnan(v) else repr(float(v)) for v in values) + "}"


def test_cuda_bodies_treat_nan_as_the_array_api_code_does(tmp_path):
    """The CUDA C bodies, compiled for the host with a C++ compiler (IEEE, no fast math), against the
    generic path: forward maps NaN to NaN (``v > 0 ? v : 0`` and ``fmax`` would give 0), and backward
    is NaN wherever z or g is, in double and in float."""
    cxx = shutil.which("g++") or shutil.which("clang++")
    if cxx is None:
        pytest.skip("no C++ compiler to evaluate the CUDA bodies on the host")
    z = np.array([-100.0, -3.0, -0.5, -0.0, 0.0, 1e-3, 0.7, 4.0, 100.0, np.nan, np.nan, 1.5])
    g = np.array([0.5, -1.0, 2.0, 1.0, np.nan, -0.3, 1.5, np.nan, 0.25, 1.0, np.nan, 2.0])
    cases, expected = [], []
    parts = ["#include <cmath>", "#include <cstdio>", "using namespace std;"]
    main = ["int main() {"]
    for name, (_, backward) in _fused.CUDA_BODIES.items():
        act = ACTIVATIONS[name]
        for T, dtype in (("double", np.float64), ("float", np.float32)):
            with np.errstate(all="ignore"):
                zt, gt = z.astype(dtype), g.astype(dtype)
                y = act.forward(zt, xp=np)
                saved = zt if act.saves == "input" else y
                runs = [("forward", zt, np.zeros_like(zt), y)]
                if backward is not None:
                    runs.append(("backward", gt, saved, act.backward(gt, saved, xp=np)))
            for kind, a, c, ref in runs:
                i = len(cases)
                params, out, op, preamble = _fused.kernel_spec(name, kind, double=T == "double")
                parts.append(
                    f"namespace k{i} {{ typedef {T} T; {preamble}\n"
                    f"void body({params}, {out.replace('T ', 'T& ')}) {{ {op} }}\n"
                    f"const double a[] = {_c_doubles(a)}, c[] = {_c_doubles(c)}; }}"
                )
                main.append(
                    f"for (int j = 0; j < {z.size}; ++j) {{ {T} r;"
                    f" k{i}::body(({T})k{i}::a[j], ({T})k{i}::c[j], r);"
                    ' printf("%.17g\\n", (double)r); }'
                )
                cases.append((name, kind, T, dtype))
                expected.append(ref)
    source = tmp_path / "bodies.cpp"
    source.write_text("\n".join([*parts, *main, "return 0; }"]))
    exe = tmp_path / "bodies"
    build = subprocess.run(
        [cxx, "-O1", "-std=c++17", "-o", str(exe), str(source)], capture_output=True, text=True, check=False
    )
    assert build.returncode == 0, build.stderr[-3000:]
    run = subprocess.run([str(exe)], capture_output=True, text=True, check=True, timeout=60)
    out = np.array([float(v) for v in run.stdout.split()]).reshape(len(cases), z.size)
    for (name, kind, T, dtype), got, ref in zip(cases, out, expected, strict=True):
        t = tol(dtype, np, 64)
        np.testing.assert_allclose(got, ref, rtol=t, atol=t, err_msg=f"{name} {kind} {T}")
