"""Issue 20's journey as one test: a Finance Manager with two-factor sign-in (TOTP) approves a
refund for their funds only.

The manager holds one fund group of one fund. They sign in through the real login form with
their password and a code from their authenticator (pyotp); their inbox and notifications show
the refund of their fund and not the refund of another fund, which went to the Head of Finance
because no Finance Manager holds that fund; they approve their own; the other task, opened by
its id, is a 404, and so is a decision posted to it."""

from __future__ import annotations

import time

import pyotp
import pytest
from flask_appbuilder.security.sqla.models import Role, User, assoc_user_role
from sqlalchemy import select

from app.models.fund_group import FundGroup, UserFundAccess, user_fund_group
from app.models.reference import Fund
from app.models.refund import Refund
from app.models.workflow import WorkflowTask
from app.security import roles as R
from tests.conftest import PASSWORD, unique


@pytest.fixture
def totp_for_managers(app):
    app.config["IMS_TOTP_REQUIRED_ROLES"] = R.MANAGER
    yield
    app.config["IMS_TOTP_REQUIRED_ROLES"] = ""


@pytest.fixture
def only_this_manager(app, session):
    """The other active Finance Managers (every one of them holds all funds) step aside for the
    test, so that a fund outside the new manager's group has no Finance Manager; restored after."""
    ids = list(session.scalars(
        select(User.id).join(assoc_user_role, assoc_user_role.c.user_id == User.id)
        .join(Role, Role.id == assoc_user_role.c.role_id)
        .where(Role.name == R.MANAGER, User.active.is_(True))))
    for uid in ids:
        session.get(User, uid).active = False
    session.commit()
    yield
    session.rollback()
    for uid in ids:
        session.get(User, uid).active = True
    session.commit()


def _txn(session, code, ref, pence):
    import datetime as dt

    from app.services import ledger as L

    group = L.post_group(session, "receipt", [L.Leg(L.BANK, pence),
                                              L.Leg(L.FUND, -pence, code, ref)], actor="cashier")
    txn = L.record_income(session, group=group, fund_code=code, account_reference=ref,
                          amount=pence, payment_method_code="CARD",
                          transaction_date=dt.date.today(),
                          external_reference="pay-" + ref.lower(), created_by="cashier")
    session.commit()
    return txn


def test_a_totp_finance_manager_approves_a_refund_of_their_funds_only(
        app, client, session, totp_for_managers, only_this_manager):
    from app.services import refunds as RF
    from app.services import signin
    from tests.integration.test_refunds import deploy_refund_workflow

    tag = unique("", 5)
    mine, other = (Fund(code=f"J{side}{tag}", name=f"Journey fund {side}{tag}", vat_code="O")
                   for side in ("M", "O"))
    session.add_all([mine, other])
    session.flush()
    group = FundGroup(name=f"Journey {tag}", funds=[mine])
    session.add(group)
    session.commit()
    sm = app.appbuilder.sm
    name = f"jfm{tag}".lower()
    user = sm.add_user(name, "Journey", "Manager", f"{name}@example.invalid",
                       [sm.find_role(R.MANAGER)], password=PASSWORD)
    session.add(UserFundAccess(user_id=user.id, all_funds=False))
    session.execute(user_fund_group.insert().values(user_id=user.id, group_id=group.id))
    session.commit()
    # two-factor sign-in set up (its first code used half a minute ago)
    secret = signin.start_totp_setup(session, user)
    signin.confirm_totp_setup(session, user, pyotp.TOTP(secret).at(time.time() - 30))

    deploy_refund_workflow(session)
    refunds = {}
    for side, fund, pence in (("mine", mine, 2_311), ("other", other, 2_322)):
        txn = _txn(session, fund.code, f"JR{side[0].upper()}{tag}", 5_000)
        refunds[side] = RF.request_refund(session, transaction_id=txn.id,
                                          amount=f"{pence / 100:.2f}", reason="journey",
                                          method="card", actor="clerk").refund.id
    session.expire_all()

    def task_of(side):
        return session.scalar(select(WorkflowTask).where(
            WorkflowTask.instance_id == session.get(Refund, refunds[side]).workflow_instance_id,
            WorkflowTask.status == "ready"))

    mine_task, other_task = task_of("mine"), task_of("other")
    assert mine_task.role == R.MANAGER
    assert other_task.role == R.HEAD  # nobody in the Finance Manager lane holds that fund

    # sign in through the login form: the password, then the authenticator's code
    client.get("/logout/")
    resp = client.post("/login/", data={"username": name, "password": PASSWORD})
    assert resp.status_code == 302 and resp.location.endswith("/login/two-factor/")
    assert client.get("/tasks/").status_code != 200  # not signed in on the password alone
    resp = client.post("/login/two-factor/", data={"code": pyotp.TOTP(secret).now()})
    assert resp.status_code == 302, resp.text[:300]

    inbox = client.get("/tasks/")
    assert inbox.status_code == 200
    assert f"/tasks/{mine_task.id}" in inbox.text
    assert f"/tasks/{other_task.id}" not in inbox.text
    notes = client.get("/notifications/").text
    assert "£23.11" in notes and "£23.22" not in notes  # the lane was told of both

    # the other fund's task by its id: 404, to look at or to decide
    assert client.get(f"/tasks/{other_task.id}").status_code == 404
    resp = client.post(f"/tasks/{other_task.id}/complete",
                       data={"decision": "approve", "comment": "not mine"})
    assert resp.status_code == 404
    # their own fund's refund: approved
    assert client.get(f"/tasks/{mine_task.id}").status_code == 200
    resp = client.post(f"/tasks/{mine_task.id}/complete",
                       data={"decision": "approve", "comment": "fine"})
    assert resp.status_code == 302, resp.text[:500]
    session.expire_all()
    assert session.get(Refund, refunds["mine"]).status in ("approved", "paid")
    assert session.get(Refund, refunds["other"]).status == "awaiting_approval"
    assert session.get(WorkflowTask, other_task.id).status == "ready"
