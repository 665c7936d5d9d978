"""SQLAlchemy 2.0 models on flask_appbuilder.Model; importing this package registers every table."""

from app.models import sqlite  # noqa: F401  (SQLite: foreign keys, busy timeout, balance at commit)
from app.models.accounts import (  # noqa: F401
    AccountHolderProfile,
    AccountSync,
    AccountSyncChange,
    AccountSyncRow,
    MigrationRecord,
)
from app.models.audit import AuditChain, AuditCheckpoint, AuditEvent  # noqa: F401
from app.models.cache import CacheVersion  # noqa: F401
from app.models.cashup import (  # noqa: F401
    CashUp,
    CashUpCheque,
    CashUpLine,
    CashUpReceipt,
    CashUpTemplateRow,
    ExpectedBankCredit,
)

from app.models.card_payment import CardPayment, PaymentRequest  # noqa: F401
from app.models.ddl import install_database_objects  # noqa: F401,E402
from app.models.fund_group import (  # noqa: F401
    FundGroup,
    UserFundAccess,
    fund_group_fund,
    user_fund_group,
)
from app.models.gl import (  # noqa: F401
    AccountingPeriod,
    GlExportBatch,
    GlExportLine,
    GlLayout,
    PeriodRequest,
)
from app.models.income_day import (  # noqa: F401
    IncomeDay,
    IncomeDayChange,
    IncomeDayReceipts,
    IncomeDaySummarised,
)
from app.models.imports import (  # noqa: F401
    BankProfile,
    FundReferencePattern,
    ImportBatch,
    ImportStatusEvent,
    ProcessingRule,
)
from app.models.ledger import (  # noqa: F401
    IdempotencyKey,
    LedgerLine,
    NumberSequence,
    PostingGroup,
    Transaction,
    TransactionNarrative,
)
from app.models.notification import Notification, NotificationFund  # noqa: F401,E402
from app.models.operations import WorkerHeartbeat  # noqa: F401
from app.models.personal import LegalHold, PersonalData  # noqa: F401
from app.models.portal import PortalBasket  # noqa: F401
from app.models.reference import (  # noqa: F401
    AccountHolder,
    Fund,
    Office,
    PaymentMethod,
    ReferenceValidator,
    Setting,
    VatCode,
)
from app.models.reconciliation import (  # noqa: F401,E402
    BankAccount,
    BankStatement,
    CardSettlement,
    ReconMatch,
    ReconSignOff,
    StatementLine,
)
from app.models.refund import Refund, RefundPaymentRun  # noqa: F401,E402
from app.models.security import UserSession  # noqa: F401
from app.models.signin import (  # noqa: F401
    SigninEvent,
    UserIdpGroup,
    UserPaymentMethod,
    UserRecoveryCode,
    UserSignin,
)
from app.models.suspense import SuspenseItem  # noqa: F401
from app.models.suspense_work import (  # noqa: F401
    SuspenseAgeingRun,
    SuspenseAllocation,
    SuspenseAllocationLine,
    SuspenseNote,
    WriteOff,
)
from app.models.workflow import (  # noqa: F401
    ApprovalLimit,
    ConfigProposal,
    WorkflowDefinition,
    WorkflowEvent,
    WorkflowInstance,
    WorkflowTask,
)
