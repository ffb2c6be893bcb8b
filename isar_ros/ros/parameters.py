"""A node's parameters, declared from the settings of its configuration dataclasses.

:class:`NodeParameters` declares one ROS parameter per :class:`isar_ros.settings.Spec`, with its
description, its range or choices, and ``read_only`` unless it may change while the node runs; it
converts and checks every value (an int is accepted for a float; ``-p x:=abc`` for a number is a
one-line :class:`ConfigurationError` naming the node and the parameter), warns about keys in a
parameters file that no parameter has (naming the closest known one), and applies run-time changes
through one callback.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.exceptions import ParameterException
from rclpy.node import Node

from isar_ros.errors import ConfigurationError, UserError
from isar_ros.settings import Spec, convert

# Parameters every rclpy node has, which no isar_ros spec declares.
_ROS_PARAMETERS = ("use_sim_time", "start_type_description_service")


def descriptor(spec: Spec) -> ParameterDescriptor:
    d = ParameterDescriptor(description=spec.description, read_only=not spec.runtime, dynamic_typing=True)
    if spec.choices:
        d.additional_constraints = "one of: " + ", ".join(spec.choices)
    if spec.low is not None and spec.high is not None:
        if isinstance(spec.default, float):
            d.floating_point_range = [
                FloatingPointRange(from_value=float(spec.low), to_value=float(spec.high), step=0.0)
            ]
        elif isinstance(spec.default, int) and not isinstance(spec.default, bool):
            d.integer_range = [IntegerRange(from_value=int(spec.low), to_value=int(spec.high), step=1)]
    return d


class NodeParameters:
    """The declared, checked parameter values of one node (``values[name]``)."""

    def __init__(
        self, node: Node, specs: list[Spec], on_change: Callable[[dict[str, Any]], None] | None = None
    ):
        self.node = node
        self.specs = {s.name: s for s in specs}
        self.on_change = on_change
        self.values: dict[str, Any] = {}
        for spec in specs:
            try:
                value = node.declare_parameter(spec.name, spec.default, descriptor(spec)).value
            except ParameterException as error:
                raise ConfigurationError(f"{node.get_name()}: parameter {spec.name}: {error}") from None
            try:
                self.values[spec.name] = convert(spec, value)
            except ConfigurationError as error:
                raise ConfigurationError(f"{node.get_name()}: parameter {error}") from None
        self.warn_unknown()
        node.add_on_set_parameters_callback(self._on_set)

    def warn_unknown(self) -> None:
        """Log every key set for this node (parameters file, ``-p``) that is not one of its parameters."""
        overrides = getattr(self.node, "_parameter_overrides", {}) or {}
        for key in sorted(overrides):
            if key in self.specs or key in _ROS_PARAMETERS or key.startswith("qos_overrides."):
                continue
            close = difflib.get_close_matches(key, list(self.specs), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            self.node.get_logger().warning(
                f"unknown parameter {key!r} ignored{hint}; {self.node.get_name()} knows: "
                f"{', '.join(sorted(self.specs))}"
            )

    def _on_set(self, parameters: list[Any]) -> SetParametersResult:
        changes: dict[str, Any] = {}
        for parameter in parameters:
            spec = self.specs.get(parameter.name)
            if spec is None:
                continue  # a parameter of rclpy itself (use_sim_time)
            if not spec.runtime:
                return SetParametersResult(
                    successful=False, reason=f"{spec.name} is fixed at start; restart the node to change it"
                )
            try:
                changes[spec.name] = convert(spec, parameter.value)
            except ConfigurationError as error:
                return SetParametersResult(successful=False, reason=str(error))
        if changes and self.on_change is not None:
            try:
                self.on_change(changes)
            except UserError as error:
                return SetParametersResult(successful=False, reason=str(error))
        self.values.update(changes)
        return SetParametersResult(successful=True)
