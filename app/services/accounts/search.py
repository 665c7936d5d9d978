"""Account-holder search: by reference, name, sounds-alike name (the stored Soundex key, so it
works on both databases), postcode and address."""

from __future__ import annotations

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from app.domain.errors import ValidationError
from app.domain.phonetic import name_key
from app.models.reference import AccountHolder

SEARCH_KINDS = ("reference", "name", "sounds_like", "postcode", "address")
MAX_QUERY = 100


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def search_accounts(session: Session, q: str, by: str = "name", *, fund: str | None = None,
                    include_closed: bool = True, limit: int = 50) -> list[AccountHolder]:
    q = " ".join((q or "").split())
    if by not in SEARCH_KINDS:
        raise ValidationError(f"Search by one of: {', '.join(SEARCH_KINDS)}.",
                              {"by": [f"One of {', '.join(SEARCH_KINDS)}."]})
    if not q:
        raise ValidationError("Enter something to search for.", {"q": ["Required."]})
    if len(q) > MAX_QUERY:
        raise ValidationError(f"At most {MAX_QUERY} characters.", {"q": ["Too long."]})
    up = _like(q.upper())
    if by == "reference":
        cond = or_(AccountHolder.account_reference == q,
                   func.upper(AccountHolder.account_reference).like(f"{up}%", escape="\\"))
    elif by == "name":
        cond = func.upper(AccountHolder.name).like(f"%{up}%", escape="\\")
    elif by == "sounds_like":
        key = name_key(q)
        if key is None:
            raise ValidationError("A sounds-alike search needs a name with letters.",
                                  {"q": ["Give a surname."]})
        cond = AccountHolder.phonetic_key == key
    elif by == "postcode":
        compact = _like(q.upper().replace(" ", ""))
        cond = func.replace(func.upper(AccountHolder.postcode), " ", "").like(
            f"{compact}%", escape="\\")
    else:
        cond = func.upper(AccountHolder.address).like(f"%{up}%", escape="\\")
    from app.services.scope import restrict

    stmt = restrict(select(AccountHolder).where(cond), AccountHolder.fund_code)
    if fund:
        stmt = stmt.where(AccountHolder.fund_code == fund)
    if not include_closed:
        stmt = stmt.where(AccountHolder.closed_at.is_(None))
    stmt = stmt.order_by(AccountHolder.name, AccountHolder.account_reference).limit(
        max(1, min(limit, 200)))
    return list(session.scalars(stmt).all())


def account_dict(a: AccountHolder) -> dict:
    from app.domain.money import Money

    return {"id": a.id, "fund_code": a.fund_code, "account_reference": a.account_reference,
            "name": a.name, "address": a.address, "postcode": a.postcode,
            "stop_message": a.stop_message, "stop_source": a.stop_source,
            "balance": None if a.balance is None else str(Money(a.balance)),
            "balance_date": a.balance_date.isoformat() if a.balance_date else None,
            "closed": a.closed_at is not None}
