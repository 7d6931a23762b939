"""The `orchard` command line: thin wrappers that build settings once and call the flows.

Each command imports what it runs inside its own body, on purpose: `orchard --help` or a one-line error must not
import Prefect, MLflow, Great Expectations and Feast (seconds of start-up each).
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import click
import typer
from rich.console import Console

from orchard.errors import OrchardError, ServiceUnreachable
from orchard.feast_typecheck import skip_feast_typechecks

if TYPE_CHECKING:
    from orchard.settings import Settings

app = typer.Typer(
    help="Orchard: the lifecycle of consumer-credit risk models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True)


def _one_line_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Print OrchardError, an unreachable PostgreSQL (production) and interruptions as one line, not a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except KeyboardInterrupt:
            err_console.print("interrupted: run the same command again to continue where it stopped")
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort, click.ClickException):
            raise
        except Exception as exc:
            problem = _postgres_outage(exc) or (str(exc) if isinstance(exc, OrchardError) else None)
            if problem is None:
                raise
            err_console.print(f"[bold red]error:[/] {problem}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper


def _postgres_outage(failure: Exception) -> str | None:
    """In the production profile, name PostgreSQL when it does not answer after a failure (else None).

    The flows reach PostgreSQL directly (governance, Feast registry) and through the MLflow and Prefect servers,
    whose errors (HTTP 500/503) do not say why: asking the server itself gives the user the cause in one line.
    """
    from orchard.runtime import load_settings

    try:
        settings = load_settings()
    except OrchardError:
        return None
    if settings.profile != "production" or settings.production.postgres_url is None:
        return None
    from orchard.production import check_postgres

    try:
        check_postgres(settings.production)
    except ServiceUnreachable as outage:
        return f"{outage} ({type(failure).__name__}); start it and run the same command again: finished work is kept"
    return None


class _ConsoleLines(logging.Handler):
    """Print each progress record as one plain line on the console."""

    def emit(self, record: logging.LogRecord) -> None:
        console.print(record.getMessage(), soft_wrap=True, highlight=False, markup=False)


def _quiet_tools() -> None:
    """Keep the demo's output to Orchard's own lines: the tools' deprecation chatter and INFO logs off."""
    for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category)
    # MLflow's hint on a logged model's integer columns concerns its pyfunc schema enforcement; Orchard scores the
    # model object itself (orchard.serving), which reads a missing value in any column
    warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer", category=UserWarning)
    for name in ("mlflow", "feast", "great_expectations", "evidently", "alembic", "py.warnings", "orchard"):
        logging.getLogger(name).setLevel(logging.ERROR)
    logger = logging.getLogger("orchard.progress")
    logger.handlers[:] = [_ConsoleLines()]
    logger.setLevel(logging.INFO)
    logger.propagate = False


def _before_flows(*, start_server: bool = False, reports: bool = True) -> Callable[[], None]:
    """Quiet Prefect's run loggers (read when it is imported) and the tools' import-time warnings; import them.

    A quarantined batch fails its task on purpose and Orchard prints one line naming the broken
    expectations; a user's error is printed as one line too, so Prefect's tracebacks would only be noise.
    With `start_server`, Prefect's temporary server (when no Prefect API is configured) starts while the tools
    are imported; the call returned waits until it answers (it raises what the start raised). Without
    `reports`, Evidently is left to the process that makes the reports (a lifecycle's lane process imports it
    itself): about 6 s of CPU this process would spend at its start for nothing.
    """
    for logger in ("TASK_RUNS", "FLOW_RUNS"):
        os.environ.setdefault(f"PREFECT_LOGGING_LOGGERS_PREFECT_{logger}_LEVEL", "CRITICAL")
    # A configured Dask LocalCluster (orchard.partitions) logs its scheduler's and workers' comings and
    # goings at INFO, and its worker processes warn as the tools do: read by Dask and Python when they start.
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "error")
    os.environ.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning,ignore::FutureWarning")
    # The tools install their own warning filters when imported, and some warn while importing: import them
    # with every warning off, then keep their deprecation chatter off for the run.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import prefect  # noqa: F401

        server = _temporary_prefect_server() if start_server else lambda: None
        if reports:
            import evidently  # noqa: F401

            import monitoring.evidently_metric  # noqa: F401
    for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning, SyntaxWarning):
        warnings.filterwarnings("ignore", category=category)
    return server


