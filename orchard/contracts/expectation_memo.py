"""A validation's expectations made once each from their configurations, not again on every read.

Great Expectations 1.x, validating a batch, turns each expectation configuration into an expectation object
(`ExpectationConfiguration.to_domain_obj`, a pydantic model) about a dozen times, once per metric the
expectation needs, and each object builds its configuration back (`Expectation.configuration`, a property: a
pydantic `.dict()` and a regular expression for the type name) several times more: 10,372 objects and 93,986
configurations for 31 batches of the demo, against 2,404 and 3,606 with this module; a third of the contracts'
validation time (docs/performance.md, session 26).

Within `Validator.graph_validate` the configurations are copies made for that call and are not changed once it
has set their batch id, and an expectation object is its configuration's fields, nothing more.
`keep_expectations()` (installed once per process; later calls do nothing) wraps graph_validate so that, in its
thread and for its duration only, a configuration's expectation object is made on the first call and returned
afterwards, and an expectation's configuration likewise. The window holds what it returned, so no object id is
reused within it. Everywhere else (building and saving suites, Data Docs, other threads) both are Great
Expectations' own. The results are byte for byte those of Great Expectations alone
(tests/integration/test_expectation_memo.py validates a corrupted batch both ways).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

_window = threading.local()
_installed = False
_install_lock = threading.Lock()


def _kept(make: Callable[[Any], Any], slot: str) -> Callable[[Any], Any]:
    """Return `make` answering, inside the thread's window, what it made for the same object before."""

    @functools.wraps(make)
    def kept(self: Any) -> Any:
        made: dict[int, tuple[Any, Any]] | None = getattr(_window, slot, None)
        if made is None:
            return make(self)
        entry = made.get(id(self))  # (the object is held with it: its id is not reused within the window)
        if entry is None:
            entry = made[id(self)] = (self, make(self))
        return entry[1]

    return kept


def _windowed(graph_validate: Callable[..., Any]) -> Callable[..., Any]:
    """Return graph_validate with a window open for the call, in its thread."""

    @functools.wraps(graph_validate)
    def windowed(*args: Any, **kwargs: Any) -> Any:
        outer = (getattr(_window, "objects", None), getattr(_window, "configurations", None))
        _window.objects, _window.configurations = {}, {}
        try:
            return graph_validate(*args, **kwargs)
        finally:
            _window.objects, _window.configurations = outer

    return windowed


def keep_expectations() -> None:
    """Install the window (see the module docstring) in this process, once."""
    global _installed
    with _install_lock:
        if _installed:
            return
        _installed = True
        from great_expectations.expectations.expectation import Expectation
        from great_expectations.expectations.expectation_configuration import ExpectationConfiguration
        from great_expectations.validator.validator import Validator

        configuration = Expectation.__dict__.get("configuration")
        to_domain_obj = ExpectationConfiguration.__dict__.get("to_domain_obj")
        if not (isinstance(configuration, property) and configuration.fget and callable(to_domain_obj)):
            return  # another Great Expectations layout: leave it as it is
        Expectation.configuration = property(_kept(configuration.fget, "configurations"))  # type: ignore[method-assign,assignment]
        ExpectationConfiguration.to_domain_obj = _kept(to_domain_obj, "objects")  # type: ignore[method-assign,assignment]
        Validator.graph_validate = _windowed(Validator.graph_validate)  # type: ignore[method-assign]
