"""Roles as code: which role holds which permission on which resource.

Every view and API of ours sets ``class_permission_name`` to one of the RESOURCES keys and maps
its methods to ``can_read`` or ``can_write`` (or a named action such as ``can_approve``).
`ims sync-roles` applies this table to the database; the permission-matrix test fails for any
registered permission that has no rule here.
"""

from __future__ import annotations

ADMIN = "Administrator"
WFADMIN = "Workflow Administrator"
HEAD = "Head of Finance"
MANAGER = "Finance Manager"
CLERK = "Income Clerk"
CASHIER = "Cashier"
AUDITOR = "Auditor"
#: other council systems that start card payments through the API (payment requests only)
PAYINT = "Payment Integration"

ROLES = (ADMIN, WFADMIN, HEAD, MANAGER, CLERK, CASHIER, AUDITOR, PAYINT)
#: every role of a person (the Payment Integration role is a system's, and holds nothing else)
ALL = frozenset(ROLES) - {PAYINT}
FINANCE = frozenset({HEAD, MANAGER, CLERK, CASHIER, AUDITOR})
MANAGERS = frozenset({HEAD, MANAGER})
#: Roles that outrank a Finance Manager or equal it (may accept payments to accounts on stop).
MANAGER_AND_ABOVE = frozenset({HEAD, MANAGER})
#: Escalation order for approvals (the next role up).
NEXT_ROLE_UP = {MANAGER: HEAD, CLERK: MANAGER, CASHIER: MANAGER}

READ = "can_read"
WRITE = "can_write"

#: Finance reports (app/services/reports.py): one permission per report, so that a council can
#: let, say, its Cashiers read the cash book without the other reports. can_read lets a role
#: open the reports' index page.
REPORT_READERS = frozenset({HEAD, MANAGER, AUDITOR})
REPORT_PERMISSIONS = {"can_cash_book": REPORT_READERS, "can_vat": REPORT_READERS,
                      "can_income": REPORT_READERS, "can_approvals": REPORT_READERS,
                      "can_month_end": REPORT_READERS}

