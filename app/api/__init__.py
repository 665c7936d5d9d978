"""REST APIs (FAB BaseApi / ModelRestApi) under /api/v1, per API.md.

APIs never import the pages (app/views) nor the pages the APIs: both call services."""


def register_apis(appbuilder) -> None:
    """Add every API (after the pages: menus are built by app.views.register_views)."""
    from app.api.accounts import (
        AccountHolderProfileApi,
        AccountHolderSearchApi,
        AccountSyncApi,
        ConfigurationBundleApi,
    )
    from app.api.audit import AuditApi
    from app.api.cashups import CashUpApi
    from app.api.gl import AccountingPeriodApi, GLExportApi
    from app.api.fund_groups import FundGroupApi
    from app.api.imports import ImportApi, SuspenseApi
    from app.api.ledger import APIS as LEDGER_APIS
    from app.api.reference import (
        AccountHolderApi,
        FundApi,
        OfficeApi,
        PaymentMethodApi,
        ReferenceValidatorApi,
        VatCodeApi,
    )
    from app.api.payment_requests import PaymentRequestApi
    from app.api.reconciliation import BankAccountApi, ReconciliationApi
    from app.api.refunds import RefundApi
    from app.api.reports import APIS as REPORT_APIS
    from app.api.retention import RetentionApi, SubjectAccessApi
    from app.api.suspense import SuspenseAllocationApi
    from app.api.workflow import ApprovalLimitApi, ConfigProposalApi, TaskApi, WorkflowApi
    from app.api.writeoffs import WriteOffApi

    for api in (*LEDGER_APIS, TaskApi, WorkflowApi, ApprovalLimitApi, ConfigProposalApi,
                ImportApi, SuspenseApi, SuspenseAllocationApi, WriteOffApi, RefundApi,
                FundApi, PaymentMethodApi, VatCodeApi, OfficeApi, ReferenceValidatorApi,
                AccountHolderApi, AuditApi, GLExportApi, AccountingPeriodApi, *REPORT_APIS, CashUpApi,
                AccountSyncApi, AccountHolderProfileApi, AccountHolderSearchApi,
                ConfigurationBundleApi, PaymentRequestApi, ReconciliationApi, RetentionApi,
                SubjectAccessApi, FundGroupApi, BankAccountApi):
        appbuilder.add_api(api)
