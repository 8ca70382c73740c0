"""Reading what a `dag.test()` run did."""

from __future__ import annotations

from typing import Any


def states(run: Any) -> dict[str, str]:
    """Each task's final state, by task id."""
    return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
