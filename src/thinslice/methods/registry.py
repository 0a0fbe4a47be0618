"""The method registry: names to :class:`~thinslice.methods.base.Method` classes.

Methods register themselves with :func:`register`; :func:`get_method` builds one by name,
with a did-you-mean error for unknown names.
"""

from __future__ import annotations

import difflib
from typing import Any, TypeVar

from thinslice.errors import ConfigError
from thinslice.methods.base import Method

M = TypeVar("M", bound=type[Method])
_METHODS: dict[str, type[Method]] = {}


def register(cls: M) -> M:
    """Class decorator: make ``cls`` available under ``cls.name``."""
    _METHODS[cls.name] = cls
    return cls


def available() -> dict[str, str]:
    """Registered method names with a one-line description each."""
    return {name: cls.description for name, cls in _METHODS.items()}


def method_class(name: str) -> type[Method]:
    """The class registered as ``name``.

    Raises:
        ConfigError: unknown name, with the closest known one.
    """
    if name not in _METHODS:
        close = difflib.get_close_matches(name, list(_METHODS), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"unknown method '{name}'; choose one of {', '.join(sorted(_METHODS))}.{hint}")
    return _METHODS[name]


def get_method(name: str, **options: Any) -> Method:
    """Build the method called ``name`` with the options it takes.

    Options it does not take (see :attr:`Method.options`) are ignored here; front ends
    that want to refuse them check :func:`unused_options` first.
    """
    cls = method_class(name)
    return cls(**{k: v for k, v in options.items() if k in cls.options})


#: Option values that ask nothing of a method, so one that does not take the option may be
#: given them: the classical methods run on the CPU in their own arithmetic.
_ASKS_NOTHING = {"precision": ("auto",), "device": ("auto", "cpu")}


def unused_options(name: str, **given: Any) -> list[str]:
    """The options in ``given`` that method ``name`` does not take, set to something it
    would have to do: not unset (None, False) and not a value that asks nothing of it
    (``precision="auto"``, ``device="cpu"``)."""
    cls = method_class(name)
    return [
        key
        for key, value in given.items()
        if key not in cls.options and value and str(value).strip().lower() not in _ASKS_NOTHING.get(key, ())
    ]