def _temporary_prefect_server() -> Callable[[], None]:
    """Start Prefect's temporary server in a thread, when no Prefect API is configured; return the wait for it.

    Its process imports Prefect's server and sets up its database (about 10 s on the reference machine) while
    this one imports the stack; the flow's client then finds it running (Prefect keeps one per process).
    """
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():
        return lambda: None
    console.print("starting a temporary Prefect server…", highlight=False)
    server = SubprocessASGIServer()
    failed: list[BaseException] = []

    def start() -> None:
        try:
            server.start()
        except BaseException as exc:  # handed to the caller's thread by the wait
            failed.append(exc)

    thread = threading.Thread(target=start, name="prefect-server-start", daemon=True)
    thread.start()

    def wait() -> None:
        thread.join()
        if failed:
            raise failed[0]

    return wait


@contextmanager
def _settings(**overrides: object) -> Iterator[Settings]:
    """Yield the command's settings, the tools pointed at its home for the command (orchard.runtime.tool_scope)."""
    from orchard.runtime import load_settings, tool_scope

    with tool_scope(load_settings(**{k: v for k, v in overrides.items() if v is not None})) as settings:
        yield settings


@app.command()
@_one_line_errors
def simulate() -> None:
    """Write the simulator's monthly landing files, decided by the legacy rule (seeded; see README for the story).

    The demo writes each month just before it runs it instead, its applications decided by the champion.
    """
    with _settings() as settings:
        from orchard.simulate import simulate as run_simulation

        summary = run_simulation(settings)
        console.print(
            f"wrote {len(summary.months)} months x {len(summary.rows)} sources to {settings.landing_dir}"
        )


@app.command()
@_one_line_errors
def demo(
    until: Annotated[
        str | None, typer.Option(help="last month to run (YYYY-MM); default: the end month")
    ] = None,
    portfolio: Annotated[
        Path | None,
        typer.Option(help="a simulated portfolio (simulated: true); default: the shipped demo's"),
    ] = None,
) -> None:
    """Run the whole lifecycle month by month in Prefect, then print the summary."""
    from orchard.months import month_range, parse_month
    from orchard.settings import DEMO_PORTFOLIO

    with _settings(portfolio=portfolio or DEMO_PORTFOLIO) as settings:
        if not settings.portfolio_def.simulated:
            raise OrchardError(
                f"portfolio {settings.portfolio_def.name} is not simulated: run a lender's data with "
                f"`orchard run --portfolio {portfolio}`"
            )
        last = parse_month(until) if until else settings.end_month
        if last not in month_range(settings.start_month, settings.end_month):
            raise OrchardError(
                f"unknown month {last}: the lifecycle runs {settings.start_month}..{settings.end_month}"
            )
        console.print(f"Orchard demo {settings.start_month}..{last}, state in {settings.home}/")
        _run_lifecycle(settings, last, shock_month=settings.simulation.shock_month)


