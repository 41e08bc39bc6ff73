import json

import pytest
from sparse_circuits.app import report
from sparse_circuits.core import paths


def test_update_readme_rewrites_only_between_markers(tmp_path, monkeypatch):
    figs = tmp_path / "figures"
    (figs / "results").mkdir(parents=True)
    (figs / "results" / "03_x.json").write_text(
        json.dumps(
            {
                "claims": [
                    {
                        "id": "C1",
                        "claim": "smaller circuits",
                        "ours": "2.0x",
                        "paper": "16x",
                        "holds": "partly",
                        "figure": "figures/03_x.png",
                    }
                ]
            }
        )
    )
    (figs / "results" / "timings.json").write_text(json.dumps({"00_quickstart": 60.0}))
    monkeypatch.setattr(report, "FIGURES_DIR", figs)
    monkeypatch.setattr(report, "MODELS_DIR", tmp_path / "models")
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\nintro\n{report.START}\nold\n{report.END}\ntail\n")
    assert report.update_readme(readme)
    text = readme.read_text()
    assert text.startswith("# title\nintro\n") and text.endswith(f"{report.END}\ntail\n")
    from sparse_circuits.app.verdicts import NARROW_REGIME

    assert f"| C1 | smaller circuits | 2.0x | 16x | partly | {NARROW_REGIME} | [figure](figures/03_x.png) |" in text
    assert "`00_quickstart` 60 s" in text and "\nold\n" not in text
    assert not report.update_readme(readme)  # idempotent
    run = {"jobs": 2, "notebooks": ["00_quickstart"], "wall_s": 90.0}
    (figs / "results" / "figures_run.json").write_text(json.dumps(run))
    assert report.update_readme(readme)
    assert (
        "The last full run of 1 notebooks, 2 at a time (each timed beside another), took 1.5 min" in readme.read_text()
    )
    assert "| C1 |" in readme.read_text()  # the run record holds no claims and breaks none
    readme.write_text("no markers")
    with pytest.raises(ValueError, match="lacks the markers"):
        report.update_readme(readme)


def test_smoke_outputs_never_touch_committed_figures():
    assert paths.figures_dir("full") == paths.FIGURES_DIR
    assert paths.RUNS_DIR in paths.figures_dir("smoke").parents
    with pytest.raises(ValueError, match="unknown profile 'fast'"):
        paths.figures_dir("fast")


def test_missing_shipped_model_names_the_alternatives():
    with pytest.raises(FileNotFoundError, match="no shipped model 'nope'"):
        paths.model_dir("nope")


def test_every_notebook_is_a_clean_papermill_template():
    import nbformat

    notebooks = sorted(paths.NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))
    assert notebooks
    for nb_path in notebooks:
        nb = nbformat.read(nb_path, as_version=4)
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, f"{nb_path.name}: needs exactly one cell tagged 'parameters'"
        assert 'profile = "full"' in tagged[0].source, nb_path.name
        for c in nb.cells:
            if c.cell_type == "code":
                assert not c.outputs and c.execution_count is None, f"{nb_path.name}: committed with outputs"


def test_one_verdict_rule_for_every_claim():
    from sparse_circuits.app import verdicts as v

    rule = [v.verdict(True), v.verdict(False, True), v.verdict(False), v.verdict(True, judged=False)]
    assert rule == ["yes", "partly", "no", "n/a"]
    assert v.verdict_of_cells([True, None, True]) == "yes" and v.verdict_of_cells([False, True]) == "partly"
    assert v.verdict_of_cells([False, None]) == "no" and v.verdict_of_cells([None]) == v.verdict_of_cells([]) == "n/a"
    assert [v.verdict_of_count(g, 3) for g in (3, 1, 0)] == ["yes", "partly", "no"] and v.verdict_of_count(
        0, 0
    ) == "n/a"
    assert v.small_circuit_verdict(30, 0.1) == "yes" and v.small_circuit_verdict(31, -0.5) == "partly"
    assert v.small_circuit_verdict(200, 0.49) == "no"
    assert v.ratio_verdict([1.6, None, 1.5], full=1.5, some=1.1) == "yes"
    assert v.ratio_verdict([1.6, 1.0], full=1.5, some=1.1) == "partly" and v.ratio_verdict([None], 1.5, 1.1) == "n/a"
    assert v.sign_flip_verdict({"s": 0.1, "l": -0.06}, "s", "l", 0.05) == "yes"
    assert v.sign_flip_verdict({"s": 0.1, "l": 0.2}, "s", "l", 0.05) == "partly"
    assert v.sign_flip_verdict({"s": 0.01, "l": -0.02}, "s", "l", 0.05) == "no"
    assert v.sign_flip_verdict({"s": None, "l": 0.2}, "s", "l", 0.05) == "n/a"
    assert v.sign_flip_verdict({"s": 0.3}, "s", "s", 0.05) == "n/a"
    # D1 per cell: nonsense nodes against the real task's (None: the target was never reached)
    assert v.nonsense_verdict(30, 10, 5.0) == "yes" and v.nonsense_verdict(50, 10, 5.0) == "yes"
    assert v.nonsense_verdict(51, 10, 5.0) == "partly" and v.nonsense_verdict(None, 10, 5.0) == "no"
    assert v.nonsense_verdict(30, None, 5.0) == "n/a" and v.nonsense_verdict(None, None, 5.0) == "n/a"
    cell = {"n_reached": 4, "share_bad": 0.25, "model_rates": {"ioi_same": {"p_correct": 0.9}}}
    assert v.generalization_fails(cell) is True and v.generalization_fails({**cell, "share_bad": 0.1}) is False
    assert v.generalization_fails({**cell, "n_reached": 0}) is None
    assert v.generalization_fails({**cell, "model_rates": {"ioi_same": {"p_correct": 0.5}}}) is None
    row = v.claim("C1", "smaller circuits", "2.0x", "16x", v.verdict_of_cells([True, False]), "figures/x.png")
    assert row["holds"] == "partly" and list(row) == ["id", "claim", "ours", "paper", "holds", "figure"]
    with pytest.raises(ValueError, match="holds"):
        v.claim("C1", "", "", "", "maybe", "")


