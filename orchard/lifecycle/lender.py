"""The simulated lender decides with Orchard's champion: the demo's closed loop (orchard.simulate.lender).

From the month after the decision model's first champion, each month's applications are decided with the
champion in force when the month began and the decision API's cut-offs (`settings.serving`): declined at
decline_min_pd and above, booked at approve_max_pd and below; an application referred (the band between, or a
suspected fraud) goes to manual underwriting, which applies the legacy rule. Before the first champion the
legacy rule decides alone. The models therefore learn from loans their own decisions booked, and face the
selection bias those decisions create.

What the lender knows when it decides is what it knew when the month began: the month's partner snapshot (dated
the 1st) and its own records of earlier months (the sources it was shown, burn-in included). Its features are
the portfolio's own feature functions (orchard.features) over those rows, each view's latest row at the month's
start within the view's ttl, so the champion scores with the features it was trained on; the one difference from
the point-in-time join of training is that statements issued earlier in the same month are not yet known.

Every month's decisions are logged (`simulator/decisions/<month>.parquet` under the home): a month simulated again
(a rerun replays the world from its start) takes the logged decisions as facts, so the world is rebuilt exactly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from model_registry.history import champion_at
from model_registry.registry import load_model
from orchard.atomic import write_parquet
from orchard.errors import OrchardError
from orchard.features import entity_key, feature_names, view_features
from orchard.lifecycle.tools import Tools
from orchard.model_specs import ModelSpec, model_spec
from orchard.months import add_months, month_start
from orchard.portfolio.expressions import row_mask
from orchard.serving.scoring import APPROVE, REFER, DecisionPolicy, ServedModel, decision_rules, score_frame
from orchard.settings import Settings
from orchard.simulate.frames import typed_frame
from orchard.simulate.lender import SNAPSHOT_SOURCE, Columns
from orchard.sources import EVENT_TIME, source_specs

log = logging.getLogger(__name__)

LEGACY = "legacy rule"


def decisions_dir(settings: Settings) -> Path:
    """Return the folder of the simulated lender's decision log."""
    return settings.simulator_dir / "decisions"


def decisions_path(settings: Settings, month: str) -> Path:
    """Return where the simulated lender's decisions of a month are logged."""
    return decisions_dir(settings) / f"{month}.parquet"


def features_as_of(
    settings: Settings, views: list[str], frames: dict[str, pd.DataFrame], at: pd.Timestamp
) -> pd.DataFrame:
    """Return each entity's view features known at `at` (indexed by the entity), from the views' source rows.

    A view's row counts while `at - ttl_days < row time <= at`; an entity's latest such row is taken.
    """
    portfolio = settings.portfolio_def
    parts = []
    for view in views:
        definition = portfolio.views[view]
        rows = frames.get(definition.source)
        if rows is None:
            raise OrchardError(f"the simulated lender has no rows of {definition.source} for view {view}")
        key = entity_key(portfolio, view)
        values = view_features(portfolio, view, rows)
        known = (values[EVENT_TIME] <= at) & (
            values[EVENT_TIME] > at - pd.Timedelta(days=definition.ttl_days)
        )
        latest = values.loc[known].drop_duplicates(key, keep="last").set_index(key)
        parts.append(latest[feature_names(portfolio, view)])
    return pd.concat(parts, axis=1, join="outer") if parts else pd.DataFrame()


