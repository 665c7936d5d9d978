"""Stored values in words, in the reader's language: statuses, role names, task names, audit
actions, and the fixed reasons and suggestion texts the services write.

A status is data ("awaiting_approval"); its words are a message of ours. `label(kind, value)`
returns the N_() message for a known value (the page translates it with the ``|tr`` filter) and
the value itself, unchanged and never looked up in the catalogue, for anything else.

Reasons and suggestion texts are stored as English sentences (a suspense item's reason joins
them). `known_sentences(text)` splits such text back into our sentences where each one matches
a message below exactly, with its values (a fund code, an amount) kept as data.
"""

from __future__ import annotations

import re

from app.domain.i18n import N_, Fixed

#: kind -> stored value -> words
LABELS: dict[str, dict[str, Fixed]] = {
    "ledger_account": {"BANK": N_("Bank"), "CASH_IN_HAND": N_("Cash in hand"),
                       "CASH_IN_TRANSIT": N_("Cash in transit"),
                       "CARD_CLEARING": N_("Card clearing"), "AGENT_CLEARING": N_("Agent clearing"),
                       "CASH_VARIANCE": N_("Cash variance"), "CARD_FEES": N_("Card fees"),
                       "BANK_CHARGES": N_("Bank charges")},
    "import": {"received": N_("received"), "queued": N_("queued"), "processing": N_("processing"),
               "succeeded": N_("succeeded"), "failed": N_("failed"), "reversed": N_("reversed")},
    "task": {"ready": N_("waiting for a decision"), "completed": N_("completed"),
             "escalated": N_("escalated"), "cancelled": N_("cancelled")},
    "workflow": {"running": N_("in progress"), "completed": N_("completed"),
                 "approved": N_("approved"), "rejected": N_("rejected"), "error": N_("error"),
                 "cancelled": N_("cancelled")},
    "refund": {"awaiting_approval": N_("awaiting approval"), "approved": N_("approved"),
               "rejected": N_("rejected"), "paid": N_("paid"), "failed": N_("failed")},
    "write_off": {"awaiting_approval": N_("awaiting approval"), "approved": N_("approved"),
                  "rejected": N_("rejected"), "posted": N_("posted")},
    "suspense": {"unallocated": N_("Unallocated"), "part_allocated": N_("Part allocated"),
                 "allocated": N_("Allocated"), "written_off": N_("Written off"),
                 "withdrawn": N_("Withdrawn"),
                 "reserved_write_off": N_("Reserved for a write-off awaiting approval"),
                 "reserved_allocation": N_("Reserved for an allocation awaiting approval")},
    "allocation": {"awaiting_approval": N_("Awaiting approval"), "posted": N_("Posted"),
                   "rejected": N_("Rejected")},
    "proposal": {"pending": N_("waiting for approval"), "approved": N_("approved"),
                 "rejected": N_("rejected")},
    "suggestion": {"exact": N_("exact match"), "near_miss": N_("near miss"),
                   "fuzzy": N_("similar name"), "rule": N_("processing rule")},
    "subject": {"refund": N_("Refund"), "write_off": N_("Write-off"),
                "suspense_allocation": N_("Suspense allocation"),
                "demo": N_("Demonstration request"),
                "configuration_change": N_("Configuration change"),
                "cash_up": N_("Cash-up"), "period_close": N_("Period close"),
                "payment_request": N_("Payment request")},
    "workflow_version": {"active": N_("active"), "inactive": N_("inactive"),
                         "draft": N_("draft")},
    "role": {"Administrator": N_("Administrator"),
             "Workflow Administrator": N_("Workflow Administrator"),
             "Head of Finance": N_("Head of Finance"), "Finance Manager": N_("Finance Manager"),
             "Income Clerk": N_("Income Clerk"), "Cashier": N_("Cashier"),
             "Auditor": N_("Auditor"), "Public": N_("Public")},
    "workflow_event": {"started": N_("started"), "approved_task": N_("approved"),
                       "rejected_task": N_("rejected"), "escalated": N_("escalated"),
                       "cancelled": N_("cancelled"), "approved": N_("request approved"),
                       "rejected": N_("request rejected"), "timer": N_("timer fired"),
                       "error": N_("error")},
    "signin_method": {"password": N_("password"), "sso": N_("single sign-on"),
                      "totp": N_("authenticator code"), "recovery": N_("recovery code"),
                      "api": N_("API token")},
    "signin_outcome": {"ok": N_("signed in"), "refused": N_("refused")},
    "audit_action": {"create": N_("created"), "update": N_("changed"), "delete": N_("deleted"),
                     "insert": N_("created")},
}

