"""The alias moves governance records: one vocabulary for the governance store and the dashboards that count them."""

from __future__ import annotations

from typing import Literal, get_args

Action = Literal["promote", "reject", "rollback", "set_challenger"]
ACTIONS: tuple[str, ...] = get_args(Action)
