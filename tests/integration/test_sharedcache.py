"""The rows workers keep between requests (app/services/sharedcache.py): the database's cache
version moves with every change to the watched tables, and a change counts from the next request
(permissions, users, fund scope, till rules, funds); a transaction's own uncommitted change is
seen by it and by no one else."""

from __future__ import annotations

import random

import pytest
from sqlalchemy import select, text

from app.models.fund_group import UserFundAccess
from app.models.reference import Fund, PaymentMethod
from app.models.signin import UserPaymentMethod
from app.services import refcache, sharedcache
from app.services.seed import make_reference
from tests.conftest import PASSWORD, api_token, unique


def _version(app) -> int:
    """The committed version, read on a connection of its own."""
    from app.extensions import db

    with db.engine.connect() as conn:
        return conn.execute(text("SELECT version FROM cache_version")).scalar_one()


def _cashier(app, session, *, all_funds=True, role_name=None):
    """A new user with a role of their own holding can_write on Receipt (and all funds)."""
    sm = app.appbuilder.sm
    role = sm.add_role(role_name or unique("RC", 10))
    sm.add_permission_role(role, sm.find_permission_view_menu("can_write", "Receipt"))
    name = unique("rc", 12).lower()
    user = sm.add_user(name, "Cache", name, f"{name}@example.invalid", [role], password=PASSWORD)
    session.add(UserFundAccess(user_id=user.id, all_funds=all_funds))
    session.commit()
    return user, role


def _post(client, token, fund="TWS", ref=None, method="CARD"):
    body = {"payment_method_code": method, "lines": [
        {"fund_code": fund, "account_reference": ref or unique("TW"), "amount": "3.00"}]}
    return client.post("/api/v1/receipts", json=body, headers={"Authorization": f"Bearer {token}"})


def test_version_moves_with_changes_that_matter(app, session):
    before = _version(app)
    method = session.scalar(select(PaymentMethod).where(PaymentMethod.code == "CHQ"))
    method.name = method.name  # no change: no UPDATE, no new version
    session.commit()
    assert _version(app) == before
    method.maximum_amount = 10_000_000
    session.commit()
    after = _version(app)
    assert after != before
    method.maximum_amount = None
    session.commit()
    assert _version(app) not in (before, after)  # random, never counted back
    # a user's login bookkeeping is not cached: it does not move the version
    user = app.appbuilder.sm.find_user(username="cashier")
    v = _version(app)
    user.login_count = (user.login_count or 0) + 1
    session.commit()
    assert _version(app) == v
    session.execute(text("UPDATE ab_user SET active = active WHERE username = 'cashier'"))
    session.commit()
    assert _version(app) != v


def test_version_rolled_back_with_the_change(app, session):
    before = _version(app)
    fund = session.scalar(select(Fund).where(Fund.code == "TWS"))
    fund.maximum_amount = 123
    session.flush()
    mine = session.execute(text("SELECT version FROM cache_version")).scalar_one()
    assert mine != before and _version(app) == before  # the new version is not committed
    session.rollback()
    assert _version(app) == before


def test_own_uncommitted_change_is_seen_and_not_kept(app, session):
    before = refcache.fund(session, "TWS")
    orig = before.maximum_amount
    session.commit()
    assert refcache.fund(session, "TWS") is before  # kept between transactions
    fund = session.scalar(select(Fund).where(Fund.code == "TWS"))
    fund.maximum_amount = 4_200
    # not flushed yet: the cache flushes first, as a query would, and reads the new row
    assert refcache.fund(session, "TWS").maximum_amount == 4_200
    session.rollback()
    again = refcache.fund(session, "TWS")
    assert again.maximum_amount == orig  # the committed row again
    with pytest.raises(AttributeError):
        again.maximum_amount = 1  # a kept row is read-only


def test_permission_removed_counts_from_the_next_request(app, session, client):
    user, role = _cashier(app, session)
    token = api_token(client, user.username)
    assert _post(client, token).status_code == 201
    assert _post(client, token).status_code == 201  # now from the cache
    sm = app.appbuilder.sm
    sm.del_permission_role(role, sm.find_permission_view_menu("can_write", "Receipt"))
    assert _post(client, token).status_code == 403
    sm.add_permission_role(sm.find_role(role.name),
                           sm.find_permission_view_menu("can_write", "Receipt"))
    assert _post(client, token).status_code == 201


def test_role_taken_away_and_user_deactivated(app, session, client):
    user, role = _cashier(app, session)
    token = api_token(client, user.username)
    assert _post(client, token).status_code == 201
    sm = app.appbuilder.sm
    u = sm.find_user(username=user.username)
    u.roles = [sm.find_role("Auditor")]
    session.commit()
    assert _post(client, token).status_code == 403
    u = sm.find_user(username=user.username)
    u.roles = [sm.find_role(role.name)]
    session.commit()
    assert _post(client, token).status_code == 201
    u = sm.find_user(username=user.username)
    u.active = False
    session.commit()
    assert _post(client, token).status_code == 401


