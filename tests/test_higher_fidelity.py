"""Targets beyond PBE: the registry, and yardsticks scored on exactly the crystals a model is tested on."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from matgl_cgat.data import DataError, load_splits, read_columns, target_info, yardstick_table, yardstick_values


def _write(path, rows):
    with gzip.open(path, "wt") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


@pytest.fixture
def small_hifi(tmp_path):
    """A hifi_eform-like file (r2SCAN known for two of three crystals) and an mp_gap-like one."""
    _write(tmp_path / "hifi_eform.jsonl.gz", [
        {"mat_id": "a", "structure": {}, "e_form_exp": -1.0, "e_form_r2scan": -1.1, "e_form_gga_mp": -1.3,
         "e_form_exp_wang": None},
        {"mat_id": "b", "structure": {}, "e_form_exp": -2.0, "e_form_r2scan": None, "e_form_gga_mp": -2.4,
         "e_form_exp_wang": -2.01},
        {"mat_id": "c", "structure": {}, "e_form_exp": -0.5, "e_form_r2scan": -0.3, "e_form_gga_mp": -0.5,
         "e_form_exp_wang": None},
    ])
    _write(tmp_path / "mp_gap.jsonl.gz", [{"mat_id": i, "structure": {}, "e_form_pbe": v}
                                          for i, v in (("a", -1.2), ("b", -2.2), ("c", -0.9))])
    return tmp_path


def test_yardsticks_compare_like_for_like(small_hifi):
    values = yardstick_values(small_hifi, "e_form_exp", ["a", "b", "c"])
    assert np.isnan(values["e_form_r2scan"][1]) and values["e_form_pbe"].tolist() == [-1.2, -2.2, -0.9]
    rows = {r["column"]: r for r in yardstick_table("e_form_exp", values, {"model": np.array([-1.0, -2.1, -0.4])})}
    assert rows["e_form_r2scan"]["n"] == 2 and rows["e_form_r2scan"]["mae"] == pytest.approx((0.1 + 0.2) / 2)
    # the model is scored on the same two crystals as r2SCAN, not on all three
    assert rows["e_form_r2scan"]["mae_model"] == pytest.approx((0.0 + 0.1) / 2)
    assert rows["e_form_pbe"]["n"] == 3 and rows["e_form_pbe"]["mae"] == pytest.approx((0.2 + 0.2 + 0.4) / 3)
    assert rows["e_form_exp_wang"]["n"] == 1 and rows["e_form_exp_wang"]["mae"] == pytest.approx(0.01)


def test_unknown_target_lists_the_known_ones():
    with pytest.raises(ValueError, match="e_form_r2scan"):
        target_info("e_form_scan")
    assert target_info("e_form_exp").output_min is None and target_info("gap_exp").output_min == 0.0


def test_read_columns_names_file_and_line_of_bad_json(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"mat_id": "a", "x": 1}\n{not json\n')
    with pytest.raises(DataError, match=r"bad.jsonl, line 2"):
        read_columns(path)
    path.write_text('{"x": 1}\n')
    with pytest.raises(DataError, match="no 'mat_id'"):
        read_columns(path)


def test_shared_yardsticks_are_those_the_data_readme_states(shared_data):
    """On the fixed test splits: r2SCAN misses the measured enthalpy of the 68 test crystals where it is
    known by 0.080 eV/atom; HSE06 misses the 31 measured test gaps by 0.53 eV, TB-mBJ by 0.45."""
    ids = load_splits(shared_data / "hifi_eform_splits.json", "e_form_exp")["test"]
    rows = {r["column"]: r for r in yardstick_table("e_form_exp", yardstick_values(shared_data, "e_form_exp", ids))}
    assert rows["e_form_r2scan"]["n"] == 68 and rows["e_form_r2scan"]["mae"] == pytest.approx(0.0797, abs=5e-4)
    ids = load_splits(shared_data / "exp_gap_splits.json", "gap_exp")["test"]
    rows = {r["column"]: r for r in yardstick_table("gap_exp", yardstick_values(shared_data, "gap_exp", ids))}
    assert rows["gap_hse06_b"]["n"] == 31 and rows["gap_hse06_b"]["mae"] == pytest.approx(0.533, abs=1e-3)
    assert rows["gap_mbj_b"]["mae"] == pytest.approx(0.453, abs=1e-3)
