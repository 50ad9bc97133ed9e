"""Backends and devices: the one module that knows NumPy from CuPy.

Everything library-specific lives here: turning a device request into an
``(xp, device)`` pair, probing CUDA without crashing on machines that have
CuPy but no driver, moving arrays between host and device, the host random
generator, writing ``.npz`` files and viewing the ``.npy`` data ``_npz`` reads
as host arrays, and the choice of fused kernels (NumPy and CuPy, in ``_fused``).
Layer, activation, loss and optimizer code only ever sees ``xp``.

The package's modules, in the order they build on each other:

- ``_cuda``: CuPy imported lazily, each CUDA device probed once, and the
  advice for each cause of failure (:class:`CudaProblem`);
- ``_current``: the current-device seam (:func:`on_device`);
- ``_devices``: device requests, their resolution to ``(xp, device)`` and
  back to a picklable name;
- ``_host``: host <-> device moves, data checks, batches;
- ``_arrays``: fused kernels, float16 products, ``.npz`` bytes, Dask row splits.

Everything outside the package imports from ``dense_xp._backend`` itself.
"""

from __future__ import annotations

from . import _cuda as _cuda  # the module: tests stand a fake CuPy in for its `_cupy`
from ._arrays import array_bytes, bytes_array, fused_ops, host_array, matmul, split_rows, write_npz, writeable
from ._cuda import (
    CudaProblem,
    cuda_device_count,
    cuda_problem,
    cuda_report,
    cuda_unusable_reason,
)
from ._current import on_device, register_current_device, runs_on_device
from ._devices import (
    ENV_VAR,
    DeviceUnavailableError,
    device_spec,
    get_default_device,
    namespace_name,
    parse_request,
    resolve_device,
    restore_device,
    set_default_device,
    use_device,
)
from ._host import (
    as_dataset,
    as_input,
    cheap_reads,
    count_nonfinite,
    describe,
    device_batches,
    float_errors_ignored,
    from_host,
    host_rng,
    host_rows,
    is_host,
    is_traced,
    mover,
    nonfinite_error,
    rows,
    to_numpy,
)

__all__ = [
    "ENV_VAR",
    "CudaProblem",
    "DeviceUnavailableError",
    "array_bytes",
    "as_dataset",
    "as_input",
    "bytes_array",
    "cheap_reads",
    "count_nonfinite",
    "cuda_device_count",
    "cuda_problem",
    "cuda_report",
    "cuda_unusable_reason",
    "describe",
    "device_batches",
    "device_spec",
    "float_errors_ignored",
    "from_host",
    "fused_ops",
    "get_default_device",
    "host_array",
    "host_rng",
    "host_rows",
    "is_host",
    "is_traced",
    "matmul",
    "mover",
    "namespace_name",
    "nonfinite_error",
    "on_device",
    "parse_request",
    "register_current_device",
    "resolve_device",
    "restore_device",
    "rows",
    "runs_on_device",
    "set_default_device",
    "split_rows",
    "to_numpy",
    "use_device",
    "write_npz",
    "writeable",
]