#: The task names of the workflows in workflows/*.bpmn (a deployed workflow may name its tasks
#: otherwise: those names are data and shown as they are).
TASK_NAMES: dict[str, Fixed] = {
    "Approve (Finance Manager)": N_("Approve (Finance Manager)"),
    "Approve (Head of Finance)": N_("Approve (Head of Finance)"),
    "Approve allocation (Finance Manager)": N_("Approve allocation (Finance Manager)"),
    "Approve allocation (Head of Finance)": N_("Approve allocation (Head of Finance)"),
    "Approve configuration change (Head of Finance)":
        N_("Approve configuration change (Head of Finance)"),
    "Approve refund (Finance Manager)": N_("Approve refund (Finance Manager)"),
    "Approve refund (Head of Finance)": N_("Approve refund (Head of Finance)"),
    "Approve write-off (Finance Manager)": N_("Approve write-off (Finance Manager)"),
    "Approve write-off (Head of Finance)": N_("Approve write-off (Head of Finance)"),
    "Approve cash-up (Finance Manager)": N_("Approve cash-up (Finance Manager)"),
    "Approve cash-up (Head of Finance)": N_("Approve cash-up (Head of Finance)"),
    "Approve closing or reopening the period (Head of Finance)":
        N_("Approve closing or reopening the period (Head of Finance)"),
    "Escalate to Head of Finance": N_("Escalate to Head of Finance"),
    "Escalate to next role up": N_("Escalate to next role up"),
}


def label(kind: str, value):
    """The words for a stored value of this kind (a Fixed message), else the value unchanged."""
    if value is None:
        return ""
    if kind == "task_name":
        return TASK_NAMES.get(value, value)
    return LABELS.get(kind, {}).get(value, value)


#: The sentences the services write into a suspense item's reason and a suggestion's reason.
SENTENCES: tuple[Fixed, ...] = (
    N_("No fund matches the reference (no fund code, rule or pattern)."),
    N_("Unknown fund %(fund)s."),
    N_("Directed to suspense."),
    N_("Fund %(fund)s is disabled."),
    N_("The reference is blank."),
    N_("The reference is longer than 30 characters."),
    N_("No account %(ref)s exists in fund %(fund)s."),
    N_("Account on stop: %(why)s"),
    N_("Unknown payment method %(method)s."),
    N_("Amount %(amount)s is more than the fund maximum %(max)s."),
    N_("Amount %(amount)s is less than the %(method)s minimum %(min)s."),
    N_("Amount %(amount)s is more than the %(method)s maximum %(max)s."),
)


def _pattern(msgid: str) -> re.Pattern:
    parts = re.split(r"(%\(\w+\)s)", msgid)
    out = []
    for part in parts:
        m = re.fullmatch(r"%\((\w+)\)s", part)
        out.append(f"(?P<{m.group(1)}>.+?)" if m else re.escape(part))
    return re.compile("".join(out))


_PATTERNS = [(s.msgid, _pattern(s.msgid)) for s in SENTENCES]


def known_sentence(text: str):
    """``text`` as our message (a Fixed with its values) if it is one of SENTENCES, else text."""
    for msgid, pattern in _PATTERNS:
        m = pattern.fullmatch(text)
        if m:
            return Fixed(msgid, **m.groupdict())
    return text


def known_sentences(text: str | None) -> list:
    """A stored reason split into sentences, each ours (Fixed) where it matches exactly."""
    if not text:
        return []
    return [known_sentence(p.strip()) for p in text.split("; ") if p.strip()]


