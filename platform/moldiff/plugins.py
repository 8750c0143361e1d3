"""Objectives and workflows registered outside the package (``register_objective``,
``workflows.register``) travel with the work: every Ray Train worker, actor and task that moldiff
starts installs them before it reads a config, so a config naming them validates there too.

They are sent pickled (cloudpickle): functions in a module the workers can import (an installed
package, or a module shipped with the job's ``py_modules``) travel by reference; others, e.g. a
test module, need ``ray.cloudpickle.register_pickle_by_value(module)`` first.
"""
from __future__ import annotations

from typing import Optional


def registered() -> dict:
    """What was registered in this process beyond the package's own."""
    from . import workflows
    from .objectives.registry import BUILTIN_OBJECTIVES, OBJECTIVES

    workflows.names()                                    # the built-in ones loaded (so they are not "added")
    return {"objectives": [s for n, s in OBJECTIVES.items() if n not in BUILTIN_OBJECTIVES],
            "workflows": [w for n, w in workflows.WORKFLOWS.items() if n not in workflows.BUILTIN_WORKFLOWS]}


def install(bundle: Optional[dict]) -> None:
    """Register what ``registered()`` returned in another process (None or empty: nothing)."""
    if not bundle:
        return
    from . import workflows
    from .objectives.registry import register_objective

    for spec in bundle.get("objectives", ()):
        register_objective(spec)
    for workflow in bundle.get("workflows", ()):
        workflows.register(workflow)
