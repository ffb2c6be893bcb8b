"""Settings described once, on the configuration dataclasses, for every front end.

A field made with :func:`setting` carries its description, whether it may change while a node runs,
and its allowed values. The ROS nodes declare their parameters from these fields
(:mod:`isar_ros.ros.parameters`) and ``isar-ros benchmark --option`` converts and checks against
them (:func:`convert`), so a setting is written down in one place only.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from isar_ros.errors import ConfigurationError


@dataclass(frozen=True)
class Spec:
    """What a front end needs to know about one setting."""

    name: str
    default: Any
    description: str
    runtime: bool = False  # may change while a node runs
    choices: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None


def setting(
    default: Any,
    description: str,
    *,
    runtime: bool = False,
    choices: tuple[str, ...] = (),
    low: float | None = None,
    high: float | None = None,
) -> Any:
    """A dataclass field with its :class:`Spec` in the metadata."""
    return dataclasses.field(default=default, metadata={"spec": (description, runtime, choices, low, high)})


def specs(config_class: type, only: set[str] | None = None) -> list[Spec]:
    """The :class:`Spec` of every field of ``config_class`` made with :func:`setting` (or of ``only``)."""
    result = []
    for f in dataclasses.fields(config_class):
        if "spec" not in f.metadata or (only is not None and f.name not in only):
            continue
        description, runtime, choices, low, high = f.metadata["spec"]
        result.append(Spec(f.name, f.default, description, runtime, choices, low, high))
    return result


def convert(spec: Spec, value: Any) -> Any:
    """``value`` as the type of ``spec.default`` (strings parsed; an int for a float accepted), checked
    against the choices and range; :class:`ConfigurationError` naming the setting otherwise."""
    kind = type(spec.default)
    try:
        if kind is bool:
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
                    raise ValueError
                value = value.lower() in ("true", "1", "yes", "on")
            elif not isinstance(value, bool):
                raise ValueError
        elif kind is float:
            if isinstance(value, bool):
                raise ValueError
            value = float(value)
        elif kind is int:
            if isinstance(value, bool) or isinstance(value, float) and not value.is_integer():
                raise ValueError
            value = int(value)
        elif kind is str and not isinstance(value, str):
            raise ValueError
    except (TypeError, ValueError):
        raise ConfigurationError(
            f"{spec.name}: expected {kind.__name__}, got {value!r} ({spec.description})"
        ) from None
    if spec.choices and value not in spec.choices:
        raise ConfigurationError(f"{spec.name}: {value!r} is not one of {', '.join(spec.choices)}")
    if spec.low is not None and value < spec.low or spec.high is not None and value > spec.high:
        raise ConfigurationError(f"{spec.name}: {value!r} is outside [{spec.low}, {spec.high}]")
    return value


def assignments(pairs: list[str], known: dict[str, dict[str, Spec]], hint: str = "") -> dict[str, dict]:
    """``-p NAME:=VALUE`` pairs -> per owner (a node), the converted values of the settings it declares.

    ``known``: owner -> {setting name -> Spec}; a name several owners declare goes to each.
    :class:`ConfigurationError` for a malformed pair or an unknown name (``hint`` is added to the message).
    """
    result: dict[str, dict] = {owner: {} for owner in known}
    for pair in pairs:
        name, sep, value = pair.partition(":=")
        owners = [owner for owner, specs in known.items() if name in specs]
        if not sep or not owners:
            names = ", ".join(sorted(set().union(*known.values())))
            raise ConfigurationError(f"-p {pair}: expected NAME:=VALUE{hint}; known: {names}")
        for owner in owners:
            result[owner][name] = convert(known[owner][name], value)
    return result