#: Field names of audited records in words (any other field name is shown as it is stored).
FIELDS: dict[str, Fixed] = {
    "amount": N_("Amount"), "status": N_("Status"), "id": N_("Id"), "reason": N_("Reason"),
    "name": N_("Name"), "fund_code": N_("Fund"), "account_reference": N_("Account reference"),
    "title": N_("Title"), "version": N_("Version"), "roles": N_("Roles"), "role": N_("Role"),
    "number": N_("Number"), "transaction_id": N_("Transaction"), "outcome": N_("Outcome"),
    "method": N_("Method"), "payee_name": N_("Payee"), "sort_code": N_("Sort code"),
    "account_number": N_("Account number"), "payee_differs": N_("Payee differs from payer"),
    "comment": N_("Comment"), "min_amount": N_("Minimum"), "max_amount": N_("Maximum"),
    "approvals_required": N_("Approvals required"), "code": N_("Code"), "rate": N_("Rate"),
    "disabled": N_("Disabled"), "address": N_("Address"), "postcode": N_("Postcode"),
    "stop_message": N_("Stop message"), "gl_code": N_("GL code"), "vat_code": N_("VAT code"),
    "maximum_amount": N_("Maximum"), "minimum_amount": N_("Minimum"), "active": N_("Active"),
    "email": N_("Email"), "username": N_("User name"), "first_name": N_("First name"),
    "last_name": N_("Last name"), "value": N_("Value"), "key": N_("Setting"),
    "suspense_item_id": N_("Suspense item"), "instance_id": N_("Workflow"),
    "task_id": N_("Task"), "decision": N_("Decision"), "lines": N_("Lines"),
    "total_amount": N_("Total"), "filename": N_("File"), "format": N_("Format"),
    "receipt_number": N_("Receipt"), "transaction_date": N_("Date"),
    "payment_method_code": N_("Payment method"), "narrative": N_("Narrative"),
    "reference_text": N_("Reference as received"), "assigned_to": N_("Assigned to"),
    "process_id": N_("Workflow"), "requester": N_("Requested by"), "kind": N_("Kind"),
}

#: Audit actions in words (any other action is shown as it is stored).
ACTIONS: dict[str, Fixed] = {
    "create": N_("created"), "update": N_("changed"), "delete": N_("deleted"),
    "post": N_("posted"), "receipt": N_("receipt taken"), "journal": N_("journal posted"),
    "transfer": N_("transfer posted"), "reverse": N_("reversed"), "undo": N_("undone"),
    "allocate": N_("allocated"), "assign": N_("assigned"), "note": N_("note added"),
    "receive": N_("received"), "request": N_("requested"), "status": N_("status changed"),
    "refund.request": N_("refund requested"), "refund.approved": N_("refund approved"),
    "refund.rejected": N_("refund rejected"), "refund.paid": N_("refund paid"),
    "refund.failed": N_("refund failed"), "refund.retry": N_("refund retried"),
    "refund_payment_run.create": N_("payment run created"),
    "write_off.request": N_("write-off requested"), "write_off.approved": N_("write-off approved"),
    "write_off.rejected": N_("write-off rejected"), "write_off.posted": N_("write-off posted"),
    "workflow.deploy": N_("workflow deployed"), "workflow.start": N_("workflow started"),
    "workflow.activate": N_("workflow version made active"),
    "workflow.task.approve": N_("task approved"), "workflow.task.reject": N_("task rejected"),
    "ageing.run": N_("ageing list made"), "login": N_("signed in"),
    "signin.refused": N_("sign-in refused"), "signin.sso": N_("signed in by single sign-on"),
    "signin.totp_enabled": N_("two-factor sign-in set up"),
    "signin.totp_reset": N_("two-factor sign-in reset"),
    "signin.recovery_codes": N_("new recovery codes made"),
    "signin.recovery_used": N_("recovery code used"),
    "user.dormant_disabled": N_("disabled as unused"), "user.settings": N_("user settings changed"),
}


