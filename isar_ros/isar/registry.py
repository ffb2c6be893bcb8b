"""Benchmark methods by name: what ``isar-ros benchmark --method NAME --option key=value`` can run.

To add a method, write a :class:`~isar_ros.isar.methods.Method` subclass in its own module and add
one line to :data:`METHODS` (a factory taking the ``--option`` dict).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from isar_ros.errors import ConfigurationError
from isar_ros.isar.baseline import IsarBaselineMethod
from isar_ros.isar.core_methods import IsarRosMethod
from isar_ros.isar.methods import EmptyMethod, Method, OracleMethod

METHODS: dict[str, Callable[[dict[str, Any]], Method]] = {
    "isar_ros": lambda options: IsarRosMethod(options),
    "isar_baseline": lambda options: IsarBaselineMethod(options),
    "oracle": lambda options: OracleMethod(),
    "empty": lambda options: EmptyMethod(),
}


def create(name: str, options: dict[str, Any] | None = None) -> Method:
    """The method ``name`` made with ``options``; :class:`ConfigurationError` for unknown names."""
    if name not in METHODS:
        raise ConfigurationError(f"unknown method {name!r}; available: {', '.join(sorted(METHODS))}")
    return METHODS[name](dict(options or {}))
