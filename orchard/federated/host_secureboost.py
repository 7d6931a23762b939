"""The host's side of SecureBoost: a training session's core, its stored split table, a tree part's routing.

`sb_setup` gives a training session its own core host (orchard.federated.secureboost.SecureBoostHost, binned
over the training rows only) and `sb_tree`, `sb_histograms`, `sb_split`, `sb_end_tree` go to it. A tree part's
routing (`evaluate` of the new trees, `score` of a stored part) is answered level by level within the reveal
budget (`route_level`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from orchard.errors import OrchardError
from orchard.federated.channel import Message
from orchard.federated.host_sessions import (
    HostData,
    HostSession,
    RouteState,
    flag,
    not_set_up,
    session_rows,
)
from orchard.federated.secureboost import (
    NO_ANSWER,
    HostModel,
    ProtocolError,
    SecureBoostHost,
    depth_of,
    fill_values,
    filled,
    in_subtree,
)
from orchard.federated.secureboost_tree import SBConfig


def sb_setup(session: HostSession, message: Message, data: HostData) -> Message:
    """Set up SecureBoost in a training session after its PSI: the config, the guest's key, the train rows.

    The host bins its features over the training rows only (missing values filled with their mean there)
    and answers the core's candidate count; every later sb_* message goes to this session's core.
    """
    with session.lock:
        if session.aligned is None or session.config is not None or session.sb is not None:
            raise OrchardError("sb_setup before the intersection, twice, or in a hetero-LR session")
        try:
            config = SBConfig(**message.fields["config"])
        except (KeyError, TypeError, ValueError) as exc:
            raise OrchardError(f"SecureBoost config rejected: {exc}") from exc
        train = np.asarray(message.arrays.get("train_positions", np.zeros(0, dtype="<i8")), dtype=np.int64)
        if (
            train.ndim != 1
            or len(np.unique(train)) != len(train)
            or (train.size and (train.min() < 0 or train.max() >= len(session.aligned)))
        ):
            raise OrchardError("train positions must be distinct rows of the intersection")
        if len(train) < 2 * config.min_child_rows:
            raise OrchardError(
                f"{len(train)} training rows cannot be split into two nodes of {config.min_child_rows} rows"
            )
        values = data.table.iloc[session.aligned[train]][data.features].to_numpy(dtype=float)
        session.sb_fill = fill_values(values)
        core = SecureBoostHost(filled(values, session.sb_fill), config)
        reply = _core_reply(core.setup, Message("sb_setup", {**message.fields, "rows": len(train)}))
        session.sb, session.train, session.algorithm = core, train, "secureboost"
        session.stage = "sb_training"
        return Message("sb_setup", fields={**reply.fields, "features": len(data.features)})


def _core_reply(handler: Callable[[Message], Message], message: Message) -> Message:
    """Run a core handler, turning its refusal into the channel's (the guest learns why)."""
    try:
        reply: Message = handler(message)
    except ProtocolError as exc:
        raise OrchardError(str(exc)) from exc
    except (KeyError, TypeError, ValueError) as exc:
        raise OrchardError(f"{message.kind}: malformed request ({exc})") from exc
    return reply


def sb_step(session: HostSession, message: Message) -> Message:
    """Answer sb_tree, sb_histograms, sb_split or sb_end_tree with the session's core.

    Refused outside a set-up SecureBoost training session; after the last tree's sb_end_tree the session is
    trained (evaluate, then finish).
    """
    core = session.sb
    if core is None or session.stage != "sb_training":
        raise OrchardError(f"{message.kind} outside a SecureBoost training session (stage {session.stage})")
    steps = {
        "sb_tree": core.start_tree,
        "sb_histograms": core.histograms,
        "sb_split": core.split,
        "sb_end_tree": core.end_tree,
    }
    with session.lock:
        reply = _core_reply(steps[message.kind], message)
        if message.kind == "sb_end_tree" and len(core.splits) == core.config.trees:
            session.stage = "trained"
        return reply


def tree_part(session: HostSession, features: list[str]) -> dict[str, Any]:
    """Return the host's SecureBoost part: per tree, per host node, its feature and bin edge (threshold)."""
    core, fill = session.sb, session.sb_fill
    if core is None or fill is None or len(core.splits) != core.config.trees:
        raise OrchardError("the session has no trained trees yet: nothing to score with")
    model = core.model()
    return {
        "kind": "secureboost",
        "features": features,
        "fill": fill.tolist(),
        "depth": core.config.max_depth,
        "config": core.config.as_dict(),
        "edges": [e.tolist() for e in model.edges],
        "trees": [
            {
                str(node): {
                    "feature": f,
                    "name": features[f],
                    "bin": b,
                    "threshold": float(model.edges[f][b]),
                }
                for node, (f, b) in sorted(tree.items())
            }
            for tree in model.splits
        ],
    }


