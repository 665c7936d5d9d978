"""Personal values out of the append-only audit trail: an erasable table referenced by token.

An audited change or business event that carries a personal value (an account holder's name,
address or postcode, a refund's payee and bank details, a card payer's name, email and address)
records instead a token ``pd:<id>:<digest>`` naming a ``personal_data`` row that holds the value,
where the digest is SHA-256 of a random salt kept with the value and the value. The audit chain
hashes the token, so erasing the value (and its salt: the digest can then not be tested against
guessed names) leaves every event's hash and the chain verifiable. While the value is kept, its
digest shows it is the one the event recorded (``check``).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime, timezone

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from app.models.personal import PersonalData

#: audit entity -> field -> kind of personal value: these fields are recorded as tokens
PERSONAL_FIELDS: dict[str, dict[str, str]] = {
    "AccountHolder": {"name": "name", "address": "address", "postcode": "postcode"},
    "Refund": {"payee_name": "name", "payer_name": "name", "sort_code": "bank",
               "account_number": "bank"},
    "CardPayment": {"payer_name": "name", "payer_email": "email", "payer_address": "address"},
    "PaymentRequest": {"name": "name", "email": "email"},
    # a hold by a person's name (a hold by reference is recorded as a token all the same)
    "LegalHold": {"value": "name"},
}

TOKEN = re.compile(r"pd:(\d+):([0-9a-f]{64})")
TABLE = PersonalData.__table__
#: built once: SQLAlchemy caches its compiled form, so each value costs only the round trip
_INSERT = insert(TABLE)


def digest(salt: str, value: str) -> str:
    """SHA-256 of the salt and the value (a salted digest: the salt is random per value and is
    erased with it, so an erased value cannot be found again by hashing guessed names). Plain
    SHA-256 rather than an HMAC: setting up an HMAC per value (a new key each time) costs ten
    times more, and the salt is no key to protect."""
    return hashlib.sha256(bytes.fromhex(salt) + value.encode("utf-8")).hexdigest()


def store(session: Session, kind: str, value: str, record_type: str, record_id,
          subject_key: str | None = None) -> str:
    """Keep ``value`` in personal_data and return the token an audit event records for it."""
    salt = secrets.token_hex(16)
    d = digest(salt, value)
    new_id = session.connection().execute(_INSERT, {
        "kind": kind, "record_type": record_type,
        "record_id": None if record_id is None else str(record_id)[:50],
        "subject_key": subject_key[:60] if subject_key else None, "value": value, "salt": salt,
        "digest": d, "created_at": datetime.now(timezone.utc), "erased_at": None,
    }).inserted_primary_key[0]
    return f"pd:{new_id}:{d}"


def tokenise(session: Session, entity: str, entity_id, data: dict | None,
             subject_key: str | None = None) -> dict | None:
    """``data`` (an event's before or after) with its personal values replaced by tokens."""
    return tokenise_many(session, [(entity, entity_id, data, subject_key)])[0]


_INSERT_RETURNING = insert(TABLE).returning(TABLE.c.id, sort_by_parameter_order=True)


def tokenise_many(session: Session, items: list[tuple]) -> list[dict | None]:
    """``tokenise`` for many (entity, entity_id, data, subject_key) at once: the values go to
    personal_data in one statement (a flush of many audited rows costs one round trip)."""
    out: list[dict | None] = []
    places: list[tuple[dict, str]] = []
    rows: list[dict] = []
    now = datetime.now(timezone.utc)
    for entity, entity_id, data, subject_key in items:
        fields = PERSONAL_FIELDS.get(entity)
        if not fields or not data:
            out.append(data)
            continue
        data = dict(data)
        out.append(data)
        for key, kind in fields.items():
            value = data.get(key)
            if isinstance(value, str) and value and not TOKEN.fullmatch(value):
                salt = secrets.token_hex(16)
                rows.append({
                    "kind": kind, "record_type": entity,
                    "record_id": None if entity_id is None else str(entity_id)[:50],
                    "subject_key": subject_key[:60] if subject_key else None, "value": value,
                    "salt": salt, "digest": digest(salt, value), "created_at": now,
                    "erased_at": None})
                places.append((data, key))
    if rows:
        if len(rows) == 1:
            ids = [session.connection().execute(_INSERT, rows[0]).inserted_primary_key[0]]
        else:
            ids = session.connection().execute(_INSERT_RETURNING, rows).scalars().all()
        for (data, key), row, new_id in zip(places, rows, ids, strict=True):
            data[key] = f"pd:{new_id}:{row['digest']}"
    return out


def is_token(value) -> bool:
    return isinstance(value, str) and TOKEN.fullmatch(value) is not None


def resolve(session: Session, value: str) -> tuple[bool, str | None]:
    """(True, the value) for a token whose value is kept, (True, None) for an erased one,
    (False, value) for anything that is not a token."""
    m = TOKEN.fullmatch(value) if isinstance(value, str) else None
    if m is None:
        return False, value
    row = session.execute(select(TABLE.c.value, TABLE.c.salt, TABLE.c.digest)
                          .where(TABLE.c.id == int(m[1]))).first()
    if row is None or row.value is None or row.digest != m[2]:
        return True, None
    return True, row.value


def erase(session: Session, record_type: str, record_ids) -> int:
    """Erase the personal values kept for these records (in batches). Returns how many."""
    ids = [str(i) for i in record_ids]
    done = 0
    now = datetime.now(timezone.utc)
    for n in range(0, len(ids), 500):
        done += session.execute(update(TABLE).where(
            TABLE.c.record_type == record_type, TABLE.c.record_id.in_(ids[n:n + 500]),
            TABLE.c.erased_at.is_(None)).values(value=None, salt=None, erased_at=now)
        ).rowcount or 0
    return done


def matching(session: Session, text: str, limit: int = 500) -> list:
    """personal_data rows whose kept value contains ``text`` (any case)."""
    return list(session.execute(select(TABLE).where(
        func.lower(TABLE.c.value).contains(text.lower(), autoescape=True))
        .order_by(TABLE.c.id).limit(limit)))


def check(session: Session, batch: int = 5000) -> list[int]:
    """Ids of kept values whose digest no longer matches (altered since they were recorded).
    A database from before personal_data (migration 0017) has none."""
    from sqlalchemy import inspect

    if not inspect(session.connection()).has_table(TABLE.name):
        return []
    bad, after = [], 0
    while True:
        rows = session.execute(select(TABLE.c.id, TABLE.c.value, TABLE.c.salt, TABLE.c.digest)
                               .where(TABLE.c.id > after, TABLE.c.value.is_not(None))
                               .order_by(TABLE.c.id).limit(batch)).all()
        if not rows:
            return bad
        bad += [r.id for r in rows if digest(r.salt, r.value) != r.digest]
        after = rows[-1].id
