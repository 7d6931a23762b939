"""Import Feast without typeguard's instrumentation of its classes (the processes' start-up time).

Feast decorates about twenty of its classes with typeguard's `@typechecked`. Typeguard instruments a class by
reading its module's source again, parsing it and compiling the module once per decorated class, when Feast is
imported: 3.4 s of CPU in every process that imports Feast (`import flows.lifecycle`: 10.5 s of CPU, 7.0 s without
it; measured on the reference machine, see docs/performance.md). Every Orchard process that runs a month imports
Feast: the CLI, the lifecycle's lane, each test worker.

The checks only guard the types of the arguments given to Feast's own constructors. Orchard builds every Feast
object from a portfolio it has validated first (orchard.portfolio), and nothing else in the locked environment
uses typeguard. A process that imported Feast before the call keeps its instrumented classes.
"""

from __future__ import annotations

import sys
from typing import Any


def _unchecked(target: Any = None, **_: Any) -> Any:
    """typeguard.typechecked's signature, returning the target as it is (also when used with arguments)."""
    if target is None:
        return lambda decorated: decorated
    return target


def skip_feast_typechecks() -> bool:
    """Make typeguard's `@typechecked` return what it decorates, before Feast is imported; return whether it
    took effect (False: Feast was imported already)."""
    if "feast" in sys.modules:
        return False
    import typeguard  # installed with Feast

    setattr(typeguard, "typechecked", _unchecked)  # noqa: B010 - typeguard's own annotation is narrower
    return True
