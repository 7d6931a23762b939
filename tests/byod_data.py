"""A timed bring-your-own-data file and its spec, for the tests of `orchard byod --write-portfolio`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import yaml


def byod_file(tmp_path: Path, suffix: str = ".csv", n: int = 900, **spec: object) -> Path:
    """Write a timed BYOD file (n daily applications from 2020-01-01, naive times) and its spec; return the spec."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=n)
    bad = rng.random(n) < 1 / (1 + np.exp(-(1.5 * x - 1.5)))
    frame = pd.DataFrame(
        {
            "app_id": [f"A{i:05d}" for i in range(n)],
            "applied_at": pd.date_range("2020-01-01 08:00", periods=n, freq="4h").strftime("%Y-%m-%d %H:%M"),
            "x": x,
            "grade": rng.choice([1, 2, 3], n),  # integer codes, declared categorical
            "city": rng.choice(["north", "south"], n),
            "status": np.where(bad, "bad", "good"),
        }
    )
    data = tmp_path / f"loans{suffix}"
    if suffix == ".csv":
        frame.to_csv(data, index=False)
    else:
        frame.to_parquet(data, index=False)
    document = {
        "name": "toy_book",
        "data": data.name,
        "target": "status",
        "bad_value": "bad",
        "id_column": "app_id",
        "event_time": "applied_at",
        "timezone": "Europe/Berlin",
        "categorical": ["grade"],
        "monotone": {"x": "ascending"},
        "oot": {"fraction": 0.3},
        **spec,
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(document))
    return path
