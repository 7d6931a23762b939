"""A module that, as some libraries do, puts its own warning filter in front while it is imported and warns."""

import warnings

warnings.filterwarnings("always", category=UserWarning)
warnings.warn("imported noisily", UserWarning, stacklevel=1)


def quiet() -> str:
    """Return a word (a task for tests/unit/test_worker.py)."""
    return "ran"
