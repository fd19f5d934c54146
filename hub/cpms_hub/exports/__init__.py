"""Case exports in the field's exchange formats.

- :func:`fhir_bundle`: HL7 FHIR R4 (4.0.1) ``Bundle`` of type ``collection``
  (Patient, Condition, Observation, Consent, DocumentReference, with a
  Composition indexing them), see :mod:`cpms_hub.exports.fhir`.
- :func:`phenopacket`: GA4GH Phenopacket Schema v2 (ISO 4454:2022), see
  :mod:`cpms_hub.exports.phenopacket`.

Both are pure functions of already-decrypted, already-authorised domain
objects; they do no I/O and never read the store. Both leave out the case's
title and carry the patient only under their pseudonym. The validators parse
an export with the reference libraries (``fhir.resources``, ``phenopackets``)
and raise ``ValueError`` when it does not conform.
"""

from .fhir import fhir_bundle, hospital_slug, validate_fhir_bundle
from .phenopacket import phenopacket, validate_phenopacket

__all__ = [
    "fhir_bundle",
    "hospital_slug",
    "phenopacket",
    "validate_fhir_bundle",
    "validate_phenopacket",
]
