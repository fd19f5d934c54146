"""Authorisation policy: pure functions over domain objects, no I/O."""

from .decide import ACTION_SCOPES, Action, Actor, Decision, decide
from .scopes import SCOPE_DESCRIPTIONS, Scope

__all__ = ["ACTION_SCOPES", "Action", "Actor", "Decision", "SCOPE_DESCRIPTIONS", "Scope", "decide"]
