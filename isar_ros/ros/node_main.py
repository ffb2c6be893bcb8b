"""The one ``main()`` of every isar_ros node: init, spin, end quietly on Ctrl-C or external shutdown."""

from __future__ import annotations

from typing import Callable

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor


def run_node(make_node: Callable[[], "rclpy.node.Node"], make_executor: Callable = SingleThreadedExecutor, args=None) -> int:
    """Create the node, spin it until shutdown, then call its ``close()`` (if any) and clean up.

    A configuration error while creating the node (bad dataset path, unknown backbone, missing
    checkpoint) is printed as one line and gives exit code 2.
    """
    rclpy.init(args=args)
    node, code = None, 0
    try:
        node = make_node()
        executor = make_executor()  # after rclpy.init(): an executor needs the context
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (ValueError, KeyError, FileNotFoundError) as error:
        print(f"{getattr(node, 'get_name', lambda: 'isar_ros node')()}: {error}", flush=True)
        code = 2
    finally:
        if node is not None:
            close = getattr(node, "close", None)
            if close is not None:
                close()
            node.destroy_node()
        rclpy.try_shutdown()
    return code
