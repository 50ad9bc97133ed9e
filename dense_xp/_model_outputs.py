"""What a classifier reads from the outputs of a :class:`dense_xp.Sequential`: probabilities and classes.

:class:`_ClassifierOutputs` is a base of :class:`~dense_xp.Sequential`; its
methods run the model's ``predict`` and turn the logits into class
probabilities (the link of the loss, see :mod:`dense_xp._stack`) or into the
predicted class of each row.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import _backend, _data, _stack

__all__ = ["_ClassifierOutputs"]


class _ClassifierOutputs:
    """``predict_proba`` and ``predict_classes`` of a model (a base of ``Sequential``)."""

    if TYPE_CHECKING:
        xp: Any
        device: Any
        fitted_loss: str | None

        def predict(self, X: Any, batch_size: int | None = None) -> Any: ...

    @_backend.runs_on_device
    def predict_proba(self, X: Any, batch_size: int | None = None, *, loss: str | None = None) -> Any:
        """Class probabilities for ``X`` on the model's device.

        The outputs of :meth:`predict` are logits; this applies the link of the
        loss: softmax for ``"softmax_cross_entropy"`` (rows sum to 1), sigmoid
        for ``"binary_cross_entropy"`` (each output in ``[0, 1]``).

        Parameters
        ----------
        X : array_like, shape (n, input_size)
        batch_size : int, optional
            Rows per forward pass, as in :meth:`predict`.
        loss : str, optional
            ``"softmax_cross_entropy"`` or ``"binary_cross_entropy"``. Default:
            the loss the model was last fitted with (a loaded checkpoint has
            none: pass it).

        Returns
        -------
        array, shape (n, output_size)
            Probabilities in the model's dtype.

        Raises
        ------
        ValueError
            The loss is not a classification loss (``"mse"``, a custom loss),
            or unknown because the model was never fitted.
        """
        name = _stack.probability_loss(loss, self.fitted_loss)
        z = _data.widen(self, self.predict(X, batch_size))  # probabilities in param_dtype, as the loss
        return _stack.probabilities(z, name, xp=self.xp)

    @_backend.runs_on_device
    def predict_classes(self, X: Any, batch_size: int | None = None) -> Any:
        """Predicted class of each row of ``X``, as :func:`dense_xp.losses.accuracy` counts a hit.

        Parameters
        ----------
        X : array_like, shape (n, input_size)
        batch_size : int, optional
            Rows per forward pass, as in :meth:`predict`.

        Returns
        -------
        array of int, shape (n,)
            The argmax of each row of logits; with one output, 1 where the
            logit is above 0 (probability above 0.5) and 0 elsewhere. On the
            model's device, in the namespace's default index dtype.
        """
        z = self.predict(X, batch_size)
        xp = self.xp
        if z.shape[1] != 1:
            return xp.argmax(z, axis=1)
        index = xp.__array_namespace_info__().default_dtypes(device=self.device)["indexing"]
        return xp.astype(z[:, 0] > 0, index)
