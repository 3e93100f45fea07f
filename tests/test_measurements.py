"""Per-session measurement tables: read, checked by the catalog, joined, modelled."""

import csv

import numpy as np
import openpyxl
import pandas as pd
import pytest
import xarray as xr
import yaml

from cardiolab.catalog import open_catalog
from cardiolab.derived import DerivedStore
from cardiolab.errors import CardiolabError, CatalogError
from cardiolab.measurements import SESSION_EPOCH, read_measurement_table
from cardiolab.pipeline import features_table
from cardiolab.simulate.effects import time_course
from cardiolab.stats.design import simulate_feature_table
from cardiolab.stats.results import feature_epochs, fit_all
from cardiolab.units import conversion_factor, normalise_unit

SESSIONS = [("S01", "L-30"), ("S01", "FD15"), ("S01", "R+4"), ("S02", "L-30"), ("S02", "R+4")]


def write_table(path, rows):
    """Rows of cells as a CSV (',') or an Excel sheet named 'visits'."""
    if path.suffix == ".xlsx":
        book = openpyxl.Workbook()
        sheet = book.active
        sheet.title = "visits"
        for row in rows:
            sheet.append(list(row))
        book.save(path)
    else:
        with path.open("w", newline="") as f:
            csv.writer(f).writerows(rows)
    return path


def make_catalog(folder, tables, sessions=SESSIONS, subjects=("S01", "S02")):
    """A catalog over a (never opened) native store, listing measurement ``tables``."""
    (folder / "store.zarr").mkdir(exist_ok=True)
    data = {
        "version": 1,
        "campaign": {"name": "t", "kind": "spaceflight"},
        "derived": "derived.zarr",
        "store": "store.zarr",
        "protocols": {
            "supine-stand": {
                "posture": "supine",
                "epochs": [
                    {"label": "supine", "start": 0, "stop": 300},
                    {"label": "stand", "start": 300, "stop": 600},
                ],
            }
        },
        "subjects": [{"code": c} for c in subjects],
        "sessions": [{"subject": s, "label": lab} for s, lab in sessions],
        "measurements": tables,
    }
    path = folder / "data_catalog.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


GOOD = [
    ["subject", "session", "epoch", "carotid_imt [mm]", "jugular_vein_area"],
    ["units", "", "", "", "cm2"],
    ["S01", "L-30", "", 0.56, 0.41],
    ["S01", "FD15", "", 0.66, 1.22],
    ["S01", "R+4", "supine", 0.64, ""],
    ["S02", "L-30", "", 0.52, 0.38],
]


def test_units_for_measurements():
    """The lengths and areas added for measurement tables, and their spellings."""
    assert conversion_factor("cm", "length") == 10.0
    assert conversion_factor("um", "length") == pytest.approx(1e-3)
    assert conversion_factor("cm2", "area") == 100.0
    assert conversion_factor("mm²", "area") == 1.0
    assert normalise_unit("µm") == "um"
    with pytest.raises(CardiolabError, match="measures area, not length"):
        conversion_factor("cm2", "length")


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_table_read_with_units_from_header_and_units_row(tmp_path, suffix):
    write_table(tmp_path / f"us{suffix}", GOOD)
    cat = open_catalog(make_catalog(tmp_path, [{"path": f"us{suffix}"}]))
    m = cat.measurements
    assert m.attrs["units"] == {"carotid_imt": "mm", "jugular_vein_area": "cm2"}
    assert list(m.columns) == ["subject", "session", "epoch", "carotid_imt", "jugular_vein_area"]
    keyed = m.set_index(["subject", "session", "epoch"])
    assert keyed.loc[("S01", "FD15", SESSION_EPOCH), "carotid_imt"] == 0.66
    assert keyed.loc[("S01", "FD15", SESSION_EPOCH), "jugular_vein_area"] == 1.22
    assert keyed.loc[("S01", "R+4", "supine"), "carotid_imt"] == 0.64
    assert np.isnan(keyed.loc[("S01", "R+4", "supine"), "jugular_vein_area"])  # empty cell
    # catalog session order: S01 L-30, FD15, R+4, then S02
    assert list(m["session"]) == ["L-30", "FD15", "R+4", "L-30"]


