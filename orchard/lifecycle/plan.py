"""Which periods a portfolio run processes: every landed period not done yet, in order, none guessed.

A period runs only when every file-landed source has its file (SQL sources are read per period). The first
period with a missing file stops the run there: it is reported (missing, or late when later periods have
landed), and the next run continues from it once it arrives. The state folder belongs to one portfolio.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from orchard.atomic import write_json
from orchard.errors import OrchardError
from orchard.landing import landed_months
from orchard.months import month_range, parse_month
from orchard.settings import Settings
from orchard.sources import source_specs


@dataclass(frozen=True)
class RunPlan:
    """The months a run processes and what stopped it, if anything."""

    first: str
    months: list[str]
    missing: dict[str, list[str]] = field(default_factory=dict)
    """The first incomplete month's missing sources (empty when nothing is missing)."""
    late: bool = False
    """Whether later months have landed for the sources that are missing (a late arrival)."""

    def report(self) -> list[str]:
        """Return one line per thing the user should know about the plan."""
        lines = []
        if self.months:
            lines.append(f"periods to process: {self.months[0]}..{self.months[-1]} ({len(self.months)})")
        for month, sources in self.missing.items():
            kind = "late" if self.late else "missing"
            lines.append(
                f"period {month} is {kind}: no landing file yet for {', '.join(sources)}; "
                f"the run stops before it and continues from it once it has landed"
            )
        return lines


def plan_run(settings: Settings, until: str | None = None) -> RunPlan:
    """Return the months of the settings' portfolio to process up to `until` (default: the last landed)."""
    portfolio = settings.portfolio_def
    if portfolio.simulated:
        last = parse_month(until) if until else settings.end_month
        return RunPlan(settings.start_month, month_range(settings.start_month, last))
    folder, home = portfolio.folder, settings.home
    landed = {
        name: set(found)
        for name, spec in source_specs(portfolio).items()
        if (found := landed_months(spec, portfolio_folder=folder, home=home)) is not None
    }
    seen = sorted(set().union(*landed.values())) if landed else []
    first = portfolio.start or (seen[0] if seen else None)
    if first is None:
        raise OrchardError(
            f"portfolio {portfolio.name}: no landing file found for any source, and no 'start' period is declared"
        )
    last = parse_month(until) if until else (seen[-1] if seen else first)
    if last < first:
        raise OrchardError(f"--until {last} is before the portfolio's first period {first}")
    _check_windows(settings, first, seen[-1] if seen else last)
    months: list[str] = []
    for month in month_range(first, last):
        absent = sorted(name for name, have in landed.items() if month not in have)
        if absent:
            late = any(m > month for name in absent for m in landed[name])
            return RunPlan(first, months, {month: absent}, late)
        months.append(month)
    return RunPlan(first, months)


def _check_windows(settings: Settings, first: str, last: str) -> None:
    """Refuse a feature window longer than the whole data (its aggregate could never be complete)."""
    periods = len(month_range(first, last))
    for view_name, view in settings.portfolio_def.views.items():
        for feature, agg in view.aggregations.items():
            if agg.window_months > periods:
                raise OrchardError(
                    f"views.{view_name}.aggregations.{feature}: a {agg.window_months}-month window is longer "
                    f"than the data ({periods} periods landed, {first}..{last})"
                )


def claim_home(settings: Settings) -> None:
    """Bind the state folder to the settings' portfolio; refuse a folder that holds another portfolio's state."""
    marker = settings.portfolio_marker
    name = settings.portfolio_def.name
    if marker.exists():
        held = json.loads(marker.read_text()).get("name")
        if held != name:
            raise OrchardError(
                f"state folder {settings.home} holds portfolio {held!r}, not {name!r}: "
                f"set ORCHARD_HOME to another folder for {name}"
            )
        return
    write_json({"name": name, "folder": str(settings.portfolio_def.folder)}, marker)