#: resource (view menu) -> permission -> roles
RESOURCES: dict[str, dict[str, frozenset[str]]] = {
    # reference data: Administrator writes, everyone reads
    "Fund": {READ: ALL, WRITE: frozenset({ADMIN})},
    "PaymentMethod": {READ: ALL, WRITE: frozenset({ADMIN})},
    "VatCode": {READ: ALL, WRITE: frozenset({ADMIN})},
    "Office": {READ: ALL, WRITE: frozenset({ADMIN})},
    "ReferenceValidator": {READ: ALL, WRITE: frozenset({ADMIN})},
    "AccountHolder": {READ: ALL, WRITE: frozenset({ADMIN})},
    "Setting": {READ: frozenset({ADMIN, AUDITOR}), WRITE: frozenset({ADMIN})},
    # account-holder files from the revenues systems: Administrators load them, Auditors read
    "AccountHolderProfile": {READ: frozenset({ADMIN, AUDITOR}), WRITE: frozenset({ADMIN})},
    "AccountSync": {READ: frozenset({ADMIN, AUDITOR}), WRITE: frozenset({ADMIN})},
    # configuration bundles: Administrators export and import (four-eyes parts are proposed)
    "ConfigurationBundle": {READ: frozenset({ADMIN, AUDITOR}), WRITE: frozenset({ADMIN})},
    # audit trail
    "AuditEvent": {READ: frozenset({ADMIN, AUDITOR})},
    # workflows: limits and definitions edited (deployed) by Workflow Administrators and
    # Administrators only; lanes decide who approves
    "ApprovalLimit": {READ: ALL, WRITE: frozenset({WFADMIN, ADMIN})},
    "WorkflowDefinition": {READ: ALL, WRITE: frozenset({WFADMIN, ADMIN})},
    "WorkflowInstance": {READ: ALL},
    "Task": {READ: ALL, WRITE: ALL - {AUDITOR}},
    # imports (bank and payment-agent files), processing rules, bank profiles, suspense
    "Import": {READ: frozenset({HEAD, MANAGER, CLERK, AUDITOR}),
               WRITE: frozenset({MANAGER, CLERK}), "can_reverse": frozenset({MANAGER})},
    "ProcessingRule": {READ: frozenset({HEAD, MANAGER, CLERK, AUDITOR}),
                       WRITE: frozenset({CLERK})},
    "BankProfile": {READ: frozenset({HEAD, MANAGER, CLERK, AUDITOR}), WRITE: frozenset({CLERK})},
    "FundReferencePattern": {READ: ALL, WRITE: frozenset({ADMIN, CLERK})},
    "SuspenseItem": {READ: frozenset({HEAD, MANAGER, CLERK, AUDITOR}),
                     WRITE: frozenset({MANAGER, CLERK})},
    # suspense work queue and allocations (Income Clerks work it; approvers and Auditors read),
    # write-offs (requested by Income Clerks, approved through tasks), the suspense report
    "SuspenseAllocation": {READ: frozenset({HEAD, MANAGER, CLERK, AUDITOR}),
                           WRITE: frozenset({CLERK})},
    "WriteOff": {READ: frozenset({HEAD, MANAGER, CLERK, AUDITOR}), WRITE: frozenset({CLERK})},
    "SuspenseReport": {READ: frozenset({HEAD, MANAGER, CLERK, AUDITOR})},
    # dashboard and home
    "Dashboard": {READ: ALL},
    # income ledger: Cashiers and Income Clerks take payments (managers too, so that they can
    # accept an account on stop); Income Clerks journal and transfer; finance roles read.
    "Receipt": {READ: FINANCE, WRITE: frozenset({CASHIER, CLERK, MANAGER, HEAD})},
    "Transaction": {READ: FINANCE},
    "Journal": {READ: FINANCE, WRITE: frozenset({CLERK})},
    "Transfer": {READ: FINANCE, WRITE: frozenset({CLERK})},
    "Ledger": {READ: FINANCE},
    # refunds: Income Clerks request; approvals go by workflow lanes (Task); Finance Managers run
    # payment runs; Head of Finance, Finance Manager and Auditor read the register
    "Refund": {READ: frozenset({HEAD, MANAGER, CLERK, AUDITOR}), WRITE: frozenset({CLERK})},
    "RefundPaymentRun": {READ: frozenset({HEAD, MANAGER, AUDITOR}), WRITE: frozenset({MANAGER})},
    # finance reports: Auditors read everything; Finance Managers and Head of Finance read
    "Report": {READ: frozenset().union(*REPORT_PERMISSIONS.values()), **REPORT_PERMISSIONS},

    # cash-ups (eReturns): a Cashier cashes up their own till (and corrects or voids it before
    # approval); Finance Managers and the Head of Finance approve through tasks and may void;
    # Auditors read. Template rows per office are reference data an Administrator edits.
    "CashUp": {READ: frozenset({HEAD, MANAGER, CASHIER, AUDITOR}), WRITE: frozenset({CASHIER}),
               "can_void": frozenset({CASHIER, MANAGER, HEAD})},
    "CashUpTemplate": {READ: frozenset({ADMIN, HEAD, MANAGER, CASHIER, AUDITOR}),
                       WRITE: frozenset({ADMIN})},

    # card payments: the staff list (Income Clerks, managers, Auditors read; cashiers take
    # card payments by phone), payment requests (Income Clerks and calling systems create)
    "CardPayment": {READ: frozenset({HEAD, MANAGER, CLERK, CASHIER, AUDITOR}),
                    WRITE: frozenset({HEAD, MANAGER, CLERK, CASHIER})},
    "PaymentRequest": {READ: frozenset({HEAD, MANAGER, CLERK, AUDITOR, PAYINT}),
                       WRITE: frozenset({CLERK, PAYINT})},
    # notifications: everybody reads (and marks read) their own
    "Notification": {READ: ALL},
    # closing the books: GL export batches (Finance Managers run and void them), accounting
    # periods (Finance Managers request a close or reopening; the Head of Finance approves it in
    # the task list); Auditors read both
    "GLExport": {READ: frozenset({HEAD, MANAGER, AUDITOR}), WRITE: frozenset({MANAGER})},
    "AccountingPeriod": {READ: frozenset({HEAD, MANAGER, AUDITOR}), WRITE: frozenset({MANAGER})},
    # bank reconciliation: bank accounts are reference data (Administrators edit); Income Clerks
    # and Finance Managers match statement lines to expected money and prepare the
    # reconciliation; a Finance Manager (or the Head of Finance) who did not prepare it signs it
    # off (four-eyes in app/services/reconciliation.py); Auditors read
    "BankAccount": {READ: frozenset({ADMIN, HEAD, MANAGER, CLERK, AUDITOR}),
                    WRITE: frozenset({ADMIN})},
    "Reconciliation": {READ: frozenset({HEAD, MANAGER, CLERK, AUDITOR}),
                       WRITE: frozenset({MANAGER, CLERK}),
                       "can_sign_off": frozenset({MANAGER, HEAD})},
    # personal data: retention and legal holds (Administrators run anonymisation and hold
    # records; Auditors read), the subject-access report (Administrators and Auditors)
    "Retention": {READ: frozenset({ADMIN, AUDITOR}), WRITE: frozenset({ADMIN})},
    "SubjectAccess": {READ: frozenset({ADMIN, AUDITOR})},
    # fund groups (who sees which funds): Administrators define groups and give them to users;
    # Auditors read
    "FundGroup": {READ: frozenset({ADMIN, AUDITOR}), WRITE: frozenset({ADMIN})},
}

