"""Service calls that survive DDS discovery races.

``wait_for_service()`` returns as soon as *this* side has discovered the server's endpoints. The
server may not have discovered this client's endpoints yet: then the request is dropped, or the
answer cannot be delivered (Fast DDS logs "failed to send response (timeout): client will not
receive response") and the caller waits forever. It happens on the first request of a new client,
mostly to a server that has just started, and more often on a loaded machine. Two defences:

* the shipped Fast DDS profile (``config/fastdds_shm.xml``) lets a service wait up to 5 s for the
  client's response reader instead of 100 ms (its ``service`` publisher profile);
* :func:`wait_until_ready` waits for the service and then lets discovery settle for a moment
  before the first request.

Measured with 80 first requests to freshly started servers on a loaded 2-core machine: 4 lost with
neither, 2 with the profile alone, none with both (docs/hardening.md).
"""

from __future__ import annotations

import time

DISCOVERY_SETTLE_S = 0.5


def wait_until_ready(client, timeout: float) -> bool:
    """``client.wait_for_service(timeout)``, then a short settle; False if the service never appeared."""
    if not client.wait_for_service(timeout_sec=timeout):
        return False
    time.sleep(DISCOVERY_SETTLE_S)
    return True


def call(client, request, timeout: float):
    """Send ``request`` and wait for the answer (the node's executor must be spinning elsewhere).

    Raises TimeoutError naming the service when no answer comes within ``timeout`` seconds.
    """
    future = client.call_async(request)
    deadline = time.monotonic() + timeout
    while not future.done():
        if time.monotonic() > deadline:
            client.remove_pending_request(future)
            raise TimeoutError(f"no answer from {client.srv_name} within {timeout:.0f} s")
        time.sleep(0.005)
    return future.result()
