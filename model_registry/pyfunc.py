"""The MLflow pyfunc wrapper around an Orchard model, and its pinned pip requirements."""

from __future__ import annotations

import functools
import importlib.metadata
import io
import pickle
import sys
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import cloudpickle
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel, PythonModelContext

from orchard.errors import OrchardError

PD_COLUMN = "pd"
# Always needed to load and call the wrapper, whatever the model is made of.
_BASE_DISTRIBUTIONS = ("mlflow", "cloudpickle", "numpy", "pandas")
# Our own code is importable where Orchard runs; it is not a PyPI requirement.
_OWN_DISTRIBUTIONS = frozenset({"orchard"})


@runtime_checkable
class RiskModel(Protocol):
    """What the registry needs from a model: a name, a kind, its features and predict_pd."""

    name: str
    kind: str
    features: list[str]

    def predict_pd(self, df: pd.DataFrame) -> np.ndarray:
        """Return the probability of default of every row."""
        ...


class PdModel(PythonModel):
    """Pyfunc wrapper whose predict returns the PD column of the wrapped model."""

    def __init__(self, model: RiskModel) -> None:
        self.model = model

    def predict(
        self,
        context: PythonModelContext | None,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.Series:
        """Return the PD of every row as a Series named 'pd'."""
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        values = np.asarray(self.model.predict_pd(frame), dtype="float64")
        return pd.Series(values, index=frame.index, name=PD_COLUMN)


def check_model(model: object) -> RiskModel:
    """Return the model if it follows the RiskModel protocol, else raise naming what is missing."""
    missing = [attr for attr in ("name", "kind", "features", "predict_pd") if not hasattr(model, attr)]
    if missing:
        raise OrchardError(
            f"model {type(model).__name__} cannot be registered: it lacks {', '.join(missing)}"
        )
    # all four attributes are there, so the protocol check fails only on a predict_pd of None
    if not isinstance(model, RiskModel) or not callable(model.predict_pd):
        raise OrchardError(f"model {type(model).__name__}.predict_pd is not callable")
    return model


class _ModuleRecorder(pickle.Unpickler):
    """Unpickler that records the module of every class or function the pickle refers to."""

    def __init__(self, data: bytes) -> None:
        super().__init__(io.BytesIO(data))
        self.modules: set[str] = set()

    def find_class(self, module: str, name: str) -> Any:
        self.modules.add(module)
        return super().find_class(module, name)


def pickled_modules(obj: object) -> set[str]:
    """Return the top-level modules a cloudpickle of obj needs at load time."""
    recorder = _ModuleRecorder(cloudpickle.dumps(obj))
    recorder.load()
    return {module.split(".")[0] for module in recorder.modules}


@functools.cache
def _distributions_of_modules() -> Mapping[str, list[str]]:
    """Map top-level modules to installed distributions (a ~1 s scan, so done once per process)."""
    # MLflow scans the same map when it checks requirements; share its cache instead of scanning twice.
    from mlflow.utils import requirements_utils

    try:
        requirements_utils._init_modules_to_packages_map()
        shared = requirements_utils._MODULES_TO_PACKAGES
    except AttributeError:  # a future MLflow may rename its private cache
        shared = None
    return dict(shared) if shared else importlib.metadata.packages_distributions()


def pip_requirements(model: object) -> list[str]:
    """Return pinned pip requirements for the wrapper plus every installed package the model pickles."""
    modules = pickled_modules(model) - set(sys.stdlib_module_names) - {"builtins", "__main__"}
    by_module = _distributions_of_modules()
    names = set(_BASE_DISTRIBUTIONS)
    for module in modules:
        names.update(by_module.get(module, []))
    pinned = []
    for name in sorted(names, key=str.lower):
        if name.lower() in _OWN_DISTRIBUTIONS:
            continue
        try:
            pinned.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return pinned
