"""Feast entities of a portfolio (the demo's: the customer, a partner-platform user joined on user_id)."""

from __future__ import annotations

from feast import Entity, ValueType

from orchard.portfolio.spec import Portfolio

OWNER = "risk-data@orchard"


def portfolio_entities(portfolio: Portfolio) -> list[Entity]:
    """Return one Feast entity per entity of the portfolio, joined on its key."""
    return [
        Entity(
            name=name,
            join_keys=[entity.join_key],
            value_type=ValueType.STRING,
            description=entity.description,
            tags={"pii": "id"},
            owner=OWNER,
        )
        for name, entity in portfolio.entities.items()
    ]