def test_excel_sheet_by_name_or_position_and_csv_with_decimal_comma(tmp_path):
    write_table(tmp_path / "us.xlsx", GOOD)
    rows = [[str(c).replace(".", ",") for c in row] for row in GOOD]
    (tmp_path / "us.csv").write_text("\n".join(";".join(r) for r in rows) + "\n")
    ref = open_catalog(make_catalog(tmp_path, [{"path": "us.xlsx", "sheet": "visits"}]))
    for table in (
        {"path": "us.xlsx", "sheet": 0},
        {"path": "us.csv", "separator": ";", "decimal": ","},
    ):
        cat = open_catalog(make_catalog(tmp_path, [table]))
        pd.testing.assert_frame_equal(cat.measurements, ref.measurements)
    with pytest.raises(CatalogError, match=r"no sheet 'labs' \(sheets: \['visits'\]\)"):
        open_catalog(make_catalog(tmp_path, [{"path": "us.xlsx", "sheet": "labs"}]))


# (rows replacing GOOD's, spreadsheet row, column named in the message, message part)
BAD = {
    "unknown subject": ({2: ["S09", "L-30", "", 0.5, 0.4]}, 3, "column A ('subject')", "unknown subject 'S09'"),
    "unknown session": ({3: ["S01", "R+9", "", 0.5, 0.4]}, 4, "column B ('session')", "no session S01 R+9"),
    "label of no schedule": ({3: ["S01", "X-2", "", 0.5, 0.4]}, 4, "column B ('session')", "X-2"),
    "epoch not in the protocol": ({4: ["S01", "R+4", "tilt", 0.5, 0.4]}, 5, "column C ('epoch')", "epoch 'tilt' is not in protocol 'supine-stand'"),
    "unknown unit in the header": ({0: ["subject", "session", "epoch", "carotid_imt [furlong]", "jugular_vein_area"]}, 1, "column D ('carotid_imt [furlong]')", "unknown unit 'furlong'"),
    "unknown unit in the units row": ({1: ["units", "", "", "", "acre"]}, 2, "column E ('jugular_vein_area')", "unknown unit 'acre'"),
    "no unit": ({1: ["units", "", "", "", ""]}, 1, "column E ('jugular_vein_area')", "no unit for 'jugular_vein_area'"),
    "units disagree": ({1: ["units", "", "", "cm", "cm2"]}, 2, "column D ('carotid_imt [mm]')", "unit 'cm' differs from 'mm'"),
    "duplicate row": ({5: ["S01", "L-30", "", 0.52, 0.38]}, 6, "columns A, B, C (subject, session, epoch)", "duplicate row: S01 L-30 is also row 3"),
    "text in a value": ({3: ["S01", "FD15", "", "abc", 1.2]}, 4, "column D ('carotid_imt [mm]')", "not a number: 'abc'"),
    "NA is not empty": ({3: ["S01", "FD15", "", 0.6, "NA"]}, 4, "column E ('jugular_vein_area')", "not a number: 'NA'"),
    "no subject": ({3: ["", "FD15", "", 0.6, 1.2]}, 4, "column A ('subject')", "no subject"),
    "no subject column": ({0: ["who", "session", "epoch", "carotid_imt [mm]", "jugular_vein_area"]}, 1, "", "no 'subject' column"),
    "a quantity name with a space": ({0: ["subject", "session", "epoch", "carotid imt [mm]", "jugular_vein_area"]}, 1, "column D ('carotid imt [mm]')", "letters, digits and '_'"),
}  # fmt: skip


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
@pytest.mark.parametrize("case", list(BAD))
def test_bad_table_names_catalog_file_row_and_column(tmp_path, suffix, case):
    changes, row, column, message = BAD[case]
    rows = [changes.get(i, r) for i, r in enumerate(GOOD)]
    table = write_table(tmp_path / f"us{suffix}", rows)
    catalog = make_catalog(tmp_path, [{"path": table.name}])
    with pytest.raises(CatalogError) as info:
        open_catalog(catalog)
    text = str(info.value)
    assert text.startswith(f"{catalog}: measurements[0] ({table}): row {row}"), text
    assert column in text and message in text, text
    assert len(info.value.problems) == 1, text


