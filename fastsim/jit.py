"""torch.compile with a fallback: the compiled function computes the same maths as the eager one, fused.

If compilation fails (no C++ compiler, an unsupported torch build, ...) the wrapper falls back to the eager
function for good and keeps the reason in :attr:`Compiled.error`, so a run never fails because of it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch

log = logging.getLogger(__name__)


class Compiled:
    """``fn`` compiled on first use (``torch.compile(fn, dynamic=dynamic)``); if that fails, ``fallback``
    (default: ``fn`` itself) runs eagerly from then on. ``fallback`` must compute the same maths as ``fn``."""

    def __init__(
        self, fn: Callable[..., Any], dynamic: bool = False, fallback: Callable[..., Any] | None = None
    ) -> None:
        self.eager = fallback or fn
        self.error: str | None = None
        try:
            self._fn = torch.compile(fn, dynamic=dynamic)
        except Exception as err:  # noqa: BLE001 - any compiler failure means: run eager
            self._fail(err)

    def _fail(self, err: Exception) -> None:
        self.error = f"{type(err).__name__}: {err}"
        name = getattr(self.eager, "__name__", type(self.eager).__name__)
        log.warning("torch.compile of %s failed, running eager: %s", name, self.error)
        self._fn = self.eager

    @property
    def active(self) -> bool:
        return self.error is None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._fn is self.eager:
            return self.eager(*args, **kwargs)
        try:
            return self._fn(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 - compilation happens on the first call
            self._fail(err)
            return self.eager(*args, **kwargs)