@app.command()
@_one_line_errors
def run(
    portfolio: Annotated[Path, typer.Option(help="the portfolio folder (with portfolio.yaml)")],
    until: Annotated[
        str | None, typer.Option(help="last period to run (YYYY-MM); default: the last one landed")
    ] = None,
) -> None:
    """Run a portfolio's lifecycle over every landed period not done yet, in order (resumable, idempotent)."""
    from orchard.lifecycle.plan import plan_run

    with _settings(portfolio=portfolio) as settings:
        plan = plan_run(settings, until)
        for line in plan.report():
            console.print(line, soft_wrap=True, highlight=False)
        if not plan.months:
            raise OrchardError(f"nothing to run: {plan.first} has not landed for every source")
        settings = settings.model_copy(update={"start_month": plan.first, "end_month": plan.months[-1]})
        console.print(f"Orchard run of portfolio {settings.portfolio_def.name}, state in {settings.home}/")
        _run_lifecycle(settings, plan.months[-1], shock_month=None)
        if plan.missing:
            raise typer.Exit(3)  # the run stopped at a missing period: a scheduler sees it did not finish


@app.command()
@_one_line_errors
def init(
    folder: Annotated[Path, typer.Argument(help="the new portfolio folder")],
    sample: Annotated[
        list[Path],
        typer.Option("--from", help="a sample file of one source (CSV or Parquet); repeat per source"),
    ],
) -> None:
    """Scaffold a portfolio from sample files: types, categories, keys and time columns guessed for review."""
    from orchard.portfolio.scaffold import scaffold_portfolio

    path = scaffold_portfolio(folder, sample)
    console.print(
        f"wrote {path}: review every line marked REVIEW, then add labels and models", soft_wrap=True
    )


@app.command()
@_one_line_errors
def deployments(
    portfolio: Annotated[Path, typer.Option(help="the portfolio folder (with portfolio.yaml)")],
    output: Annotated[Path, typer.Option(help="where to write the Prefect deployments")] = Path(
        "prefect.yaml"
    ),
) -> None:
    """Write the portfolio's Prefect deployments (schedules, breach triggers) to a prefect.yaml."""
    from orchard.portfolio.deployments import write_deployments
    from orchard.portfolio.load import load_portfolio
    from orchard.settings import DEMO_PORTFOLIO

    definition = load_portfolio(portfolio)
    is_demo = portfolio.resolve() == DEMO_PORTFOLIO.resolve()
    path = write_deployments(definition, output, None if is_demo else str(portfolio.resolve()))
    console.print(f"wrote {path}: {len(definition.models)} models; deploy with `prefect deploy --all`")


def _run_lifecycle(settings: Any, last: str, *, shock_month: str | None) -> None:
    """Run the lifecycle flow to `last` (months already done are read back) and print the summary."""
    from orchard.lifecycle.ledger import MonthRecord, load_month
    from orchard.lifecycle.plan import claim_home
    from orchard.months import month_range

    claim_home(settings)
    recorded = [load_month(settings, month) for month in month_range(settings.start_month, last)]
    done = [r for r in recorded if r is not None]
    pending = len(done) < len(recorded)
    server_started = _before_flows(start_server=pending, reports=not settings.lane_process)
    from model_registry.history import events
    from model_registry.registry import champion_version
    from orchard.lifecycle.monitoring import matured_vintages
    from orchard.lifecycle.stages import vintage_losses
    from orchard.lifecycle.summary import render_summary
    from orchard.model_specs import model_specs, primary_model

    if pending:
        from flows.lifecycle import lifecycle_flow
        from orchard.lifecycle.warmup import warm_up
    _quiet_tools()  # after the imports (Prefect and MLflow configure their loggers when imported), before the run

    if pending:
        with warnings.catch_warnings():  # libraries that warn as they import (see _before_flows)
            warnings.simplefilter("ignore")
            warm_up(settings)  # while the temporary server starts, if one does
        server_started()
        records = [MonthRecord(**r) for r in lifecycle_flow(settings, last)]
    else:  # every month is recorded: read back, no flow run (and no temporary Prefect server) needed
        records = done
        console.print(f"every month to {last} is done: nothing to run", highlight=False)

    specs = model_specs(settings.portfolio_def)
    primary = primary_model(settings.portfolio_def)
    alias_events = [e.to_dict() for e in events(settings, primary)]
    # the joint model with the platform, when the portfolio has one, is listed after the portfolio's models
    joint = [settings.portfolio_def.joint.model] if settings.portfolio_def.joint else []
    champions = {name: champion_version(settings, name) for name in [*specs, *joint]}
    losses = {}
    for name in (n for n, s in specs.items() if s.kind == "expected_loss"):
        expected = {r.month: el for r in records if (el := r.model(name).expected_loss)}
        losses[name] = vintage_losses(settings, specs[name], expected, last)
    tiers = tuple(n for n, s in specs.items() if s.kind == "tiers")
    vintages = matured_vintages(settings, primary)
    # the shock's adaptation report follows the primary model, or else the first that recalibrates
    adapting = next((n for n in (primary, *specs) if specs[n].early_label_rule is not None), None)
    adapting_vintages = matured_vintages(settings, adapting) if adapting else None
    console.print(
        render_summary(
            records,
            primary,
            alias_events,
            shock_month,
            champions,
            losses,
            tiers,
            vintages,
            adapting,
            adapting_vintages,
        )
    )


