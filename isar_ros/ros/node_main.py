"""The one ``main()`` of every isar_ros node: init, spin, end quietly on Ctrl-C, SIGTERM or external
shutdown."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import rclpy
from rclpy.executors import Executor, ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node

from isar_ros.errors import UserError

SHUTDOWN_GRACE_S = 1.0


def _shutting_down() -> bool:
    """Whether rclpy's context is shutting down. rclpy shuts it down from its own signal-handling thread,
    so the error a signal causes inside ``spin`` can come a moment before ``rclpy.ok()`` turns false (a
    Ctrl-C test saw exactly that): wait up to ``SHUTDOWN_GRACE_S`` for it. A bug while running leaves the
    context up, and is raised after that wait."""
    deadline = time.monotonic() + SHUTDOWN_GRACE_S
    while rclpy.ok():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def run_node(
    make_node: Callable[[], Node],
    make_executor: Callable[[], Executor] = SingleThreadedExecutor,
    args: list[str] | None = None,
) -> int:
    """Create the node, bring it up (``autostart``), spin it until shutdown, then ``close()`` it and clean up.

    A configuration error while creating or configuring the node (bad parameter, unknown backbone,
    missing checkpoint, unusable memory folder) is printed as one line naming the node and gives exit
    code 2. rclpy turns SIGINT and SIGTERM into a shutdown, so ``timeout``, systemd and docker stop a
    node as cleanly as Ctrl-C (the teach node saves its memory); an error that rclpy raises from inside
    ``spin`` because that shutdown came mid-take is part of stopping, not a failure.
    """
    rclpy.init(args=args)
    node, code = None, 0
    try:
        node = make_node()
        autostart = getattr(node, "autostart", None)
        if autostart is not None:
            autostart()
        executor = make_executor()  # after rclpy.init(): an executor needs the context
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except UserError as error:
        text = str(error)
        if node is not None and not text.startswith(node.get_name()):
            text = f"{node.get_name()}: {text}"
        print(text, file=sys.stderr, flush=True)
        code = 2
    except Exception:
        if not _shutting_down():
            raise  # a bug while running: the traceback and a non-zero exit code
        # SIGINT / SIGTERM shut the context down while the executor was taking a message (rclpy then
        # raises from inside spin, e.g. "Unable to convert call argument"): the node was stopping anyway.
    finally:
        if node is not None:
            close = getattr(node, "close", None)
            if close is not None:
                close()
            node.destroy_node()
        rclpy.try_shutdown()
    return code
