"""The key sets contracts check keys against: each lake file's keys stored once, a batch's reference a list of them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from orchard.atomic import write_json
from orchard.contracts.reference import (
    HASH,
    key_hashes,
    key_share,
    lake_key_sets,
    read_hashes,
    reference_parts,
    write_reference,
)
from orchard.lake import DATA, MANIFEST, get_source, quarantine_dir, silver_path, write_silver
from orchard.settings import Settings

SOURCE = "applications"
MONTHS = ["2019-01", "2019-02", "2019-03", "2019-04"]


def _key(settings: Settings) -> list[str]:
    return list(get_source(settings, SOURCE).key)


def _land_silver(settings: Settings, month: str, ids: list[str], sha: str | None = None) -> None:
    frame = pd.DataFrame({column: ids for column in _key(settings)})
    write_silver(frame, silver_path(settings, SOURCE, month), sha or f"bronze-{month}")


def _ids(month: str, n: int) -> list[str]:
    return [f"app-{month}-{i:04d}" for i in range(n)]


def _key_files(settings: Settings) -> list[Path]:
    return sorted((settings.gx_dir / "references" / "keys").rglob("*.npy"))


def test_each_lake_file_keys_are_stored_once_and_a_later_reference_lists_them_again(
    settings: Settings,
) -> None:
    # Given four months of a source in silver
    for month in MONTHS:
        _land_silver(settings, month, _ids(month, 50))
    columns = _key(settings)
    # When the third month's reference is stored, then the fourth's
    first = lake_key_sets(settings, SOURCE, columns, MONTHS[:2], quarantined=False)
    ref3 = write_reference(settings, SOURCE, "2019-03", "key_reuse", first)
    stamps = {p: p.stat().st_mtime_ns for p in _key_files(settings)}
    second = lake_key_sets(settings, SOURCE, columns, MONTHS[:3], quarantined=False)
    ref4 = write_reference(settings, SOURCE, "2019-04", "key_reuse", second)
    # Then each month's keys are one file, written once: the fourth month's reference lists the third's files
    # again (unchanged on disk) and adds one; the stored keys grow with the lake, not with the lake times its months
    assert second[:2] == first and len(second) == 3, second
    assert _key_files(settings) == sorted(second)
    assert all(p.stat().st_mtime_ns == stamp for p, stamp in stamps.items()), (
        "an earlier key set was rewritten"
    )
    assert reference_parts(ref3) == first and reference_parts(ref4) == second
    assert sum(read_hashes(p).size for p in _key_files(settings)) == 3 * 50
    # And a reference holds only relative names (a copied home still reads its own key sets)
    assert all(not Path(name).is_absolute() for name in json.loads(ref4.read_text())["key_sets"])


def test_key_share_over_the_listed_key_sets_equals_membership_in_their_union(settings: Settings) -> None:
    # Given three months whose keys overlap, and a batch holding some of them, some new ones and a null key
    rng = np.random.default_rng(7)
    pool = [f"app-{i:05d}" for i in range(600)]
    for month in MONTHS[:3]:
        _land_silver(settings, month, sorted(rng.choice(pool, 250, replace=False)))
    columns = _key(settings)
    reference = write_reference(
        settings, SOURCE, "2019-04", "key_reuse", lake_key_sets(settings, SOURCE, columns, MONTHS[:3], False)
    )
    batch = pd.DataFrame({columns[0]: ["new-1", None, "new-2", *rng.choice(pool, 300, replace=False)]})
    # When its share is taken against the listed key sets
    share = key_share(batch, columns, reference)
    # Then it is the share against the union of the months' keys (what one stored union gave before)
    union = np.unique(np.concatenate([read_hashes(p) for p in reference_parts(reference)]))
    hashes, keys = key_hashes(batch, columns)
    expected = np.isin(hashes, union)
    assert share.rows == 302 and share.found == int(expected.sum()) and 0 < share.found < 300
    assert "new-1" in share.missing_examples and "new-2" in share.missing_examples
    assert set(share.missing_examples) <= set(keys[~expected][columns[0]])


def test_a_replaced_or_quarantined_file_has_its_own_key_set(settings: Settings) -> None:
    # Given a month in silver, then the same month's file replaced by another bronze batch
    columns = _key(settings)
    _land_silver(settings, "2019-01", _ids("2019-01", 20), sha="first")
    before = lake_key_sets(settings, SOURCE, columns, ["2019-01"], quarantined=False)
    _land_silver(settings, "2019-01", _ids("2019-01", 30), sha="second")
    after = lake_key_sets(settings, SOURCE, columns, ["2019-01"], quarantined=False)
    # Then the new content has a new key set; the earlier reference's key set is left as it was checked
    assert before != after and read_hashes(before[0]).size == 20 and read_hashes(after[0]).size == 30
    # And a quarantined batch of a month contributes its own key set when quarantined batches count
    folder = quarantine_dir(settings, SOURCE, "2019-02")
    folder.mkdir(parents=True)
    pd.DataFrame({c: _ids("2019-02", 5) for c in columns}).to_parquet(folder / DATA, index=False)
    write_json({"bronze_sha256": "quarantined-bronze"}, folder / MANIFEST)
    both = lake_key_sets(settings, SOURCE, columns, ["2019-01", "2019-02"], quarantined=True)
    assert len(both) == 2 and ".quarantine." in both[1].name and read_hashes(both[1]).size == 5
    assert lake_key_sets(settings, SOURCE, columns, ["2019-01", "2019-02"], quarantined=False) == after


def test_a_reference_stored_whole_before_the_lists_still_reads(settings: Settings, tmp_path: Path) -> None:
    # Given a reference written by an earlier version: one Parquet file of every key hash
    columns = _key(settings)
    known = pd.DataFrame({columns[0]: ["a", "b", "c"]})
    old = tmp_path / "key_reuse.parquet"
    pd.DataFrame({HASH: np.unique(key_hashes(known, columns)[0])}).to_parquet(old, index=False)
    # Then a batch's share against it is read as before
    share = key_share(pd.DataFrame({columns[0]: ["a", "c", "z"]}), columns, old)
    assert (share.rows, share.found, share.missing_examples) == (3, 2, ["z"])


def test_an_unreadable_reference_is_named(tmp_path: Path) -> None:
    broken = tmp_path / "fk_user_id.json"
    broken.write_text("{not json")
    with pytest.raises(ValueError, match=r"fk_user_id\.json cannot be read"):
        reference_parts(broken)
