"""The demo's closing summary: months, quarantined batches, versions, alias history, PSI by month."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from orchard.lifecycle.ledger import MonthRecord


def shock_detection(records: list[MonthRecord], shock_month: str) -> str | None:
    """Return the first month at or after the shock whose monitoring breached, if any."""
    for record in records:
        if record.month >= shock_month and record.breach:
            return record.month
    return None


def render_summary(records: list[MonthRecord], alias_events: list[dict], shock_month: str) -> Group:
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
    return Group(overview, aliases, psi)
