"""The fused hot-path kernels (NumPy ufunc chains, CuPy elementwise kernels) against the generic path."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from dense_xp import DenseLayer, _backend, _fused
from dense_xp.activations import ACTIVATIONS
from tests import activation_reference as R
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


@pytest.mark.parametrize(
    ("name", "dtype", "kinds"),
    [
        ("sigmoid", "float16", ("forward_keep", "backward_input")),  # float16 layers cache z
        ("relu", "float16", ("forward_keep", "backward_input")),
        ("gelu", "float16", ("forward_keep", "backward")),  # gelu's backward is in z already
        ("sigmoid", "float32", ("forward", "backward")),  # in place, the derivative from y
        ("tanh", "float64", ("forward", "backward")),
        ("silu", "float32", ("forward_keep", "backward")),
    ],
)
def test_cupy_ops_launch_the_kernels_backward_for_chooses(name, dtype, kinds):
    """Which kernels CupyOps launches, per compute dtype, on arrays standing in for CuPy's."""
    launched = []

    def kernel(activation, kind, double):
        launched.append((activation, kind, double))
        return lambda *args: None

    ops = _fused.CupyOps(SimpleNamespace(float64=np.float64, empty_like=np.empty_like))
    ops._kernel = kernel
    z = np.zeros((2, 3), dtype=dtype)
    z_out, y = ops.forward(z, None, name)
    assert z_out is z
    assert (y is z) == (kinds[0] == "forward")
    ops.backward(np.ones_like(z), z, name)
    double = dtype == "float64"
    assert launched == [(name, kinds[0], double), (name, kinds[1], double)]
    plan = ACTIVATIONS[name].backward_for(dtype)
    assert (plan.saves == "input") == (kinds[0] == "forward_keep")


# -- The CUDA sources CuPy compiles, compiled without a GPU ------------------------------------------------
#
# ``ElementwiseKernel.__call__`` needs a device for two things only: describing its arguments
# (``_ArgInfo``, built in Cython from the arrays) and choosing the architecture. Everything else is
# CuPy's own code, called here on the kernel objects that ``CupyOps`` builds:
#
# * the same as CuPy: the kernels (``CupyOps._kernel``), their type map (``_decide_params_type``), the
#   C type of the scalar 0 passed without bias (``CScalar.apply_dtype``), the kernel text
#   (``_kernel._get_elementwise_kernel_code``), the headers put in front (``core._cupy_header_list``),
#   the options (``core.assemble_cupy_compiler_options``, then ``-ftz=true``, the architecture and
#   ``--device-as-default-execution-space`` as ``cuda/compiler.py`` adds them) and the NVRTC program
#   (``compiler._NVRTCProgram``), so CuPy's ``float16`` class, its headers and NVRTC itself;
# * written out here: the ``_ArgInfo`` of CupyOps's calls on C-contiguous arrays under 2**31 bytes
#   (32-bit indexing): with bias, the (1, d_out) bias broadcast with stride 0 keeps a 2-D loop;
#   without bias (the scalar 0) and in backward, the contiguous arrays are reduced to 1-D. And the
#   architecture: compute capability 9.0 (H100, H200) instead of the device's, spelled ``-arch=sm_90``
#   as ``_get_arch_for_options_for_nvrtc`` does;
# * not covered: other layouts (a non-contiguous gradient, 64-bit indexing), other architectures,
#   ``CUPY_*`` variables other than ``CUPY_COMPILE_WITH_PTX``/``CUPY_NVRTC_USE_PCH`` (defaults assumed),
#   and the kernel cache.
#
# Without NVRTC the sources go to nvcc through CuPy's nvcc backend (``compiler.compile_using_nvcc``),
# with the CUDA headers of nvcc's own toolkit.
CUDA_ARCH = "90"
FLOAT_DTYPES = ("float16", "float32", "float64")
KINDS = ("forward", "forward_keep", "backward", "backward_input")
ARG_NDARRAY, ARG_INDEXER, ARG_SCALAR = 1, 2, 3  # cupy/_core/_kernel.pxd: _ArgKind
Launch = tuple[str, str, str, "bool | None"]  # activation, kind, dtype, bias (None: backward)


