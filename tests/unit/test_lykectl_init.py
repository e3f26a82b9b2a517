"""`lykectl init`: the scaffold's files, its contract read back by the training's own
reader, and a directory that is never overwritten."""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.testing import CliRunner

from lykectl.cli import app
from lykeion.training.contract import read_project_contract

runner = CliRunner()


def test_init_writes_a_project_lykeion_reads(tmp_path: Path) -> None:
    project = tmp_path / "churn"
    result = runner.invoke(
        app,
        ["init", str(project), "--family", "churn", "--target", "churned", "--metric", "rmse",
         "--threshold", "0.3", "--lower-is-better", "--labels-path", "gs://b/labels.parquet"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    contract = read_project_contract(project, "churn/lykeion.yaml")
    assert contract is not None and contract.labels is not None and contract.evaluation
    assert (contract.labels.target, contract.labels.file.format) == ("churned", "parquet")
    assert (contract.evaluation.metric, contract.evaluation.higher_is_better) == ("rmse", False)
    mlproject = yaml.safe_load((project / "MLproject").read_text())
    # No environment of its own: it trains with the training image's libraries as it is.
    assert mlproject["name"] == "churn" and "python_env" not in mlproject
    parameters = mlproject["entry_points"]["main"]["parameters"]
    assert {"train", "test", "target", "features"} <= set(parameters)
    assert not (project / "python_env.yaml").exists()
    readme = (project / "README.md").read_text()
    assert "lykectl models create churn --segment default --version 1.0" in readme
    assert "lykectl models train churn --segment default --version 1.0" in readme
    compile((project / "train.py").read_text(), "train.py", "exec")


def test_init_never_overwrites(tmp_path: Path) -> None:
    (tmp_path / "MLproject").write_text("name: mine\n")
    result = runner.invoke(app, ["init", str(tmp_path)])
    assert result.exit_code == 1
    assert "is not an empty directory" in result.stderr
    assert (tmp_path / "MLproject").read_text() == "name: mine\n"


def test_init_rejects_a_bad_contract_naming_the_field(tmp_path: Path) -> None:
    result = runner.invoke(app, ["init", str(tmp_path / "p"), "--target", "Bad!"])
    assert result.exit_code == 1
    assert "lykeion.yaml.labels.target" in result.stderr
    assert not (tmp_path / "p").exists()