def test_empty_and_missing_tables(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "blank.xlsx").touch()
    with pytest.raises(CatalogError) as info:
        open_catalog(
            make_catalog(
                tmp_path, [{"path": "empty.csv"}, {"path": "gone.csv"}, {"path": "blank.xlsx"}]
            )
        )
    text = str(info.value)
    assert f"measurements[0] ({tmp_path / 'empty.csv'}): the measurement table is empty" in text
    assert f"measurements[1] ({tmp_path / 'gone.csv'}): measurement table not found" in text
    assert f"measurements[2] ({tmp_path / 'blank.xlsx'}): cannot read the table as excel" in text
    # not read when the files need not exist yet; the first use reports them
    cat = open_catalog(make_catalog(tmp_path, [{"path": "gone.csv"}]), check_files=False)
    with pytest.raises(CatalogError, match="measurement table not found"):
        cat.measurements  # noqa: B018


def test_a_table_at_a_url_is_read_on_first_use(tmp_path):
    import fsspec

    fs = fsspec.filesystem("memory")
    with fs.open("/cardiolab-test/us.csv", "w") as f:
        csv.writer(f).writerows(GOOD)
    try:
        url = "memory://cardiolab-test/us.csv"
        cat = open_catalog(make_catalog(tmp_path, [{"path": url}, {"path": "gone.csv"}]))
        # like remote recordings, not read at open; read and checked when first used
        with pytest.raises(CatalogError, match=r"measurements\[1\] .*: measurement table not"):
            cat.measurements  # noqa: B018
        cat = open_catalog(make_catalog(tmp_path, [{"path": url}]))
        assert cat.measurements["carotid_imt"].tolist() == [0.56, 0.66, 0.64, 0.52]
    finally:
        fs.rm("/cardiolab-test", recursive=True)


@pytest.mark.parametrize(
    ("entry", "field", "message"),
    [
        ({"path": "us.csv", "sheet": "a"}, "sheet", "'sheet' is only for Excel tables"),
        ({"path": "us.xlsx", "decimal": ","}, "decimal", "'decimal' is only for CSV tables"),
        ({"path": "us.ods"}, "path", "unknown measurement table suffix '.ods'"),
        ({"path": "us.csv", "separator": ",", "decimal": ","}, None, "both ','"),
        ({"path": "us.csv", "units": "mm"}, "units", "unknown key 'units'"),
    ],
)
def test_catalog_entry_errors(tmp_path, entry, field, message):
    with pytest.raises(CatalogError) as info:
        open_catalog(make_catalog(tmp_path, [entry]))
    err = info.value
    assert err.entry == f"measurements[0] ({entry['path']})" and err.field == field
    assert message in str(err)


