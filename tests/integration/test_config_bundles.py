"""Configuration bundles: export, diff, import (all or nothing, audited), four-eyes parts
proposed, bad bundles refused."""

from __future__ import annotations

import copy

import pytest
from sqlalchemy import func, select

from app.domain.errors import ValidationError
from app.models.audit import AuditEvent
from app.models.reference import Fund
from app.models.workflow import ConfigProposal
from app.services import bundles
from tests.conftest import unique


def test_export_round_trip_is_unchanged(session):
    bundle = bundles.loads(bundles.dumps(bundles.export_bundle(session)))
    assert bundle["version"] == bundles.VERSION
    assert {f["code"] for f in bundle["funds"]} >= {"CTAX", "SUSP"}
    assert bundle["approval_limits"] and isinstance(bundle["workflows"], list)
    plan = bundles.plan(session, bundle)
    assert plan.empty and not plan.problems, plan.lines()
    as_json = bundles.loads(bundles.dumps(bundles.export_bundle(session), "json"))
    assert bundles.plan(session, as_json).empty


def test_diff_then_import_adds_and_changes_and_proposes_limits(session):
    bundle = bundles.export_bundle(session)
    code = unique("BF")
    vname = unique("Bundle validator ", 24)
    bundle["validators"].append({**bundle["validators"][0], "name": vname})
    new_fund = {**next(f for f in bundle["funds"] if f["code"] == "CTAX"), "code": code,
                "name": "Bundled fund", "validator": vname}
    bundle["funds"].append(new_fund)
    sun = next(f for f in bundle["funds"] if f["code"] == "SUN")
    sun["name"] = sun["name"] + " (renamed)"
    action = next(iter(bundle["approval_limits"]))
    bands = bundle["approval_limits"][action]
    bands[0] = {**bands[0], "max_amount": (bands[0]["max_amount"] or 10**9) + 1}
    if len(bands) > 1:
        bands[1] = {**bands[1], "min_amount": bands[1]["min_amount"] + 1}
    plan = bundles.plan(session, bundle)
    assert code in plan.added["funds"] and vname in plan.added["validators"]
    assert "name" in plan.changed["funds"]["SUN"]
    assert any("approval limits" in line for line in plan.lines()) or plan.problems
    assert not plan.problems, plan.problems
    before = session.scalar(select(func.count(ConfigProposal.id)))
    plan, made = bundles.import_bundle(session, bundle, actor="admin")
    fund = session.scalar(select(Fund).where(Fund.code == code))
    assert fund is not None and fund.validator.name == vname
    assert session.scalar(select(Fund.name).where(Fund.code == "SUN")).endswith("(renamed)")
    assert len(made) == 1 and session.scalar(select(func.count(ConfigProposal.id))) == before + 1
    assert session.scalar(select(AuditEvent).where(
        AuditEvent.action == "configuration.bundle_import").order_by(AuditEvent.id.desc()))
    # importing it again changes nothing more
    again = bundles.plan(session, bundles.export_bundle(session))
    assert again.empty


def test_bad_bundles_are_refused_whole(session):
    bundle = bundles.export_bundle(session)
    code = unique("BX")
    bad = copy.deepcopy(bundle)
    bad["funds"].append({**bad["funds"][0], "code": code, "validator": "No such validator"})
    bad["funds"].append({**bad["funds"][0], "code": code + "Z", "colour": "red"})
    with pytest.raises(ValidationError) as exc:
        bundles.import_bundle(session, bad, actor="admin")
    problems = " ".join(exc.value.errors["bundle"])
    assert "does not exist" in problems and "unknown field 'colour'" in problems
    assert session.scalar(select(Fund).where(Fund.code.in_([code, code + "Z"]))) is None
    for text in ("not: [valid", "format: other\nversion: 1\n",
                 "format: ims-configuration-bundle\nversion: 99\n"):
        with pytest.raises(ValidationError):
            bundles.loads(text)
    dup = copy.deepcopy(bundle)
    dup["offices"].append(dup["offices"][0])
    assert any("twice" in p for p in bundles.plan(session, dup).problems)
    wfbad = copy.deepcopy(bundle)
    wfbad["workflows"] = [{"process_id": "refund_approval", "bpmn_xml": "<notbpmn/>"}]
    assert any(p.startswith("workflow") for p in bundles.plan(session, wfbad).problems)
