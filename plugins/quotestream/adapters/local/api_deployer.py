"""The ServiceDeployer stand-in for Cloud Run: the API as a local process of the stack.

A deploy is create-or-update like a Cloud Run revision: the old process (if any) is replaced
by one running the current code and settings, on the same port.
"""

from __future__ import annotations

from quotestream.adapters.local.stack import LocalStack
from quotestream.ports.resources import Outcome, ResourceResult


class LocalApiDeployer:
    def __init__(self, stack: LocalStack) -> None:
        self._stack = stack

    def deploy(self) -> list[ResourceResult]:
        replaced = self._stack.restart_service("api")
        outcome = Outcome.UPDATED if replaced else Outcome.CREATED
        return [ResourceResult("local api", self.url(), outcome, "new process")]

    def url(self) -> str:
        return self._stack.env()["QUOTESTREAM_API_URL"]

    def headers(self) -> dict[str, str]:
        return {}
