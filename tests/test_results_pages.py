"""Every published results page's records carry the fields the project's standard names, so that
readers (and the issues' bars) can tell what a mean and std are over."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"
FIELDS = ("experiment", "variant", "metric", "mean", "std", "n_seeds", "seed_kind", "n_samples", "noise_floor",
          "command")


@pytest.mark.parametrize("page", sorted(p.name for p in RESULTS.glob("*.json")))
def test_every_record_has_the_standard_fields(page):
    records = json.loads((RESULTS / page).read_text())
    assert isinstance(records, list) and records, page
    for i, r in enumerate(records):
        missing = [f for f in FIELDS if f not in r]
        assert not missing, f"{page} record {i} ({r.get('metric')}): missing {missing}"
        assert r["seed_kind"] in ("training", "sampling"), f"{page} record {i}: seed_kind {r['seed_kind']!r}"
        assert (RESULTS / page).with_suffix(".md").exists(), f"{page}: no page beside it"
