"""scikit-learn's stochastic solvers on :mod:`dense_xp.optimizers`.

``sklearn/neural_network/_stochastic_optimizers.py`` defines them; the
dense_xp optimizers have ``torch.optim``'s semantics, which give the same
updates once two differences are bridged here:

- Adam: scikit-learn divides by ``sqrt(v) + eps`` after folding both bias
  corrections into the step size, torch by ``sqrt(v_hat) + eps``: the two
  agree when dense_xp's ``eps`` is ``epsilon / sqrt(1 - beta_2**t)`` at step ``t``.
- SGD with momentum: scikit-learn's velocity is ``-lr * buffer`` of torch's
  momentum buffer while ``lr`` is constant; when a schedule changes ``lr``
  (``invscaling``, ``adaptive``) the buffers are rescaled by ``old / new``, so
  that the velocity carries on as scikit-learn's does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ..optimizers import SGD, Adam, Optimizer

__all__ = ["Solver"]


class Solver:
    """One of scikit-learn's solvers, ``"sgd"`` or ``"adam"``, with its learning-rate schedule.

    Parameters
    ----------
    params : dict
        The estimator's hyperparameters (``get_params()``).
    """

    def __init__(self, params: dict[str, Any]) -> None:
        self.kind = params["solver"]
        self.schedule = params["learning_rate"] if self.kind == "sgd" else "constant"
        self.learning_rate_init = float(params["learning_rate_init"])
        self.power_t = float(params["power_t"])
        self.epsilon = float(params["epsilon"])
        self.beta_2 = float(params["beta_2"])
        self.optimizer: Optimizer
        if self.kind == "sgd":
            momentum = float(params["momentum"])
            nesterov = bool(params["nesterovs_momentum"]) and momentum > 0
            self.optimizer = SGD(lr=self.learning_rate_init, momentum=momentum, nesterov=nesterov)
        else:
            betas = (float(params["beta_1"]), self.beta_2)
            self.optimizer = Adam(lr=self.learning_rate_init, betas=betas, eps=self.epsilon)

    @property
    def learning_rate(self) -> float:
        """The current learning rate."""
        return self.optimizer.lr

    def step(self, params: Sequence[Any], grads: Sequence[Any]) -> list[Any]:
        """One update; returns the updated parameters (see :meth:`dense_xp.optimizers.Optimizer.step`)."""
        opt = self.optimizer
        if isinstance(opt, Adam):
            t = opt.steps + 1
            opt.eps = self.epsilon / math.sqrt(1.0 - self.beta_2**t)
        return opt.step(params, grads)

    def fits(self, params: Sequence[Any]) -> bool:
        """Whether the state of earlier steps fits ``params`` (it does not after a move to another device)."""
        try:
            self.optimizer.check(params)
        except ValueError:
            return False
        return True

    def iteration_ends(self, time_step: int) -> None:
        """End of an epoch: ``invscaling`` sets ``lr = learning_rate_init / (time_step + 1) ** power_t``."""
        if self.schedule == "invscaling":
            self._set_lr(self.learning_rate_init / (time_step + 1) ** self.power_t)

    def trigger_stopping(self, msg: str, verbose: Any) -> bool:
        """Whether to stop after ``n_iter_no_change`` epochs without progress; ``adaptive`` divides
        the learning rate by 5 instead, until it falls to 1e-6."""
        if self.schedule != "adaptive":
            if verbose:
                print(msg + " Stopping.")
            return True
        if self.learning_rate <= 1e-6:
            if verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        self._set_lr(self.learning_rate / 5.0)
        if verbose:
            print(msg + f" Setting learning rate to {self.learning_rate:f}")
        return False

    def _set_lr(self, lr: float) -> None:
        opt = self.optimizer
        if isinstance(opt, SGD) and opt.momentum and lr != opt.lr:
            ratio = opt.lr / lr
            for state in opt.state:
                state["momentum_buffer"] = state["momentum_buffer"] * ratio
        opt.lr = lr
