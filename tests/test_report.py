import json

import pytest
from sparse_circuits.app import report
from sparse_circuits.core import paths


def test_update_readme_rewrites_only_between_markers(tmp_path, monkeypatch):
    figs = tmp_path / "figures"
    (figs / "results").mkdir(parents=True)
    (figs / "results" / "03_x.json").write_text(json.dumps({"claims": [
        {"id": "C1", "claim": "smaller circuits", "ours": "2.0x", "paper": "16x", "holds": "partly",
         "figure": "figures/03_x.png"}]}))  # fmt: skip
    (figs / "results" / "timings.json").write_text(json.dumps({"00_quickstart": 60.0}))
    monkeypatch.setattr(report, "FIGURES_DIR", figs)
    monkeypatch.setattr(report, "MODELS_DIR", tmp_path / "models")
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\nintro\n{report.START}\nold\n{report.END}\ntail\n")
    assert report.update_readme(readme)
    text = readme.read_text()
    assert text.startswith("# title\nintro\n") and text.endswith(f"{report.END}\ntail\n")
    assert "| C1 | smaller circuits | 2.0x | 16x | partly | [figure](figures/03_x.png) |" in text
    assert "`00_quickstart` 60 s" in text and "\nold\n" not in text
    assert not report.update_readme(readme)  # idempotent
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
