"""The docs stay true to the code: every setting, annotation and contract variable is documented."""

from __future__ import annotations

from pathlib import Path

import pytest

from webhook.admission import config as cfg
from webhook.shim import contract

DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.mark.parametrize("setting", sorted(cfg.Settings.model_fields))
def test_every_setting_is_documented(setting):
    assert f"`{setting}`" in (DOCS / "configuration.md").read_text()


@pytest.mark.parametrize("annotation", sorted([*cfg.OVERRIDE_ANNOTATIONS, cfg.PIPELINES_ANNOTATION]))
def test_every_annotation_is_documented(annotation):
    assert f"`{annotation}`" in (DOCS / "configuration.md").read_text()


CONTRACT_ENV = sorted(
    value
    for name, value in vars(contract).items()
    if name.isupper() and isinstance(value, str) and value.startswith("WANDB_")
)


@pytest.mark.parametrize("variable", CONTRACT_ENV)
def test_every_contract_variable_is_documented(variable):
    assert variable in (DOCS / "contract.md").read_text()