@pytest.fixture(scope="module")
def cupy_gen() -> SimpleNamespace:
    """CuPy's modules that generate and compile kernels; skips without CuPy."""
    cupy = pytest.importorskip("cupy", reason="CuPy is not installed (`pip install 'dense-xp[cudacheck]'`)")
    from cupy._core import _carray, _kernel, _scalar, core
    from cupy.cuda import compiler

    return SimpleNamespace(cupy=cupy, carray=_carray, kernel=_kernel, scalar=_scalar, core=core, cc=compiler)


def _launch(g: SimpleNamespace, kern: Any, kind: str, dtype: np.dtype, bias: bool | None) -> tuple[Any, Any]:
    """``(arginfos, type_map)`` of CupyOps's call of ``kern``, as ``ElementwiseKernel.__call__`` has them."""
    info = g.kernel._ArgInfo

    def array(ndim: int, c_contiguous: bool = True) -> Any:
        return info(ARG_NDARRAY, g.cupy.ndarray, dtype, ndim, c_contiguous, True)

    if kind.startswith("backward"):  # k(g, s): CuPy allocates dz; three C-contiguous arrays reduce to 1-D
        ins, outs, args = (dtype, dtype), (), [array(1), array(1), array(1)]
    else:  # k(z, b, z) or k(z, b, z, y)
        outs = (dtype,) * (2 if kind == "forward_keep" else 1)
        if bias:  # b, (1, d_out) broadcast with stride 0, is not C-contiguous: the loop stays 2-D
            ins, args = (dtype, dtype), [array(2), array(2, False)] + [array(2)] * len(outs)
        else:  # the Python scalar 0 becomes a CScalar; the arrays reduce to 1-D
            ins, args = (dtype, None), [array(1), None] + [array(1)] * len(outs)
    in_types, _, type_map = kern._decide_params_type(ins, outs)
    if args[1] is None:
        zero = g.scalar.CScalar(0)
        zero.apply_dtype(in_types[1])
        args[1] = info(ARG_SCALAR, g.scalar.CScalar, zero.descr, 0, True, True)
    args.append(info(ARG_INDEXER, g.carray.Indexer, None, args[0].ndim, True, True))
    return tuple(args), type_map


def cupy_kernel_sources(
    g: SimpleNamespace, names: Any = None, kinds: Any = KINDS, dtypes: Any = FLOAT_DTYPES
) -> dict[Launch, tuple[str, str]]:
    """``{(activation, kind, dtype, bias): (kernel name, source)}`` for each launch of ``CupyOps``.

    ``source`` is the text CuPy gives the compiler for that launch: its header includes, then
    ``_get_elementwise_kernel_code`` of the kernel object ``CupyOps._kernel`` returns.
    """
    ops = _fused.CupyOps(g.cupy)
    header = "".join(f"#include <{h}>\n" for h in g.core._cupy_header_list)
    sources = {}
    for name, kind, dtype in itertools.product(names or _fused.CUDA_BODIES, kinds, dtypes):
        if kind == "backward" and _fused.CUDA_BODIES[name][1] is None:
            continue
        if kind == "backward_input" and name not in _fused.CUDA_BACKWARD_FROM_INPUT:
            continue
        kern = ops._kernel(name, kind, dtype == "float64")
        for bias in (None,) if kind.startswith("backward") else (True, False):
            args, type_map = _launch(g, kern, kind, np.dtype(dtype), bias)
            code = g.kernel._get_elementwise_kernel_code(
                args, type_map, kern.params, kern.operation, kern.name, kern.preamble, **kern.kwargs
            )
            sources[name, kind, dtype, bias] = (kern.name, header + code)
    return sources


