"""Posting numbers (R000123, J000045, ...): unique under concurrency on both databases, never
reused, continuing where number_sequence left off when PostgreSQL moves to sequences."""

from __future__ import annotations

import threading
import uuid

import pytest
from sqlalchemy import insert

from app.models.ledger import NumberSequence
from app.services import ledger as L


def _prefix() -> str:
    return "Z" + "".join(chr(65 + int(c, 16) % 26) for c in uuid.uuid4().hex[:3])


def test_numbers_are_unique_and_increasing_under_concurrent_use_cases(app, session):
    from app.extensions import db

    prefix = _prefix()
    taken: list[list[int]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(6)

    def worker():
        with app.app_context():
            barrier.wait()
            for _ in range(10):
                numbers = L.take_numbers(db.session, prefix, 3)
                db.session.commit()
                with lock:
                    taken.append(numbers)
            db.session.remove()

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    flat = [n for numbers in taken for n in numbers]
    assert len(taken) == 60 and len(flat) == 180 and len(set(flat)) == 180
    assert all(numbers == sorted(numbers) for numbers in taken)


def test_a_new_sequence_continues_after_number_sequence(app, session):
    prefix = _prefix()
    session.execute(insert(NumberSequence).values(prefix=prefix, last_value=41))
    session.commit()
    assert L.next_number(session, prefix) == f"{prefix}000042"
    session.commit()
    assert L.take_numbers(session, prefix, 2)[0] > 42


def test_a_failed_use_case_never_gives_its_number_to_another(app, session):
    """On PostgreSQL a rolled-back number stays taken (a gap); on SQLite the upsert rolls back
    with it and the next use case takes it. Either way no number is ever issued twice."""
    prefix = _prefix()
    first = L.take_numbers(session, prefix)[0]
    session.rollback()
    second = L.take_numbers(session, prefix)[0]
    session.commit()
    if session.get_bind().dialect.name == "postgresql":
        assert second == first + 1
    else:
        assert second == first


@pytest.mark.parametrize("bad", ["", "1R", "TOOLONGPREFIX", "R;DROP", "R-1"])
def test_a_prefix_is_a_letter_then_letters_or_digits(session, bad):
    with pytest.raises(ValueError):
        L.take_numbers(session, bad)
