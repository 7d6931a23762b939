"""Synthetic guest and host tables for federated tests: seeded, overlapping keys, known host features."""

from __future__ import annotations

import numpy as np
import pandas as pd

from orchard.federated.data import GUEST_FEATURES, HOST_FEATURES, KEY, LABEL, VINTAGE

MONTHS = ["2019-07", "2019-08", "2019-09", "2019-10", "2019-11", "2019-12"]


def customer_keys(n: int, offset: int = 0) -> list[str]:
    """Return enumerable customer-month keys like the simulator's (`U0000001:2019-07`)."""
    return [f"U{offset + i + 1:07d}:{MONTHS[(offset + i) % len(MONTHS)]}" for i in range(n)]


def synthetic_tables(
    n_matched: int = 400, n_guest_only: int = 60, n_host_only: int = 300, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return (guest, host) tables with the simulator's columns; labels depend on both parties' features."""
    rng = np.random.default_rng(seed)
    matched = customer_keys(n_matched)
    guest_keys = matched + customer_keys(n_guest_only, offset=n_matched)
    host_keys = matched + customer_keys(n_host_only, offset=n_matched + n_guest_only)
    host = pd.DataFrame({KEY: host_keys, VINTAGE: [k.split(":")[1] for k in host_keys]})
    for j, name in enumerate(HOST_FEATURES):
        if j < 7:
            host[name] = rng.normal(loc=j, scale=1.0 + j / 3, size=len(host_keys))
        else:
            host[name] = (rng.random(len(host_keys)) < 0.3).astype(float)
    guest = pd.DataFrame({KEY: guest_keys, VINTAGE: [k.split(":")[1] for k in guest_keys]})
    for j, name in enumerate(GUEST_FEATURES):
        guest[name] = rng.normal(size=len(guest_keys)) if j < 6 else (rng.random(len(guest_keys)) < 0.2) * 1.0
    host_part = host.set_index(KEY).reindex(guest_keys)[HOST_FEATURES].fillna(0.0).to_numpy()
    host_z = (host_part - host_part.mean(axis=0)) / (host_part.std(axis=0) + 1e-9)
    logit = -1.0 + guest[GUEST_FEATURES[:3]].to_numpy() @ [0.8, -0.5, 0.3] + host_z[:, :3] @ [0.7, -0.6, 0.4]
    guest[LABEL] = (rng.random(len(guest_keys)) < 1 / (1 + np.exp(-logit))).astype(int)
    return guest, host
