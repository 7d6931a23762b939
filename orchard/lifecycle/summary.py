"""The demo's closing summary: months, quarantined batches, versions, alias history, PSI by month."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from orchard.credit.stratification import TIERS
from orchard.lifecycle.ledger import PRIMARY_MODEL, MonthRecord, trained_in


def shock_detection(records: list[MonthRecord], shock_month: str) -> str | None:
    """Return the first month at or after the shock whose monitoring breached, if any."""
    for record in records:
        if record.month >= shock_month and record.breach:
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
                promotion = r.promotion if name == PRIMARY_MODEL else r.models[name].get("promotion")
                steps.append(f"v{trained['version']} @ {r.month}: {(promotion or {}).get('action', '?')}")
        table.add_row(name, ", ".join(steps) or "none", "—" if champion is None else f"v{champion}")
    return table


def tiers_table(records: list[MonthRecord], model: str = "precredit_response") -> Table:
    """Return the campaign offers of each month by tier A-D (the pre-credit stratification)."""
    table = Table(title=f"Campaign tiers by month ({model} champion)")
    table.add_column("month")
    for tier in TIERS:
        table.add_column(tier, justify="right")
    for r in records:
        tiers = (r.models.get(model) or {}).get("tiers")
        if tiers:
            table.add_row(r.month, *(str(tiers[t]) for t in TIERS))
    return table


def losses_table(losses: list[dict]) -> Table:
    """Return expected loss (forecast at booking) beside realised net charge-offs, by vintage."""
    table = Table(title="Expected vs realised loss by vintage (loss_forecast champion at booking)")
    for col in ("vintage", "loans", "expected loss", "realised so far", "ratio", "window"):
        table.add_column(col, justify="right")
    for row in losses:
        ratio = row["expected_loss"] / row["realised_loss"] if row["realised_loss"] else float("nan")
        table.add_row(row["vintage"], str(row["loans"]), f"{row['expected_loss']:,.0f}",
                      f"{row['realised_loss']:,.0f}", f"{ratio:.2f}", "mature" if row["mature"] else "open")  # fmt: skip
    return table


def render_summary(
    records: list[MonthRecord],
    alias_events: list[dict],
    shock_month: str,
    champions: dict[str, int | None] | None = None,
    losses: list[dict] | None = None,
) -> Group:
    """Build the summary tables shown at the end of `orchard demo`."""
    overview = Table(title="Orchard lifecycle summary", show_header=False)
    quarantined = [b for r in records for b in r.quarantined]
    trained = [r.trained for r in records if r.trained]
    detected = shock_detection(records, shock_month)
    overview.add_row(
        "months processed", f"{len(records)} ({records[0].month}..{records[-1].month})" if records else "0"
    )
    overview.add_row("batches quarantined", ", ".join(quarantined) or "none")
    overview.add_row(
        "model versions", ", ".join(f"{t['model']} v{t['version']} @ {t['as_of']}" for t in trained) or "none"
    )
    overview.add_row("shock", f"starts {shock_month}; first breach {detected or 'not detected'}")

    aliases = Table(title="Alias history (application_pd)")
    for col in ("month", "action", "alias", "version", "approver", "reason"):
        aliases.add_column(col, overflow="fold")
    for e in alias_events:
        aliases.add_row(
            e["effective_month"], e["action"], e["alias"], str(e["version"]), e["approver"], e["reason"]
        )

    psi = Table(title="Monthly monitoring of the champion")
    for col in ("month", "champion", "score PSI", "top feature PSI", "event"):
        psi.add_column(col, overflow="fold")
    for r in records:
        score = "—" if r.score_psi is None else f"{r.score_psi:.3f}"
        score_text = Text(score + (" BREACH" if r.breach else ""), style="bold red" if r.breach else "")
        top = ", ".join(f"{k} {v:.2f}" for k, v in list(r.top_feature_psi.items())[:2])
        events = []
        if r.quarantined:
            events.append("quarantined " + ", ".join(r.quarantined))
        if r.trained:
            events.append(f"trained v{r.trained['version']}")
        if r.promotion:
            events.append(f"{r.promotion['action']} v{r.promotion['version']}")
        psi.add_row(
            r.month, "—" if r.champion is None else f"v{r.champion}", score_text, top, "; ".join(events)
        )
    extra = []
    if champions:
        extra.append(models_table(records, champions))
    if any((r.models.get("precredit_response") or {}).get("tiers") for r in records):
        extra.append(tiers_table(records))
    if losses:
        extra.append(losses_table(losses))
    return Group(overview, aliases, psi, *extra)