def _nvrtc(g: SimpleNamespace) -> tuple[str, Any]:
    """CuPy's NVRTC path as ``(description, compile(name, source))``; raises where NVRTC does not load."""
    cc = g.cc
    version = cc._get_nvrtc_version()
    if not cc._use_ptx and int(CUDA_ARCH) <= int(cc._get_max_compute_capability()):
        arch, method = f"-arch=sm_{CUDA_ARCH}", "cubin"
    else:
        arch, method = f"-arch=compute_{CUDA_ARCH}", "ptx"
    options = g.core.assemble_cupy_compiler_options(())
    options += ("-ftz=true", arch, "--device-as-default-execution-space")
    if getattr(cc, "_use_pch", False) and version >= (12, 8):  # CUPY_NVRTC_USE_PCH, CuPy >= 14
        options += ("--pch",)

    def compile_(name: str, source: str) -> None:
        cc._NVRTCProgram(source, f"{name}.cu", method=method).compile(options)

    return (
        f"NVRTC {version[0]}.{version[1]}, {' '.join(o for o in options if not o.startswith('-I'))}",
        compile_,
    )


def _nvcc(g: SimpleNamespace) -> tuple[str, Any]:
    """CuPy's nvcc backend as ``(description, compile(name, source))``; raises without nvcc."""
    nvcc = g.cupy.cuda.get_nvcc_path()
    if nvcc is None:
        msg = "nvcc is not on PATH"
        raise LookupError(msg)
    toolkit = f"-I{Path(nvcc.split()[0]).resolve().parents[1] / 'include'}"
    # nvcc refuses CUDA headers of another version: those CuPy found give way to nvcc's own
    options = [
        toolkit if o.startswith("-I") and (Path(o[2:]) / "cuda_runtime.h").is_file() else o
        for o in g.core.assemble_cupy_compiler_options(())
    ]
    options = (*options, *([] if toolkit in options else [toolkit]), "-ftz=true")

    def compile_(name: str, source: str) -> None:
        g.cc.compile_using_nvcc(source, options, arch=CUDA_ARCH, filename=f"{name}.cu")

    return (
        f"nvcc {nvcc}, -gencode=arch=compute_{CUDA_ARCH},code=sm_{CUDA_ARCH} {' '.join(options[-2:])}",
        compile_,
    )


@pytest.fixture(scope="module")
def cuda_compiler(cupy_gen: SimpleNamespace) -> tuple[str, Any]:
    """``(description, compile(name, source))``: NVRTC as CuPy runs it, else nvcc; skips with neither."""
    reasons = []
    for make in (_nvrtc, _nvcc):
        try:
            return make(cupy_gen)
        except Exception as exc:
            reasons.append(f"{make.__name__.strip('_')}: {type(exc).__name__}: {exc}")
    pytest.skip(f"no CUDA compiler ({'; '.join(reasons)}); `pip install 'dense-xp[cudacheck]'` brings NVRTC")


def _compile_all(
    g: SimpleNamespace, compile_: Any, sources: dict[Launch, tuple[str, str]]
) -> dict[Launch, str]:
    """``{launch: compiler log}`` of the sources that fail; compiled in parallel (NVRTC releases the GIL)."""

    def one(item: tuple[Launch, tuple[str, str]]) -> tuple[Launch, str] | None:
        launch, (name, source) = item
        try:
            compile_(name, source)
        except g.cc.CompileException as exc:
            return launch, str(exc)
        return None

    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        return dict(filter(None, pool.map(one, sources.items())))


def test_cupy_kernel_sources_are_what_cupy_generates(cupy_gen):
    sources = cupy_kernel_sources(cupy_gen)
    n_backward = sum(backward is not None for _, backward in _fused.CUDA_BODIES.values())
    n_from_input = len(_fused.CUDA_BACKWARD_FROM_INPUT)
    assert len(sources) == len(FLOAT_DTYPES) * (len(_fused.CUDA_BODIES) * 2 * 2 + n_backward + n_from_input)
    name, src = sources["relu", "forward", "float16", False]
    assert name == "dense_xp_relu_forward"
    assert src.startswith("#include <cupy/complex.cuh>\n#include <cupy/carray.cuh>\n")
    for text in (
        '#include "cupy/float16.cuh"',
        "typedef float16 T;",
        "typedef float A;",
        _fused.CUDA_BODIES["relu"][0],
        "(const CArray<float16, 1, 1, 1> _raw_z, const float16 b, CArray<float16, 1, 1, 1> _raw_y,",
    ):
        assert text in src
    _, src = sources["sigmoid", "forward_keep", "float32", True]
    for text in (
        "const CArray<float, 2, 0, 1> _raw_b,",
        "CIndexer<2, 1> _ind",
        "T &zb = _raw_zb[_ind.get()];",
    ):
        assert text in src
    _, src = sources["gelu", "backward", "float64", None]
    for text in ("typedef double T;", "typedef double A;", "CArray<double, 1, 1, 1> _raw_dz"):
        assert text in src


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_cuda_kernel_sources_compile(cupy_gen, cuda_compiler, dtype):
    """Every fused kernel, as CuPy generates and compiles it, for each activation, direction and bias."""
    compiler, compile_ = cuda_compiler
    sources = cupy_kernel_sources(cupy_gen, dtypes=(dtype,))
    failures = _compile_all(cupy_gen, compile_, sources)
    report = "\n\n".join(f"{sources[k][0]} {k}:\n{log[-1500:]}" for k, log in failures.items())
    assert not failures, f"{len(failures)} of {len(sources)} kernels fail with {compiler}:\n{report}"


