"""Wiring of the reasoner's protections: admission of model calls and the operating mode.

Kept apart from ``app.py`` so the service wiring gains one line. Admission is
off unless ``overload_enabled``; the operating mode is followed unless
``follow_control`` is off (in the normal mode it changes nothing).
"""

from __future__ import annotations

from schemas.topics import CONTROL
from services.reasoning.errors import ModelCircuitOpenError, ModelUnavailableError
from services.reasoning.handlers import Reasoner
from services.reasoning.overload import Admission
from services.reasoning.settings import ReasoningSettings, overload_config_for
from shared.control_state import ControlView
from shared.service import ServiceRuntime

__all__ = ["is_capacity_error", "protect"]


def is_capacity_error(exc: BaseException) -> bool:
    """A model call that failed for want of capacity (the AIMD limit's decrease signal)."""
    return isinstance(exc, ModelUnavailableError | ModelCircuitOpenError)


def protect(reasoner: Reasoner, runtime: ServiceRuntime, settings: ReasoningSettings) -> None:
    config = overload_config_for(settings)
    if config is not None:
        reasoner.admission = Admission(config, is_overload=is_capacity_error)
    if settings.follow_control:
        reasoner.control = ControlView()
        runtime.consume(CONTROL, reasoner.control.handle, group=None)
