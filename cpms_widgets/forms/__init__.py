"""UI-free form logic: drafts that validate, save and submit, testable without a browser.

The widgets in :mod:`cpms_widgets.widgets` are thin views over these models,
so the rules a clinician meets in a notebook form are exactly the ones
tested here (and, for codes, the ones the store enforces).
"""

from .case_form import CaseFormModel, FieldProblem
from .consent_form import ConsentFormModel, consent_summary

__all__ = ["CaseFormModel", "ConsentFormModel", "FieldProblem", "consent_summary"]
