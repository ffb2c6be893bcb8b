"""The base of the teach and inference nodes: a ROS 2 lifecycle node with declarative parameters.

Lifecycle (as the field's ROS 2 perception packages do it): *configure* loads models and the memory
and creates publishers and services, *activate* subscribes to the camera and starts publishing,
*deactivate* stops the camera path, *cleanup* releases everything. With ``autostart`` (the default,
so that ``isar-ros up`` and the launch files need no lifecycle manager) the node configures and
activates itself on start; a configuration error then ends the process with a one-line message and
exit code 2. With ``autostart: false`` a lifecycle manager (nav2's, ``ros2 lifecycle set``) drives it.
"""

from __future__ import annotations

from typing import Any

from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from isar_ros.errors import ConfigurationError, UserError
from isar_ros.msgio.image_codec import camera_rgb
from isar_ros.ros.parameters import NodeParameters
from isar_ros.settings import Spec

AUTOSTART = Spec("autostart", True, "configure and activate on start (false: wait for a lifecycle manager)")


class ManagedNode(LifecycleNode):
    """Subclasses implement :meth:`configure` / :meth:`activate` / :meth:`deactivate` / :meth:`cleanup`
    and may raise :class:`UserError` from :meth:`configure`; the transition then fails with its message."""

    def __init__(self, name: str, specs: list[Spec], **kwargs: Any):
        super().__init__(name, **kwargs)
        self.params = NodeParameters(self, [*specs, AUTOSTART], self.on_parameters)
        self.failure = ""

    # ---- for subclasses ---------------------------------------------------------------------------
    def configure(self) -> None:
        """Load models and memory; create publishers, services and timers."""

    def activate(self) -> None:
        """Subscribe to the camera; start workers."""

    def deactivate(self) -> None:
        """Undo :meth:`activate`."""

    def cleanup(self) -> None:
        """Undo :meth:`configure` (save what must be saved first)."""

    def on_parameters(self, changes: dict[str, Any]) -> None:
        """Apply run-time parameter changes (already checked); raise :class:`UserError` to refuse."""

    def camera_rgb(self, msg: Any) -> Any:
        """The image as H x W x 3 uint8 RGB (:class:`UserError` if it cannot be); what had to be converted
        (grey, 16 bit) is warned about once."""
        rgb, note = camera_rgb(msg)
        if note:
            self.get_logger().warning(note, once=True)
        return rgb

    # ---- transitions ------------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self.configure()
        except UserError as error:
            self.failure = str(error)
            self.get_logger().error(f"configure failed: {error}")
            return TransitionCallbackReturn.FAILURE
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.activate()
        return super().on_activate(state)  # activates the lifecycle publishers

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.deactivate()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.cleanup()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        if state.label == "active":
            self.deactivate()
        if state.label in ("active", "inactive"):
            self.cleanup()
        return TransitionCallbackReturn.SUCCESS

    def autostart(self) -> None:
        """Configure and activate when the ``autostart`` parameter says so; :class:`ConfigurationError` if
        that fails."""
        if not self.params.values["autostart"]:
            self.get_logger().info("unconfigured; waiting for a lifecycle manager (autostart is false)")
            return
        if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            raise ConfigurationError(self.failure or "configure failed (see the log above)")
        self.trigger_activate()

    def release(self) -> None:
        """What must happen at exit even when the context is already gone (stop threads, save)."""

    def close(self) -> None:
        """On process exit: take the node down its lifecycle (deactivate, cleanup) so nothing is lost.

        After Ctrl-C or SIGTERM rclpy shuts the context down from its own signal thread; destroying
        publishers and subscriptions then races that teardown, and they go with the node anyway, so
        only :meth:`release` runs."""
        if not self.context.ok():
            self.release()
            return
        label = self._state_machine.current_state[1] if hasattr(self, "_state_machine") else ""
        if label == "active":
            self.deactivate()
        if label in ("active", "inactive"):
            self.cleanup()
