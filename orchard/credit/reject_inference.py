"""Reject inference by parcelling: declined applications enter training with labels inferred from a booked-only fit.

A model trained on booked loans alone learns the outcome only where the lender said yes; the declined applicants,
most of them riskier, are the population it will score but never saw labelled. Parcelling (Siddiqi, Credit Risk
Scorecards, ch. 6) scores the declined with the booked-only model and labels each one bad with probability
min(1, factor x PD): `factor` above 1 states the belief that declined applicants are riskier than the booked
ones the model extrapolates from at the same score. The labels are drawn with a seeded generator, so the same
fit makes the same inferred sample. Whether it helps is an empirical question; orchard.lifecycle.selection_bias
measures it against the simulator's truth.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from orchard.errors import OrchardError


def parcelled_labels(reject_pd: np.ndarray, factor: float, seed: int) -> np.ndarray:
    """Return a 0/1 label per declined case: bad with probability min(1, factor x its booked-only PD)."""
    values = np.asarray(reject_pd, dtype=float)
    if not np.isfinite(values).all() or ((values < 0) | (values > 1)).any():
        raise OrchardError("parcelling needs a PD in [0, 1] for every declined case")
    if factor < 1.0:
        raise OrchardError(f"the parcelling factor must be at least 1, got {factor}")
    draws = np.random.default_rng([seed, 7101]).random(len(values))
    return (draws < np.minimum(values * factor, 1.0)).astype(int)


def with_parcelled_rejects(
    booked: pd.DataFrame, rejects: pd.DataFrame, reject_pd: np.ndarray, factor: float, seed: int
) -> pd.DataFrame:
    """Return the booked training rows followed by the declined ones labelled by parcelling (column `bad`)."""
    if len(rejects) != len(reject_pd):
        raise OrchardError(f"{len(rejects)} declined cases but {len(reject_pd)} PDs to parcel them with")
    inferred = rejects.assign(bad=parcelled_labels(reject_pd, factor, seed))
    return pd.concat([booked, inferred[booked.columns]], ignore_index=True)
