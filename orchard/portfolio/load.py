"""Load a portfolio folder: read its YAML, validate it, and name the file and line of every problem."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from orchard.errors import OrchardError
from orchard.portfolio.spec import Portfolio

FILE_NAME = "portfolio.yaml"

MERGE_TAG = "tag:yaml.org,2002:merge"
Location = tuple[str | int, ...]


def portfolio_file(path: Path) -> Path:
    """Return the portfolio file of a folder (or the file itself), or raise naming what is missing."""
    path = Path(path)
    file = path / FILE_NAME if path.is_dir() else path
    if not file.is_file():
        raise OrchardError(f"no portfolio at {path}: expected a folder with {FILE_NAME} (or the file itself)")
    return file


def _plain(node: yaml.Node, at: Location, lines: dict[Location, int]) -> Any:
    """Turn a composed YAML node into plain Python values, recording the line of every key and item."""
    lines.setdefault(at, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        merged: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == MERGE_TAG:  # `<<: *anchor`: the anchored mapping's keys, overridden by these
                merged.update(_plain(value_node, at, lines))
                continue
            key = yaml.safe_load(yaml.serialize(key_node))
            if key in out:
                raise OrchardError(f"line {key_node.start_mark.line + 1}: key {key!r} appears twice")
            lines[(*at, key)] = key_node.start_mark.line + 1
            out[key] = _plain(value_node, (*at, key), lines)
        return {**merged, **out}
    if isinstance(node, yaml.SequenceNode):
        return [_plain(item, (*at, i), lines) for i, item in enumerate(node.value)]
    return yaml.safe_load(yaml.serialize(node))


def _line(lines: dict[Location, int], loc: Location) -> int:
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return 1


def _describe(error: ErrorDetails) -> tuple[Location, str]:
    # pydantic puts the branch of a union or a validator's model into loc; keep only the keys of the file
    loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    dotted = ".".join(str(p) for p in loc) or "(top level)"
    if error["type"] == "extra_forbidden":
        return loc, f"unknown key {loc[-1]!r} at {dotted}"
    message = str(error["msg"]).removeprefix("Value error, ")
    return loc, f"{dotted}: {message}"


def parse_portfolio(text: str, folder: Path, source_name: str = FILE_NAME) -> Portfolio:
    """Validate a portfolio's YAML text; raise OrchardError with 'file:line: problem' lines."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError as exc:
        raise OrchardError(f"{source_name}: not valid YAML: {exc}") from None
    if node is None:
        raise OrchardError(f"{source_name} is empty")
    lines: dict[Location, int] = {}
    try:
        data = _plain(node, (), lines)
    except OrchardError as exc:
        raise OrchardError(f"{source_name}:{exc}") from None
    if not isinstance(data, dict):
        raise OrchardError(f"{source_name}: the top level must be a mapping of keys")
    try:
        return Portfolio.model_validate({**data, "folder": folder})
    except ValidationError as exc:
        problems = [_describe(e) for e in exc.errors()]
        text_lines = [f"{source_name}:{_line(lines, loc)}: {message}" for loc, message in problems]
        raise OrchardError("invalid portfolio: " + "; ".join(text_lines)) from None


def load_portfolio(path: Path) -> Portfolio:
    """Read and validate the portfolio of a folder (or file)."""
    file = portfolio_file(path)
    try:
        text = file.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise OrchardError(f"cannot read portfolio {file}: {exc}") from None
    return parse_portfolio(text, file.parent.resolve(), str(file))