@app.command()
@_one_line_errors
def ingest(month: Annotated[str, typer.Option(help="the month to ingest (YYYY-MM)")]) -> None:
    """Ingest one month's landing files into bronze (Prefect flow; idempotent by batch id)."""
    from orchard.months import parse_month

    month = parse_month(month)
    with _settings() as settings:
        _before_flows()
        from flows.ingest import ingest_flow

        for result in ingest_flow(settings, month):
            console.print(
                f"{result.batch_id}: {'ingested' if result.created else 'already in bronze'} ({result.rows} rows)"
            )


@app.command()
@_one_line_errors
def validate(month: Annotated[str, typer.Option(help="the month to validate (YYYY-MM)")]) -> None:
    """Validate one month's bronze batches against their contracts (quarantine on failure)."""
    from orchard.months import parse_month

    month = parse_month(month)
    with _settings() as settings:
        _before_flows()
        from flows.validate import validate_flow

        for outcome in validate_flow(settings, month):
            console.print(f"{outcome.batch_id}: valid, in silver")


@app.command()
@_one_line_errors
def ui(
    base_port: Annotated[int, typer.Option(help="Prefect on this port, MLflow +1, Evidently +2")] = 4200,
) -> None:
    """Start the Prefect, MLflow and Evidently UIs on loopback over the demo's state (Ctrl-C stops them)."""
    from orchard.ui import start_uis, stop_uis, ui_services

    with _settings() as settings:
        services = ui_services(settings, base_port=base_port)
        # a plain `kill` (SIGTERM) must stop the UIs as Ctrl-C does, not leave them running
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        processes = start_uis(settings, services, settings.logs_dir)
        for service in services:
            console.print(f"{service.name:>9}: {service.url}")
        console.print("Ctrl-C stops them.")
        try:
            while all(p.poll() is None for p in processes):
                time.sleep(1)
        finally:
            stop_uis(processes)


@app.command()
@_one_line_errors
def byod(
    spec: Annotated[
        Path, typer.Option(help="dataset spec (YAML): file, id, time, target, split; see README")
    ],
    write_portfolio: Annotated[
        Path | None,
        typer.Option(
            help="instead of evaluating, write the portfolio that runs the file month by month "
            "(`orchard run --portfolio DIR`): one landing file per month of the event time"
        ),
    ] = None,
) -> None:
    """Bring your own data: validate it, train a scorecard and a LightGBM challenger, register both."""
    if write_portfolio is not None:
        from orchard.portfolio.from_byod import partial_last_month, write_byod_portfolio

        target, rows = write_byod_portfolio(spec, write_portfolio)
        periods = list(rows)
        console.print(
            f"wrote {target} and {len(periods)} monthly landing file(s) ({periods[0]}..{periods[-1]}): review "
            f"every guess, then run `orchard run --portfolio {write_portfolio}`",
            soft_wrap=True,
        )
        warning = partial_last_month(rows)
        if warning:
            console.print(f"note: {warning}", soft_wrap=True)
        return
    from orchard.byod import format_byod_result, run_byod

    _quiet_tools()  # after the imports (MLflow configures its loggers when imported), before the run
    with _settings() as settings:
        console.print(format_byod_result(run_byod(settings, spec)), soft_wrap=True, highlight=False)


