"""The Hugging Face hub, used only when the user names a hub id and the machine is online.

Every call first checks, within a few seconds, that the hub answers at all; offline it raises a
`ModelLoadError` that says what to do instead, rather than hanging on retries. Remote code is
never trusted, and a downloaded config.json is checked like a local one (`lib.models.files`).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from lib.core.errors import ModelLoadError

PROBE_TIMEOUT_S = 3.0


def check_reachable(hub_id: str) -> None:
    from huggingface_hub import constants

    if os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes"}:
        raise ModelLoadError(
            f"Can't fetch {hub_id!r}: hub access is switched off (HF_HUB_OFFLINE is set). Pick a "
            "catalog model, or download the model on a connected machine and give its folder.")
    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=PROBE_TIMEOUT_S).close()
    except OSError as exc:
        raise ModelLoadError(
            f"Can't fetch {hub_id!r}: this machine can't reach the Hugging Face hub ({exc}). "
            "Pick a catalog model (they work offline), or download the model on a connected "
            "machine and give its local folder or .gguf file.") from None


def fetch_config(hub_id: str) -> dict[str, Any]:
    check_reachable(hub_id)
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError

    from lib.models import files

    try:
        downloaded = hf_hub_download(hub_id, "config.json")
    except (HfHubHTTPError, OSError, ValueError) as exc:
        raise ModelLoadError(f"Could not get {hub_id}'s config.json from the hub ({exc}). "
                             "Check the id (it looks like 'org/name').") from exc
    return files.read_config(Path(downloaded))
