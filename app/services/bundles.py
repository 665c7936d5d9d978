"""Configuration bundles: a site's set-up (VAT codes, offices, reference validators, funds,
payment methods, account-holder file profiles, bank profiles, processing rules, approval limits
and workflow definitions) as one versioned, human-readable YAML (or JSON) file; a diff against
this site before importing; the import all-or-nothing and audited.

Rows are matched by their natural key (code or name), never by id; rows this site has and the
bundle has not are left alone (a bundle adds and changes, it never deletes). Approval limits and
active workflows are four-eyes configuration: a bundle that changes them does not apply them but
proposes them (app/services/config_proposals.py), for a Head of Finance other than the importer
to approve. A workflow this site has never deployed is deployed by the import (as `ims
sync-workflows` would), since there is no active version to protect.

Everything is checked before anything is written: the plain sections in one transaction, then
the proposals (each checked beforehand with the same validation they run).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone

import yaml
from sqlalchemy import inspect, select
from sqlalchemy.orm import Session

from app.domain.errors import ValidationError
from app.models.accounts import AccountHolderProfile
from app.models.imports import BankProfile, FundReferencePattern, ProcessingRule
from app.models.reference import Fund, Office, PaymentMethod, ReferenceValidator, VatCode
from app.models.workflow import ApprovalLimit, WorkflowDefinition
from app.services import audit

FORMAT = "ims-configuration-bundle"
VERSION = 1


@dataclass(frozen=True)
class Section:
    name: str
    model: type
    key: str
    #: column -> (related model, its key column, the column holding its id)
    refs: tuple = ()


SECTIONS = (
    Section("vat_codes", VatCode, "code"),
    Section("offices", Office, "code"),
    Section("validators", ReferenceValidator, "name",
            (("next_validator", ReferenceValidator, "name", "next_validator_id"),)),
    Section("funds", Fund, "code", (("validator", ReferenceValidator, "name", "validator_id"),)),
    Section("payment_methods", PaymentMethod, "code"),
    Section("account_holder_profiles", AccountHolderProfile, "name"),
    Section("bank_profiles", BankProfile, "name"),
    Section("processing_rules", ProcessingRule, "name"),
)


def _columns(model) -> list[str]:
    return [a.key for a in inspect(model).column_attrs if a.key != "id"]


def _plain(value):
    from datetime import date
    from decimal import Decimal

    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


def _row(session, section: Section, obj) -> dict:
    out = {}
    ref_cols = {r[3]: r for r in section.refs}
    for col in _columns(section.model):
        if col in ref_cols:
            name, model, key, _ = ref_cols[col]
            target = getattr(obj, name)
            out[name] = getattr(target, key) if target is not None else None
        else:
            out[col] = _plain(getattr(obj, col))
    return out


def export_bundle(session: Session) -> dict:
    bundle = {"format": FORMAT, "version": VERSION,
              "exported_at": datetime.now(timezone.utc).replace(microsecond=0).isoformat()}
    for section in SECTIONS:
        key = getattr(section.model, section.key)
        bundle[section.name] = [_row(session, section, o) for o in
                                session.scalars(select(section.model).order_by(key)).all()]
    bundle["fund_reference_patterns"] = [
        {c: _plain(getattr(p, c)) for c in _columns(FundReferencePattern)}
        for p in session.scalars(select(FundReferencePattern).order_by(
            FundReferencePattern.fund_code, FundReferencePattern.priority,
            FundReferencePattern.pattern))]
    limits: dict[str, list] = {}
    for band in session.scalars(select(ApprovalLimit).order_by(ApprovalLimit.action,
                                                                ApprovalLimit.min_amount)):
        limits.setdefault(band.action, []).append(
            {"min_amount": band.min_amount, "max_amount": band.max_amount,
             "roles": band.role_list})
    bundle["approval_limits"] = limits
    bundle["workflows"] = [
        {"process_id": d.process_id, "version": d.version, "sha256": d.sha256,
         "bpmn_xml": d.bpmn_xml}
        for d in session.scalars(select(WorkflowDefinition).where(
            WorkflowDefinition.active.is_(True)).order_by(WorkflowDefinition.process_id))]
    return bundle


class _Literal(str):
    pass


def _literal(dumper, data):
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")


def dumps(bundle: dict, fmt: str = "yaml") -> str:
    if fmt == "json":
        return json.dumps(bundle, indent=2, ensure_ascii=False, sort_keys=False) + "\n"
    dumper = type("BundleDumper", (yaml.SafeDumper,), {})
    dumper.add_representer(_Literal, _literal)
    data = dict(bundle)
    data["workflows"] = [{**w, "bpmn_xml": _Literal(w["bpmn_xml"].replace("\r\n", "\n"))}
                         for w in bundle.get("workflows", [])]
    return yaml.dump(data, Dumper=dumper, sort_keys=False, allow_unicode=True, width=100)


def loads(text: str | bytes) -> dict:
    """Parse a bundle (YAML or JSON; YAML's safe loader only)."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise ValidationError("The bundle is not UTF-8 text.") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValidationError(f"The bundle is not valid YAML or JSON: {str(exc)[:200]}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValidationError(f"Not a configuration bundle (format: {FORMAT}).")
    if data.get("version") != VERSION:
        raise ValidationError(f"Bundle version {data.get('version')!r}: this IMS reads version "
                              f"{VERSION}.")
    return data


# --------------------------------------------------------------------------------- diff

@dataclass
class Plan:
    """What importing a bundle would do."""

    added: dict
    changed: dict
    unchanged: dict
    limits: dict
    workflows_new: list
    workflows_changed: list
    problems: list

    def to_dict(self) -> dict:
        return {"added": self.added, "changed": self.changed, "unchanged": self.unchanged,
                "approval_limits_proposed": sorted(self.limits),
                "workflows_deployed": self.workflows_new,
                "workflows_proposed": self.workflows_changed, "problems": self.problems}

    @property
    def empty(self) -> bool:
        return not (any(self.added.values()) or any(self.changed.values()) or self.limits
                    or self.workflows_new or self.workflows_changed)

    def lines(self) -> list[str]:
        out = []
        for name in self.added:
            for key in self.added[name]:
                out.append(f"+ {name} {key}")
            for key, fields in self.changed[name].items():
                for f, (before, after) in fields.items():
                    out.append(f"~ {name} {key}: {f} {before!r} -> {after!r}")
            if self.unchanged[name]:
                out.append(f"= {name}: {self.unchanged[name]} unchanged")
        out += [f"? approval limits for {a}: proposed for a second person's approval"
                for a in sorted(self.limits)]
        out += [f"+ workflow {p} (not deployed here: deployed)" for p in self.workflows_new]
        out += [f"? workflow {p}: new version proposed for a second person's approval"
                for p in self.workflows_changed]
        out += [f"! {p}" for p in self.problems]
        return out or ["nothing to change"]


def _resolve(session, section, row, pending) -> tuple[dict, list[str]]:
    """Column values for ``row`` (refs resolved to ids), and problems."""
    values, problems = {}, []
    cols = set(_columns(section.model))
    ref_names = {r[0]: r for r in section.refs}
    for k, v in row.items():
        if k in ref_names:
            name, model, key, col = ref_names[k]
            if v is None:
                values[col] = None
                continue
            target = session.scalar(select(model).where(getattr(model, key) == v))
            if target is None and v not in pending.get(model, set()):
                problems.append(f"{section.name} {row.get(section.key)}: {k} {v!r} does not "
                                f"exist here nor in the bundle.")
            values[col] = target.id if target is not None else ("pending", model, key, v)
        elif k in cols:
            values[k] = v
        else:
            problems.append(f"{section.name} {row.get(section.key)}: unknown field {k!r}.")
    return values, problems


def plan(session: Session, bundle: dict) -> Plan:
    from app.services import approval_limits as limits_svc
    from app.services import workflow as wf

    p = Plan({}, {}, {}, {}, [], [], [])
    pending: dict[type, set] = {}
    for section in SECTIONS:
        rows = bundle.get(section.name) or []
        if not isinstance(rows, list):
            p.problems.append(f"{section.name}: expected a list.")
            rows = []
        pending[section.model] = {r.get(section.key) for r in rows if isinstance(r, dict)}
    for section in SECTIONS:
        p.added[section.name], p.changed[section.name], p.unchanged[section.name] = [], {}, 0
        seen = set()
        for row in bundle.get(section.name) or []:
            if not isinstance(row, dict) or not row.get(section.key):
                p.problems.append(f"{section.name}: a row without its {section.key}.")
                continue
            key = row[section.key]
            if key in seen:
                p.problems.append(f"{section.name} {key}: twice in the bundle.")
                continue
            seen.add(key)
            _values, problems = _resolve(session, section, row, pending)
            p.problems += problems
            existing = session.scalar(select(section.model).where(
                getattr(section.model, section.key) == key))
            if existing is None:
                p.added[section.name].append(key)
                continue
            current = _row(session, section, existing)
            diffs = {f: (current.get(f), v) for f, v in row.items()
                     if f in current and _plain(current.get(f)) != v
                     and str(current.get(f)) != str(v)}
            if diffs:
                p.changed[section.name][key] = diffs
            else:
                p.unchanged[section.name] += 1
    limits = bundle.get("approval_limits") or {}
    if not isinstance(limits, dict):
        p.problems.append("approval_limits: expected a mapping of action: bands.")
        limits = {}
    for action, bands in limits.items():
        try:
            proposed = limits_svc.validate_scheme(action, bands, complete=True)
        except ValidationError as exc:
            p.problems.append(f"approval limits {action}: {exc.message}")
            continue
        if limits_svc.band_dicts(proposed) != limits_svc.band_dicts(
                limits_svc.scheme(session, action)):
            p.limits[action] = bands
    for w in bundle.get("workflows") or []:
        pid = w.get("process_id") if isinstance(w, dict) else None
        if not pid or not isinstance(w.get("bpmn_xml"), str):
            p.problems.append("workflows: each needs a process_id and its bpmn_xml.")
            continue
        try:
            wf.check(w["bpmn_xml"], expected_process_id=pid)
        except ValidationError as exc:
            p.problems.append(f"workflow {pid}: {exc.message}")
            continue
        active = wf.active_definition(session, pid)
        if active is None:
            p.workflows_new.append(pid)
        elif _norm(active.bpmn_xml) != _norm(w["bpmn_xml"]):
            p.workflows_changed.append(pid)
    return p


def _norm(xml: str) -> str:
    return xml.replace("\r\n", "\n").strip()


def import_bundle(session: Session, bundle: dict, *, actor: str) -> tuple[Plan, list[int]]:
    """Check the whole bundle, apply its plain sections in one transaction (audited), deploy
    workflows this site has never had, and propose changed approval limits and workflows for a
    second person's approval. Returns the plan and the ids of the proposals made."""
    from app.services import config_proposals as proposals
    from app.services import workflow as wf

    p = plan(session, bundle)
    if p.problems:
        session.rollback()
        raise ValidationError(f"The bundle was refused ({len(p.problems)} problem(s)); nothing "
                              f"was imported.", {"bundle": p.problems})
    try:
        with audit.reason_for("configuration bundle import"):
            for section in SECTIONS:
                deferred = []
                for row in bundle.get(section.name) or []:
                    key = row[section.key]
                    values, _ = _resolve(session, section, row, {})
                    later = {c: v for c, v in values.items()
                             if isinstance(v, tuple) and v and v[0] == "pending"}
                    for c in later:
                        values[c] = None
                    obj = session.scalar(select(section.model).where(
                        getattr(section.model, section.key) == key))
                    if obj is None:
                        obj = section.model(**values)
                        session.add(obj)
                    elif key in p.changed[section.name]:
                        for c, v in values.items():
                            if str(getattr(obj, c)) != str(v) or (getattr(obj, c) is None) != \
                                    (v is None):
                                setattr(obj, c, v)
                    if later:
                        deferred.append((obj, later))
                    session.flush()
                for obj, later in deferred:
                    for col, (_, model, keycol, v) in later.items():
                        setattr(obj, col, session.scalar(select(model.id).where(
                            getattr(model, keycol) == v)))
                session.flush()
            for row in bundle.get("fund_reference_patterns") or []:
                exists = session.scalar(select(FundReferencePattern.id).where(
                    FundReferencePattern.fund_code == row.get("fund_code"),
                    FundReferencePattern.pattern == row.get("pattern")))
                if exists is None:
                    cols = set(_columns(FundReferencePattern))
                    session.add(FundReferencePattern(**{k: v for k, v in row.items()
                                                        if k in cols}))
            for w in bundle.get("workflows") or []:
                if w["process_id"] in p.workflows_new:
                    wf.deploy_definition(session, w["bpmn_xml"].encode("utf-8"), actor,
                                         expected_process_id=w["process_id"], commit=False,
                                         reason="Deployed from a configuration bundle: not "
                                                "deployed here before.")
            audit.record(session, "configuration.bundle_import", "ConfigurationBundle",
                         bundle.get("exported_at"), after={
                             "added": {k: len(v) for k, v in p.added.items()},
                             "changed": {k: sorted(v) for k, v in p.changed.items()},
                             "approval_limits_proposed": sorted(p.limits),
                             "workflows_deployed": p.workflows_new,
                             "workflows_proposed": p.workflows_changed}, actor=actor)
        session.commit()
    except BaseException:
        session.rollback()
        raise
    made = []
    if p.limits:
        made.append(proposals.propose_limits(session, p.limits, actor).id)
    for w in bundle.get("workflows") or []:
        if w["process_id"] in p.workflows_changed:
            made.append(proposals.propose_workflow(session, w["process_id"], w["bpmn_xml"],
                                                   actor).id)
    return p, made
