"""Students distilled on this machine (`python -m lib distill`), as entries of the model list.

A student lives in the cache folder (`student_folder`: `distilled/<teacher>-<layers>-layers`),
with `distilled.json` written last, once its weights are saved: a folder without it (a
training still running, or killed) is no student. Its entry has trained weights, the id
`<teacher>-distilled-<layers>`, a description that says where it came from, and its folder as
`local_path`, so it loads, runs and exports like the catalog's own models.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from lib.core.errors import ModelLoadError
from lib.models import files
from lib.models.entry import TRAINED, CatalogEntry

_STUDENT_ID = re.compile(r"^(?P<teacher>[a-z0-9][a-z0-9.-]*)-distilled-(?P<layers>[0-9]{1,4})$")


def parse_id(model_id: object) -> tuple[str, int] | None:
    """(teacher id, layers) when `model_id` is written as a student's id, else None."""
    found = _STUDENT_ID.match(model_id) if isinstance(model_id, str) else None
    return None if found is None else (found["teacher"], int(found["layers"]))


def student_id(teacher_id: str, layers: int) -> str:
    return f"{teacher_id}-distilled-{layers}"


def student_folder(teacher_id: str, layers: int) -> Path:
    from lib.core import paths
    return paths.cache_dir() / "distilled" / f"{teacher_id}-{layers}-layers"


def layers_found(teacher_id: str) -> list[int]:
    """The layer counts of the folders distilled from `teacher_id` (finished or not)."""
    found = []
    for folder in student_folder(teacher_id, 1).parent.glob(f"{teacher_id}-*-layers"):
        layers = folder.name[len(teacher_id) + 1:-len("-layers")]
        if layers.isdigit():
            found.append(int(layers))
    return sorted(found)


def entry(teacher: CatalogEntry, layers: int) -> CatalogEntry:
    """The student with `layers` layers distilled from `teacher`; ModelLoadError when there is
    none (it has to be trained first, or its training has not finished)."""
    return _student(teacher, layers, files.version(str(student_folder(teacher.model_id, layers))))


@functools.lru_cache(maxsize=16)
def _student(teacher: CatalogEntry, layers: int, version: tuple | None) -> CatalogEntry:
    teacher_id = teacher.model_id
    folder = student_folder(teacher_id, layers)
    provenance = files.provenance_of(folder)
    if version is None or provenance is None or files.teacher_of(folder) != teacher_id:
        raise ModelLoadError(
            f"No student of {teacher.display_name} with {layers} layers has been distilled on "
            f"this machine. Train one first: python -m lib distill --model {teacher_id} "
            f"--layers {layers} (about 7 minutes on 2 cores).")
    config = files.read_config(folder / "config.json")
    files.check_weights(folder)
    steps, seconds = provenance.get("steps"), provenance.get("seconds")
    trained = (f"{steps} training steps in {seconds:.0f} s" if isinstance(steps, int)
               and isinstance(seconds, (int, float)) else "training")
    return CatalogEntry(
        student_id(teacher_id, layers), f"{teacher.display_name} student, {layers} layers "
        "(distilled here)",
        f"A smaller model trained on this machine to imitate {teacher.display_name}: it keeps "
        f"{layers} of its teacher's {teacher.config.get('num_hidden_layers', '?')} layers and "
        f"learned, in {trained}, to predict the next word the way its teacher does "
        "(distillation). Its quality is measured against its teacher.",
        TRAINED, config, kind=teacher.kind, local_path=str(folder))
