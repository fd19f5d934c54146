"""Form logic without a browser: every problem by field, drafts that round-trip."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from cpms_hub.domain import Case, CaseStatus, ConsentScope, ValidationError
from cpms_widgets.forms import CaseFormModel, ConsentFormModel, consent_summary


def filled() -> CaseFormModel:
    form = CaseFormModel(
        title="Girl, 4, seizures",
        clinical_summary="Onset at 6 months.",
        pseudonym="BRU-0009",
        sex="female",
        birth_year=2021,
        country="be",
        question="Dravet syndrome?",
    )
    form.add_phenotype("HP:0001250", "Seizure", onset="HP:0003593")
    form.add_phenotype("HP:0001263", "Global developmental delay")
    form.add_diagnosis("ORPHA", "ORPHA:33069", "Dravet syndrome")
    form.add_finding("SCN1A", "NM_001165963.4:c.2589+3A>T", "heterozygous", "pathogenic")
    return form


def test_a_filled_form_has_no_problems_and_makes_content() -> None:
    form = filled()
    assert form.validate(for_submission=True) == []
    content = form.to_content()
    assert content.patient.country == "BE"
    assert [p.hpo_id for p in content.phenotypes] == ["HP:0001250", "HP:0001263"]


def test_every_problem_is_listed_by_field() -> None:
    form = CaseFormModel(title="", birth_year=1850, pseudonym="X", country="France")
    fields = {p.field for p in form.validate(for_submission=True)}
    assert {"title", "phenotypes", "question"} <= fields
    assert "patient.birth_year" in fields
    assert "patient.pseudonym" not in fields  # it was given; only the year is wrong
    with pytest.raises(ValidationError) as err:
        form.to_content()
    assert len(err.value.reasons) >= 1


def test_bad_codes_are_refused_at_once() -> None:
    form = CaseFormModel()
    with pytest.raises(ValidationError, match="HP:0001250"):
        form.add_phenotype("seizure")
    with pytest.raises(ValidationError, match="ORPHA:100"):
        form.add_diagnosis("ORPHA", "100")
    with pytest.raises(ValidationError, match="onset"):
        form.add_phenotype("HP:0001250", onset="HP:0000001")
    form.add_phenotype("HP:0001250")
    with pytest.raises(ValidationError, match="already listed"):
        form.add_phenotype("HP:0001250")


def test_a_draft_comes_back_into_the_form() -> None:
    form = filled()
    now = datetime.now(UTC)
    case = Case(
        id="c1",
        owner="me",
        hospital="H",
        network="N",
        status=CaseStatus.DRAFT,
        title=form.title,
        clinical_summary=form.clinical_summary,
        created_at=now,
        updated_at=now,
        content=form.to_content(),
    )
    again = CaseFormModel.from_case(case)
    assert again.to_content() == form.to_content()
    assert again.case_id == "c1" and again.status == "draft"


def test_consent_form_checks(tmp_path) -> None:
    pdf = tmp_path / "signed.pdf"
    pdf.write_bytes(b"%PDF-1.4\n%%EOF\n")
    txt = tmp_path / "notes.txt"
    txt.write_text("not a form")
    form = ConsentFormModel(
        scopes={ConsentScope.PANEL_DISCUSSION},
        form_version="v3",
        language="fr",
        signed_on=date.today(),
        form_path=str(pdf),
    )
    assert form.validate() == []
    assert any(
        "PDF or an image" in p
        for p in ConsentFormModel(**{**form.__dict__, "form_path": str(txt)}).validate()
    )
    future = ConsentFormModel(**{**form.__dict__, "signed_on": date.today() + timedelta(days=1)})
    assert any("future" in p for p in future.validate())
    assert len(ConsentFormModel().validate()) == 4


def test_consent_summary_says_why_submission_is_blocked() -> None:
    lines = consent_summary(
        {
            "granted": ["registries"],
            "withdrawn": ["panel-discussion"],
            "blocking_submission": ["consent: panel-discussion is withdrawn"],
        }
    )
    assert any(line.startswith("✘") and "panel discussion" in line for line in lines)
    assert any(line.startswith("✔") and "registries" in line for line in lines)
    assert lines[-1] == "Submission blocked: panel-discussion is withdrawn"