def test_bootstrap_ci_brackets_the_mean_and_is_seeded():
    from sparse_circuits.app.verdicts import bootstrap_ci

    values = [1.0, 2.0, 3.0, 4.0, 10.0]
    est, lo, hi = bootstrap_ci(values)
    assert est == pytest.approx(4.0)
    assert lo < est < hi
    assert bootstrap_ci(values) == (est, lo, hi)
    assert bootstrap_ci([2.5]) == (2.5, 2.5, 2.5)
    with pytest.raises(ValueError, match="at least one"):
        bootstrap_ci([])


def test_binomial_interval_is_clopper_pearson():
    from sparse_circuits.app.verdicts import binomial_interval

    # k = 0 and k = n have closed forms: (0, 1 - (tail)^(1/n)) and ((tail)^(1/n), 1)
    assert binomial_interval(0, 8) == pytest.approx((0.0, 1 - 0.025 ** (1 / 8)), abs=1e-9)
    assert binomial_interval(8, 8) == pytest.approx((0.025 ** (1 / 8), 1.0), abs=1e-9)
    # published Clopper-Pearson values: 3 of 10 -> [0.0667, 0.6525]; 5 of 100 -> [0.0164, 0.1128]
    assert binomial_interval(3, 10) == pytest.approx((0.0667, 0.6525), abs=1e-4)
    assert binomial_interval(5, 100) == pytest.approx((0.0164, 0.1128), abs=1e-4)
    low, high = binomial_interval(3, 10, level=0.5)
    assert 0.0667 < low < 0.3 < high < 0.6525  # a lower level gives a narrower interval around k / n
    with pytest.raises(ValueError, match="k <= n"):
        binomial_interval(3, 2)
    with pytest.raises(ValueError, match="level"):
        binomial_interval(1, 2, level=1.0)


def test_existential_and_universal_verdicts():
    from sparse_circuits.app.verdicts import existential_verdict, universal_verdict

    assert existential_verdict([0.1, 0.9, None], strong=0.8) == "yes"
    assert existential_verdict([0.1, 0.5], strong=0.8, weak=0.4) == "partly"
    assert existential_verdict([0.1], strong=0.8) == "no"
    assert existential_verdict([None], strong=0.8) == "n/a"
    assert universal_verdict([True, True, False, None], share=0.6) == ("yes", pytest.approx(2 / 3))
    assert universal_verdict([True, False, False], share=0.6)[0] == "partly"
    assert universal_verdict([False], share=0.6)[0] == "no"
    assert universal_verdict([None], share=0.6)[0] == "n/a"


