"""The demo's closing summary: months, quarantined batches, versions, alias history, PSI by month."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from orchard.credit.stratification import TIERS
from orchard.lifecycle.ledger import MonthRecord, trained_in


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
    return Group(overview, aliases, psi, *extra)
