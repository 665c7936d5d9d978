"""A page checks 30-odd permissions (menus, buttons, the endpoint itself): they cost one query a
request, not one each, and a change of a user's roles counts from the next request."""

from __future__ import annotations

from sqlalchemy import event

from app.extensions import db


class _Statements:
    def __init__(self):
        self.seen: list[str] = []

    def __enter__(self):
        event.listen(db.engine, "before_cursor_execute", self._record)
        return self

    def __exit__(self, *exc):
        event.remove(db.engine, "before_cursor_execute", self._record)

    def _record(self, conn, cursor, statement, params, context, executemany):
        self.seen.append(statement)

    def touching(self, table: str) -> int:
        return sum(1 for s in self.seen if table in s)


def test_a_page_reads_its_permissions_once(as_user):
    client = as_user("clerk")
    for path in ("/", "/tasks/", "/suspense/", "/transactions/"):
        with _Statements() as q:
            resp = client.get(path)
        assert resp.status_code == 200, path
        # FAB's menu look-up (one query) and ours for every other check (one query)
        assert q.touching("ab_permission_view_role") <= 2, (path, q.touching(
            "ab_permission_view_role"))


def test_an_api_call_reads_its_permissions_once(api):
    clerk = api("clerk")
    with _Statements() as q:
        resp = clerk.get("/api/v1/transactions/?page_size=1")
    assert resp.status_code == 200
    # the Public role's permissions (FAB asks first whether an endpoint is public) and the
    # caller's roles': one query each
    assert q.touching("ab_permission_view_role") <= 2


def test_a_role_taken_away_counts_from_the_next_request(app, as_user, session):
    from flask_appbuilder.security.sqla.models import Role, User

    client = as_user("clerk2")
    assert client.get("/suspense/").status_code == 200
    user = session.query(User).filter_by(username="clerk2").one()
    kept = list(user.roles)
    try:
        user.roles = [session.query(Role).filter_by(name="Auditor").one()]
        session.commit()
        resp = client.get("/suspense/allocations/new/999999", follow_redirects=False)
        assert resp.status_code in (302, 403, 404)
        assert client.post("/receipts/new", data={}).status_code in (302, 403)
    finally:
        user = session.query(User).filter_by(username="clerk2").one()
        user.roles = kept
        session.commit()