@dataclass
class ChampionLender:
    """The simulator's lender deciding with the decision model's champion (see the module's docstring)."""

    settings: Settings
    tools: Tools
    memory: dict[str, list[tuple[str, pd.DataFrame]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        decision = self.settings.portfolio_def.decision
        if decision is None:
            raise OrchardError(
                f"portfolio {self.settings.portfolio_def.name} names no decision model: the simulated "
                "lender cannot decide with a champion (set simulation.lender to 'legacy')"
            )
        self.pd_spec = model_spec(self.settings.portfolio_def, decision.pd_model)
        self.fraud_spec = (
            model_spec(self.settings.portfolio_def, decision.fraud_model) if decision.fraud_model else None
        )
        self.specs = source_specs(self.settings.portfolio_def)
        views = self.settings.portfolio_def.views
        models = [s for s in (self.pd_spec, self.fraud_spec) if s is not None]
        self.views = list(dict.fromkeys(v for s in models for v in s.views))
        self.sources = {views[v].source for v in self.views}
        # a source's rows older than its views' ttl and longest window can no longer change a feature known now
        self.keep_months: dict[str, int] = {}
        for v in self.views:
            longest = max((a.window_months for a in views[v].aggregations.values()), default=1)
            months = views[v].ttl_days // 28 + 1 + longest
            self.keep_months[views[v].source] = max(self.keep_months.get(views[v].source, 0), months)
        serving = self.settings.serving
        self.policy = DecisionPolicy(serving.approve_max_pd, serving.decline_min_pd, serving.fraud_refer_min)

    def observe(self, month: str, sources: dict[str, Columns]) -> None:
        """Remember a finished month's rows of the sources the decision models' views read.

        Months before the data starts are not remembered: the feature store the champion was trained from
        begins with the first month too, so the lender's features are the champion's.
        """
        if month < self.settings.start_month:
            return
        for source in self.sources:
            if source in sources:
                held = self.memory.setdefault(source, [])
                held.append((month, typed_frame(sources[source], self.specs[source])))
                del held[: max(len(held) - self.keep_months[source], 0)]

    def decide(self, month: str, applications: Columns, snapshot: Columns, legacy: np.ndarray) -> np.ndarray:
        """Book the applications the champion approves; referrals go to the legacy rule."""
        if month < self.settings.start_month:
            return legacy  # the seasoned book before the data starts: the incumbent rule
        ids = np.asarray(applications["application_id"], dtype=object)
        logged = self._logged(month, ids)
        if logged is not None:
            return logged
        decided = self._decide(month, applications, snapshot, legacy)
        write_parquet(decided, decisions_path(self.settings, month))
        return decided["approved"].to_numpy(dtype=bool)

    def _logged(self, month: str, ids: np.ndarray) -> np.ndarray | None:
        path = decisions_path(self.settings, month)
        if not path.exists():
            return None
        logged = pd.read_parquet(path)
        if not np.array_equal(logged["application_id"].to_numpy(dtype=object), ids):
            raise OrchardError(
                f"{path} holds decisions of other applications than the simulator's {month}: the home was "
                "made with other simulation settings; remove it (or use another home) to simulate again"
            )
        return logged["approved"].to_numpy(dtype=bool)

    def _decide(
        self, month: str, applications: Columns, snapshot: Columns, legacy: np.ndarray
    ) -> pd.DataFrame:
        ids = np.asarray(applications["application_id"], dtype=object)
        last = add_months(month, -1)
        version = champion_at(self.settings, self.pd_spec.name, last)
        out = pd.DataFrame(
            {"application_id": ids, "approved": legacy, "policy": LEGACY, "decision": "legacy"}
        )
        out["pd"] = np.nan
        out["fraud_pd"] = np.nan
        if version is None:
            return out
        frame = self._cases(month, applications, snapshot)
        scored = np.ones(len(frame), dtype=bool)
        if self.pd_spec.where:
            scored = row_mask(frame, self.pd_spec.where, f"models.{self.pd_spec.name}.population.where")
        pd_values = self._score(self.pd_spec, version, frame)
        fraud, fraud_version = None, None
        if self.fraud_spec is not None:
            fraud_version = champion_at(self.settings, self.fraud_spec.name, last)
            if fraud_version is not None:
                fraud = self._score(self.fraud_spec, fraud_version, frame)
        decisions, _ = decision_rules(pd_values, fraud, self.policy)
        approved = np.where(decisions == REFER, legacy, decisions == APPROVE)
        policy = f"{self.pd_spec.name} v{version}"
        if self.fraud_spec is not None and fraud_version is not None:
            policy += f" + {self.fraud_spec.name} v{fraud_version}"
        out["approved"] = np.where(scored, approved, legacy)
        out["policy"] = np.where(scored, policy, LEGACY)
        out["decision"] = np.where(scored, decisions, "legacy")
        out["pd"] = np.where(scored, pd_values, np.nan)
        if fraud is not None:
            out["fraud_pd"] = np.where(scored, fraud, np.nan)
        return out

    def _cases(self, month: str, applications: Columns, snapshot: Columns) -> pd.DataFrame:
        """Return the applications with the decision models' features known when the month began."""
        start = month_start(month, self.settings.portfolio_def.timezone)
        frames = {
            source: pd.concat([f for _, f in held], ignore_index=True) for source, held in self.memory.items()
        }
        if SNAPSHOT_SOURCE in self.sources:  # the month's snapshot, dated the 1st, is known when it begins
            now = typed_frame(snapshot, self.specs[SNAPSHOT_SOURCE])
            frames[SNAPSHOT_SOURCE] = pd.concat(
                [frames.get(SNAPSHOT_SOURCE, now.iloc[:0]), now], ignore_index=True
            )
        cases = typed_frame(applications, self.specs[self.pd_spec.source])
        features = features_as_of(self.settings, self.views, frames, start)
        joined = features.reindex(cases[self.pd_spec.entity].to_numpy()).reset_index(drop=True)
        return pd.concat([cases.reset_index(drop=True), joined], axis=1)

    def _score(self, spec: ModelSpec, version: int, frame: pd.DataFrame) -> np.ndarray:
        model = load_model(self.settings, spec.name, version, self.tools.models)
        served = ServedModel.build(spec.name, version, model)
        return np.asarray(score_frame(served, frame, with_reasons=False).pd, dtype=float)


def decision_log(settings: Settings, months: list[str] | None = None) -> pd.DataFrame:
    """Return the simulated lender's logged decisions (every month with a log, or the months given)."""
    if months is None:
        paths = sorted(decisions_dir(settings).glob("*.parquet"))
    else:
        paths = [decisions_path(settings, m) for m in months]
    frames = [pd.read_parquet(p).assign(month=p.stem) for p in paths if p.exists()]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
