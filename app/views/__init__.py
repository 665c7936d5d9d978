"""FAB views (thin; they call services) and register_views(), which adds every page and menu.

Pages never import the APIs (app/api) nor the APIs the pages: both call services."""

from flask_babel import lazy_gettext as _l


def register_views(appbuilder) -> None:
    """Add every page with translatable labels (the only place menus are defined)."""
    from app.views.audit import AuditEventView, AuditTrailView
    from app.views.reference import (
        AccountHolderView,
        FundView,
        OfficeView,
        PaymentMethodView,
        ReferenceValidatorView,
        SettingView,
        VatCodeView,
    )

    ref = "Reference data"
    ref_label = _l("Reference data")
    appbuilder.add_view(FundView, "Funds", label=_l("Funds"), icon="fa-folder-open",
                        category=ref, category_label=ref_label, category_icon="fa-book")
    appbuilder.add_view(AccountHolderView, "Account holders", label=_l("Account holders"),
                        icon="fa-address-book", category=ref)
    appbuilder.add_view(PaymentMethodView, "Payment methods", label=_l("Payment methods"),
                        icon="fa-credit-card", category=ref)
    appbuilder.add_view(VatCodeView, "VAT codes", label=_l("VAT codes"), icon="fa-percent",
                        category=ref)
    appbuilder.add_view(OfficeView, "Offices", label=_l("Offices"), icon="fa-building",
                        category=ref)
    appbuilder.add_view(ReferenceValidatorView, "Reference validators",
                        label=_l("Reference validators"), icon="fa-check-square", category=ref)
    appbuilder.add_view(SettingView, "System settings", label=_l("System settings"),
                        icon="fa-sliders", category=ref)

    from app.views.accounts import register_account_views

    register_account_views(appbuilder)

    from app.views.ledger import register_ledger_views

    register_ledger_views(appbuilder)

    from app.views.workflow import register_workflow_views

    register_workflow_views(appbuilder)

    from app.views.imports import register_import_views

    register_import_views(appbuilder)

    from app.views.suspense import register_suspense_views

    register_suspense_views(appbuilder)

    from app.views.notifications import register_notification_views
    from app.views.refunds import register_refund_views

    register_notification_views(appbuilder)
    register_refund_views(appbuilder)

    from app.views.gl import register_gl_views

    register_gl_views(appbuilder)

    from app.views.reports import register_report_views

    register_report_views(appbuilder)

    from app.views.cashups import register_cashup_views

    register_cashup_views(appbuilder)

    from app.views.card_payments import register_card_payment_views

    register_card_payment_views(appbuilder)

    from app.views.reconciliation import register_reconciliation_views

    register_reconciliation_views(appbuilder)
    from app.views.retention import register_retention_views

    register_retention_views(appbuilder)

    appbuilder.add_view(AuditTrailView, "Audit trail", label=_l("Audit trail"), icon="fa-history",
                        category="Audit", category_label=_l("Audit"), category_icon="fa-eye")
    appbuilder.add_view_no_menu(AuditEventView)  # each event's full record, and verify

    from app.views.home import DashboardView
    from app.views.security import register_security_views

    register_security_views(appbuilder)
    from app.views.signin import register_signin_views

    register_signin_views(appbuilder)
    from app.views.fund_groups import register_fund_group_views

    register_fund_group_views(appbuilder)
    appbuilder.add_view(DashboardView, "Dashboard", label=_l("Dashboard"), icon="fa-tachometer")

