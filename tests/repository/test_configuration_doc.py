"""docs/configuration.md is what scripts/settings-doc generates from the `Settings` model today:
every field, its variable, type, default and description, no secret's default; so the table
cannot drift from the code. When this fails, run scripts/settings-doc and commit the result."""

from __future__ import annotations

import subprocess
from importlib.machinery import SourceFileLoader
from importlib.util import module_from_spec, spec_from_loader
from types import ModuleType

import pytest

from quotestream.settings import Settings
from tests.conftest import REPO

pytestmark = pytest.mark.unit

SCRIPT = REPO / "scripts" / "settings-doc"
DOC = REPO / "docs" / "configuration.md"


def generator() -> ModuleType:
    loader = SourceFileLoader("settings_doc", str(SCRIPT))
    spec = spec_from_loader(loader.name, loader)
    assert spec is not None
    module = module_from_spec(spec)
    loader.exec_module(module)
    return module


def test_the_configuration_doc_is_what_the_settings_generate() -> None:
    assert DOC.read_text() == generator().render(), (
        "docs/configuration.md is stale: run scripts/settings-doc"
    )


def test_the_check_command_agrees() -> None:
    done = subprocess.run(
        [SCRIPT, "--check"], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr


def test_every_setting_has_a_row_and_a_description() -> None:
    text = generator().render()
    for name in Settings.model_fields:
        rows = [
            line
            for line in text.splitlines()
            if line.startswith(f"| `QUOTESTREAM_{name.upper()}` |")
        ]
        assert len(rows) == 1, name
        assert generator().UNDESCRIBED not in rows[0], (
            f"{name} has no description: give it Field(description=...) or a comment in settings.py"
        )


def test_every_note_names_a_setting() -> None:
    unknown = set(generator().NOTES) - set(Settings.model_fields)
    assert unknown == set(), f"notes in scripts/settings-doc for no setting: {sorted(unknown)}"


def test_no_secret_default_is_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    module = generator()
    secret = "a-secret-default-" + "x" * 16
    for name in Settings.secret_fields():
        field = Settings.model_fields[name]
        monkeypatch.setattr(field, "default", secret)
    assert Settings.secret_fields(), "the relay key is a secret field"
    assert secret not in module.render()