@app.command()
@_one_line_errors
def promote(
    model: Annotated[str, typer.Argument(help="registered model name, e.g. application_pd")],
    version: Annotated[int, typer.Argument(help="version to make champion")],
    approver: Annotated[str, typer.Option(help="who approves: must be your authenticated identity")],
    reason: Annotated[str, typer.Option(help="why (recorded)")],
    override: Annotated[
        str | None, typer.Option(help="promote despite a failed gate, with this reason")
    ] = None,
    month: Annotated[
        str | None, typer.Option(help="business month the decision takes effect (YYYY-MM)")
    ] = None,
) -> None:
    """Make a version champion as a person: refused when its gate failed unless --override REASON."""
    from model_registry.governance import promote_command
    from orchard.lifecycle.ledger import last_recorded_month

    with _settings() as settings:
        # without --month, the decision takes effect in the last month the lifecycle finished (or later)
        text = promote_command(
            settings, model, version, approver, reason, override, month, last_recorded_month(settings)
        )
        console.print(text, soft_wrap=True)


@app.command()
@_one_line_errors
def rollback(
    model: Annotated[str, typer.Argument(help="registered model name")],
    approver: Annotated[str, typer.Option(help="who decides: must be your authenticated identity")],
    reason: Annotated[str, typer.Option(help="why (recorded)")],
) -> None:
    """Restore the previous champion, with a record."""
    from model_registry.governance import rollback_command
    from orchard.lifecycle.ledger import last_recorded_month

    with _settings() as settings:
        console.print(
            rollback_command(settings, model, approver, reason, last_recorded_month(settings)), soft_wrap=True
        )


@app.command()
@_one_line_errors
def history(
    model: Annotated[str, typer.Argument(help="registered model name")],
    at: Annotated[
        str | None, typer.Option(help="YYYY-MM (business month), a date or an ISO datetime")
    ] = None,
) -> None:
    """Which version was champion at a moment, and why it changed (append-only record)."""
    from model_registry.governance import history_command, verify_history

    with _settings() as settings:
        console.print(history_command(settings, model, at), soft_wrap=True, highlight=False)
        check = verify_history(settings, model)
        if not check.ok:
            raise OrchardError(f"history of {model} is inconsistent with MLflow: {'; '.join(check.problems)}")


@app.command(name="selection-bias")
@_one_line_errors
def selection_bias(
    model: Annotated[
        str | None, typer.Option(help="a PD model with a 'trainable' rule; default: the decision's")
    ] = None,
    as_of: Annotated[str | None, typer.Option(help="YYYY-MM; default: the last month run")] = None,
    holdout: Annotated[
        int | None,
        typer.Option(help="mature vintages judged on (default 6, at least the model's oot_months)"),
    ] = None,
    portfolio: Annotated[
        Path | None, typer.Option(help="a simulated portfolio; default: the settings' (the shipped demo's)")
    ] = None,
) -> None:
    """What training on booked loans costs, against the simulator's truth, and what reject inference recovers."""
    from orchard.lifecycle.selection_bias import render
    from orchard.lifecycle.selection_bias import selection_bias as measure
    from orchard.lifecycle.tools import Tools

    with _settings(portfolio=portfolio) as settings, Tools() as tools:
        report = measure(settings, model, as_of, holdout, tools=tools)
        for line in render(report):
            console.print(line, soft_wrap=True, highlight=False)
        console.print(f"written to {settings.reports_dir}/selection_bias_{report['model']}.json")


