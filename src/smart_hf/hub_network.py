"""What huggingface_hub raises when the Hub cannot be reached, for one-line errors (no torch import, so the
CLI can use it)."""

import importlib.util

from huggingface_hub.errors import OfflineModeIsEnabled


def network_errors() -> tuple[type[Exception], ...]:
    """Transport errors of the HTTP clients huggingface_hub may use (httpx; httpx2 from its version 2 on),
    which unlike its HTTP errors are no `OSError`, and its refusal to connect when HF_HUB_OFFLINE is set."""
    names = [name for name in ("httpx", "httpx2") if importlib.util.find_spec(name)]
    return (OfflineModeIsEnabled, *(importlib.import_module(name).TransportError for name in names))
