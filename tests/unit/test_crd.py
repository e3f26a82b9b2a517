"""The CRD generator: golden output for a small model, and the checked-in CRDs are current."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field

from lykeion.api import KINDS
from lykeion.api.common import ApiModel, cel, cel_rules
from lykeion.api.crd import crd, main, rendered_files, structural

ROOT = Path(__file__).resolve().parents[2]


class Inner(ApiModel):
    """Inner docs."""

    size: int = Field(1, ge=0, le=10)
    """How big."""


class Sample(ApiModel):
    model_config = cel_rules(cel("has(self.a) != has(self.b)", "one of a or b"))

    a: str | None = Field(None, pattern=r"^x+$", max_length=5)
    b: Inner | None = None
    mode: Literal["on", "off"] = "on"
    tags: dict[str, str] = Field(default_factory=dict, max_length=4)
    items: list[Inner] = Field(
        default_factory=list,
        max_length=3,
        json_schema_extra={"x-kubernetes-list-type": "atomic"},
    )


def test_structural_schema_golden() -> None:
    schema = Sample.model_json_schema(by_alias=True)
    out = structural(schema, schema["$defs"])
    golden = yaml.safe_load((Path(__file__).parent / "golden" / "sample_schema.yaml").read_text())
    assert out == golden


def test_every_kind_has_status_subresource_category_and_ready_column() -> None:
    for kind in KINDS:
        rendered = crd(kind)
        version = rendered["spec"]["versions"][0]
        assert version["subresources"] == {"status": {}}
        assert rendered["spec"]["names"]["categories"] == ["lykeion"]
        assert any(c["name"] == "Ready" for c in version["additionalPrinterColumns"])
        schema = version["schema"]["openAPIV3Schema"]
        assert "$ref" not in yaml.safe_dump(schema)
        assert "anyOf" not in yaml.safe_dump(schema)


def test_checked_in_crds_are_current() -> None:
    assert main(["--check", "--root", str(ROOT)]) == 0


def test_check_detects_a_hand_edit(tmp_path: Path) -> None:
    for path, text in rendered_files(tmp_path).items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert main(["--check", "--root", str(tmp_path)]) == 0
    victim = next(iter(rendered_files(tmp_path)))
    victim.write_text(victim.read_text().replace("maxLength: 20", "maxLength: 30"))
    assert main(["--check", "--root", str(tmp_path)]) == 1
