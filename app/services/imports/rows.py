"""What happens to one row of an import: processing rules, then the fund (the file's code, a
rule's, or the first matching reference pattern), then reference validation from data loaded
once per import; a row that fails any check goes to suspense with its reasons. The rule tester
runs one pasted row through the same steps (``dry_run``)."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from app.domain.errors import ValidationError
from app.domain.money import Money, gbp, vat_by_fraction, vat_fraction
from app.importers.allpay import DEFAULT_METHODS
from app.models.imports import FundReferencePattern
from app.models.reference import Fund, PaymentMethod, VatCode
from app.services.imports.lookups import account_stops
from app.services.reference import SUSPENSE_FUND, designated_fund, get_setting
from app.services.rules import RuleSet, load_rules
from app.services.validation import ReferenceCheck

log = logging.getLogger(__name__)

DEFAULT_METHOD = {"ims_csv": "BACS", "bank_csv": "BACS", "camt053": "BACS", "mt940": "BACS",
                  "allpay": "PO"}
ALLPAY_SETTING = "allpay_payment_types"


def allpay_methods(session: Session) -> dict[str, str]:
    """Payment-type letter -> payment method code (setting "allpay_payment_types", e.g. P=PO,T=PP)."""
    text = get_setting(session, ALLPAY_SETTING)
    if not text:
        return dict(DEFAULT_METHODS)
    out = {}
    for pair in text.split(","):
        k, _, v = pair.partition("=")
        if k.strip() and v.strip():
            out[k.strip().upper()] = v.strip().upper()
    return out or dict(DEFAULT_METHODS)


@dataclass(slots=True)
class Decision:
    line: int
    transaction_date: date | None
    raw_reference: str
    reference: str
    amount: int
    narrative: str | None
    fund_code: str | None
    fund_source: str
    method_code: str
    external_reference: str | None = None
    fired: tuple[str, ...] = ()
    suspense: bool = False
    reasons: tuple[str, ...] = ()  # why the row goes to suspense (empty: it posts)
    #: a bank-statement line a rule called a settlement: kept for reconciliation, not posted
    settlement: bool = False


class _FundInfo:
    """What row decisions need of a fund, read once (no ORM attribute access per row)."""

    __slots__ = ("code", "disabled", "maximum_amount", "account_must_exist", "vat_code",
                 "vat_share", "check")

    def __init__(self, fund: Fund, vat_rates: dict[str, Decimal]):
        self.code = fund.code
        self.disabled = bool(fund.disabled)
        self.maximum_amount = fund.maximum_amount
        self.account_must_exist = bool(fund.account_must_exist)
        self.vat_code = fund.vat_code
        rate = vat_rates.get(fund.vat_code) if fund.vat_code else None
        self.vat_share = vat_fraction(rate) if rate else (0, 1)  # VAT inside a gross amount
        # references repeat across a file (the same council tax account paid many times)
        self.check = ReferenceCheck(fund.validator, memo_size=20000) \
            if fund.validator is not None else None


class _MethodInfo:
    __slots__ = ("code", "minimum_amount", "maximum_amount")

    def __init__(self, method: PaymentMethod):
        self.code = method.code
        self.minimum_amount = method.minimum_amount
        self.maximum_amount = method.maximum_amount


class RowContext:
    """Everything a row needs, loaded once per import: funds with their validator chains
    compiled, payment methods, reference patterns and rules compiled, VAT rates."""

    def __init__(self):
        self.funds: dict[str, _FundInfo] = {}
        self.methods: dict[str, _MethodInfo] = {}
        self.patterns: list[tuple[re.Pattern, str]] = []
        self.rules = RuleSet()
        self.suspense_fund = "SUSP"
        self.vat_rates: dict[str, Decimal] = {}
        self.accounts: dict[tuple[str, str], str | None] = {}
        self.session: Session | None = None
        #: the file is a bank statement: rules may call a line a settlement
        self.statement = False

    @classmethod
    def load(cls, session: Session, import_type: str | None) -> "RowContext":
        ctx = cls()
        ctx.session = session
        ctx.vat_rates = {v.code: v.rate for v in session.scalars(select(VatCode))}
        funds = session.scalars(select(Fund).options(selectinload(Fund.validator))).all()
        ctx.funds = {f.code: _FundInfo(f, ctx.vat_rates) for f in funds}
        ctx.methods = {m.code: _MethodInfo(m) for m in session.scalars(select(PaymentMethod))}
        for p in session.scalars(select(FundReferencePattern).where(
                FundReferencePattern.enabled.is_(True)).order_by(
                FundReferencePattern.priority, FundReferencePattern.id)):
            try:
                ctx.patterns.append((re.compile(p.pattern, re.IGNORECASE), p.fund_code))
            except re.error:
                log.warning("fund reference pattern %s is not a valid regex", p.id)
        ctx.rules = load_rules(session, import_type)
        try:
            ctx.suspense_fund = designated_fund(session, SUSPENSE_FUND).code
        except ValidationError:
            ctx.suspense_fund = "SUSP"
        return ctx

    @staticmethod
    def default_method(import_type: str | None) -> str:
        return DEFAULT_METHOD.get(import_type or "", "BACS")

    def decide(self, *, reference: str, amount: int, narrative: str | None,
               fund_code: str | None, method_code: str, line: int = 0,
               transaction_date: date | None = None, external_reference: str | None = None
               ) -> Decision:
        """Rules, then the fund: the row's own code (or a rule's), else the first matching
        reference pattern."""
        if self.rules.rules:
            state = {"reference": reference or "", "amount": amount,
                     "narrative": narrative or "", "fund": fund_code or ""}
            fired = tuple(self.rules.run(state))
            settlement = self.statement and state.get("kind") == "settlement"
            ref_text = state["reference"] or ""
            narrative = state["narrative"] or None
            fund = (state["fund"] or "").strip().upper() or None
        else:
            fired = ()
            settlement = False
            ref_text = reference or ""
            narrative = narrative or None
            fund = (fund_code or "").strip().upper() or None
        if fund:
            source = "rule" if fund != (fund_code or None) else "file"
        else:
            source = "none"
            for rx, code in self.patterns:
                if rx.search(ref_text):
                    fund, source = code, "pattern"
                    break
        return Decision(line, transaction_date, reference or "", ref_text.strip().upper(),
                        amount, narrative, fund, source, method_code, external_reference, fired,
                        settlement=settlement)

    def prefetch_accounts(self, decisions: list[Decision]) -> None:
        """One query per chunk: account holders (and stops) for the chunk's references."""
        refs = {d.reference for d in decisions if d.fund_code and d.reference}
        self.accounts = account_stops(self.session, list(refs)) \
            if refs and self.session is not None else {}

    def validate(self, d: Decision) -> None:
        """DOMAIN.md reference validation from cached data (all checks); failures -> suspense."""
        if d.settlement:  # reconciled against expected money, not posted as income
            return
        reasons: list[str] = []
        amount = d.amount
        if not d.fund_code:
            reasons.append("No fund matches the reference (no fund code, rule or pattern).")
        else:
            fund = self.funds.get(d.fund_code)
            if fund is None:
                reasons.append(f"Unknown fund {d.fund_code}.")
            elif fund.code == self.suspense_fund:
                reasons.append("Directed to suspense.")
            else:
                if fund.disabled:
                    reasons.append(f"Fund {fund.code} is disabled.")
                if fund.maximum_amount is not None and amount > fund.maximum_amount:
                    reasons.append(f"Amount {gbp(amount)} is more than the fund maximum "
                                   f"{gbp(fund.maximum_amount)}.")
                method = self.methods.get(d.method_code)
                if method is not None:
                    if method.minimum_amount is not None and amount < method.minimum_amount:
                        reasons.append(f"Amount {gbp(amount)} is less than the "
                                       f"{method.code} minimum {gbp(method.minimum_amount)}.")
                    if method.maximum_amount is not None and amount > method.maximum_amount:
                        reasons.append(f"Amount {gbp(amount)} is more than the "
                                       f"{method.code} maximum {gbp(method.maximum_amount)}.")
                ref = d.reference
                if not ref:
                    reasons.append("The reference is blank.")
                else:
                    if len(ref) > 30:
                        reasons.append("The reference is longer than 30 characters.")
                    if fund.check is not None:
                        ok, errs = fund.check.check(ref)
                        if not ok:
                            reasons.extend(errs)
                    key = (fund.code, ref)
                    accounts = self.accounts
                    if key not in accounts:
                        if fund.account_must_exist:
                            reasons.append(f"No account {ref} exists in fund {fund.code}.")
                    elif accounts[key]:
                        reasons.append(f"Account on stop: {accounts[key]}")
        if d.method_code not in self.methods:
            reasons.append(f"Unknown payment method {d.method_code}.")
        d.reasons = tuple(reasons)
        d.suspense = bool(reasons)

    def vat_amount(self, fund: _FundInfo, amount: int) -> int:
        """VAT inside the gross amount at the fund's rate (0 without a VAT code)."""
        return vat_by_fraction(amount, *fund.vat_share)


def dry_run(session: Session, *, reference: str, amount: str, narrative: str | None = None,
             fund_code: str | None = None, import_type: str | None = None,
             method_code: str | None = None) -> dict:
    """Dry run of one pasted row: which rules fire, the fund chosen and where the money would go."""
    try:
        pence = Money.parse(amount or "").pence
    except ValidationError as exc:
        raise ValidationError(exc.message, {"amount": [exc.message]}) from None
    ctx = RowContext.load(session, import_type)
    ctx.statement = import_type in (None, "", "bank_csv", "camt053", "mt940")
    decision = ctx.decide(reference=reference or "", amount=pence, narrative=narrative or None,
                          fund_code=(fund_code or "").strip().upper() or None,
                          method_code=method_code or ctx.default_method(import_type))
    ctx.prefetch_accounts([decision])
    ctx.validate(decision)
    return {
        "fired": list(decision.fired),
        "broken_rules": ctx.rules.broken,
        "reference": decision.reference,
        "narrative": decision.narrative,
        "amount": str(Money(pence)),
        "fund_code": decision.fund_code,
        "fund_source": decision.fund_source,
        "destination": ("settlement" if decision.settlement
                        else "suspense" if decision.suspense else "fund"),
        "reasons": list(decision.reasons),
    }
