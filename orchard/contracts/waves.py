"""The order a period's batches are checked in: each after the batches its foreign keys point to.

A foreign-key check reads the keys the lake holds of the target source up to the batch's period, this period's
included, so a batch checked before its parent's batch of the same period finds that batch's new keys missing:
its orphan share is high every period, and the check learnt from that history would pass real orphans. The
order must therefore come from the foreign keys, not from the order the portfolio lists its sources in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def validation_waves(targets: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Return the sources in waves: a source comes after every source its foreign keys point to.

    `targets` maps each source, in the portfolio's order, to the sources its foreign keys name. Within a wave the
    sources keep that order, and the sources of a wave may be checked at the same time. A source's key pointing at
    its own source does not order it; a cycle of foreign keys is broken at its first source listed (taken alone
    in a wave, it sees the batches of the sources before it), so every source is in exactly one wave.
    """
    order = list(targets)
    pending = {
        source: {t for t in named if t != source and t in targets} for source, named in targets.items()
    }
    waves: list[list[str]] = []
    while pending:
        wave = [source for source, needs in pending.items() if not needs] or [_on_a_cycle(pending, order)]
        for source in wave:
            del pending[source]
        for needs in pending.values():
            needs.difference_update(wave)
        waves.append(wave)
    return waves


def _on_a_cycle(pending: dict[str, set[str]], order: list[str]) -> str:
    """Return the first source listed of a cycle among sources that all still wait for another."""
    walked: list[str] = []
    source = next(iter(pending))
    while source not in walked:  # every pending source waits for one: the walk comes back to a source
        walked.append(source)
        source = min(pending[source], key=order.index)
    return min(walked[walked.index(source) :], key=order.index)
