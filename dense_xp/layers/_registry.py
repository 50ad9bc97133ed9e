"""The table of layer classes by name: what checkpoints write for a layer and look up to rebuild it.

:data:`LAYERS` maps each registered name to its class; the names of
dense_xp's own layers are protected, so that no other class takes them.
:func:`dense_xp.layers.register_layer` (which checks that a class is a
layer) and ``builtin`` add to it through :func:`add` and :func:`protect`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .base import Layer

__all__ = ["LAYERS", "add", "get_layer_class", "protect", "registered_name"]

LAYERS: dict[str, type[Layer]] = {}
_BUILTIN: set[str] = set()


def add(cls: type[Layer], name: str | None) -> None:
    """Register ``cls`` under ``name`` (default its ``__name__``), replacing a custom class of that name.

    Raises
    ------
    ValueError
        ``name`` is not an identifier, or is the name of a built-in layer of another class.
    """
    key = cls.__name__ if name is None else name
    if not isinstance(key, str) or not key.isidentifier():
        msg = f"`name` must be an identifier, got {key!r}"
        raise ValueError(msg)
    if key in _BUILTIN and LAYERS[key] is not cls:
        msg = f"`name` {key!r} is a built-in layer; register {cls.__name__} under another name"
        raise ValueError(msg)
    LAYERS[key] = cls


def protect(name: str) -> None:
    """Mark the registered name ``name`` as a built-in layer's: no other class can take it."""
    _BUILTIN.add(name)


def registered_name(cls: type[Layer]) -> str:
    """The first name ``cls`` is registered under.

    Raises
    ------
    TypeError
        ``cls`` is not registered.
    """
    for key, registered in LAYERS.items():
        if registered is cls:
            return key
    msg = (
        f"`{cls.__name__}` is not a registered layer class: call "
        f"dense_xp.register_layer({cls.__name__}) before saving it"
    )
    raise TypeError(msg)


def get_layer_class(name: Any) -> type[Layer]:
    """The registered layer class ``name``; a ValueError names the registered ones."""
    cls = LAYERS.get(name) if isinstance(name, str) else None
    if cls is None:
        msg = (
            f"layer class {name!r} is not registered in this process (registered: {sorted(LAYERS)}); "
            "import the module that defines it and call dense_xp.register_layer(cls)"
        )
        raise ValueError(msg)
    return cls
