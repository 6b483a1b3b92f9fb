"""The Python API page's example (docs/python-api.md) and examples/ run as written: as scripts
and in a kernel."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from flames._config import load_evaluation
from flames.errors import DataError

REPO = Path(__file__).resolve().parents[1]
PAGE = (REPO / "docs" / "python-api.md").read_text(encoding="utf-8")


def page_block(language: str) -> str:
    """The first ```language block of the Python API page."""
    found = re.search(rf"```{language}\n(.*?)```", PAGE, re.DOTALL)
    assert found, f"no {language} block on the Python API page"
    return found.group(1)


def run_script(path: Path, cwd: Path) -> str:
    proc = subprocess.run(
        [sys.executable, str(path)], cwd=cwd, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def run_notebook(notebook, cwd: Path):
    nbclient = pytest.importorskip("nbclient")
    client = nbclient.NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    )
    return client.execute()


def test_the_python_api_example_runs_as_a_script(tmp_path):
    script = tmp_path / "example.py"
    script.write_text(page_block("python"), encoding="utf-8")
    out = run_script(script, tmp_path)
    assert re.search(r"python-api \(judge:__main__:my_judge\): harmless rate [\d.]+%", out)
    assert "level" in out and "Overall" in out and "subcomponent" in out  # the DataFrame
    assert (tmp_path / "runs" / "python-api" / "report" / "report.json").is_file()


def test_the_python_api_example_runs_as_a_notebook_cell(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(page_block("python"))])
    executed = run_notebook(notebook, tmp_path)
    text = "".join(o.get("text", "") for o in executed.cells[0].outputs)
    assert "harmless rate" in text and "subcomponent" in text


def test_the_example_script_runs(tmp_path):
    out = run_script(REPO / "examples" / "python_api.py", tmp_path)
    assert "overall difference (helpful - cautious):" in out
    assert (tmp_path / "runs" / "helpful" / "run.db").is_file()


def test_the_example_notebook_runs_in_a_kernel(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    notebook = nbformat.read(REPO / "examples" / "python_api.ipynb", as_version=4)
    executed = run_notebook(notebook, tmp_path)
    last = executed.cells[-1].outputs[-1]
    assert last["output_type"] == "execute_result" and "control-" in last["data"]["text/plain"]


def test_the_config_file_example_is_valid_and_its_error_example_is_true(tmp_path):
    text = page_block("toml")
    path = tmp_path / "eval.toml"
    path.write_text(text, encoding="utf-8")
    evaluation = load_evaluation(path)
    assert evaluation.data.sample == 200 and evaluation.judges[0].model == "gpt-4o"
    quoted = re.search(r"\(`(eval\.toml:\d+: target\.decoding\.temperature: [^`]*)`\)", PAGE)
    assert quoted, "the page quotes an error message"
    path.write_text(text.replace("temperature = 0.0", 'temperature = "hot"'), encoding="utf-8")
    with pytest.raises(DataError) as caught:
        load_evaluation(path)
    assert str(caught.value).startswith(str(tmp_path / quoted.group(1)))
