"""Two clerks allocating / writing off the same suspense item at once, on both databases: the item
is locked (FOR UPDATE on PostgreSQL, the write lock on SQLite), so together they never take more
than remains."""

from __future__ import annotations

import threading


from app.domain.errors import Conflict, ValidationError
from app.services import suspense as S
from app.services import writeoffs as W
from tests.integration.test_suspense_service import assert_books_balance, make_item


def _run(app, n, fn):
    from app.extensions import db

    results = []
    barrier = threading.Barrier(n)

    def worker(i):
        with app.app_context():
            barrier.wait()
            try:
                fn(db.session, i)
                results.append("ok")
            except (ValidationError, Conflict) as exc:
                results.append(type(exc).__name__)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_two_clerks_cannot_allocate_the_same_money(app, session):
    item = make_item(session, 100_00)
    item_id = item.id

    def allocate(s, i):
        S.allocate(s, item_id, [{"fund_code": "TWS", "account_reference": f"CONC{i}",
                                 "amount": "60.00"}], actor="clerk" if i % 2 else "clerk2")

    results = _run(app, 6, allocate)
    assert results.count("ok") == 1, results
    assert set(results) <= {"ok", "ValidationError", "Conflict"}
    session.expire_all()
    assert S.get_item(session, item_id).remaining_amount == 40_00
    assert_books_balance(session)


def test_allocation_and_write_off_race(app, session):
    item = make_item(session, 50_00)
    item_id = item.id

    def act(s, i):
        if i % 2:
            S.allocate(s, item_id, [{"fund_code": "TWS", "account_reference": f"RACE{i}",
                                     "amount": "30.00"}], actor="clerk")
        else:
            W.request_write_off(s, suspense_item_id=item_id, amount="30.00", reason="race",
                                actor="clerk2")

    results = _run(app, 4, act)
    assert results.count("ok") == 1, results
    session.expire_all()
    assert S.get_item(session, item_id).remaining_amount == 20_00
    assert_books_balance(session)
