"""The one content-addressed cache lookup (convert.contract.fingerprint.read_cached)."""

from __future__ import annotations

import json

from convert.contract.fingerprint import KEY_FIELD, read_cached, read_cached_json


def test_a_cached_result_is_read_only_under_its_own_key(tmp_path) -> None:
    path = tmp_path / "r.json"
    assert read_cached_json(path, "k1") is None  # missing
    path.write_text(json.dumps({KEY_FIELD: "k1", "value": 3}))
    assert read_cached_json(path, "k1") == {KEY_FIELD: "k1", "value": 3}
    assert read_cached_json(path, "k2") is None  # another question: recomputed, never read
    loads = []
    assert read_cached(path, "k1", lambda p: loads.append(p) or json.loads(p.read_text()), lambda d: d)["value"] == 3
    assert loads == [path]


def test_results_written_under_the_old_key_field_are_still_read(tmp_path) -> None:
    path = tmp_path / "search.json"
    path.write_text(json.dumps({"key": "abc", "chosen": 4.0}))  # threshold searches and candidates, before
    assert read_cached_json(path, "abc") == {"key": "abc", "chosen": 4.0}
    assert read_cached_json(path, "abd") is None
    path.write_text(json.dumps({"key": "old", KEY_FIELD: "new"}))  # the current field decides
    assert read_cached_json(path, "new") is not None and read_cached_json(path, "old") is None