def test_fund_scope_and_till_rules_count_from_the_next_request(app, session, client):
    user, _ = _cashier(app, session)
    token = api_token(client, user.username)
    assert _post(client, token).status_code == 201
    access = session.get(UserFundAccess, user.id)
    access.all_funds = False  # no group: no fund
    session.commit()
    assert _post(client, token).status_code == 404
    session.get(UserFundAccess, user.id).all_funds = True
    session.commit()
    assert _post(client, token).status_code == 201
    session.add(UserPaymentMethod(user_id=user.id, payment_method_code="CASH"))
    session.commit()
    r = _post(client, token)
    assert r.status_code == 422 and "You may not take payments by CARD" in str(r.json)


def test_fund_changes_count_from_the_next_request(app, session, client):
    code = unique("SC", 8)
    session.add(Fund(code=code, name=f"Cache {code}", vat_code="O"))
    session.commit()
    user, _ = _cashier(app, session)
    token = api_token(client, user.username)
    assert _post(client, token, fund=code).status_code == 201
    fund = session.scalar(select(Fund).where(Fund.code == code))
    fund.disabled = True
    session.commit()
    r = _post(client, token, fund=code)
    assert r.status_code == 422 and "disabled" in str(r.json)
    # a change made outside the ORM (raw SQL, another process) counts just the same
    from app.extensions import db

    with db.engine.begin() as conn:
        conn.execute(text("UPDATE fund SET disabled = :f WHERE code = :c"),
                     {"f": False, "c": code})
    assert _post(client, token, fund=code).status_code == 201


def test_check_digits_still_checked_from_the_cache(app, session, client):
    user, _ = _cashier(app, session)
    token = api_token(client, user.username)
    validator = session.scalar(select(Fund).where(Fund.code == "CTAX")).validator
    ref = make_reference(validator, random.Random(7))
    assert _post(client, token, fund="CTAX", ref=ref).status_code == 201
    bad = ref[:-1] + ("1" if ref[-1] != "1" else "2")
    r = _post(client, token, fund="CTAX", ref=bad)
    assert r.status_code == 422 and "Check digit" in str(r.json)


def test_no_version_table_reads_the_database(app, session):
    """Without its row (a database not migrated yet) nothing is kept."""
    session.commit()
    sharedcache.clear()
    session.execute(text("DELETE FROM cache_version"))
    session.commit()
    try:
        first = refcache.fund(session, "TWS")
        session.commit()
        assert refcache.fund(session, "TWS") is not first  # read again, not kept
    finally:
        from app.models.cache import cache_version_triggers

        session.commit()
        from app.extensions import db

        with db.engine.begin() as conn:
            cache_version_triggers(conn)


def test_another_worker_sees_a_change_at_its_next_transaction(app, session):
    """Two workers: two engines (pools, caches) on one database."""
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from app.extensions import db

    other = create_engine(db.engine.url, **({"connect_args": {"timeout": 30}}
                                            if db.engine.dialect.name == "sqlite" else {}))
    sharedcache.install(other)
    try:
        with Session(other) as s2:
            kept = refcache.method(s2, "CHQ")
            s2.commit()
            assert refcache.method(s2, "CHQ") is kept  # from the second worker's cache
            s2.commit()
            method = session.scalar(select(PaymentMethod).where(PaymentMethod.code == "CHQ"))
            old = method.minimum_amount
            method.minimum_amount = 123
            session.commit()  # the first worker's change
            try:
                fresh = refcache.method(s2, "CHQ")
                assert fresh is not kept and fresh.minimum_amount == 123
            finally:
                s2.rollback()
                session.scalar(select(PaymentMethod).where(
                    PaymentMethod.code == "CHQ")).minimum_amount = old
                session.commit()
    finally:
        other.dispose()


def test_a_connection_gone_while_pooled_is_replaced_at_checkout(app, session):
    """The version read at checkout is the pool's ping: a dead connection is not handed out."""
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    from app.extensions import db

    if db.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL: a server that can end a pooled connection")
    engine = create_engine(db.engine.url, pool_size=1, max_overflow=0)  # no pool_pre_ping
    sharedcache.install(engine)
    killer = create_engine(db.engine.url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        with killer.connect() as k:  # the pooled connection's server process ends
            assert k.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)})").scalar()
        with engine.connect() as conn:  # the one pooled connection is dead: another is made
            assert conn.exec_driver_sql("SELECT pg_backend_pid()").scalar() != pid
    finally:
        killer.dispose()
        engine.dispose()
