"""The partner-platform population: latent creditworthiness and the static traits derived from it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CITY_TIERS = ("tier1", "tier2", "tier3", "rural")
CITY_TIER_WEIGHTS = (0.25, 0.35, 0.25, 0.15)
CITY_LOG_INCOME = (0.25, 0.10, 0.0, -0.20)
DEVICE_OS = ("android", "ios", "other")
EMPLOYMENT_TYPES = ("salaried", "self_employed", "gig", "unemployed", "student")
# how strongly the shock cuts a user's income, by employment (salaried jobs are the most protected)
INCOME_SENSITIVITY = {"salaried": 0.7, "self_employed": 1.4, "gig": 1.5, "unemployed": 1.0, "student": 0.9}
MEDIAN_MONTHLY_INCOME = 2500.0
MAX_PRE_START_TENURE_MONTHS = 96


@dataclass(frozen=True)
class Population:
    """Static traits of every user, one array element per user (index = user number)."""

    user_id: np.ndarray
    creditworthiness: np.ndarray
    age_at_start: np.ndarray
    city_tier: np.ndarray
    device_os: np.ndarray
    signup_offset_months: np.ndarray
    income: np.ndarray
    income_sensitivity: np.ndarray
    employment: np.ndarray
    engagement: np.ndarray
    activity_logit: np.ndarray
    txn_rate: np.ndarray
    ticket_share: np.ndarray

    @property
    def size(self) -> int:
        """Return the number of users."""
        return len(self.user_id)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def user_ids(n_users: int) -> np.ndarray:
    """Return the user ids 'U0000000'.. as an object array of str."""
    return np.array([f"U{i:07d}" for i in range(n_users)], dtype=object)


def _employment(z: np.ndarray, age: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draw a base employment: students are young, salaried jobs go with creditworthiness."""
    n = len(z)
    salaried = rng.random(n) < _sigmoid(0.7 + 0.8 * z)
    other = rng.choice(
        np.array(["self_employed", "gig", "unemployed"], dtype=object), size=n, p=[0.45, 0.40, 0.15]
    )
    # weak borrowers who are not salaried are more often out of work
    other = np.where((other == "self_employed") & (z < -1.0) & (rng.random(n) < 0.4), "unemployed", other)
    student = (age < 24) & (rng.random(n) < 0.5)
    employment = np.where(salaried, "salaried", other)
    return np.where(student, "student", employment).astype(object)


def draw_population(n_users: int, rng: np.random.Generator) -> Population:
    """Draw n_users users: creditworthiness ~ N(0, 1) and traits correlated with it."""
    z = rng.standard_normal(n_users)
    age = np.clip(18.0 + rng.gamma(2.5, 7.0, n_users), 18.0, 75.0)
    city_index = rng.choice(len(CITY_TIERS), size=n_users, p=CITY_TIER_WEIGHTS)
    city = np.array(CITY_TIERS, dtype=object)[city_index]
    p_ios = _sigmoid(-1.2 + 0.5 * z + 0.5 * (city_index == 0))
    u = rng.random(n_users)
    device = np.where(u < 0.05, "other", np.where(u < 0.05 + 0.95 * p_ios, "ios", "android")).astype(object)
    # 85% joined before the simulation starts; the rest join during it
    joined_before = rng.random(n_users) < 0.85
    offset = np.where(
        joined_before,
        -rng.integers(1, MAX_PRE_START_TENURE_MONTHS + 1, n_users),
        rng.integers(0, 36, n_users),
    )
    log_income = (
        np.log(MEDIAN_MONTHLY_INCOME)
        + 0.50 * z
        + 0.25 * rng.standard_normal(n_users)
        + np.array(CITY_LOG_INCOME)[city_index]
        - 0.0005 * (age - 45.0) ** 2
    )
    employment = _employment(z, age, rng)
    sensitivity = np.array([INCOME_SENSITIVITY[e] for e in employment])
    return Population(
        user_id=user_ids(n_users),
        creditworthiness=z,
        age_at_start=age,
        city_tier=city,
        device_os=device,
        signup_offset_months=offset.astype(np.int64),
        income=np.exp(log_income),
        income_sensitivity=sensitivity,
        employment=employment,
        engagement=_sigmoid(0.3 + 0.4 * z + 0.8 * rng.standard_normal(n_users)),
        activity_logit=1.4 + 0.2 * z + 0.6 * rng.standard_normal(n_users),
        txn_rate=rng.gamma(2.0, 0.6, n_users),
        ticket_share=0.012 * rng.lognormal(0.0, 0.4, n_users),
    )
