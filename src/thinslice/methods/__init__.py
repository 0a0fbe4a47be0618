"""Slice-synthesis methods behind one interface (:class:`Method`), found by name in a registry.

Built in: ``linear``, ``lanczos``, ``cubic`` (:mod:`.classical`) and ``model``, the learned
cross-view networks (:mod:`.learned`). To add one, subclass :class:`Method` in a module
here, decorate it with :func:`register`, and import that module below.
"""

from thinslice.methods import classical, learned  # noqa: F401 - importing registers them
from thinslice.methods.base import Method, MethodResult, run_on_grid
from thinslice.methods.registry import available, get_method, method_class, register, unused_options

__all__ = [
    "Method",
    "MethodResult",
    "available",
    "get_method",
    "method_class",
    "register",
    "run_on_grid",
    "unused_options",
]