#: Menu entries shown to fewer roles than may read the data behind them: a role reads what its
#: forms need (a Cashier's receipt form lists funds, payment methods, VAT codes and offices) but
#: sees in the menu only the pages it has a use for. Resources not listed here appear in the
#: menu of every role that may open their page.
REFERENCE_USERS = frozenset({ADMIN, HEAD, MANAGER, CLERK, AUDITOR})
MENU_ROLES: dict[str, frozenset[str]] = {
    "Fund": REFERENCE_USERS, "PaymentMethod": REFERENCE_USERS, "VatCode": REFERENCE_USERS,
    "Office": REFERENCE_USERS, "ReferenceValidator": REFERENCE_USERS,
    "AccountHolder": REFERENCE_USERS,
    "FundReferencePattern": frozenset({ADMIN, HEAD, MANAGER, CLERK, AUDITOR}),
    "ApprovalLimit": frozenset({WFADMIN, ADMIN, HEAD, MANAGER, AUDITOR}),
    "WorkflowDefinition": frozenset({WFADMIN, ADMIN, HEAD, MANAGER, AUDITOR}),
    "Task": ALL - {AUDITOR, WFADMIN},
}

#: Where each role starts after signing in (the first of a user's roles in this order wins); the
#: income dashboard stays in the menu of everyone who may read it.
LANDING_ORDER = (ADMIN, WFADMIN, HEAD, MANAGER, AUDITOR, CLERK, CASHIER)
LANDINGS = {ADMIN: "admin", WFADMIN: "workflows", HEAD: "tasks", MANAGER: "tasks",
            AUDITOR: "audit", CLERK: "dashboard", CASHIER: "receipt"}


def in_menu(role: str, resource: str) -> bool:
    """Whether the menu shows ``role`` the pages of ``resource`` (given it may open them)."""
    return role in MENU_ROLES.get(resource, ALL)


def landing_for(role_names) -> str:
    """The landing page key for a user holding ``role_names`` ("dashboard" if none matches)."""
    names = set(role_names)
    for role in LANDING_ORDER:
        if role in names:
            return LANDINGS[role]
    return "dashboard"


#: What a workflow is about (its subject type) -> the resource whose can_read lets a role see the
#: workflow's page (amount, reason, payee, history). Requesters and the roles of the workflow's
#: lanes see it too. A subject type missing here is shown to nobody else (a test lists them).
SUBJECT_RESOURCES: dict[str, str] = {
    "refund": "Refund",
    "write_off": "WriteOff",
    "suspense_allocation": "SuspenseAllocation",
    "cash_up": "CashUp",
    "demo": "WorkflowDefinition",
    "configuration_change": "WorkflowDefinition",  # a proposed workflow or approval-limit change
    "period_close": "AccountingPeriod",  # closing or reopening an accounting period
}

#: FAB's own security views: Administrator manages users and the roles they hold, and reads roles
#: and permissions (this file and `ims sync-roles` are the only way to change those: the security
#: manager refuses every write to them); Auditor reads users and roles; everybody may see and edit
#: their own profile and password.
FAB_SELF_SERVICE = {
    "UserInfoEditView": ("can_this_form_get", "can_this_form_post"),
    "ResetMyPasswordView": ("can_this_form_get", "can_this_form_post"),
}
FAB_ADMIN_VIEW_MENUS = {
    "ResetPasswordView", "RoleModelView", "UserDBModelView", "UserStatsChartView",
    "PermissionModelView", "ViewMenuModelView", "PermissionViewModelView",
    "RegisterUserModelView", "Role", "User", "Permission", "ViewMenu", "PermissionViewMenu",
    "Group", "GroupModelView", "UserGroupModelView", "ApiKey", "ApiKeyView", "ApiKeyModelView",
    "MenuApi",
    "SecurityApi", "OpenApi", "SwaggerView",
}
FAB_READ_PERMISSIONS = {"can_list", "can_show", "can_read", "can_get", "can_info", "can_userinfo"}


def fab_roles_for(permission: str, view_menu: str) -> frozenset[str] | None:
    """Roles holding a permission on one of FAB's own view menus, or None if it is not FAB's."""
    if view_menu in FAB_SELF_SERVICE:
        return ALL if permission in FAB_SELF_SERVICE[view_menu] else frozenset()
    if view_menu == "UserDBModelView" and permission in ("can_userinfo",):
        return ALL
    if view_menu in ("MenuApi",) and permission == "can_get":
        return ALL
    if view_menu in ("OpenApi", "SwaggerView"):
        return ALL
    if view_menu in FAB_ADMIN_VIEW_MENUS:
        if permission in FAB_READ_PERMISSIONS and view_menu in (
                "UserDBModelView", "RoleModelView", "User", "Role", "Group", "GroupModelView",
                "UserGroupModelView"):
            return frozenset({ADMIN, AUDITOR})
        return frozenset({ADMIN})
    return None


def roles_for(permission: str, view_menu: str) -> frozenset[str] | None:
    """Roles holding ``permission`` on ``view_menu``; None when no rule covers it."""
    if view_menu in RESOURCES:
        return RESOURCES[view_menu].get(permission, frozenset())
    return fab_roles_for(permission, view_menu)
