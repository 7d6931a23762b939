"""Feast entities of Orchard: the customer (a partner-platform user)."""

from __future__ import annotations

from feast import Entity, ValueType

from orchard.features import ENTITY_KEY

CUSTOMER = "customer"


def customer_entity() -> Entity:
    """Return the customer entity, joined on user_id."""
    return Entity(
        name=CUSTOMER,
        join_keys=[ENTITY_KEY],
        value_type=ValueType.STRING,
        description="a partner-platform user: applicant, borrower or marketing prospect",
        tags={"pii": "id"},
        owner="risk-data@orchard",
    )
