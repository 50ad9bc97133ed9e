"""Command line: ``python -m dense_xp info`` and ``python -m dense_xp demo``, or the ``dense-xp`` script."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from . import __version__, _backend
from ._info import backend_info, format_info

DESCRIPTION = (
    "Dense neural-network layers written once against the Python array API. "
    "'info' reports the array backends and devices of this machine; "
    "'demo' trains an MLP on scikit-learn's digits."
)
USAGE_ERROR, FAILURE = 2, 1
DISTRIBUTION = "dense-xp"  # the name pip shows (`pip show dense-xp`), whatever the program is called


class _Parser(argparse.ArgumentParser):
    """Usage errors in two lines: what is wrong, and where help is."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message}\nTry '{self.prog} --help'.\n")


def _device(value: str) -> str:
    try:
        _backend.parse_request(value, name="--device")
    except ValueError:
        msg = f'must be "cpu", "cuda", "cuda:N" or "auto", got {value!r}'
        raise argparse.ArgumentTypeError(msg) from None
    return value


def _count(minimum: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            number = minimum - 1
        if number < minimum:
            msg = f"must be an integer >= {minimum}, got {value!r}"
            raise argparse.ArgumentTypeError(msg)
        return number

    return parse


def _prog() -> str:
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    return "python -m dense_xp" if name in ("", "-c", "__main__.py") else name


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The argument parser of ``python -m dense_xp`` and the ``dense-xp`` script."""
    parser = _Parser(prog=prog or _prog(), description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"{DISTRIBUTION} {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{info,demo}", help="the command")
    info = commands.add_parser(
        "info",
        help="report each array backend, its version and devices",
        description="Report each array backend, its version, its devices and, where unusable, why.",
    )
    demo = commands.add_parser(
        "demo",
        help="train an MLP on scikit-learn's digits (needs the demo extra)",
        description=(
            "Train a 64-128-10 MLP on scikit-learn's bundled digits, compare with scikit-learn's "
            "MLPClassifier, and save the model and its learning curves. "
            'Needs the demo extra: pip install "dense-xp[demo]".'
        ),
    )
    demo.add_argument(
        "--device",
        type=_device,
        default=None,
        help='"cpu", "cuda", "cuda:N" or "auto" (the GPU if one answers, else the CPU); '
        "default: DENSE_XP_DEVICE, else cpu",
    )
    demo.add_argument("--epochs", type=_count(1), default=20, help="training epochs (default: 20)")
    demo.add_argument(
        "--seed", type=_count(0), default=0, help="seed of the split, weights and shuffling (default: 0)"
    )
    demo.add_argument(
        "--dtype",
        default="float32",
        choices=["float32", "float64"],
        help="parameter dtype (default: float32)",
    )
    demo.add_argument(
        "--compute-dtype",
        default=None,
        choices=["float16", "float32"],
        help="dtype of forward and backward; float16 under float32 parameters is mixed precision "
        "(default: --dtype)",
    )
    demo.add_argument(
        "--save",
        default="digits_mlp.npz",
        type=Path,
        help="checkpoint path, a name ending in .npz; the learning curves go beside it as a .png "
        "(default: digits_mlp.npz)",
    )
    demo.add_argument(
        "--no-baseline", action="store_true", help="skip the scikit-learn MLPClassifier comparison"
    )
    info.set_defaults(parser=info)
    demo.set_defaults(parser=demo)
    return parser


def _public_name(kind: type[BaseException]) -> str:
    import dense_xp

    if getattr(dense_xp, kind.__name__, None) is kind:
        return f"dense_xp.{kind.__name__}"
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


def _check_save(parser: argparse.ArgumentParser, save: Path) -> None:
    """``--save`` names a ``.npz`` in a directory that exists (as :func:`dense_xp.save` requires)."""
    if not save.parent.is_dir():
        parser.error(f"argument --save: the directory {str(save.parent)!r} does not exist")
    if save.suffix == ".png":
        parser.error(f"argument --save: the learning curves go to {save.name!r}: name the checkpoint .npz")
    if save.suffix != ".npz":
        root, _ = os.path.splitext(str(save))
        parser.error(
            f"argument --save: must name a .npz file, since the checkpoint is a .npz archive, "
            f"got {str(save)!r}; use {root + '.npz'!r}"
        )


def _resolve(request: object, *, from_env: bool) -> tuple[object, object]:
    """``resolve_device(request)``; an unusable CUDA device's advice is in command-line terms."""
    try:
        return _backend.resolve_device(request)
    except _backend.DeviceUnavailableError:
        if not isinstance(request, str):
            raise
        _, index = _backend.parse_request(request, name="--device")
        problem = _backend.cuda_problem(index or 0)
        if problem is None:
            raise
        where = f" (requested by {_backend.ENV_VAR}={request!r})" if from_env else ""
        msg = (
            f"device {request!r}{where} is unavailable: {problem.reason}. To fix it, {problem.fix}; "
            "or pass --device auto to fall back to the CPU."
        )
        raise _backend.DeviceUnavailableError(msg) from None


def _demo(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from .demo import _require, train_digits

    start = time.perf_counter()
    request = _backend.get_default_device() if args.device is None else args.device
    if args.device is None and isinstance(request, str):
        try:
            _backend.resolve_device()  # checks DENSE_XP_DEVICE, naming it
        except ValueError as exc:
            parser.error(str(exc))
        except _backend.DeviceUnavailableError:
            pass  # reported below, as for --device
    _check_save(parser, args.save)
    _require("sklearn", "matplotlib")  # before anything is printed or trained
    xp, device = _resolve(request, from_env=args.device is None)
    where = f"{_backend.namespace_name(xp)} on {device!r}"
    why = _backend.cuda_unusable_reason(0) if str(request).startswith("auto") and device == "cpu" else None
    print(
        f"dense_xp {__version__} demo: a 64-128-10 MLP on scikit-learn's digits, {args.dtype}"
        + (f" (computing in {args.compute_dtype})" if args.compute_dtype not in (None, args.dtype) else "")
    )
    print(f"device: {request!r} -> {where}" + (f" (CUDA: {why})" if why else ""), flush=True)
    log = lambda line: print(line, flush=True)
    train_digits(
        device=device,
        xp=xp,
        epochs=args.epochs,
        seed=args.seed,
        dtype=args.dtype,
        compute_dtype=args.compute_dtype,
        save_to=args.save,
        plot_to=args.save.with_suffix(".png"),
        baseline=not args.no_baseline,
        log=log,
    )
    print(f"done in {time.perf_counter() - start:.1f} s")
    return 0


def _info(parser: argparse.ArgumentParser) -> int:
    """The backend report; then a bad ``DENSE_XP_DEVICE`` is a usage error (exit 2), as in ``demo``."""
    print(format_info(backend_info()))
    try:
        _backend.resolve_device()
    except ValueError as exc:
        sys.stdout.flush()  # the report first, then the error
        parser.error(str(exc))
    except _backend.DeviceUnavailableError:
        pass  # reported above: the machine is described, not a usage error
    return 0


def _run(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "info":
        return _info(args.parser)
    return _demo(args.parser, args)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m dense_xp`` and the ``dense-xp`` script; returns the exit status.

    0 on success, 2 for a usage error (an invalid option, or an invalid
    ``DENSE_XP_DEVICE``, which ``info`` reports first), 1 for a failure (the
    device cannot be used, an extra is missing, a file cannot be written...):
    each answered in one line on standard error. A reader that goes away
    (``dense-xp info | head -1``) ends the command quietly, with status 0.
    """
    from .checkpoint import CheckpointError
    from .training import TrainingDivergedError

    failures = (_backend.DeviceUnavailableError, CheckpointError, TrainingDivergedError, ImportError, OSError)
    try:
        try:
            return _run(argv)
        finally:  # also after --help or a usage error (SystemExit)
            sys.stdout.flush()  # a closed pipe shows here, inside the try, not at the interpreter's exit
    except BrokenPipeError:  # the reader went away, as with `dense-xp info | head -1`: not a failure
        with contextlib.suppress(OSError, ValueError, AttributeError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0
    except KeyboardInterrupt:
        print(f"{_prog()}: interrupted", file=sys.stderr)
        return 130
    except failures as exc:
        print(f"{_prog()}: error: {_public_name(type(exc))}: {exc}", file=sys.stderr)
        return FAILURE


if __name__ == "__main__":
    sys.exit(main())