# (activation, body index: 0 forward / 1 backward, kinds, body, dtypes that must fail, text in the log)
BROKEN = {
    "undeclared-name": ("relu", 0, ("forward",), "r = v > (A)0 ? v : slope * v;", FLOAT_DTYPES, "slope"),
    "missing-semicolon": ("tanh", 1, ("backward",), "r = gv * ((A)1 - sv * sv)", FLOAT_DTYPES, ";"),
    # z is read in the storage type T: a ternary of CuPy's float16 class and an int is ambiguous
    # (each converts to the other), so only float16 fails; float and double compile
    "float16-only": ("relu", 0, ("forward_keep",), "r = z > 0 ? z : 0;", ("float16",), "ambiguous"),
}


@pytest.mark.parametrize("case", BROKEN)
def test_a_broken_kernel_body_fails_to_compile(cupy_gen, cuda_compiler, monkeypatch, case):
    name, index, kinds, body, failing, message = BROKEN[case]
    bodies = list(_fused.CUDA_BODIES[name])
    bodies[index] = body
    monkeypatch.setitem(_fused.CUDA_BODIES, name, tuple(bodies))
    sources = cupy_kernel_sources(cupy_gen, names=[name], kinds=kinds)
    assert all(body in src for _, src in sources.values())
    failures = _compile_all(cupy_gen, cuda_compiler[1], sources)
    assert {launch for launch in sources if launch[2] in failing} == set(failures)
    assert all(message in log for log in failures.values()), next(iter(failures.values()))


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


# -- the CUDA bodies' accuracy, on the host -----------------------------------------------------------------
# Each body as CuPy's kernel holds it, compiled for the host in the precision CuPy compiles it in: double
# for float64, float for float32 and for float16 (whose kernels compute in float; the one rounding of the
# result to float16 is NumPy's, round to nearest even as CUDA's __float2half_rn). Run twice: IEEE, and with
# subnormals flushed (the MXCSR bits FTZ and DAZ, on x86), as ``-ftz=true`` does on the GPU for float. The
# host's libm stands in for CUDA's (both are within 1-2 ulps for exp, tanh, log1p, expm1).
_HOST_DTYPES = (("float64", "double"), ("float32", "float"), ("float16", "float"))
_HOST_MAIN = """
#if defined(__SSE__) || defined(__x86_64__)
#include <xmmintrin.h>
#define DXP_FLUSH() _mm_setcsr(_mm_getcsr() | 0x8040)
#else
#define DXP_FLUSH() (void)0
#endif
template <class F> static void run(FILE* in, FILE* out, long n, F f) {
    std::vector<double> a(n), c(n), r(n);
    if (fread(a.data(), 8, n, in) != (size_t)n || fread(c.data(), 8, n, in) != (size_t)n) exit(3);
    for (long j = 0; j < n; ++j) r[j] = f(a[j], c[j]);
    fwrite(r.data(), 8, n, out);
}
"""