def test_two_tables_convert_units_and_refuse_a_value_given_twice(tmp_path):
    write_table(
        tmp_path / "a.csv", [["subject", "session", "carotid_imt [mm]"], ["S01", "L-30", 0.56]]
    )
    write_table(tmp_path / "b.xlsx", [["subject", "session", "carotid_imt [cm]"], ["S01", "R+4", 0.064]])  # fmt: skip
    cat = open_catalog(make_catalog(tmp_path, [{"path": "a.csv"}, {"path": "b.xlsx"}]))
    m = cat.measurements.set_index(["subject", "session"])
    assert m.attrs["units"] == {"carotid_imt": "mm"}
    assert m.loc[("S01", "R+4"), "carotid_imt"] == pytest.approx(0.64)
    write_table(tmp_path / "c.csv", [["subject", "session", "carotid_imt [mm]"], ["S01", "L-30", 0.57]])  # fmt: skip
    with pytest.raises(CatalogError) as info:
        open_catalog(make_catalog(tmp_path, [{"path": "a.csv"}, {"path": "c.csv"}]))
    text = str(info.value)
    assert f"measurements[1] ({tmp_path / 'c.csv'}): row 2, column C ('carotid_imt [mm]')" in text
    assert f"also given by measurements[0] ({tmp_path / 'a.csv'}), row 2" in text
    write_table(tmp_path / "d.csv", [["subject", "session", "carotid_imt [mmHg]"], ["S01", "R+4", 1]])  # fmt: skip
    with pytest.raises(CatalogError, match="measures pressure, but measurements"):
        open_catalog(make_catalog(tmp_path, [{"path": "a.csv"}, {"path": "d.csv"}]))


def test_read_measurement_table_alone(tmp_path):
    """The reader works without a catalog: rows indexed as the spreadsheet numbers them."""
    rows = [["Subject", "Session", "carotid_imt [mm]"], [], [" S01", "R+4 ", "0.6"]]
    t = read_measurement_table(write_table(tmp_path / "t.csv", rows))
    assert list(t.values.index) == [3]  # the blank row 2 is skipped but counted
    assert t.values.loc[3, ["subject", "session", "epoch"]].tolist() == ["S01", "R+4", "session"]
    assert t.units == {"carotid_imt": "mm"} and t.quantities == ["carotid_imt"]


def write_features(derived, subject, label, hr):
    """A processed session's features as the pipeline stores them (epochs x hr)."""
    epochs = ["supine", "stand", "stand-supine"]
    ds = xr.Dataset({"hr": ("epoch", np.asarray(hr, float), {"units": "bpm"})}, {"epoch": epochs})
    DerivedStore(derived).write_session(subject, label, {"features": ds}, {})


def test_features_table_joins_measurements_with_units(tmp_path):
    write_table(tmp_path / "us.csv", GOOD)
    catalog = make_catalog(tmp_path, [{"path": "us.csv"}])
    derived = tmp_path / "derived.zarr"
    write_features(derived, "S01", "L-30", [60.0, 72.0, 12.0])
    write_features(derived, "S01", "R+4", [66.0, 84.0, 18.0])
    table = features_table(catalog)
    assert table.attrs["units"] == {"hr": "bpm", "carotid_imt": "mm", "jugular_vein_area": "cm2"}
    keyed = table.set_index(["subject", "session", "epoch"])
    # a session value has its own row, where the recorded features are empty
    assert keyed.loc[("S01", "L-30", SESSION_EPOCH), "carotid_imt"] == 0.56
    assert np.isnan(keyed.loc[("S01", "L-30", SESSION_EPOCH), "hr"])
    assert np.isnan(keyed.loc[("S01", "L-30", "supine"), "carotid_imt"])
    # an epoch value joins that epoch's row
    assert keyed.loc[("S01", "R+4", "supine"), "carotid_imt"] == 0.64
    assert keyed.loc[("S01", "R+4", "supine"), "hr"] == 66.0
    # sessions with measurements but no processed recording are there, with phase and day
    s02 = table[table["subject"] == "S02"]
    assert list(s02["epoch"]) == [SESSION_EPOCH] and s02["day"].iloc[0] == -30.0
    fd15 = keyed.loc[("S01", "FD15", SESSION_EPOCH)]
    assert fd15["phase"] == "in" and fd15["day"] == 15.0 and fd15["jugular_vein_area"] == 1.22
    # rows in catalog order, the recorded epochs of a session before its measured ones
    assert list(zip(table["session"], table["epoch"], strict=True))[:6] == [
        ("L-30", "supine"), ("L-30", "stand"), ("L-30", "stand-supine"), ("L-30", "session"),
        ("FD15", "session"), ("R+4", "supine"),
    ]  # fmt: skip
    assert feature_epochs(table, "carotid_imt") == [SESSION_EPOCH, "supine"]
    assert feature_epochs(table, "hr") == ["supine", "stand", "stand-supine"]


