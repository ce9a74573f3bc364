"""Suspect segments exported for annotation teams: CSV and JSON round-trip."""

import csv
import json
import os

import fiftyone_csl as fcsl
import pytest


def _segments(dataset):
    out = {}
    for sid, dets in zip(*dataset.values(["id", "csl_errors.detections"])):
        for d in dets or []:
            out[d.id] = (sid, d.support[0], d.support[1], d.label, d["given_label"], d["suggested_label"])
    return out


def test_csv_and_json_hold_every_suspect_segment_strongest_first(audited, tmp_path):
    dataset = audited[0]
    expected = _segments(dataset)
    assert expected, "the audited demo has no suspect segment"
    for name in ("suspects.csv", "suspects.json"):
        path = str(tmp_path / name)
        assert fcsl.export_suspects(dataset, path) == len(expected)
        with open(path) as f:
            rows = json.load(f) if name.endswith(".json") else list(csv.DictReader(f))
        got = {
            r["segment_id"]: (r["sample_id"], int(r["first_frame"]), int(r["last_frame"]), r["error_type"],
                              r["given_label"], r["suggested_label"])
            for r in rows
        }  # fmt: skip
        assert got == expected
        order = [(-float(r["evidence"] or 0), -float(r["mean_csl"])) for r in rows]  # strongest first
        assert order == sorted(order)
        paths = dict(zip(*dataset.values(["id", "filepath"])))
        assert all(r["filepath"] == paths[r["sample_id"]] for r in rows)
    assert sorted(os.listdir(tmp_path)) == ["suspects.csv", "suspects.json"]  # no temporary file left


def test_a_bad_export_path_writes_nothing(audited, tmp_path):
    dataset = audited[0]
    with pytest.raises(fcsl.CSLError, match=".csv or .json"):
        fcsl.export_suspects(dataset, str(tmp_path / "suspects.txt"))
    with pytest.raises(fcsl.CSLError, match="does not exist"):
        fcsl.export_suspects(dataset, str(tmp_path / "missing" / "suspects.csv"))
    assert os.listdir(tmp_path) == []