def _host_cases():
    """``[(name, kind, dtype, C type, a, c, check)]``: each body on its dtype's grid, with what checks it."""
    cases = []
    for name, (_, backward) in _fused.CUDA_BODIES.items():
        act = ACTIVATIONS[name]
        for dtype, ctype in _HOST_DTYPES:
            z = R.grid(dtype)
            ones = np.ones_like(z)
            cases.append((name, "forward", dtype, ctype, z, np.zeros_like(z), ("z", 0)))
            if backward is not None and act.saves == "input":
                cases.append((name, "backward", dtype, ctype, ones, z, ("z", 1)))
            elif backward is not None and dtype != "float16":  # float16 layers cache z (backward_input)
                y = R.reference(name, dtype, 0)[0].astype(dtype).astype(np.float64)
                cases.append((name, "backward", dtype, ctype, ones, y, ("y", y)))
            if name in _fused.CUDA_BACKWARD_FROM_INPUT:
                cases.append((name, "backward_input", dtype, ctype, ones, z, ("z", 1)))
    return cases


def _host_program(cases):
    parts = [
        "#include <cmath>",
        "#include <cstdio>",
        "#include <cstdlib>",
        "#include <vector>",
        "using namespace std;",
    ]
    parts.append(_HOST_MAIN)
    main = [
        "int main(int argc, char** argv) {",
        "if (argc > 3) DXP_FLUSH();",
        'FILE* in = fopen(argv[1], "rb"); FILE* out = fopen(argv[2], "wb");',
    ]
    for i, (name, kind, _, ctype, a, _c, _) in enumerate(cases):
        params, out, op, preamble = _fused.kernel_spec(name, kind, double=ctype == "double")
        parts.append(
            f"namespace k{i} {{ typedef {ctype} T; {preamble}\n"
            f"static void body({params}, {out.replace('T ', 'T& ')}) {{ {op} }} }}"
        )
        main.append(
            f"run(in, out, {a.size}L, [](double a, double c) {{ {ctype} r;"
            f" k{i}::body(({ctype})a, ({ctype})c, r); return (double)r; }});"
        )
    return "\n".join([*parts, *main, "fclose(out); return 0; }"])


def test_cuda_bodies_are_within_a_few_ulps_on_the_host(tmp_path):
    """Every CUDA body that a layer launches, at every test point of its dtype's grid (all of float16's),
    within the bounds of tests/activation_reference.py: forward and the derivatives in z; the derivatives
    from a saved output (float32, float64) within a few ulps of the exact derivative at that output."""
    cxx = shutil.which("g++") or shutil.which("clang++")
    if cxx is None:
        pytest.skip("no C++ compiler to evaluate the CUDA bodies on the host")
    if not R.EXTENDED:
        pytest.skip("long double is float64 here: no reference exact enough for float64")
    cases = _host_cases()
    source = tmp_path / "accuracy.cpp"
    source.write_text(_host_program(cases))
    exe = tmp_path / "accuracy"
    build = subprocess.run(
        [cxx, "-O1", "-std=c++17", "-o", str(exe), str(source)], capture_output=True, text=True, check=False
    )
    assert build.returncode == 0, build.stderr[-3000:]
    inputs = tmp_path / "in.bin"
    inputs.write_bytes(b"".join(np.concatenate([a, c]).astype("<f8").tobytes() for *_, a, c, _ in cases))
    for flush in (False, True):
        outputs = tmp_path / "out.bin"
        subprocess.run(
            [str(exe), str(inputs), str(outputs), *(["flush"] if flush else [])], check=True, timeout=120
        )
        got = np.fromfile(outputs, dtype="<f8")
        assert got.size == sum(a.size for *_, a, _c, _ in cases)
        offset = 0
        for name, kind, dtype, ctype, a, _c, (what, arg) in cases:
            r, offset = got[offset : offset + a.size], offset + a.size
            if flush and ctype == "double":  # -ftz=true flushes float alone
                continue
            r = r.astype(dtype).astype(np.float64)  # the kernel's (T)r
            label = f"CUDA {kind} body ({ctype}{', flushed' if flush else ''}): "
            if what == "z":
                R.check(r, name, dtype, arg, flushes=flush, what=label)
            else:
                exact, bound = R.from_output_bound(name, arg, dtype)
                R.assert_within(
                    r, exact, bound, R.grid(dtype), dtype, f"{label}{name} derivative from the output"
                )