def test_a_measurement_named_like_a_feature_is_refused(tmp_path):
    write_table(tmp_path / "us.csv", [["subject", "session", "hr [ms]"], ["S01", "L-30", 1]])
    catalog = make_catalog(tmp_path, [{"path": "us.csv"}])
    write_features(tmp_path / "derived.zarr", "S01", "L-30", [60.0, 72.0, 12.0])
    with pytest.raises(CardiolabError, match=r"measurement\(s\) \['hr'\] are named like"):
        features_table(catalog)


@pytest.fixture(scope="module")
def imt_campaign(tmp_path_factory):
    """8 subjects x the demo's 10 sessions of carotid IMT drawn from the time-course model
    (the simulator's carotid IMT effects, with a recovery the demo's post-flight days can
    pin down: tau_r 10 d), as the measurement table of an unprocessed campaign."""
    folder = tmp_path_factory.mktemp("imt")
    truth = dict(pre=0.56, A=0.09, tau_a=5.0, D=0.09, tau_r=10.0)
    drawn = simulate_feature_table(
        n_subjects=8,
        **truth,
        between_sd=0.16 * 0.56,
        residual_sd=0.012,
        feature="carotid_imt",
        units="mm",
        seed=5,
    )
    rows = [["subject", "session", "carotid_imt [mm]"]]
    rows += drawn[["subject", "session", "carotid_imt"]].values.tolist()
    write_table(folder / "ultrasound.csv", rows)
    sessions = list(zip(drawn["subject"], drawn["session"], strict=True))
    subjects = sorted(set(drawn["subject"]))
    catalog = make_catalog(folder, [{"path": "ultrasound.csv"}], sessions, subjects)
    return catalog, drawn, truth


def test_fit_all_models_a_measurement(imt_campaign):
    catalog, drawn, truth = imt_campaign
    table = features_table(catalog)  # nothing processed: the measurement rows only
    assert len(table) == 80 and set(table["epoch"]) == {SESSION_EPOCH}
    np.testing.assert_allclose(table["carotid_imt"], drawn["carotid_imt"])
    results = fit_all(table, client="sync", progress=False)
    assert set(results["feature"]) == {"carotid_imt"} and set(results["epoch"]) == {"session"}
    assert (results["error"] == "").all() and set(results["units"]) == {"mm"}
    tc = results[results["model"] == "time_course"].set_index("term")
    for term in ("b0", "A", "tau_a", "D", "tau_r"):
        lo, hi = tc.loc[term, ["ci_low", "ci_high"]]
        true = truth["pre"] if term == "b0" else truth[term]
        assert lo <= true <= hi, (term, lo, hi)
    # the contrast of R+0 with pre-flight: D = 0.09 mm, within its 95 % CI
    contrast = results[results["model"] == "contrast"].set_index("term")
    r0 = contrast.loc[[t for t in contrast.index if "R+0" in t][0]]
    assert r0["ci_low"] <= truth["D"] <= r0["ci_high"], r0
    assert r0["p_holm"] < 0.05


def test_cohort_page_shows_a_measurement_in_its_epoch(imt_campaign):
    from cardiolab.dashboards.cohort import CohortPage

    catalog, drawn, truth = imt_campaign
    page = CohortPage(table=features_table(catalog), feature="carotid_imt", epoch="supine")
    assert page.feature == "carotid_imt" and page.epoch == SESSION_EPOCH
    assert "carotid_imt" in page.param.feature.objects


