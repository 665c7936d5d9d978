"""Property: any random mix of receipts, journals, transfers and undos leaves the books balanced."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from app.domain.errors import Conflict, ValidationError
from app.domain.money import Money
from app.models.ledger import Transaction
from app.services import journals as J
from app.services import ledger as L
from app.services.receipts import take_receipt

amounts = st.integers(min_value=1, max_value=50_000)
ops = st.lists(st.one_of(
    st.tuples(st.just("receipt"), st.lists(amounts, min_size=1, max_size=3)),
    st.tuples(st.just("journal"), st.integers(0, 100), st.lists(amounts, min_size=1, max_size=3)),
    st.tuples(st.just("transfer"), st.integers(0, 100), st.lists(amounts, min_size=1, max_size=2)),
    st.tuples(st.just("undo"), st.integers(0, 100)),
), min_size=1, max_size=12)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops)
def test_random_mix_keeps_books_balanced(session, plan):
    # cheques are receipted into Cash in hand (no office here), not Bank (issue 17)
    bank_before = L.balance_of(session, L.CASH_IN_HAND)
    received = 0
    txns: list[int] = []
    groups: list[int] = []
    for op in plan:
        try:
            if op[0] == "receipt":
                res = take_receipt(session, payment_method_code="CHQ", actor="cashier", lines=[
                    {"fund_code": "TWS", "account_reference": f"BK{i}", "amount": str(Money(a))}
                    for i, a in enumerate(op[1])])
                received += sum(op[1])
                txns.extend(t.id for t in res.transactions)
            elif op[0] in ("journal", "transfer") and txns:
                src = txns[op[1] % len(txns)]
                targets = [{"fund_code": "TWS", "account_reference": f"BT{i}", "amount": str(Money(a))}
                           for i, a in enumerate(op[2])]
                if op[0] == "journal":
                    g = J.journal(session, transaction_id=src, targets=targets, reason="mix", actor="clerk")
                else:
                    g = J.transfer(session, source_transaction_id=src, targets=targets, reason="mix",
                                   actor="clerk")
                groups.append(g.id)
                txns.extend(session.scalars(select(Transaction.id).where(
                    Transaction.posting_group_id == g.id)))
            elif op[0] == "undo" and groups:
                J.undo(session, group_id=groups[op[1] % len(groups)], reason="mix undo", actor="clerk")
        except (ValidationError, Conflict):
            pass  # refused (over available, already undone, moved on): nothing posted
    tb = L.trial_balance(session)
    assert tb["balanced"], tb
    assert L.unbalanced_groups(session) == []
    assert L.balance_of(session, L.CASH_IN_HAND) - bank_before == received
    for tid in txns:
        t = session.get(Transaction, tid)
        assert 0 <= L.available_amount(session, t) <= t.amount
