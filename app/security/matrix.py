"""The role matrix of app/security/roles.py in words, for the Roles page: what each role may do
with each kind of record. Read from RESOURCES itself, so the page can never disagree with the
permissions `ims sync-roles` grants."""

from __future__ import annotations

from app.domain.i18n import N_
from app.security.roles import READ, RESOURCES, ROLES, WRITE

#: resource -> (area, what it is) in words
RESOURCE_WORDS = {
    "Fund": (N_("Reference data"), N_("Funds")),
    "AccountHolder": (N_("Reference data"), N_("Account holders")),
    "PaymentMethod": (N_("Reference data"), N_("Payment methods")),
    "VatCode": (N_("Reference data"), N_("VAT codes")),
    "Office": (N_("Reference data"), N_("Offices")),
    "ReferenceValidator": (N_("Reference data"), N_("Reference validators")),
    "Setting": (N_("Reference data"), N_("System settings")),
    "Dashboard": (N_("Income"), N_("Income dashboard")),
    "Receipt": (N_("Income"), N_("Receipts (taking payments)")),
    "Transaction": (N_("Income"), N_("Transactions")),
    "Journal": (N_("Income"), N_("Journals")),
    "Transfer": (N_("Income"), N_("Transfers")),
    "Ledger": (N_("Income"), N_("Trial balance")),
    "Import": (N_("Imports"), N_("Imports of bank and payment-agent files")),
    "ProcessingRule": (N_("Imports"), N_("Processing rules")),
    "BankProfile": (N_("Imports"), N_("Bank profiles")),
    "FundReferencePattern": (N_("Imports"), N_("Fund reference patterns")),
    "SuspenseItem": (N_("Suspense"), N_("Suspense items")),
    "SuspenseAllocation": (N_("Suspense"), N_("Suspense allocations")),
    "WriteOff": (N_("Suspense"), N_("Write-offs")),
    "SuspenseReport": (N_("Suspense"), N_("Suspense report")),
    "Refund": (N_("Refunds"), N_("Refunds")),
    "RefundPaymentRun": (N_("Refunds"), N_("Refund payment runs")),
    "Task": (N_("Workflows"), N_("Approval tasks")),
    "WorkflowDefinition": (N_("Workflows"), N_("Workflow definitions")),
    "WorkflowInstance": (N_("Workflows"), N_("Workflow history")),
    "ApprovalLimit": (N_("Workflows"), N_("Approval limits")),
    "AuditEvent": (N_("Audit"), N_("Audit trail")),
    "Notification": (N_("Notifications"), N_("Own notifications")),
    "AccountHolderProfile": (N_("Reference data"), N_("Account holder file profiles")),
    "AccountSync": (N_("Reference data"), N_("Account holder files")),
    "ConfigurationBundle": (N_("Reference data"), N_("Configuration bundles")),
    "CashUp": (N_("Income"), N_("Cash-ups")),
    "CashUpTemplate": (N_("Reference data"), N_("Cash-up templates")),
    "CardPayment": (N_("Card payments"), N_("Card payments")),
    "PaymentRequest": (N_("Card payments"), N_("Payment requests")),
    "GLExport": (N_("Closing the books"), N_("GL export batches")),
    "AccountingPeriod": (N_("Closing the books"), N_("Accounting periods")),
    "Report": (N_("Reports"), N_("Finance reports")),
    "BankAccount": (N_("Reference data"), N_("Bank accounts")),
    "Reconciliation": (N_("Closing the books"), N_("Bank reconciliation")),
    "Retention": (N_("Personal data"), N_("Retention and legal holds")),
    "SubjectAccess": (N_("Personal data"), N_("Subject-access reports")),
    "FundGroup": (N_("Security"), N_("Fund groups (who sees which funds)")),
}

#: permission -> what it lets a role do, in words
PERMISSION_WORDS = {READ: N_("see"), WRITE: N_("change"), "can_reverse": N_("reverse"),
                    "can_void": N_("void"), "can_sign_off": N_("sign off"),
                    "can_cash_book": N_("daily cash book"),
                    "can_vat": N_("VAT report"), "can_income": N_("income report"),
                    "can_approvals": N_("approvals report"), "can_month_end": N_("month-end pack")}


def role_matrix() -> list[dict]:
    """Rows (one per resource, grouped by area): for each role, what it may do, in words.

    ``cells`` maps role -> list of N_() words ("see", "change"); an empty list means no access.
    """
    rows = []
    for resource, perms in RESOURCES.items():
        area, what = RESOURCE_WORDS.get(resource, (N_("Other"), resource))
        cells = {role: [PERMISSION_WORDS.get(p, p) for p, roles in perms.items() if role in roles]
                 for role in ROLES}
        rows.append({"resource": resource, "area": area, "what": what, "cells": cells})
    order = list(dict.fromkeys(words[0] for words in RESOURCE_WORDS.values()))
    rows.sort(key=lambda r: order.index(r["area"]) if r["area"] in order else len(order))
    return rows


#: Users and roles (FAB's own pages), in words
PEOPLE_ROWS = (
    (N_("Users and the roles they hold"), {"Administrator": [N_("see"), N_("change")],
                                            "Auditor": [N_("see")]}),
)
