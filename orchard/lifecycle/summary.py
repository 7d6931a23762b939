"""The demo's closing summary: months, quarantined batches, versions, alias history, PSI by month."""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Group
from rich.table import Table
from rich.text import Text

from orchard.credit.stratification import TIERS
from orchard.lifecycle.ledger import MonthRecord, trained_in
from orchard.months import months_between


def shock_detection(records: list[MonthRecord], shock_month: str, model: str) -> str | None:
    """Return the first month at or after the shock whose monitoring of the model breached, if any."""
    for record in records:
        if record.month >= shock_month and record.model(model).breach:
            return record.month
    return None


def models_table(records: list[MonthRecord], champions: dict[str, int | None]) -> Table:
    """Return one row per registered model: versions trained (month, action) and the champion now."""
    table = Table(title="Lifecycle models")
    for col in ("model", "versions (trained @ month: decision)", "champion"):
        table.add_column(col, overflow="fold")
    for name, champion in champions.items():
        steps = []
        for r in records:
            trained = trained_in(r, name)
            if trained:
                promotion = r.model(name).promotion
                steps.append(f"v{trained['version']} @ {r.month}: {(promotion or {}).get('action', '?')}")
        table.add_row(name, ", ".join(steps) or "none", "—" if champion is None else f"v{champion}")
    return table


def tiers_table(records: list[MonthRecord], model: str) -> Table:
    """Return the campaign offers of each month by tier A-D (the pre-credit stratification)."""
    table = Table(title=f"Campaign tiers by month ({model} champion)")
    table.add_column("month")
    for tier in TIERS:
        table.add_column(tier, justify="right")
    for r in records:
        tiers = r.model(model).tiers
        if tiers:
            table.add_row(r.month, *(str(tiers[t]) for t in TIERS))
    return table


def losses_table(losses: list[dict], model: str) -> Table:
    """Return expected loss (forecast at booking) beside realised net charge-offs, by vintage."""
    table = Table(title=f"Expected vs realised loss by vintage ({model} champion at booking)")
    for col in ("vintage", "loans", "expected loss", "realised so far", "ratio", "window"):
        table.add_column(col, justify="right")
    for row in losses:
        ratio = row["expected_loss"] / row["realised_loss"] if row["realised_loss"] else float("nan")
        table.add_row(
            row["vintage"],
            str(row["loans"]),
            f"{row['expected_loss']:,.0f}",
            f"{row['realised_loss']:,.0f}",
            f"{ratio:.2f}",
            "mature" if row["mature"] else "open",
        )
    return table


@dataclass(frozen=True)
class Adapted:
    """The first version made from post-shock data that decided, and when (None: no such version yet)."""

    version: int
    method: str
    promoted_at: str
    decides_from: str
    months_after_shock: int


def post_shock_version(trained: dict, shock_month: str) -> bool:
    """Return whether a version was made from data after the shock (a recalibration since, or a fit reaching it)."""
    if trained.get("method") == "recalibration":
        return str(trained["train_window"]).split("..")[0] >= shock_month
    return str(trained["train_window"]).split("..")[-1] >= shock_month


def first_adapted(records: list[MonthRecord], shock_month: str, model: str) -> Adapted | None:
    """Return the first version made from post-shock data that became champion, and the first month it decided."""
    promoted: dict[int, tuple[str, str]] = {}
    for r in records:
        m = r.model(model)
        if (
            m.trained
            and m.promotion
            and m.promotion.get("action") == "promote"
            and post_shock_version(m.trained, shock_month)
        ):
            promoted.setdefault(int(m.trained["version"]), (r.month, str(m.trained.get("method", "fit"))))
        if m.champion in promoted and r.month > promoted[m.champion][0]:
            at, method = promoted[m.champion]
            return Adapted(m.champion, method, at, r.month, months_between(shock_month, r.month))
    return None