@app.command()
@_one_line_errors
def party(
    role: Annotated[
        str, typer.Option(help="guest (the lender: labels + its features) or host (the platform)")
    ],
    port: Annotated[int, typer.Option(help="loopback port the host listens on / the guest connects to")],
    data: Annotated[Path, typer.Option(help="this party's own table (Parquet) — never sent to the other")],
    key_file: Annotated[Path, typer.Option(help="shared HMAC key file authenticating the channel")],
    job_file: Annotated[Path | None, typer.Option(help="guest: the joint job's description (JSON)")] = None,
    result_file: Annotated[Path | None, typer.Option(help="guest: where the job record is written")] = None,
    record_dir: Annotated[
        Path | None, typer.Option(help="write every message crossing the channel here")
    ] = None,
    idle_timeout: Annotated[float, typer.Option(help="host: stop after this many idle seconds")] = 120.0,
) -> None:
    """One party of a vertical federated job (PSI + Paillier-encrypted logistic regression) over loopback HTTP."""
    from orchard.federated.party import party_command

    with _settings() as settings:
        summary = party_command(
            settings, role, port, data, key_file, job_file, result_file, record_dir, idle_timeout
        )
    console.print(summary, soft_wrap=True)


@app.command()
@_one_line_errors
def serve(
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
) -> None:
    """Start the real-time decision API (FastAPI under uvicorn); needs ORCHARD_API_KEY."""
    from orchard.serving.app import serve_command

    with _settings() as settings:
        serve_command(settings, host, port)


@app.command()
@_one_line_errors
def replay(request_id: Annotated[str, typer.Argument(help="the request id of a logged decision")]) -> None:
    """Reproduce a logged decision exactly from its logged inputs and recorded model versions."""
    from orchard.serving.replay import replay_command

    with _settings() as settings:
        console.print(replay_command(settings, request_id), soft_wrap=True, highlight=False)


@app.command()
@_one_line_errors
def up(
    profile: Annotated[str, typer.Option(help="the profile whose services to start")] = "production",
) -> None:
    """Start the production services on loopback (MLflow + basic-auth, Prefect server + worker) with PID files."""
    from orchard.services import up_command

    with _settings() as settings:
        console.print(up_command(settings, profile), soft_wrap=True)


@app.command()
@_one_line_errors
def down() -> None:
    """Stop the services `orchard up` started (only those, by their PID files)."""
    from orchard.services import down_command

    with _settings() as settings:
        console.print(down_command(settings), soft_wrap=True)


audit_app = typer.Typer(
    help="Check the tamper-evident records; upgrade a home from before hash chains.", no_args_is_help=True
)
app.add_typer(audit_app, name="audit")


@audit_app.command("verify")
@_one_line_errors
def audit_verify() -> None:
    """Verify governance triggers, the hash chains and MLflow aliases against the record; name what is broken."""
    from orchard.serving.audit import audit_command

    with _settings() as settings:
        console.print(audit_command(settings), soft_wrap=True, highlight=False)


@audit_app.command("migrate")
@_one_line_errors
def audit_migrate(
    accept_unchained_history: Annotated[
        bool,
        typer.Option(
            "--accept-unchained-history",
            help="Chain and seal the records written before hash chains, accepting they cannot be proven untouched.",
        ),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only report what a migration would do.")
    ] = False,
) -> None:
    """Upgrade a home written before hash chains: report, then (with the flag) chain, seal and record who did it."""
    from orchard.serving.migrate import find_unchained, migrate_command

    with _settings() as settings:
        found = find_unchained(settings)
        console.print(found.report(), soft_wrap=True, highlight=False)
        text = migrate_command(settings, found, accept=accept_unchained_history, dry_run=dry_run)
        console.print(text, soft_wrap=True, highlight=False)


def main() -> None:
    """Entry point used by `python -m orchard`."""
    skip_feast_typechecks()  # before anything imports Feast (orchard.feast_typecheck)
    app(prog_name="orchard")


if __name__ == "__main__":
    main()
