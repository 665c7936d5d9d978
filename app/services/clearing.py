"""Clearing accounts: which ledger account a payment is debited to when it is receipted.

Money is real when it reaches the bank. A receipt therefore debits the clearing account of its
channel, and the money moves on to Bank when it is banked or settled:

===================================  ======================  ===============================
channel (payment method kind)        debit on receipt        dimension (ledger_line.account_reference)
===================================  ======================  ===============================
cash, cheque (counter)               CASH_IN_HAND            the office code (None: no office)
card (counter, telephone, online)    CARD_CLEARING           the card provider (e.g. "simulator")
post_office / agent file (allpay)    AGENT_CLEARING          the agent (e.g. "ALLPAY")
bank_transfer, direct_debit, bank    BANK                    -
files (bank CSV, camt.053, MT940)
===================================  ======================  ===============================

Cash in hand is ONE ledger account with the office as its dimension (ledger lines carry the
office code in ``account_reference``, which the (account, fund, reference) index covers), not an
account per office: offices are reference data an Administrator adds, and the chart of accounts
stays fixed. ``balance_of(session, CASH_IN_HAND, account_reference="CIVIC")`` is one office's.

An approved cash-up (app/services/cashups.py) posts Dr CASH_IN_TRANSIT (or BANK, config
``IMS_CASHUP_DESTINATION``) / Cr CASH_IN_HAND, and any over/short to CASH_VARIANCE. A card refund is
paid out of CARD_CLEARING (the provider nets it off the settlement).

Bank reconciliation (app/services/reconciliation.py) moves the money on to Bank when a statement
line is matched to what was expected: a banked bag clears CASH_IN_TRANSIT, a card provider's
settlement clears CARD_CLEARING (its fees to CARD_FEES), an agent's remittance AGENT_CLEARING.

Postings made before migration 0013_cashup debited BANK for every channel; they are left as they
are (the ledger is append-only): that money is treated as already banked, the clearing accounts
start at zero, and cash-ups cover only receipts that debited CASH_IN_HAND.
"""

from __future__ import annotations

from app.services import ledger as L

#: payment method kind -> clearing account debited when a payment of that kind is receipted
DEBIT_ACCOUNT_BY_KIND = {
    "cash": L.CASH_IN_HAND,
    "cheque": L.CASH_IN_HAND,
    "card": L.CARD_CLEARING,
    "post_office": L.AGENT_CLEARING,
    "bank_transfer": L.BANK,
    "direct_debit": L.BANK,
}
#: import types whose files come from a payment agent (the rest come from the bank)
AGENT_IMPORT_TYPES = {"allpay": "ALLPAY"}
#: the kinds a cash-up counts
TILL_KINDS = ("cash", "cheque")


def configured_card_provider() -> str:
    """The card provider's name (IMS_PAYMENT_PROVIDER, default "simulator")."""
    try:
        from flask import current_app, has_app_context

        if has_app_context():
            name = current_app.config.get("IMS_PAYMENT_PROVIDER")
            if name:
                return str(name).strip().lower()
    except ImportError:  # pragma: no cover
        pass
    return "simulator"


def card_clearing_leg(amount: int, provider: str | None = None,
                      transaction_id: int | None = None) -> L.Leg:
    """The Card clearing leg for ``provider`` (debit > 0 for a payment, credit < 0 for a
    refund). For the card-payment feature: ``L.Leg(CARD_CLEARING, ...)`` with the provider as
    its dimension."""
    return L.Leg(L.CARD_CLEARING, amount, None, provider or configured_card_provider(),
                 transaction_id)


def receipt_debit_leg(method_kind: str | None, amount: int, *, office_code: str | None = None,
                      provider: str | None = None, method_code: str | None = None) -> L.Leg:
    """The debit leg of a receipt of ``amount`` pence taken by a method of ``method_kind``."""
    account = DEBIT_ACCOUNT_BY_KIND.get(method_kind or "", L.BANK)
    if account == L.CASH_IN_HAND:
        return L.Leg(account, amount, None, office_code or None)
    if account == L.CARD_CLEARING:
        return card_clearing_leg(amount, provider)
    if account == L.AGENT_CLEARING:
        return L.Leg(account, amount, None, method_code)
    return L.Leg(L.BANK, amount)


def import_debit(import_type: str | None, bank_reference: str | None = None
                 ) -> tuple[str, str | None]:
    """(account, dimension) an import's rows debit: Agent clearing for agent files, else Bank
    (with the statement's bank account's dimension: None for the default account)."""
    agent = AGENT_IMPORT_TYPES.get(import_type or "")
    if agent:
        return L.AGENT_CLEARING, agent
    return L.BANK, bank_reference
