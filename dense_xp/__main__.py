"""Command line: ``python -m dense_xp info`` and ``python -m dense_xp demo``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ._info import backend_info, format_info

TARGET_ACCURACY = 0.97


def _demo(args: argparse.Namespace) -> int:
    from .demo import train_digits

    print(f"training a 64-128-10 MLP on the digits, device request {args.device!r}")
    result = train_digits(
        device=args.device,
        epochs=args.epochs,
        seed=args.seed,
        dtype=args.dtype,
        compute_dtype=args.compute_dtype,
        save_to=args.save,
        baseline=not args.no_baseline,
    )
    print(f"device:            {result['device']}")
    print(f"epochs:            {args.epochs} (final training loss {result['history']['loss'][-1]:.4f})")
    print(f"training time:     {result['train_seconds']:.2f} s")
    print(f"test accuracy:     {result['test_accuracy']:.4f} (target >= {TARGET_ACCURACY})")
    if "sklearn_accuracy" in result:
        print(
            f"MLPClassifier:     {result['sklearn_accuracy']:.4f} (scikit-learn, same hidden size and split)"
        )
    print(f"model saved to:    {args.save}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m dense_xp`` and the ``dense-xp`` script."""
    parser = argparse.ArgumentParser(prog="python -m dense_xp", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info", help="report each array backend, its version and devices")
    demo = commands.add_parser("demo", help="train an MLP on scikit-learn's digits (needs the demo extra)")
    demo.add_argument(
        "--device", default=None, help='"cpu", "cuda", "cuda:N" or "auto" (default: DENSE_XP_DEVICE or cpu)'
    )
    demo.add_argument("--epochs", type=int, default=40)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    demo.add_argument(
        "--compute-dtype",
        default=None,
        choices=["float16", "float32"],
        help="dtype of forward and backward; float16 is mixed precision (default: --dtype)",
    )
    demo.add_argument("--save", default="digits_mlp.npz", help="checkpoint path (default: digits_mlp.npz)")
    demo.add_argument(
        "--no-baseline", action="store_true", help="skip the scikit-learn MLPClassifier comparison"
    )
    args = parser.parse_args(argv)
    if args.command == "info":
        print(format_info(backend_info()))
        return 0
    print(format_info(backend_info()), end="\n\n")
    return _demo(args)


if __name__ == "__main__":
    sys.exit(main())
