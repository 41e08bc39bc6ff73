"""The notebook runner: jobs at once, longest first, the first failure raised."""

import json

import nbformat
import pytest
from sparse_circuits.app import notebooks


def _notebook(path, body: str, threads: int | None = 1) -> None:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('profile = "full"' + ("" if threads is None else f"\nthreads = {threads}"))
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": notebooks.KERNEL, "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


@pytest.fixture
def fake_notebooks(tmp_path, monkeypatch):
    src = tmp_path / "notebooks"
    src.mkdir()
    monkeypatch.setattr(notebooks, "RUNS_DIR", tmp_path / "runs")
    monkeypatch.setattr(notebooks, "notebook_paths", lambda names=None: sorted(src.glob("*.ipynb")))
    return src


def test_two_jobs_run_every_notebook_with_its_parameters(fake_notebooks, tmp_path):
    for name, threads in (("00_a", None), ("01_b", 1), ("02_c", 1)):
        _notebook(fake_notebooks / f"{name}.ipynb", f"open('{name}.txt', 'w').write(profile)", threads)
    assert [notebooks.single_threaded(p) for p in sorted(fake_notebooks.glob("*.ipynb"))] == [False, True, True]
    timings = notebooks.execute("smoke", jobs=2)
    assert list(timings) == ["00_a", "01_b", "02_c"] and all(t > 0 for t in timings.values())
    for name in timings:  # each ran in the notebooks' folder, with the profile injected
        assert (fake_notebooks / f"{name}.txt").read_text() == "smoke"
        assert (tmp_path / "runs" / "smoke" / f"{name}.ipynb").exists()


def test_a_failing_notebook_stops_the_run(fake_notebooks):
    _notebook(fake_notebooks / "00_bad.ipynb", "raise ValueError('broken on purpose')")
    _notebook(fake_notebooks / "01_ok.ipynb", "x = 1")
    with pytest.raises(Exception, match="broken on purpose"):
        notebooks.execute("smoke", jobs=2)
    with pytest.raises(ValueError, match="jobs must be at least 1"):
        notebooks.execute("smoke", jobs=0)


def test_longest_recorded_notebooks_start_first(tmp_path, monkeypatch):
    results = tmp_path / "results"
    results.mkdir()
    (results / "timings.json").write_text(json.dumps({"00_a": 5.0, "01_b": 50.0, "02_c": 20.0}))
    monkeypatch.setattr(notebooks, "results_dir", lambda profile="full": results)
    paths = [tmp_path / f"{n}.ipynb" for n in ("00_a", "01_b", "02_c", "03_new")]
    assert [p.stem for p in notebooks.longest_first(paths)] == ["03_new", "01_b", "02_c", "00_a"]


def test_only_a_run_of_every_notebook_records_the_figures_wall_time(fake_notebooks, tmp_path, monkeypatch):
    for name in ("00_a", "01_b"):
        _notebook(fake_notebooks / f"{name}.ipynb", "pass")
    ran = lambda profile, names, jobs: {n: 1.0 for n in (names or ["00_a", "01_b"])}  # noqa: E731
    monkeypatch.setattr(notebooks, "execute", ran)
    monkeypatch.setattr(notebooks, "results_dir", lambda profile="full": tmp_path)
    monkeypatch.setattr(notebooks, "update_readme", lambda: None)
    record = tmp_path / "figures_run.json"
    assert notebooks.main(["full", "01_b", "--jobs", "2"]) == 0
    assert not record.exists() and json.loads((tmp_path / "timings.json").read_text()) == {"01_b": 1.0}
    assert notebooks.main(["full", "--jobs", "2"]) == 0
    assert json.loads(record.read_text())["notebooks"] == ["00_a", "01_b"]
