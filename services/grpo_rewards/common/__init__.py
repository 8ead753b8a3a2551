"""The reward-service harness: one bootstrap (flags, health, reflection, auth, TLS, limits, validation,
metrics, graceful drain) shared by every backend. A backend implements `Scorer`; see `server`."""

from .scorer import Scorer, call_abandoned, result_for
from .server import (
    RunningServer,
    TLSConfig,
    base_arg_parser,
    configure_logging,
    serve_forever,
    start_server,
)
from .validation import Limits, reference_kind

__all__ = [
    "Limits",
    "RunningServer",
    "Scorer",
    "TLSConfig",
    "base_arg_parser",
    "call_abandoned",
    "configure_logging",
    "reference_kind",
    "result_for",
    "serve_forever",
    "start_server",
]
