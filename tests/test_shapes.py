"""The catalog's shapes ship with the project (lib/models/catalog_shapes.json), so refusing a
model too big for this machine needs no torch: they must be what a build gives."""

import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from lib.models import shapes
from lib.models.catalog import CATALOG, OWN

ROOT = Path(__file__).resolve().parent.parent


def test_every_catalog_model_ships_its_shapes_for_its_configuration():
    stale = [entry.model_id for entry in CATALOG.values()
             if entry.weights != OWN and shapes._shipped(entry) is None]
    assert not stale, f"run scripts/catalog_shapes.py: no shipped shapes for {stale}"


@pytest.mark.slow           # builds on torch's meta device: imports torch and transformers' models
@pytest.mark.parametrize("model_id", ["smollm2-135m-instruct", "gpt2", "all-minilm-l6-v2"])
def test_shipped_shapes_are_what_a_build_gives(model_id):
    entry = CATALOG[model_id]
    assert shapes._shipped(entry) == shapes._build(entry)


@pytest.mark.slow
def test_a_model_too_big_is_refused_from_its_configuration_without_torch(tmp_path):
    if psutil.virtual_memory().available > 40e9:
        pytest.skip("this machine could hold the 8B model's float32 weights")
    code = ("import sys; from lib.cli import main; status = main.main(['run', '--model', "
            "'deepseek-r1-distill-llama-8b', '--dtype', 'float32']); "
            "print(status, sorted({'torch', 'transformers'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=120,
                            env={"PATH": "/usr/bin:/bin", "ILE_CACHE_DIR": str(tmp_path),
                                 "ILE_DATA_DIR": str(tmp_path / "data"), "HF_HUB_OFFLINE": "1"})
    assert result.stdout.strip() == "2 []", result.stderr
    assert "Not enough memory" in result.stderr