#: Audited record types in words, and where each record's page is ({id} is the record's id).
ENTITIES: dict[str, tuple[Fixed, str | None]] = {
    "Transaction": (N_("Transaction"), "/transactions/{id}"),
    "PostingGroup": (N_("Posting group"), None),
    "Refund": (N_("Refund"), "/refunds/{id}"),
    "RefundPaymentRun": (N_("Refund payment run"), "/refund-payment-runs/{id}"),
    "SuspenseItem": (N_("Suspense item"), "/suspense/{id}"),
    "SuspenseAllocation": (N_("Suspense allocation"), None),
    "SuspenseAgeingRun": (N_("Ageing list"), None),
    "WriteOff": (N_("Write-off"), "/write-offs/{id}"),
    "ImportBatch": (N_("Import"), "/imports/{id}"),
    "WorkflowInstance": (N_("Workflow"), "/workflow-instances/{id}"),
    "WorkflowTask": (N_("Task"), "/tasks/{id}"),
    "WorkflowDefinition": (N_("Workflow definition"), None),
    "ConfigProposal": (N_("Configuration change"), None),
    "ApprovalLimit": (N_("Approval limit"), None),
    "Fund": (N_("Fund"), "/fundview/show/{id}"),
    "AccountHolder": (N_("Account holder"), "/accountholderview/show/{id}"),
    "PaymentMethod": (N_("Payment method"), "/paymentmethodview/show/{id}"),
    "VatCode": (N_("VAT code"), "/vatcodeview/show/{id}"),
    "Office": (N_("Office"), "/officeview/show/{id}"),
    "ReferenceValidator": (N_("Reference validator"), "/referencevalidatorview/show/{id}"),
    "Setting": (N_("System setting"), "/settingview/show/{id}"),
    "ProcessingRule": (N_("Processing rule"), "/processingruleview/show/{id}"),
    "BankProfile": (N_("Bank profile"), "/bankprofileview/show/{id}"),
    "FundReferencePattern": (N_("Fund reference pattern"), "/fundreferencepatternview/show/{id}"),
    "User": (N_("User"), "/users/show/{id}"),
    "Role": (N_("Role"), "/role-matrix/"),
}


def entity_words(entity: str):
    return ENTITIES.get(entity, (entity, None))[0]


def entity_link(entity: str, entity_id) -> str | None:
    """The page of an audited record, or None (ids are digits or task ids, never markup)."""
    pattern = ENTITIES.get(entity, (None, None))[1]
    if pattern is None or entity_id in (None, ""):
        return None
    text = str(entity_id)
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", text):
        return None
    return pattern.format(id=text)


#: The suggestion texts of app/services/suggestions.py (a suggestion found two ways joins two).
SUGGESTION_SENTENCES: tuple[Fixed, ...] = (
    N_("The reference %(ref)s is an existing %(fund)s account."),
    N_("%(ref)s with characters %(a)s and %(b)s swapped is %(account)s: a valid %(fund)s "
       "reference (check digit passes) of an existing account."),
    N_("%(ref)s with digit %(n)s is %(d)s, not %(ch)s is %(account)s: a valid %(fund)s "
       "reference (check digit passes) of an existing account."),
    N_("The name “%(name)s” resembles “%(text)s” (similarity %(score)s)."),
    N_("Processing rule(s) %(rules)s now send %(amount)s to %(fund)s / %(ref)s."),
)
_SUGGESTION_PATTERNS = [(s.msgid, _pattern(s.msgid)) for s in SUGGESTION_SENTENCES]
_SUGGESTION_START = re.compile(r"(?<=\.) (?=The reference |The name |Processing rule|\S+ with )")


def suggestion_sentences(text: str | None) -> list:
    """A suggestion's reason as our sentences (Fixed with their values) where they match."""
    out = []
    for piece in _SUGGESTION_START.split(text or ""):
        for msgid, pattern in _SUGGESTION_PATTERNS:
            m = pattern.fullmatch(piece)
            if m:
                out.append(Fixed(msgid, **m.groupdict()))
                break
        else:
            out.append(piece)
    return out
