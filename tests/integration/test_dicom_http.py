"""DICOM studies over HTTP, through the real hub, proxy and store service.

clin-a uploads a zip (a synthetic CT series, a JPEG 2000 MR from pydicom's test files, an
ultrasound that may carry burned-in text, and bad members: not DICOM, truncated, a path
escaping the archive, a nested zip), imports it, reads frames with a viewer grant, then
reads and stores over DICOMweb with ``dicomweb-client`` (all six QIDO-RS resources of
PS3.18 Table 10.6.1-1, the relational ones across the case's studies included). Users
without access get 403 on every DICOMweb path.
"""

from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pydicom.data
import pytest
from dicomweb_client.api import DICOMwebClient
from PIL import Image

from tests.data_gen import ct_series, us_cine

pytestmark = pytest.mark.deployment

TEST_FILES = Path(pydicom.data.__file__).parent / "test_files"
GRANT = "X-CPMS-Grant"
J2K_TS = "1.2.840.10008.1.2.4.90"


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"token {token}"}


def _client() -> httpx.Client:
    return httpx.Client(timeout=120, trust_env=False)


@pytest.fixture(scope="module")
def originals(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("dicom")
    ct = ct_series(folder / "ct", slices=8, size=64, seed=7)
    us = us_cine(folder / "us.dcm", frames=3, rows=32, columns=40)
    # an ultrasound that does not say whether it carries burned-in text: held back
    ds = pydicom.dcmread(us)
    del ds.BurnedInAnnotation
    ds.save_as(us)
    return {"ct": ct, "us": us, "j2k": TEST_FILES / "MR_small_jp2klossless.dcm"}


@pytest.fixture(scope="module")
def archive(originals) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for p in originals["ct"]:
            z.write(p, f"SMITH_JOHN/CT/{p.name}")
        z.write(originals["j2k"], "SMITH_JOHN/MR/mr.dcm")
        z.write(originals["us"], "SMITH_JOHN/US/us.dcm")
        z.writestr("SMITH_JOHN/notes.txt", "not a dicom file")
        z.writestr("SMITH_JOHN/trunc.dcm", originals["ct"][0].read_bytes()[:3000])
        z.writestr("../escape.dcm", originals["ct"][0].read_bytes())
        z.writestr("SMITH_JOHN/inner.zip", b"PK\x03\x04" + b"\x00" * 64)
    return out.getvalue()


@pytest.fixture(scope="module")
def case_id(deployment, tokens) -> str:
    with _client() as c:
        r = c.post(
            f"{deployment.api}/cases",
            json={"title": "dicom case", "clinical_summary": "imaging"},
            headers=_auth(tokens["clin-a"]),
        )
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _upload(deployment, token: str, case_id: str, data: bytes, name: str) -> str:
    with _client() as c:
        up = c.post(
            f"{deployment.api}/cases/{case_id}/files",
            content=data,
            headers={**_auth(token), "X-CPMS-Filename": name, "Content-Type": "application/zip"},
        )
    assert up.status_code == 201, up.text
    return up.json()["id"]


@pytest.fixture(scope="module")
def imported(deployment, tokens, case_id, archive) -> dict:
    file_id = _upload(deployment, tokens["clin-a"], case_id, archive, "SMITH_JOHN.zip")
    with _client() as c:
        r = c.post(
            f"{deployment.api}/cases/{case_id}/dicom/imports",
            json={"file_id": file_id},
            headers=_auth(tokens["clin-a"]),
        )
    assert r.status_code == 200, r.text
    return {"file_id": file_id, "report": r.json()}


def test_import_report_per_file(imported) -> None:
    report = imported["report"]
    assert (report["stored"], report["held"], report["errors"]) == (9, 1, 4), report
    by_status = {}
    for inst in report["instances"]:
        by_status.setdefault(inst["status"], []).append(inst)
    held = by_status["held"][0]
    assert "burned-in" in held["message"] and held["key"].startswith("i-")
    messages = " ".join(i["message"] for i in by_status["error"])
    assert "not a DICOM file" in messages
    assert "unsafe path" in messages
    assert "nested archives" in messages
    assert "truncated" in messages or "could not be parsed" in messages
    stored = by_status["stored"][0]
    assert {"PatientName", "PatientID"} <= set(stored["removed"]) | {"PatientName", "PatientID"}
    assert "InstitutionName" in stored["removed"]
    # nothing from the file names or headers in the report
    assert "SMITH" not in str(report) and "SYNTHETIC" not in str(report)
    assert len(report["study_uids"]) == 2
    assert all(u.startswith("2.25.") for u in report["study_uids"])


def test_held_instance_is_kept_until_confirmed(deployment, tokens, case_id, imported) -> None:
    key = next(i["key"] for i in imported["report"]["instances"] if i["status"] == "held")
    assert imported["report"]["original_deleted"] is False
    with _client() as c:
        r = c.post(
            f"{deployment.api}/cases/{case_id}/dicom/imports",
            json={"file_id": imported["file_id"], "confirm_burned_in": [key]},
            headers=_auth(tokens["clin-a"]),
        )
        assert r.status_code == 200, r.text
        again = r.json()
        assert again["held"] == 0 and again["original_deleted"] is True
        confirmed = next(i for i in again["instances"] if i["key"] == key)
        assert confirmed["status"] == "stored"
        # re-importing the same instances does not duplicate them
        assert sum("already stored" in i["message"] for i in again["instances"]) == 9
        files = c.get(f"{deployment.api}/cases/{case_id}/files", headers=_auth(tokens["clin-a"]))
        assert imported["file_id"] not in {f["id"] for f in files.json()}


def _studies(deployment, token: str, case_id: str) -> list[dict]:
    with _client() as c:
        r = c.get(f"{deployment.api}/cases/{case_id}/dicom/studies", headers=_auth(token))
    assert r.status_code == 200, r.text
    return r.json()


def _series(studies: list[dict], modality: str) -> dict:
    return next(s for st in studies for s in st["series"] if s["modality"] == modality)


def test_frames_with_a_grant(deployment, tokens, case_id, imported, originals) -> None:
    studies = _studies(deployment, tokens["clin-a"], case_id)
    ct = _series(studies, "CT")
    assert ct["instances"] == 8 and ct["frames"] == 8
    for st in studies:
        assert st["study_date"] != "20260301"  # shifted
    with _client() as c:
        g = c.post(
            f"{deployment.api}/cases/{case_id}/dicom/series/{ct['series_uid']}/grant",
            headers=_auth(tokens["clin-a"]),
        )
        assert g.status_code == 200, g.text
        grant = g.json()
        assert grant["ttl"] > 0 and "{sop_uid}" in grant["frame_url_template"]
        base = deployment.url.rstrip("/")
        meta = c.get(base + grant["meta_url"], headers={GRANT: grant["grant"]})
        assert meta.status_code == 200, meta.text
        insts = meta.json()["instances"]
        # display order: along the slice normal (z grows: the last slice comes first)
        assert [i["position"][2] for i in insts] == sorted(i["position"][2] for i in insts)
        first = insts[0]
        assert (first["rows"], first["bits_allocated"], first["pixel_representation"]) == (
            64,
            16,
            1,
        )
        assert first["rescale_intercept"] == -1024 and first["window_width"] == 400
        url = base + grant["frame_url_template"].format(sop_uid=first["sop_uid"], n=1)
        r = c.get(url, headers={GRANT: grant["grant"]})
        assert r.status_code == 200
        assert r.headers["cache-control"] == "private, max-age=3600"
        original = pydicom.dcmread(originals["ct"][-1])  # lowest z
        assert np.array_equal(np.frombuffer(r.content, "<i2").reshape(64, 64), original.pixel_array)
        png = c.get(url + "/rendered?format=png", headers={GRANT: grant["grant"]})
        assert png.status_code == 200 and Image.open(io.BytesIO(png.content)).size == (64, 64)
        assert c.get(url).status_code == 401
        assert (
            c.get(
                url.replace("/frames/1", "/frames/2"), headers={GRANT: grant["grant"]}
            ).status_code
            == 404
        )
        # a grant for this series does not open another series
        mr = _series(studies, "MR")
        other = url.replace(ct["series_uid"], mr["series_uid"])
        assert c.get(other, headers={GRANT: grant["grant"]}).status_code == 401


def _records(body: bytes) -> list[tuple[int, bytes]]:
    """The batch answer: per slice, [number, length] as little-endian uint32, then pixels."""
    out, at = [], 0
    while at < len(body):
        number, length = struct.unpack_from("<II", body, at)
        out.append((number, body[at + 8 : at + 8 + length]))
        at += 8 + length
    assert at == len(body)
    return out


def test_slices_in_one_answer(deployment, tokens, case_id, imported, originals) -> None:
    ct = _series(_studies(deployment, tokens["clin-a"], case_id), "CT")
    with _client() as c:
        grant = c.post(
            f"{deployment.api}/cases/{case_id}/dicom/series/{ct['series_uid']}/grant",
            headers=_auth(tokens["clin-a"]),
        ).json()
        base = deployment.url.rstrip("/")
        assert grant["slices_url_template"].endswith("/slices/{slices}")
        slices = base + grant["slices_url_template"].replace("{slices}", "")
        headers = {GRANT: grant["grant"]}
        insts = c.get(base + grant["meta_url"], headers=headers).json()["instances"]
        r = c.get(slices + "5-7,0", headers=headers)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/vnd.cpms.frames"
        assert r.headers["cache-control"] == "private, max-age=3600"
        assert int(r.headers["content-length"]) == len(r.content) == 4 * (8 + 64 * 64 * 2)
        records = _records(r.content)
        assert [n for n, _ in records] == [5, 6, 7, 0]
        # the same pixels as one frame at a time, in display order
        for number, data in records:
            one = c.get(
                base + grant["frame_url_template"].format(sop_uid=insts[number]["sop_uid"], n=1),
                headers=headers,
            )
            assert one.content == data
        # the whole series, counting down, in one answer
        down = _records(c.get(slices + "7-0", headers=headers).content)
        assert [n for n, _ in down] == list(range(7, -1, -1))
        original = pydicom.dcmread(originals["ct"][-1])  # lowest z: the first slice
        assert np.array_equal(
            np.frombuffer(down[-1][1], "<i2").reshape(64, 64), original.pixel_array
        )

        bad = c.get(slices + "0-x", headers=headers)
        assert bad.status_code == 422 and bad.json()["reasons"][0].startswith("slices:")
        assert c.get(slices + "0-99", headers=headers).status_code == 422  # more than a batch
        assert c.get(slices + "8", headers=headers).status_code == 404
        assert c.get(slices + "0").status_code == 401
        mr = _series(_studies(deployment, tokens["clin-a"], case_id), "MR")
        assert (
            c.get(
                slices.replace(ct["series_uid"], mr["series_uid"]) + "0", headers=headers
            ).status_code
            == 401
        )


def test_compressed_frames_are_decoded(deployment, tokens, case_id, imported, originals) -> None:
    mr = _series(_studies(deployment, tokens["clin-a"], case_id), "MR")
    with _client() as c:
        grant = c.post(
            f"{deployment.api}/cases/{case_id}/dicom/series/{mr['series_uid']}/grant",
            headers=_auth(tokens["clin-a"]),
        ).json()
        base = deployment.url.rstrip("/")
        inst = c.get(base + grant["meta_url"], headers={GRANT: grant["grant"]}).json()["instances"][
            0
        ]
        url = base + grant["frame_url_template"].format(sop_uid=inst["sop_uid"], n=1)
        r = c.get(url, headers={GRANT: grant["grant"]})
    assert r.status_code == 200
    want = pydicom.dcmread(originals["j2k"]).pixel_array
    got = np.frombuffer(r.content, want.dtype.newbyteorder("<")).reshape(want.shape)
    assert np.array_equal(got, want)


def _dicomweb(deployment, token: str, case_id: str) -> DICOMwebClient:
    client = DICOMwebClient(url=f"{deployment.api}/cases/{case_id}/dicomweb", headers=_auth(token))
    client._session.trust_env = False
    return client


def test_dicomweb_round_trip(deployment, tokens, case_id, imported) -> None:
    web = _dicomweb(deployment, tokens["clin-a"], case_id)
    studies = web.search_for_studies()
    assert len(studies) == 3  # CT, MR and the confirmed ultrasound
    ct_study = next(s for s in studies if "CT" in s["00080061"]["Value"])
    study_uid = ct_study["0020000D"]["Value"][0]
    series = web.search_for_series(study_instance_uid=study_uid)
    series_uid = series[0]["0020000E"]["Value"][0]
    instances = web.search_for_instances(
        study_instance_uid=study_uid, series_instance_uid=series_uid
    )
    assert len(instances) == 8
    sop_uid = instances[0]["00080018"]["Value"][0]
    ds = web.retrieve_instance(study_uid, series_uid, sop_uid)
    assert ds.PatientIdentityRemoved == "YES"
    assert not ds.get("PatientName") and "InstitutionName" not in ds
    assert ds.SOPInstanceUID == sop_uid and ds.pixel_array.shape == (64, 64)
    meta = web.retrieve_series_metadata(study_uid, series_uid)
    assert len(meta) == 8 and all("7FE00010" not in m for m in meta)
    frames = web.retrieve_instance_frames(study_uid, series_uid, sop_uid, frame_numbers=[1])
    assert np.array_equal(np.frombuffer(frames[0], "<i2").reshape(64, 64), ds.pixel_array)

    # STOW-RS: de-identified on the way in, like an import
    mr = pydicom.dcmread(TEST_FILES / "MR_small.dcm")
    original_uid = mr.SOPInstanceUID
    answer = web.store_instances([mr])
    stored = answer.ReferencedSOPSequence[0].ReferencedSOPInstanceUID
    assert stored != original_uid and stored.startswith("2.25.")
    # the same original study UID maps to the same new one: it joins the imported MR study
    mr_study = next(s for s in web.search_for_studies() if "MR" in s["00080061"]["Value"])
    mr_uid = mr_study["0020000D"]["Value"][0]
    found = {
        i["00080018"]["Value"][0]
        for se in web.search_for_series(study_instance_uid=mr_uid)
        for i in web.search_for_instances(
            study_instance_uid=mr_uid, series_instance_uid=se["0020000E"]["Value"][0]
        )
    }
    assert stored in found


def test_qido_matching_includefield_and_paging(deployment, tokens, case_id, imported) -> None:
    web = _dicomweb(deployment, tokens["clin-a"], case_id)
    studies = web.search_for_studies()
    ct = next(s for s in studies if "CT" in s["00080061"]["Value"])
    date = ct["00080020"]["Value"][0]  # shifted by de-identification, still a DA
    year = date[:4]
    assert len(date) == 8 and date != "20260301"
    # a date range around the study, and one that misses it
    found = web.search_for_studies(search_filters={"StudyDate": f"{year}0101-{year}1231"})
    assert ct["0020000D"] in [s["0020000D"] for s in found]
    assert not web.search_for_studies(search_filters={"StudyDate": "19000101-19001231"})
    assert web.search_for_studies(search_filters={"StudyDate": f"-{date}"})
    # wildcards on the modalities; exact and UID list matching
    assert [
        s["0020000D"] for s in web.search_for_studies(search_filters={"ModalitiesInStudy": "C?"})
    ] == [ct["0020000D"]]
    uids = ",".join(s["0020000D"]["Value"][0] for s in studies[:2])
    assert len(web.search_for_studies(search_filters={"StudyInstanceUID": uids})) == 2
    # de-identified names match nothing, fuzzy or not
    assert not web.search_for_studies(search_filters={"PatientName": "SMITH*"}, fuzzymatching=True)
    # includefield: a field outside the defaults, and all
    plain = web.search_for_studies(search_filters={"ModalitiesInStudy": "CT"})[0]
    assert "00100040" in plain and "00120062" not in plain  # PatientSex is a default
    more = web.search_for_studies(
        search_filters={"ModalitiesInStudy": "CT"}, fields=["PatientIdentityRemoved"]
    )[0]
    assert more["00120062"]["Value"] == ["YES"]
    everything = web.search_for_studies(search_filters={"ModalitiesInStudy": "CT"}, fields=["all"])[
        0
    ]
    assert "00120063" in everything  # DeidentificationMethod, of the Patient module
    assert "00280030" not in everything  # PixelSpacing belongs to the instances
    # paging
    assert len(web.search_for_studies(limit=1)) == 1
    assert [s["0020000D"] for s in web.search_for_studies(offset=1, limit=5)] == [
        s["0020000D"] for s in studies[1:]
    ]
    # the instances of the CT series, by instance number range? numbers match exactly
    study_uid = ct["0020000D"]["Value"][0]
    series_uid = web.search_for_series(study_uid)[0]["0020000E"]["Value"][0]
    one = web.search_for_instances(study_uid, series_uid, search_filters={"InstanceNumber": "3"})
    assert len(one) == 1 and one[0]["00200013"]["Value"] == [3]
    wide = web.search_for_instances(study_uid, series_uid, fields=["all"], limit=2)
    assert len(wide) == 2 and "00280030" in wide[0]  # PixelSpacing: any header attribute
    # bad queries name the parameter, in the one error shape
    with _client() as c:
        url = f"{deployment.api}/cases/{case_id}/dicomweb/studies"
        for params, name in (
            ({"NoSuchAttribute": "1"}, "NoSuchAttribute"),
            ({"StudyDate": "2020-01-01"}, "StudyDate"),
            ({"includefield": "Nope"}, "includefield"),
            ({"fuzzymatching": "perhaps"}, "fuzzymatching"),
        ):
            r = c.get(url, params=params, headers=_auth(tokens["clin-a"]))
            assert r.status_code == 400, (params, r.text)  # PS3.18 10.6.3.1
            assert r.json()["reasons"][0].startswith(name)
            assert r.headers["warning"].startswith('299 cpms-store: "' + name)
        r = c.get(url, params={"limit": "1"}, headers=_auth(tokens["clin-a"]))
        assert "additional results" in r.headers.get("warning", "")


def _uid(item: dict, tag: str) -> str:
    return item[tag]["Value"][0]


STUDY_UID, SERIES_UID, SOP_UID = "0020000D", "0020000E", "00080018"


def _two_series_study(web: DICOMwebClient) -> tuple[str, dict[str, int]]:
    """STOW-RS a new MR study of two series (2 and 1 instances): its UID, and the
    instance count of each (de-identified) series."""
    study, series = pydicom.uid.generate_uid(), [pydicom.uid.generate_uid() for _ in range(2)]
    datasets = []
    for n, series_uid in enumerate([series[0], series[0], series[1]], start=1):
        ds = pydicom.dcmread(TEST_FILES / "MR_small.dcm")
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series_uid
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
        ds.InstanceNumber = n
        datasets.append(ds)
    stored = web.store_instances(datasets).ReferencedSOPSequence
    assert len(stored) == 3
    # where did it go? the all-instances search finds an instance by its (new) UID
    (found,) = web.search_for_instances(
        search_filters={"SOPInstanceUID": stored[0].ReferencedSOPInstanceUID}
    )
    uid = _uid(found, STUDY_UID)
    counts = {_uid(s, SERIES_UID): s["00201209"]["Value"][0] for s in web.search_for_series(uid)}
    assert sorted(counts.values()) == [1, 2]
    return uid, counts


def test_qido_relational_searches(deployment, tokens, case_id, imported) -> None:
    web = _dicomweb(deployment, tokens["clin-a"], case_id)
    two_study, two_counts = _two_series_study(web)
    # what the hierarchical searches find, study by study and series by series
    tree = {
        _uid(st, STUDY_UID): {
            _uid(se, SERIES_UID): {
                _uid(i, SOP_UID)
                for i in web.search_for_instances(_uid(st, STUDY_UID), _uid(se, SERIES_UID))
            }
            for se in web.search_for_series(_uid(st, STUDY_UID))
        }
        for st in web.search_for_studies()
    }
    ct_study = next(
        _uid(s, STUDY_UID)
        for s in web.search_for_studies(search_filters={"ModalitiesInStudy": "CT"})
    )
    (ct_series,) = tree[ct_study]

    # all series (/series): every series of every study, each with its study's attributes
    all_series = web.search_for_series()
    assert {_uid(s, SERIES_UID): _uid(s, STUDY_UID) for s in all_series} == {
        se: st for st, series in tree.items() for se in series
    }
    for s in all_series:
        assert {"00080060", "00201209", "00080020", "00201206", "00201208"} <= set(s)
        assert s["00081190"]["Value"][0].endswith(
            f"/studies/{_uid(s, STUDY_UID)}/series/{_uid(s, SERIES_UID)}"
        )
    # the study as a query key, a study attribute, a series attribute
    only_ct = web.search_for_series(search_filters={"StudyInstanceUID": ct_study})
    assert [_uid(s, SERIES_UID) for s in only_ct] == [ct_series]
    two = web.search_for_series(search_filters={"StudyInstanceUID": list(tree)[:2]})
    assert {_uid(s, STUDY_UID) for s in two} == set(list(tree)[:2])
    assert [
        _uid(s, SERIES_UID)
        for s in web.search_for_series(search_filters={"ModalitiesInStudy": "CT"})
    ] == [ct_series]
    mr = web.search_for_series(search_filters={"Modality": "MR"})
    assert mr and all(s["00080060"]["Value"] == ["MR"] for s in mr)
    assert not web.search_for_series(search_filters={"StudyDate": "19000101-19001231"})
    # the hierarchical series search does not add the study's defaults
    (ct_only,) = web.search_for_series(ct_study)
    assert "00201208" not in ct_only and "00201209" in ct_only

    # all instances (/instances): every instance, with its series' and study's attributes
    all_instances = web.search_for_instances()
    assert {_uid(i, SOP_UID) for i in all_instances} == {
        sop for series in tree.values() for sops in series.values() for sop in sops
    }
    for i in all_instances:
        assert {"00080016", "00201208", "00201209", "00080020"} <= set(i)
        assert i["00081190"]["Value"][0].endswith(
            f"/studies/{_uid(i, STUDY_UID)}/series/{_uid(i, SERIES_UID)}"
            f"/instances/{_uid(i, SOP_UID)}"
        )
    in_ct = web.search_for_instances(
        search_filters={"StudyInstanceUID": ct_study, "SeriesInstanceUID": ct_series}
    )
    assert {_uid(i, SOP_UID) for i in in_ct} == tree[ct_study][ct_series]
    third = web.search_for_instances(
        search_filters={"ModalitiesInStudy": "CT", "InstanceNumber": "3"}
    )
    assert len(third) == 1 and third[0]["00200013"]["Value"] == [3]
    # paging across the whole case, with the Warning while more remain
    pages = [web.search_for_instances(limit=3, offset=n) for n in range(0, len(all_instances), 3)]
    assert [_uid(i, SOP_UID) for page in pages for i in page] == [
        _uid(i, SOP_UID) for i in all_instances
    ]
    assert web.search_for_instances(get_remaining=True) == all_instances

    # the study's instances (/studies/{study}/instances): with their series' attributes
    study_instances = web.search_for_instances(ct_study)
    assert {_uid(i, SOP_UID) for i in study_instances} == tree[ct_study][ct_series]
    assert all("00201209" in i and "00201208" not in i for i in study_instances)
    assert web.search_for_instances(ct_study, search_filters={"Modality": "CT"})
    assert not web.search_for_instances(ct_study, search_filters={"SeriesInstanceUID": "2.25.1"})
    wide = web.search_for_instances(ct_study, fields=["all"], limit=1)
    assert "00280030" in wide[0]  # PixelSpacing: the whole header
    # across the study's series, each instance with its own series' count
    across = web.search_for_instances(two_study)
    assert len(across) == 3
    assert {_uid(i, SERIES_UID): i["00201209"]["Value"][0] for i in across} == two_counts
    # one series read, but the study's counts asked for are the whole study's
    big = max(two_counts, key=two_counts.get)
    for found in (
        web.search_for_instances(two_study, big, fields=["NumberOfStudyRelatedInstances"]),
        web.search_for_instances(
            search_filters={"SeriesInstanceUID": big}, fields=["NumberOfStudyRelatedSeries"]
        ),
        web.search_for_instances(two_study, search_filters={"SeriesInstanceUID": big}),
    ):
        assert len(found) == 2 and all(_uid(i, SERIES_UID) == big for i in found)
    assert web.search_for_instances(two_study, big, fields=["NumberOfStudyRelatedInstances"])[0][
        "00201208"
    ]["Value"] == [3]
    assert web.search_for_instances(
        search_filters={"SeriesInstanceUID": big}, fields=["NumberOfStudyRelatedSeries"]
    )[0]["00201206"]["Value"] == [2]
    assert "00201208" not in web.search_for_instances(two_study, big)[0]

    # what the standard refuses or warns about, in the one error shape
    auth = _auth(tokens["clin-a"])
    base = f"{deployment.api}/cases/{case_id}/dicomweb"
    with _client() as c:
        for path, params, name in (
            ("/series", {"SOPInstanceUID": "1.2"}, "SOPInstanceUID"),
            (f"/studies/{ct_study}/series", {"InstanceNumber": "1"}, "InstanceNumber"),
            ("/studies", {"SeriesDescription": "x"}, "SeriesDescription"),
            ("/instances", {"StudyInstanceUID": "1.2.*"}, "StudyInstanceUID"),
            ("/instances", {"InstanceNumber": "three"}, "InstanceNumber"),
            ("/series", {"RequestAttributesSequence.RequestedProcedureID": "1"}, "Request"),
            (f"/studies/{ct_study}/instances", {"fuzzymatching": "maybe"}, "fuzzymatching"),
        ):
            r = c.get(base + path, params=params, headers=auth)
            assert r.status_code == 400, (path, params, r.text)
            body = r.json()
            assert body["status"] == 400 and body["reasons"][0].startswith(name), body
            assert r.headers["warning"].startswith(f'299 cpms-store: "{name}')
        # a parameter name the client made up is quoted in the body, never raw in a header
        r = c.get(base + "/series", params={'Bad"\r\nName\u00e9': "1"}, headers=auth)
        assert r.status_code == 400 and r.json()["reasons"][0].startswith('Bad"\r\nName\u00e9')
        assert r.headers["warning"].startswith('299 cpms-store: "Bad???Name?:')
        r = c.get(base + "/instances", params={"emptyvaluematching": "true"}, headers=auth)
        assert r.status_code == 200 and len(r.json()) == len(all_instances)
        assert "The emptyvaluematching parameter is not supported" in r.headers["warning"]
        r = c.get(base + "/series", params={"limit": "1", "fuzzymatching": "false"}, headers=auth)
        assert r.status_code == 200 and len(r.json()) == 1
        assert "There are additional results that can be requested" in r.headers["warning"]
        # every search of the case is in its audit trail
        trail = c.get(
            f"{deployment.api}/audit", params={"case_id": case_id}, headers=_auth(tokens["audit-u"])
        )
    assert trail.status_code == 200, trail.text
    searches = [
        e for e in trail.json() if e["action"] == "dicomweb.search" and e["actor"] == "clin-a"
    ]
    assert len(searches) >= 3 + len(pages)


def test_wado_honours_accept(deployment, tokens, case_id, imported) -> None:
    web = _dicomweb(deployment, tokens["clin-a"], case_id)
    ct = next(s for s in web.search_for_studies() if "CT" in s["00080061"]["Value"])
    study = ct["0020000D"]["Value"][0]
    series = web.search_for_series(study)[0]["0020000E"]["Value"][0]
    sop = web.search_for_instances(study, series)[0]["00080018"]["Value"][0]
    stored_ts = "1.2.840.10008.1.2.1"
    # dicomweb-client asking for explicit media types and transfer syntaxes
    ds = web.retrieve_instance(study, series, sop, media_types=(("application/dicom", "*"),))
    assert ds.SOPInstanceUID == sop
    frames = web.retrieve_instance_frames(
        study, series, sop, [1], media_types=(("application/octet-stream", stored_ts),)
    )
    assert len(frames[0]) == 64 * 64 * 2
    base = f"{deployment.api}/cases/{case_id}/dicomweb/studies/{study}/series/{series}"
    auth = _auth(tokens["clin-a"])
    with _client() as c:
        ok = c.get(f"{base}/instances/{sop}", headers={**auth, "Accept": "*/*"})
        assert ok.status_code == 200
        assert ok.headers["content-type"].startswith('multipart/related; type="application/dicom"')
        meta = c.get(f"{base}/metadata", headers={**auth, "Accept": "application/json"})
        assert meta.status_code == 200 and meta.headers["content-type"] == "application/dicom+json"
        for url, accept in (
            (f"{base}/metadata", 'multipart/related; type="application/dicom+xml"'),
            (
                f"{base}",
                'multipart/related; type="application/dicom"; transfer-syntax=' + J2K_TS,
            ),
            (f"{base}/instances/{sop}", "image/jpeg"),
            (f"{base}/instances/{sop}/frames/1", 'multipart/related; type="image/jp2"'),
            (f"{deployment.api}/cases/{case_id}/dicomweb/studies", "application/dicom+xml"),
        ):
            r = c.get(url, headers={**auth, "Accept": accept})
            assert r.status_code == 406, (url, accept, r.status_code)
            body = r.json()
            assert body["status"] == 406 and body["reasons"][0].startswith("Accept:")


_PATHS = (
    ("GET", "/studies"),
    ("GET", "/studies/1.2"),
    ("GET", "/studies/1.2/metadata"),
    ("GET", "/series"),
    ("GET", "/instances"),
    ("GET", "/studies/1.2/series"),
    ("GET", "/studies/1.2/instances"),
    ("GET", "/studies/1.2/series/1.3"),
    ("GET", "/studies/1.2/series/1.3/metadata"),
    ("GET", "/studies/1.2/series/1.3/instances"),
    ("GET", "/studies/1.2/series/1.3/instances/1.4"),
    ("GET", "/studies/1.2/series/1.3/instances/1.4/metadata"),
    ("GET", "/studies/1.2/series/1.3/instances/1.4/frames/1"),
    ("POST", "/studies"),
)


@pytest.mark.parametrize("user", ["clin-b", "sci-d", "help-h"])
def test_dicomweb_refuses_outsiders_everywhere(deployment, tokens, case_id, imported, user) -> None:
    # not even a multipart body: the refusal comes before the body is read
    body = b"not multipart at all"
    with _client() as c:
        for method, path in _PATHS:
            r = c.request(
                method,
                f"{deployment.api}/cases/{case_id}/dicomweb{path}",
                headers={
                    **_auth(tokens[user]),
                    "Content-Type": 'multipart/related; type="application/dicom"; boundary=b',
                },
                content=body if method == "POST" else None,
            )
            assert r.status_code == 403, (user, path, r.text)
            assert r.json()["status"] == 403
        # and without a token: 401, on every path too
        for method, path in _PATHS:
            r = c.request(method, f"{deployment.api}/cases/{case_id}/dicomweb{path}")
            assert r.status_code == 401, (path, r.text)


def test_client_imports_a_folder(deployment, tokens, case_id, imported, tmp_path) -> None:
    from cpms_widgets.client import CaseStoreClient

    ct_series(tmp_path / "DOE_JANE", slices=3, size=32, seed=11)
    seen: list[tuple[int, int]] = []
    with CaseStoreClient(deployment.api, tokens["clin-a"]) as client:
        report = client.import_dicom(
            case_id, tmp_path / "DOE_JANE", progress=lambda s, t: seen.append((s, t))
        )
        assert (report["stored"], report["held"], report["errors"]) == (3, 0, 0), report
        assert report["original_deleted"] is True
        assert seen and seen[-1][0] == seen[-1][1]
        series_uid = report["instances"][0]["series_uid"]
        assert any(
            s["series_uid"] == series_uid
            for st in client.list_studies(case_id)
            for s in st["series"]
        )
        grant = client.dicom_grant(case_id, series_uid)
        assert grant["header"] == GRANT and grant["meta_url"].endswith("/meta")


@pytest.mark.parametrize("user", ["clin-b", "sci-d", "help-h"])
def test_dicom_routes_refuse_outsiders(deployment, tokens, case_id, imported, user) -> None:
    studies = _studies(deployment, tokens["clin-a"], case_id)
    series_uid = _series(studies, "CT")["series_uid"]
    api = f"{deployment.api}/cases/{case_id}/dicom"
    with _client() as c:
        for method, url, body in (
            ("POST", f"{api}/imports", {"file_id": imported["file_id"]}),
            ("GET", f"{api}/studies", None),
            ("POST", f"{api}/series/{series_uid}/grant", None),
        ):
            r = c.request(method, url, json=body, headers=_auth(tokens[user]))
            assert r.status_code == 403, (user, url, r.text)
            assert r.json()["reasons"]


def test_views_are_audited(deployment, tokens, case_id, imported) -> None:
    with _client() as c:
        r = c.get(
            f"{deployment.api}/audit", params={"case_id": case_id}, headers=_auth(tokens["audit-u"])
        )
    assert r.status_code == 200, r.text
    actions = {e["action"] for e in r.json()}
    assert {"dicom.import", "dicom.list", "dicom.grant", "dicom.view"} <= actions
    assert {"dicomweb.search", "dicomweb.retrieve", "dicomweb.frames"} <= actions
    denied = [e for e in r.json() if e["outcome"] == "denied"]
    assert denied  # the refusals above are in the trail too