def _tree_model(part: dict[str, Any]) -> HostModel:
    """Return the core's HostModel of a stored SecureBoost part (bin edges and per-tree host splits)."""
    return HostModel(
        edges=[np.asarray(e, dtype=float) for e in part["edges"]],
        splits=[
            {int(k): (int(v["feature"]), int(v["bin"])) for k, v in tree.items()} for tree in part["trees"]
        ],
    )


def route_state(session: HostSession, part: dict[str, Any], eligible: np.ndarray) -> RouteState:
    """Return the session's routing state of a tree part, made on the first request (eligible: its rows)."""
    if session.route is None:
        session.route = RouteState(
            model=_tree_model(part),
            features=[str(f) for f in part["features"]],
            fill=np.asarray(part["fill"], dtype=float),
            depth=int(part["depth"]),
            eligible=eligible,
        )
    return session.route


def route_level(session: HostSession, state: RouteState, message: Message, data: HostData) -> np.ndarray:
    """Answer one level of routing: per (position, tree, node) 1 left, 0 right, NO_ANSWER over budget.

    Refused: a position outside the eligible rows, a node that is not a host node at exactly this level,
    a level not above the last answered one, a (position, tree) twice, a node off the path the host's
    earlier answers gave. A position is counted in the reveal ledger once per session, when first asked;
    a position over budget gets no answer at any level.
    """
    arrays = [np.asarray(message.arrays.get(k, np.zeros(0, dtype="<i4"))) for k in ("rows", "trees", "nodes")]
    rows, trees, nodes = arrays
    if any(a.ndim != 1 or a.dtype not in (np.int32, np.int64) for a in arrays) or not (
        len(rows) == len(trees) == len(nodes)
    ):
        raise OrchardError(f"{message.kind}: rows, trees and nodes must be 1-D integer arrays of one length")
    if not len(rows):
        return np.zeros(0, dtype=np.uint8)
    level = message.fields.get("level")
    if not isinstance(level, int) or isinstance(level, bool) or not state.level < level < state.depth:
        raise OrchardError(f"{message.kind}: level {level!r} is not after level {state.level} of the part")
    if rows.min() < 0 or rows.max() >= len(state.eligible) or not state.eligible[rows].all():
        raise OrchardError(f"{message.kind}: a row is not one of the session's rows it may ask about")
    splits = state.model.splits
    seen: set[tuple[int, int]] = set()
    for r, t, node in zip(rows.tolist(), trees.tolist(), nodes.tolist(), strict=True):
        if not 0 <= t < len(splits) or node not in splits[t] or depth_of(node) != level:
            raise OrchardError(f"{message.kind}: tree {t} node {node} is not a host node at level {level}")
        if (r, t) in seen:
            raise OrchardError(f"{message.kind}: row {r} of tree {t} asked twice at level {level}")
        seen.add((r, t))
        top = state.below.get((r, t))
        if top is not None and not in_subtree(node, top):
            raise OrchardError(f"{message.kind}: node {node} is off the path the host answered for row {r}")
    state.level = level
    fresh = sorted(set(rows.tolist()) - set(state.charged))
    if fresh:
        allowed = data.allow(session_rows(session)[fresh])
        state.charged.update(zip(fresh, allowed.tolist(), strict=True))
    ok = np.array([state.charged[r] for r in rows.tolist()], dtype=bool)
    left = np.full(len(rows), NO_ANSWER, dtype=np.uint8)
    if ok.any():
        asked = rows[ok]
        x = filled(
            data.table.iloc[session_rows(session)[asked]][state.features].to_numpy(dtype=float),
            state.fill,
        )
        reply = state.model.route(
            Message(
                "sb_route",
                {"count": len(asked)},
                {"rows": np.arange(len(asked)), "trees": trees[ok], "nodes": nodes[ok]},
            ),
            x,
        )
        left[ok] = reply.arrays["left"]
    for r, t, node, d in zip(rows.tolist(), trees.tolist(), nodes.tolist(), left.tolist(), strict=True):
        if d != NO_ANSWER:
            state.below[(r, t)] = 2 * node + 1 if d == 1 else 2 * node + 2
    return left


def evaluate_trees(session: HostSession, message: Message, compare: bool, data: HostData) -> Message:
    """Answer one level of the out-of-time rows' routing at the new trees' host nodes (`final`: the last).

    Only the session's out-of-time rows may be asked about, each counted once in the reveal ledger; the
    evaluation runs once: after the `final` request the session accepts only `finish`.
    """
    if compare:
        raise OrchardError("evaluate: comparing with the active part is not supported for SecureBoost")
    if session.stage not in ("trained", "evaluating"):
        raise OrchardError(f"{message.kind} out of order: the session expects {session.stage}")
    if session.train is None:
        raise not_set_up(message)
    eligible = np.ones(len(session_rows(session)), dtype=bool)
    eligible[session.train] = False
    state = route_state(session, tree_part(session, data.features), eligible)
    left = route_level(session, state, message, data)
    final = flag(message, "final", False)
    session.stage = "evaluated" if final else "evaluating"
    return Message(
        "evaluate",
        fields={"final": final, "test_rows": int(eligible.sum()), "revealed": len(state.revealed)},
        arrays={"left": left},
    )
