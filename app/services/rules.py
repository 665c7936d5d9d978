"""Processing rules for imported rows: parse, check, compile and run (the rule tester runs one
row through them with app.services.imports.rows.dry_run).

Conditions are text, one OR-ed group per line; conditions in a line are joined by AND::

    reference starts_with "PCN" AND amount between 10.00 70.00
    narrative contains "PARKING"

Fields: reference, amount, narrative, fund. Operators: equals (=), contains, starts_with,
ends_with, regex, > (gt), < (lt), between. Text comparisons ignore case (regex is as written);
amounts are compared as money (pence), never as text.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from app.domain.errors import ValidationError
from app.domain.money import Money
from app.models.imports import IMPORT_FORMATS, ProcessingRule

FIELDS = ("reference", "amount", "narrative", "fund")
#: what a rule may say a bank-statement line is: "settlement" (it clears expected money and is
#: reconciled: app/services/reconciliation.py) or "payment" (a citizen's, posted as income)
LINE_KINDS = ("settlement", "payment")
OPERATORS = {"equals": "equals", "=": "equals", "==": "equals", "contains": "contains",
             "starts_with": "starts_with", "startswith": "starts_with",
             "ends_with": "ends_with", "endswith": "ends_with", "regex": "regex",
             "matches": "regex", ">": "gt", "gt": "gt", "<": "lt", "lt": "lt",
             "between": "between"}
AMOUNT_OPS = ("equals", "gt", "lt", "between")

Predicate = Callable[[dict], bool]


def _money(text: str) -> int:
    """A condition's amount as people type it in the rule editor: the form parser ("10.00",
    "£1,000.00"), and a leading "-"."""
    negative = text.startswith("-")
    try:
        pence = Money.parse_form(text[1:] if negative else text, allow_zero=True).pence
    except Exception:
        raise ValueError(f"{text!r} is not an amount such as 10.00") from None
    return -pence if negative else pence


def _condition(tokens: list[str]) -> Predicate:
    if len(tokens) < 3:
        raise ValueError("a condition is: field operator value, e.g. reference contains \"PCN\"")
    fld, op_word, values = tokens[0].lower(), tokens[1].lower(), tokens[2:]
    if fld not in FIELDS:
        raise ValueError(f"unknown field {tokens[0]!r} (use {', '.join(FIELDS)})")
    op = OPERATORS.get(op_word)
    if op is None:
        raise ValueError(f"unknown operator {tokens[1]!r}")
    if op == "between":
        if len(values) == 3 and values[1].lower() == "and":
            values = [values[0], values[2]]
        if len(values) != 2:
            raise ValueError("between takes two values, e.g. amount between 10.00 20.00")
    elif len(values) != 1:
        raise ValueError(f"{op_word} takes one value (quote text with spaces)")
    if fld == "amount":
        if op not in AMOUNT_OPS:
            raise ValueError(f"amounts are compared with equals, >, < or between, not {op_word}")
        nums = [_money(v) for v in values]
        lo = nums[0]
        if op == "equals":
            return lambda s: s["amount"] == lo
        if op == "gt":
            return lambda s: s["amount"] > lo
        if op == "lt":
            return lambda s: s["amount"] < lo
        hi = nums[1]
        if lo > hi:
            lo, hi = hi, lo
        return lambda s: lo <= s["amount"] <= hi
    if op in ("gt", "lt", "between"):
        raise ValueError(f"{op_word} compares amounts only")
    value = values[0]
    if op == "regex":
        try:
            rx = re.compile(value)
        except re.error as exc:
            raise ValueError(f"bad regular expression {value!r}: {exc}") from None
        return lambda s: rx.search(s[fld] or "") is not None
    v = value.lower()
    if op == "equals":
        return lambda s: (s[fld] or "").lower() == v
    if op == "contains":
        return lambda s: v in (s[fld] or "").lower()
    if op == "starts_with":
        return lambda s: (s[fld] or "").lower().startswith(v)
    return lambda s: (s[fld] or "").lower().endswith(v)


def parse_conditions(text: str) -> list[list[Predicate]]:
    """OR of AND groups; ValueError naming the line for anything wrong. Empty text: always."""
    groups: list[list[Predicate]] = []
    for n, raw in enumerate((text or "").splitlines(), start=1):
        if not raw.strip() or raw.strip().startswith("#"):
            continue
        try:
            tokens = shlex.split(raw)
        except ValueError as exc:
            raise ValueError(f"line {n}: {exc}") from None
        # "OR" inside a line starts another group
        for part in _split(tokens, "or"):
            conds = []
            for cond in _split_and(part):
                try:
                    conds.append(_condition(cond))
                except ValueError as exc:
                    raise ValueError(f"line {n}: {exc}") from None
            if conds:
                groups.append(conds)
    return groups


def _split(tokens: list[str], word: str) -> list[list[str]]:
    out, cur = [], []
    for tok in tokens:
        if tok.lower() == word:
            out.append(cur)
            cur = []
        else:
            cur.append(tok)
    out.append(cur)
    return [p for p in out if p]


def _split_and(tokens: list[str]) -> list[list[str]]:
    """Split on AND, except the 'and' inside 'between X and Y'."""
    out, cur = [], []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok.lower() == "and" and not (len(cur) == 3 and cur[1].lower() == "between"):
            out.append(cur)
            cur = []
        else:
            cur.append(tok)
        i += 1
    out.append(cur)
    return [p for p in out if p]


def check_rule(rule: ProcessingRule) -> None:
    """Raise ValidationError (field -> messages) if the rule cannot work."""
    errors: dict[str, list[str]] = {}
    try:
        parse_conditions(rule.conditions or "")
    except ValueError as exc:
        errors["conditions"] = [str(exc)]
    if rule.import_type and rule.import_type not in IMPORT_FORMATS:
        errors["import_type"] = [f"Use one of {', '.join(IMPORT_FORMATS)}, or leave blank."]
    kind = getattr(rule, "set_line_kind", None) or None
    if kind and kind not in LINE_KINDS:
        errors["set_line_kind"] = [f"Use one of {', '.join(LINE_KINDS)}, or leave blank."]
    if not (rule.set_fund_code or rule.set_reference or rule.set_narrative
            or rule.stop_processing or kind):
        errors["set_fund_code"] = ["A rule must set something or stop processing."]
    if rule.set_fund_code:
        from app.extensions import db
        from app.models.reference import Fund

        if db.session.scalar(select(Fund.id).where(Fund.code == rule.set_fund_code)) is None:
            errors["set_fund_code"] = ["Unknown fund."]
    if errors:
        raise ValidationError("The rule is not valid: " + "; ".join(
            f"{k}: {v[0]}" for k, v in errors.items()), errors)


def _always(state: dict) -> bool:
    return True


@dataclass
class CompiledRule:
    id: int
    name: str
    groups: list[list[Predicate]]
    set_fund_code: str | None
    set_reference: str | None
    set_narrative: str | None
    stop: bool
    set_line_kind: str | None = None

    def __post_init__(self):
        # this runs for every rule on every imported row: the common shapes get a direct test
        groups = self.groups
        if not groups:
            self.matches = _always
        elif len(groups) == 1 and len(groups[0]) == 1:
            self.matches = groups[0][0]

    def matches(self, state: dict) -> bool:
        """Any group whose conditions all hold (no groups: always)."""
        for group in self.groups:
            for predicate in group:
                if not predicate(state):
                    break
            else:
                return True
        return not self.groups

    def apply(self, state: dict) -> None:
        if self.set_fund_code:
            state["fund"] = self.set_fund_code
        if self.set_reference is not None and self.set_reference != "":
            state["reference"] = self.set_reference
        if self.set_narrative is not None and self.set_narrative != "":
            state["narrative"] = self.set_narrative
        if self.set_line_kind:
            state["kind"] = self.set_line_kind


@dataclass
class RuleSet:
    rules: list[CompiledRule] = field(default_factory=list)
    broken: list[str] = field(default_factory=list)

    def run(self, state: dict) -> list[str]:
        """Apply every matching rule in priority order; returns the names that fired."""
        fired = []
        for rule in self.rules:
            if rule.matches(state):
                rule.apply(state)
                fired.append(rule.name)
                if rule.stop:
                    break
        return fired


def load_rules(session: Session, import_type: str | None) -> RuleSet:
    """Enabled rules for this import type (and global ones), lowest priority number first."""
    q = select(ProcessingRule).where(ProcessingRule.enabled.is_(True))
    if import_type:
        q = q.where(or_(ProcessingRule.import_type.is_(None), ProcessingRule.import_type == "",
                        ProcessingRule.import_type == import_type))
    else:
        q = q.where(or_(ProcessingRule.import_type.is_(None), ProcessingRule.import_type == ""))
    rs = RuleSet()
    for r in session.scalars(q.order_by(ProcessingRule.priority, ProcessingRule.id)):
        try:
            groups = parse_conditions(r.conditions or "")
        except ValueError as exc:
            rs.broken.append(f"{r.name}: {exc}")
            continue
        rs.rules.append(CompiledRule(r.id, r.name, groups, r.set_fund_code or None,
                                     r.set_reference, r.set_narrative, bool(r.stop_processing),
                                     r.set_line_kind or None))
    return rs
