"""Suggestions for a suspense item, each with the reason shown to the clerk.

1. exact: the received reference is an existing account (the fund was not recognised);
2. near miss: the reference with one adjacent transposition or one wrong digit becomes a
   reference that passes its fund's validator (check digit) *and* is an existing account;
3. fuzzy: account holders whose name resembles the narrative/reference text (difflib ratio and
   token overlap over a bounded candidate set);
4. processing rules that (now) send the row to a fund/account.

Cost is bounded: at most ~300 candidate references, one IN query per validator-bearing fund,
at most MAX_FUZZY_CANDIDATES account holders scored.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import asdict, dataclass

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from app.models.reference import AccountHolder, Fund
from app.models.suspense import SuspenseItem
from app.services import refcache
from app.services.validation import ReferenceCheck, normalise_reference

MAX_REFERENCE_LENGTH = 30
MAX_FUZZY_CANDIDATES = 300
FUZZY_THRESHOLD = 0.6
STOP_WORDS = {"THE", "AND", "FOR", "PAYMENT", "PAY", "REF", "REFERENCE", "BGC", "FPS", "BACS",
              "COUNCIL", "TAX", "RENT", "CREDIT", "TRANSFER", "FROM", "MR", "MRS", "MS", "MISS",
              "DR", "LTD", "LIMITED", "ACCOUNT", "ACC", "INV", "INVOICE", "BILL", "FEE"}


@dataclass
class Suggestion:
    kind: str            # exact | near_miss | fuzzy | rule
    fund_code: str
    account_reference: str
    name: str | None
    reason: str
    score: float

    def to_dict(self) -> dict:
        return asdict(self)


def reference_candidates(ref: str) -> dict[str, str]:
    """One adjacent transposition or one wrong digit: candidate -> how it differs."""
    out: dict[str, str] = {}
    if not ref or len(ref) > MAX_REFERENCE_LENGTH:
        return out
    for i in range(len(ref) - 1):
        if ref[i] != ref[i + 1]:
            cand = ref[:i] + ref[i + 1] + ref[i] + ref[i + 2:]
            out.setdefault(cand, f"characters {i + 1} and {i + 2} swapped")
    for i, ch in enumerate(ref):
        if ch.isdigit():
            for d in "0123456789":
                if d != ch:
                    cand = ref[:i] + d + ref[i + 1:]
                    out.setdefault(cand, f"digit {i + 1} is {d}, not {ch}")
    return out


def _exact(session: Session, ref: str) -> list[Suggestion]:
    if not ref:
        return []
    rows = session.scalars(select(AccountHolder).where(AccountHolder.account_reference == ref)
                           .limit(5)).all()
    return [Suggestion("exact", a.fund_code, a.account_reference, a.name,
                       f"The reference {ref} is an existing {a.fund_code} account.", 1.0)
            for a in rows]


def _near_misses(session: Session, ref: str) -> list[Suggestion]:
    cands = reference_candidates(ref)
    if not cands:
        return []
    out: list[Suggestion] = []
    # each fund with its validator chain from the worker's cache (refcache), each chain compiled
    # once for all the candidates: a query and a compile per fund and candidate before
    codes = session.scalars(select(Fund.code).where(Fund.disabled.is_(False),
                                                    Fund.validator_id.is_not(None))
                            .order_by(Fund.id)).all()
    for code in codes:
        fund = refcache.fund(session, code)
        if fund is None or fund.validator is None:
            continue
        check = ReferenceCheck(fund.validator).check
        valid = [c for c in cands if check(c)[0]]
        if not valid:
            continue
        for a in session.scalars(select(AccountHolder).where(
                AccountHolder.fund_code == fund.code,
                AccountHolder.account_reference.in_(valid[:500]))):
            how = cands[a.account_reference]
            out.append(Suggestion(
                "near_miss", a.fund_code, a.account_reference, a.name,
                f"{ref} with {how} is {a.account_reference}: a valid {fund.code} reference "
                f"(check digit passes) of an existing account.", 0.9))
    return out


def _tokens(text: str) -> list[str]:
    words = re.findall(r"[A-Z][A-Z'\-]{2,}", (text or "").upper())
    return [w for w in words if w not in STOP_WORDS]


def _fuzzy(session: Session, text: str) -> list[Suggestion]:
    tokens = _tokens(text)
    if not tokens:
        return []
    probe = sorted(set(tokens), key=len, reverse=True)[:3]
    rows = session.scalars(select(AccountHolder).where(
        or_(*[func.upper(AccountHolder.name).like(f"%{t}%") for t in probe]))
        .limit(MAX_FUZZY_CANDIDATES)).all()
    text_u = " ".join(tokens)
    # initials in the text ("J JONES", "JA JONES"): a name whose first letter fits ranks higher
    initials = {c for w in re.findall(r"\b[A-Z]{1,2}\b", (text or "").upper())
                if w not in STOP_WORDS for c in w}
    out = []
    for a in rows:
        name_tokens = _tokens(a.name)
        if not name_tokens:
            continue
        name_u = " ".join(name_tokens)
        ratio = difflib.SequenceMatcher(None, text_u, name_u).ratio()
        overlap = sum(1 for t in name_tokens if t in tokens) / len(name_tokens)
        score = max(ratio, overlap)
        if initials and len(name_tokens) >= 2 and name_tokens[0] not in tokens:
            score += 0.15 if name_tokens[0][0] in initials else -0.15
        score = min(score, 1.0)
        if score >= FUZZY_THRESHOLD:
            out.append(Suggestion("fuzzy", a.fund_code, a.account_reference, a.name,
                                  f"The name \u201c{a.name}\u201d resembles \u201c{text.strip()}\u201d "
                                  f"(similarity {score:.0%}).", round(score * 0.8, 3)))
    out.sort(key=lambda s: -s.score)
    return out[:5]


def _rules(session: Session, item: SuspenseItem) -> list[Suggestion]:
    from app.domain.money import gbp
    from app.models.imports import ImportBatch
    from app.services.imports import RowContext

    import_type = None
    if item.import_id:
        import_type = session.scalar(select(ImportBatch.format).where(ImportBatch.id == item.import_id)) \
            if hasattr(ImportBatch, "format") else None
    try:
        ctx = RowContext.load(session, import_type)
        d = ctx.decide(reference=item.reference_text or "", amount=item.amount,
                       narrative=item.narrative, fund_code=item.fund_code,
                       method_code=ctx.default_method(import_type))
        ctx.prefetch_accounts([d])
        ctx.validate(d)
    except Exception:  # a broken rule must not break the page
        return []
    if not d.fired or d.suspense or not d.fund_code:
        return []
    return [Suggestion("rule", d.fund_code, d.reference, None,
                       f"Processing rule(s) {', '.join(d.fired)} now send "
                       f"{gbp(item.amount)} to {d.fund_code} / {d.reference}.", 0.85)]


def suggest(session: Session, item: SuspenseItem, limit: int = 8) -> list[Suggestion]:
    """Suggestions, best first, one per fund/account (reasons of duplicates combined)."""
    ref = normalise_reference(item.reference_text)
    ref_compact = ref.replace(" ", "")
    found: list[Suggestion] = []
    found += _exact(session, ref_compact)
    found += _near_misses(session, ref_compact)
    found += _rules(session, item)
    found += _fuzzy(session, " ".join(x for x in (item.narrative, item.reference_text) if x))
    merged: dict[tuple[str, str], Suggestion] = {}
    for s in found:
        key = (s.fund_code, s.account_reference)
        if key in merged:
            m = merged[key]
            if s.reason not in m.reason:
                m.reason += " " + s.reason
            m.score = max(m.score, s.score)
        else:
            merged[key] = Suggestion(**asdict(s))
    return sorted(merged.values(), key=lambda s: -s.score)[:limit]
