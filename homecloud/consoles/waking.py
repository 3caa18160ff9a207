"""Waking a sleeping (``--idle``) instance when its console page opens: the proxy asks the
agent (its API socket, as hc-wake does), which starts it and says what its console reaches."""

from __future__ import annotations

import time

from homecloud.consoles.tokens import ConsoleTarget
from homecloud.errors import Conflict

WAKE_PATIENCE = 300.0  # seconds another operation on the instance (falling asleep) may hold it


def wake_through_agent(name: str, *, patience: float = WAKE_PATIENCE) -> ConsoleTarget:
    from homecloud.client.api import ApiClient

    client = ApiClient(timeout=WAKE_PATIENCE)
    deadline = time.monotonic() + patience
    while True:
        try:
            answer = client.call("POST", f"/v1/consoles/{name}/wake")
            break
        except Conflict:  # it is being put to sleep right now: wake it once that is done
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    return ConsoleTarget(answer["kind"], answer.get("socket"), tuple(answer.get("argv", ())),
                         answer.get("note", ""))
