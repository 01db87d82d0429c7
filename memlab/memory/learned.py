"""The base class of the learned strategies written to ``strategy_modules.py``.

A learned strategy is a versioned class holding the thresholds training chose
(``params``) and the signal function they feed (``base``, ``"module:function"`` or
``"/path/to/file.py:function"``). Its instances expose each parameter as an attribute,
as in the seed (``self.rsi_threshold = 35``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, ClassVar

import pandas as pd


def resolve(base: str) -> Callable[..., Any]:
    """Import ``"package.module:function"``, or load ``"/path/to/file.py:function"``."""
    module_name, _, attr = base.rpartition(":")
    if not module_name or not attr:
        raise ValueError(f"base {base!r} must look like 'package.module:function'")
    if module_name.endswith(".py"):  # a strategy file of the user's
        from memlab.strategies.plugins import resolve_base

        return resolve_base(base)  # type: ignore[return-value]
    return getattr(importlib.import_module(module_name), attr)


class LearnedStrategy:
    """A strategy version learned from history; subclasses are generated, not hand-written."""

    name: ClassVar[str] = ""
    version: ClassVar[int] = 0
    learned_at: ClassVar[str] = ""
    base: ClassVar[str] = ""
    reason: ClassVar[str] = ""
    params: ClassVar[dict[str, Any]] = {}
    metrics: ClassVar[dict[str, Any]] = {}

    def __init__(self) -> None:
        for key, value in self.params.items():
            setattr(self, key, value)

    def __repr__(self) -> str:
        return f"<{self.name} v{self.version} {self.params}>"

    def signals(self, ohlcv: pd.DataFrame) -> Any:
        """Run the base signal function over ``ohlcv`` with the learned parameters."""
        return resolve(self.base)(ohlcv, **self.params)