def _short(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def adaptation_table(
    records: list[MonthRecord], model: str, shock_month: str, vintages: dict[str, dict[str, float]]
) -> Table:
    """Return the months after the shock: each decision on the model and why, then the realised calibration of
    the first post-shock version on the vintages it decided, once they matured."""
    adapted = first_adapted(records, shock_month, model)
    head = (
        f"v{adapted.version} ({adapted.method}) decides from {adapted.decides_from}: "
        f"{adapted.months_after_shock} month(s) after the shock"
        if adapted
        else "no version made from post-shock data has decided yet"
    )
    table = Table(title=f"Adapting to the shock of {shock_month} ({model}): {head}")
    for col in ("month", "champion", "decision", "why"):
        table.add_column(col, overflow="fold")
    for r in records:
        m = r.model(model)
        if r.month < shock_month or not (m.breach or m.trained):
            continue
        if m.trained and m.promotion:
            decision = f"{m.trained.get('method', 'fit')} v{m.trained['version']}: {m.promotion['action']}"
            why = m.promotion.get("reason", "")
        else:
            decision, why = "hold", (m.reasons[-1] if m.reasons else "")
        table.add_row(r.month, "—" if m.champion is None else f"v{m.champion}", decision, _short(why))
    if adapted is not None:
        decided = [r.month for r in records if r.model(model).champion == adapted.version]
        matured = [(v, vintages[v]) for v in decided if vintages.get(v)]
        for vintage, row in matured:
            table.add_row(
                vintage,
                f"v{adapted.version}",
                "matured",
                f"realised bad rate {row.get('bad_rate', float('nan')):.3f} vs expected "
                f"{row.get('expected_bad_rate', float('nan')):.3f} (booked loans)",
            )
        if not matured:
            table.add_row(
                "—", f"v{adapted.version}", "open", "none of the vintages it decided has matured yet"
            )
    return table


def _first_check(broken: list[str]) -> str:
    """Return the first broken expectation of a quarantined batch, named as the contract names it."""
    first = broken[0].split(":")[0] if broken else "no finding recorded"
    return first + (f" +{len(broken) - 1} more" if len(broken) > 1 else "")


def estimation_table(vintages: dict[str, dict[str, float]], model: str) -> Table:
    """Return each matured vintage's realised AUC and bad rate beside the early estimates and their errors."""
    table = Table(title=f"Early estimate vs realised performance by matured vintage ({model})")
    for col in (
        "vintage",
        "cases",
        "realised AUC",
        "expected AUC",
        "error",
        "all applicants",
        "error",
        "realised bad rate",
        "expected",
        "error",
    ):
        table.add_column(col, justify="right")

    def number(value: float | None, sign: bool = False) -> str:
        if value is None or value != value:  # absent, or NaN (a one-class vintage has no AUC)
            return "—"
        return f"{value:+.3f}" if sign else f"{value:.3f}"

    for vintage, row in sorted(vintages.items()):
        if not row:
            continue
        auc = row.get("auc")
        applicants = row.get("expected_auc_applicants")
        error_applicants = None if auc is None or applicants is None else applicants - auc
        table.add_row(
            vintage,
            str(int(row.get("n", 0))),
            number(auc),
            number(row.get("expected_auc")),
            number(row.get("auc_error"), True),
            number(applicants),
            number(error_applicants, True),
            number(row.get("bad_rate")),
            number(row.get("expected_bad_rate")),
            number(row.get("bad_rate_error"), True),
        )
    return table


def render_summary(
    records: list[MonthRecord],
    primary: str,
    alias_events: list[dict],
    shock_month: str | None,
    champions: dict[str, int | None] | None = None,
    losses: dict[str, list[dict]] | None = None,
    tiers_models: tuple[str, ...] = (),
    vintages: dict[str, dict[str, float]] | None = None,
    adapting: str | None = None,
    adapting_vintages: dict[str, dict[str, float]] | None = None,
) -> Group:
    """Build the summary tables shown at the end of a lifecycle run (the primary model in detail)."""
    overview = Table(title="Orchard lifecycle summary", show_header=False)
    quarantined = [f"{b} ({_first_check(broken)})" for r in records for b, broken in r.quarantined.items()]
    warned = [b for r in records for b in r.warned]
    trained = [t for r in records if (t := r.model(primary).trained)]
    overview.add_row(
        "months processed", f"{len(records)} ({records[0].month}..{records[-1].month})" if records else "0"
    )
    overview.add_row("batches quarantined", ", ".join(quarantined) or "none")
    overview.add_row(
        "batches passed with warnings", f"{len(warned)}: {', '.join(warned)}" if warned else "none"
    )
    overview.add_row(
        "model versions", ", ".join(f"{t['model']} v{t['version']} @ {t['as_of']}" for t in trained) or "none"
    )
    if shock_month is not None:
        detected = shock_detection(records, shock_month, primary)
        overview.add_row("shock", f"starts {shock_month}; first breach {detected or 'not detected'}")

    aliases = Table(title=f"Alias history ({primary})")
    for col in ("month", "action", "alias", "version", "approver", "reason"):
        aliases.add_column(col, overflow="fold")
    for e in alias_events:
        aliases.add_row(
            e["effective_month"], e["action"], e["alias"], str(e["version"]), e["approver"], e["reason"]
        )

    psi = Table(title=f"Monthly monitoring of the {primary} champion")
    for col in ("month", "champion", "score PSI", "top feature PSI", "event"):
        psi.add_column(col, overflow="fold")
    for r in records:
        m = r.model(primary)
        score = "—" if m.score_psi is None else f"{m.score_psi:.3f}"
        score_text = Text(score + (" BREACH" if m.breach else ""), style="bold red" if m.breach else "")
        top = ", ".join(f"{k} {v:.2f}" for k, v in list(m.top_feature_psi.items())[:2])
        events = []
        if r.quarantined:
            events.append("quarantined " + ", ".join(r.quarantined))
        if r.warned:
            events.append("warned " + ", ".join(r.warned))
        if m.trained:
            events.append(f"trained v{m.trained['version']}")
        if m.promotion:
            events.append(f"{m.promotion['action']} v{m.promotion['version']}")
        psi.add_row(
            r.month, "—" if m.champion is None else f"v{m.champion}", score_text, top, "; ".join(events)
        )
    extra = []
    if champions:
        extra.append(models_table(records, champions))
    extra += [
        tiers_table(records, model) for model in tiers_models if any(r.model(model).tiers for r in records)
    ]
    extra += [losses_table(rows, model) for model, rows in (losses or {}).items() if rows]
    if vintages and any(vintages.values()):
        extra.append(estimation_table(vintages, primary))
    if shock_month is not None and adapting is not None:
        extra.append(adaptation_table(records, adapting, shock_month, adapting_vintages or {}))
    return Group(overview, aliases, psi, *extra)