def test_simulated_measurement_table_follows_the_truth(small_campaign):
    """The simulator's table: one row per session, values of the truth (to the 0.001
    written), drawn from the effects model with a subject intercept."""
    path, truth = small_campaign
    cat = open_catalog(path / "data_catalog.yaml")
    assert [t.path for t in cat.model.measurements] == ["measurements.csv"]
    m = cat.measurements.set_index(["subject", "session", "epoch"])
    assert m.attrs["units"] == {"carotid_imt": "mm", "jugular_vein_area": "cm2"}
    assert len(m) == len(cat.model.sessions) == 12
    eff = truth.effects
    assert eff.loc[("carotid_imt", SESSION_EPOCH), ["pre", "A"]].tolist() == [0.56, 0.09]
    assert eff.loc[("jugular_vein_area", SESSION_EPOCH), "A"] == pytest.approx(2.0 * 0.40)
    within = truth.params["within_sd"]
    for q in ("carotid_imt", "jugular_vein_area"):
        true = truth.sessions.xs(SESSION_EPOCH, level="epoch")[q]
        written = truth.realised.xs(SESSION_EPOCH, level="epoch")[q]
        got = m.xs(SESSION_EPOCH, level="epoch")[q]
        np.testing.assert_allclose(got, written.loc[got.index], rtol=0, atol=1e-12)
        np.testing.assert_allclose(got, true.loc[got.index], rtol=0, atol=0.0005)
        # each value = the subject's curve + day-to-day deviation (within_sd of pre)
        row = eff.loc[(q, SESSION_EPOCH)]
        sessions = true.reset_index()
        pre_i = truth.subjects.xs((q, SESSION_EPOCH), level=["quantity", "epoch"])
        np.testing.assert_allclose(
            pre_i["pre"], row["pre"] * (1 + row["between_sd"] * pre_i["z"]), rtol=1e-12
        )
        phase = truth.sessions.xs(SESSION_EPOCH, level="epoch")["phase"].to_numpy()
        day = truth.sessions.xs(SESSION_EPOCH, level="epoch")["day"].to_numpy()
        curve = time_course(
            pre_i.loc[sessions["subject"], "pre"].to_numpy(),
            row["A"],
            row["tau_a"],
            row["D"],
            row["tau_r"],
            phase,
            day,
        )
        deviation = (true.to_numpy() - curve) / (within * row["pre"])
        assert np.abs(deviation).max() < 4.0, deviation
        assert 0 < np.std(deviation)
    # in flight (FD10, ~20 tau_a) the jugular vein area is up by A = 0.8 cm2 (+200 %);
    # the day-to-day SD of a difference is 0.03 * 0.40 * sqrt(2) = 0.017 cm2
    jv = truth.sessions.xs(SESSION_EPOCH, level="epoch")["jugular_vein_area"].unstack()
    np.testing.assert_allclose(jv["FD10"] - jv["L-30"], 0.80, atol=4 * 0.017)


def test_cohort_page_groups_features_by_their_declaration(imt_campaign):
    """The Cohort page reads the registry: every column in its feature's group (the new
    nonlinear and cerebral features too), measurements in their own group, and a line
    naming the chosen column's long name, units and source."""
    from cardiolab.dashboards.cohort import CohortPage

    catalog, _, _ = imt_campaign
    table = features_table(catalog)
    value = table["carotid_imt"]
    table = table.assign(mca_tfa_gain_lf=value, sampen=value, mca_mx=value, hr=value)
    page = CohortPage(table=table, feature="mca_tfa_gain_lf", epoch="supine")
    groups = page._feature_select.groups
    assert groups == {
        "hrv_time": ["hr"],
        "hrv_nonlinear": ["sampen"],
        "cerebral_autoregulation": ["mca_tfa_gain_lf", "mca_mx"],
        "measurements": ["carotid_imt"],
    }
    assert sorted(c for cols in groups.values() for c in cols) == sorted(page.param.feature.objects)
    assert page._about.object.startswith(
        "mca_tfa_gain_lf: mca MAP-to-CBFV transfer function gain, LF (0.07-0.2 Hz) (cm/s/mmHg)"
    )
    assert "Claassen" in page._about.object