def test_c4_cell_reads_sufficiency_on_loss_and_necessity_on_binary_p_correct():
    from sparse_circuits.app.verdicts import c4_cell

    def ns(model, only, ablated, none, p_model, p_ablated):
        p = {"model": p_model, "circuit_only": 0.9, "circuit_ablated": p_ablated, "all_ablated": 0.5}
        return {"model": model, "circuit_only": only, "circuit_ablated": ablated, "all_ablated": none, "p_correct": p}

    # a small model loss: the floor 0.3 decides; half the P_correct above chance removed is exactly necessary
    c = c4_cell(ns(0.05, 0.29, 1.0, 4.0, 0.9, 0.7), necessity_share=0.5)
    assert c["sufficient"] and c["necessary"] and c["removed_share"] == pytest.approx(0.5)
    assert not c["necessary_loss"]  # the loss rule: 1.0 < half of 4.0
    c = c4_cell(ns(0.5, 1.01, 3.0, 4.0, 0.9, 0.75), necessity_share=0.5)  # 2 x model is the bar; 37.5% removed
    assert not c["sufficient"] and not c["necessary"] and c["necessary_loss"]
    # a model at chance: no share can be removed, never a division by zero
    assert not c4_cell(ns(0.7, 0.7, 0.7, 0.7, 0.5, 0.5), necessity_share=0.5)["necessary"]


def test_generalization_verdict_is_existential_with_intervals():
    from sparse_circuits.app.verdicts import generalization_verdict

    def cell(classes, same_p=0.95):
        return {
            "class": classes,
            "reached": [True] * len(classes),
            "n_reached": len(classes),
            "share_bad": classes.count("bad") / len(classes),
            "model_rates": {"ioi_same": {"p_correct": same_p}},
        }

    strong = {("a", "zero"): cell(["good"] * 4), ("b", "zero"): cell(["bad"] * 3 + ["good"])}
    out = generalization_verdict(strong)
    assert out["holds"] == "yes"  # one cell at 75% bad is enough for a "may" claim
    share, low, high = out["share_bad_ci"][("b", "zero")]
    assert share == 0.75 and low <= share <= high
    weak = {("a", "zero"): cell(["bad"] + ["good"] * 9)}
    assert generalization_verdict(weak)["holds"] == "partly"
    assert generalization_verdict({("a", "zero"): cell(["good"] * 5)})["holds"] == "no"
    # a model that does not generalize itself leaves nothing to judge
    assert generalization_verdict({("a", "zero"): cell(["bad"] * 5, same_p=0.5)})["holds"] == "n/a"


def test_claims_table_shows_the_rule(tmp_path, monkeypatch):
    from sparse_circuits.app.verdicts import claim

    results = tmp_path / "results"
    results.mkdir()
    row = claim("X1", "a claim", "ours", "paper", "yes", "figures/x.png", rule="yes if any cell >= 20%")
    (results / "99_x.json").write_text(json.dumps({"claims": [row]}))
    monkeypatch.setattr(report, "FIGURES_DIR", tmp_path)
    table = "\n".join(report.claims_table())
    assert "yes<br><sub>rule: yes if any cell >= 20%</sub>" in table
    assert "rule" not in claim("X2", "c", "o", "p", "no", "")


def test_claims_table_names_the_regime_and_whether_the_verdict_changed(tmp_path, monkeypatch):
    from sparse_circuits.app.verdicts import NARROW_REGIME, claim

    results = tmp_path / "results"
    results.mkdir()
    rows = [
        claim("C1", "smaller circuits", "2x", "16x", "partly", ""),
        claim("C1", "smaller circuits", "5x", "16x", "yes", "", regime="d512, L0 1/32"),
        claim("D4", "generalize differently", "80%", "23%", "yes", "", regime="d512, L0 1/32"),
        claim("C3", "small circuits", "36 nodes", "12", "partly", "", regime="d512, L0 1/32"),
        claim("C3", "small circuits", "40 nodes", "12", "partly", ""),
        claim("D5", "larger circuits", "5x", "much", "yes", ""),
        claim("D5", "effect flips", "+0.07", "flips", "partly", ""),
        claim("D5", "larger circuits (tuned pruning)", "1.2x", "much", "partly", "", regime="d512, L0 1/32"),
        claim("D5", "smaller residual", "0.5", "smaller", "yes", "", regime="d512, L0 1/32"),
    ]
    (results / "99_x.json").write_text(json.dumps({"claims": rows}))
    monkeypatch.setattr(report, "FIGURES_DIR", tmp_path)
    lines = report.claims_table()
    assert lines[0].count("|") == 8 and "regime" in lines[0]
    assert NARROW_REGIME in lines[2]
    assert "d512, L0 1/32 (changed from narrow: partly)" in lines[3]
    assert "d512, L0 1/32 (not tested on the narrow models)" in lines[4]
    assert "d512, L0 1/32 (same as narrow: partly)" in lines[5]
    # one id, several claims: a row is compared with the narrow row of its own claim where there is one
    assert "d512, L0 1/32 (changed from narrow: yes)" in lines[9]
    assert "d512, L0 1/32 (changed from narrow: yes, partly)" in lines[10]
    assert "regime" not in claim("X2", "c", "o", "p", "no", "")
