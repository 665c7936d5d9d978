"""Configuration classes; every key can be set from the environment (documented in README.md)."""

import os
from datetime import date, timedelta

from flask_appbuilder.security.manager import AUTH_DB

BASE_DIR = os.path.abspath(os.path.dirname(__file__))
DEFAULT_SECRET_KEY = "dev-only-change-me"
#: The audit trail's key outside production (production refuses it): a fixed value, so a
#: development database's chain verifies from one run to the next.
DEFAULT_AUDIT_KEY = "dev-only-audit-key-not-secret-change-me"


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def _normalise_db_url(url: str) -> str:
    """Accept postgres:// and postgresql:// and use the psycopg 3 driver."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


class Config:
    """Defaults shared by every environment."""

    IMS_ENV = "development"
    SECRET_KEY = os.environ.get("SECRET_KEY", DEFAULT_SECRET_KEY)
    # HMAC key of the audit trail's hash chain and checkpoints. It must not be stored in the
    # database (whoever can write the database must not be able to recompute the chain) and
    # differs from SECRET_KEY. Earlier keys (comma-separated) still verify the events and
    # checkpoints they signed, after a change of key and `ims audit-rekey`.
    IMS_AUDIT_KEY = os.environ.get("IMS_AUDIT_KEY", DEFAULT_AUDIT_KEY)
    IMS_AUDIT_PREVIOUS_KEYS = os.environ.get("IMS_AUDIT_PREVIOUS_KEYS", "")
    # Key that encrypts the users' TOTP secrets in the database (empty: SECRET_KEY). After a
    # change, put the earlier key in IMS_TOTP_PREVIOUS_KEYS (comma-separated) so that existing
    # secrets still open (they are sealed again with the new key at their next set-up).
    IMS_TOTP_KEY = os.environ.get("IMS_TOTP_KEY", "")
    IMS_TOTP_PREVIOUS_KEYS = os.environ.get("IMS_TOTP_PREVIOUS_KEYS", "")
    SQLALCHEMY_DATABASE_URI = _normalise_db_url(
        os.environ.get("DATABASE_URL", "sqlite:///" + os.path.join(BASE_DIR, "instance", "ims.db"))
    )
    SQLALCHEMY_TRACK_MODIFICATIONS = False
    UPLOAD_FOLDER = os.path.join(BASE_DIR, "instance", "uploads")
    IMG_UPLOAD_FOLDER = UPLOAD_FOLDER
    SQLALCHEMY_ENGINE_OPTIONS = {"pool_pre_ping": True}

    APP_NAME = os.environ.get("IMS_COUNCIL_NAME", "Llanwern County Council") + " · IMS"
    COUNCIL_NAME = os.environ.get("IMS_COUNCIL_NAME", "Llanwern County Council")
    COUNCIL_VAT_NUMBER = os.environ.get("IMS_COUNCIL_VAT_NUMBER", "GB 123 4567 89")
    APP_THEME = ""
    FAB_BASE_TEMPLATE = "ims/base.html"
    FAB_INDEX_VIEW = "app.views.home.HomeView"
    FAB_SECURITY_MANAGER_CLASS = "app.security.manager.ImsSecurityManager"
    FAB_UPDATE_PERMS = False  # permissions are synced by `ims sync-roles`, never on boot
    FAB_CREATE_DB = False  # the schema comes from Alembic migrations only
    FAB_API_SWAGGER_UI = True
    FAB_ADD_SECURITY_API = True
    FAB_API_MAX_PAGE_SIZE = 1000

    AUTH_TYPE = AUTH_DB
    AUTH_ROLE_ADMIN = "Administrator"
    AUTH_ROLE_PUBLIC = "Public"
    AUTH_USER_REGISTRATION = False
    AUTH_RATE_LIMITED = True
    AUTH_RATE_LIMIT = os.environ.get("IMS_LOGIN_RATE_LIMIT", "10 per 20 second")
    RATELIMIT_ENABLED = True
    RATELIMIT_STORAGE_URI = os.environ.get("RATELIMIT_STORAGE_URI", "memory://")
    # memory:// counts per process: production accepts it only from a single-process app
    IMS_SINGLE_PROCESS = _env_bool("IMS_SINGLE_PROCESS", False)
    FAB_PASSWORD_COMPLEXITY_ENABLED = True
    FAB_PASSWORD_COMPLEXITY_VALIDATOR = "app.security.passwords.password_policy"

    JWT_ACCESS_TOKEN_EXPIRES = timedelta(minutes=int(os.environ.get("IMS_JWT_MINUTES", "30")))

    WTF_CSRF_ENABLED = True
    WTF_CSRF_TIME_LIMIT = None
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"

    BABEL_DEFAULT_LOCALE = "en"
    BABEL_DEFAULT_TIMEZONE = "Europe/London"
    BABEL_TRANSLATION_DIRECTORIES = os.path.join(BASE_DIR, "translations")
    LANGUAGES = {
        "en": {"flag": "gb", "name": "English"},
        "cy": {"flag": "wales", "name": "Cymraeg"},
    }

    # Business settings
    IMS_REFUND_ESCALATION = os.environ.get("IMS_REFUND_ESCALATION", "P3D")
    IMS_SUSPENSE_AGE_WEEKS = int(os.environ.get("IMS_SUSPENSE_AGE_WEEKS", "8"))
    # Four-eyes floor: suspense allocations above this many pounds need at least one approval,
    # whatever the approval limits say (refunds and write-offs always need one).
    IMS_SUSPENSE_APPROVAL_CEILING = os.environ.get("IMS_SUSPENSE_APPROVAL_CEILING", "10000.00")
    IMS_IMPORT_MAX_BYTES = int(os.environ.get("IMS_IMPORT_MAX_BYTES", str(50 * 1024 * 1024)))
    # The dashboard's figures are computed at most once a period per process (0: every time).
    IMS_DASHBOARD_CACHE_SECONDS = int(os.environ.get("IMS_DASHBOARD_CACHE_SECONDS", "60"))

    # Account-holder files (revenues systems): the largest accepted, and the drop folder `ims
    # tick` reads (one sub-folder per profile name; empty: no drop folder).
    IMS_ACCOUNT_SYNC_MAX_BYTES = int(os.environ.get("IMS_ACCOUNT_SYNC_MAX_BYTES",
                                                    str(512 * 1024 * 1024)))
    IMS_ACCOUNT_DROP_DIR = os.environ.get("IMS_ACCOUNT_DROP_DIR", "")
    IMS_PAYMENT_PROVIDER = os.environ.get("IMS_PAYMENT_PROVIDER", "simulator")
    GOVUK_PAY_API_KEY = os.environ.get("GOVUK_PAY_API_KEY", "")
    GOVUK_PAY_URL = os.environ.get("GOVUK_PAY_URL", "https://publicapi.payments.service.gov.uk")
    GOVUK_PAY_WEBHOOK_SECRET = os.environ.get("GOVUK_PAY_WEBHOOK_SECRET", "")
    # Card payments (issue 16): the simulator mounted at /simulator (never in production)
    IMS_SIMULATOR_URL = os.environ.get("IMS_SIMULATOR_URL", "")  # default IMS_BASE_URL/simulator
    IMS_SIMULATOR_API_KEY = os.environ.get("IMS_SIMULATOR_API_KEY", "simulator-api-key")
    IMS_SIMULATOR_WEBHOOK_SECRET = os.environ.get("IMS_SIMULATOR_WEBHOOK_SECRET",
                                                  "simulator-webhook-secret")
    IMS_SIMULATOR_WEBHOOKS = _env_bool("IMS_SIMULATOR_WEBHOOKS", True)
    IMS_SIMULATOR_WEBHOOK_URL = os.environ.get("IMS_SIMULATOR_WEBHOOK_URL", "")
    IMS_SIMULATOR_WEBHOOK_DELAY = float(os.environ.get("IMS_SIMULATOR_WEBHOOK_DELAY", "1.0"))
    IMS_CARD_PAYMENT_EXPIRY_MINUTES = int(os.environ.get("IMS_CARD_PAYMENT_EXPIRY_MINUTES", "90"))
    IMS_BASKET_MAX_ITEMS = int(os.environ.get("IMS_BASKET_MAX_ITEMS", "10"))
    IMS_CARD_ONLINE_METHOD = os.environ.get("IMS_CARD_ONLINE_METHOD", "WEB")
    IMS_CARD_MOTO_METHOD = os.environ.get("IMS_CARD_MOTO_METHOD", "TEL")
    # the address the provider sends payers back to (default IMS_BASE_URL)
    IMS_PUBLIC_BASE_URL = os.environ.get("IMS_PUBLIC_BASE_URL", "")
    # payment requests: hosts a caller's return_url may be on; the key that signs the return
    IMS_PAYMENT_RETURN_HOSTS = os.environ.get("IMS_PAYMENT_RETURN_HOSTS", "localhost,127.0.0.1")
    IMS_PAYMENT_REQUEST_SIGNING_KEY = os.environ.get("IMS_PAYMENT_REQUEST_SIGNING_KEY",
                                                     "dev-only-payment-request-key")
    IMS_PAYMENT_REQUEST_DAYS = int(os.environ.get("IMS_PAYMENT_REQUEST_DAYS", "28"))
    # The citizen payment portal (/pay): the council's name and logo in its header (default
    # IMS_COUNCIL_NAME; the logo an image URL, none by default); rate limits per address of
    # reference checks and of checkouts ("" for none).
    PORTAL_COUNCIL_NAME = os.environ.get("PORTAL_COUNCIL_NAME", "")
    PORTAL_LOGO_URL = os.environ.get("PORTAL_LOGO_URL", "")
    PORTAL_CHECK_RATE_LIMIT = os.environ.get("PORTAL_CHECK_RATE_LIMIT", "30 per minute")
    PORTAL_CHECKOUT_RATE_LIMIT = os.environ.get("PORTAL_CHECKOUT_RATE_LIMIT", "10 per minute")
    MAIL_SERVER = os.environ.get("MAIL_SERVER", "")
    MAIL_PORT = int(os.environ.get("MAIL_PORT", "25"))
    MAIL_USERNAME = os.environ.get("MAIL_USERNAME", "")
    MAIL_PASSWORD = os.environ.get("MAIL_PASSWORD", "")
    MAIL_USE_TLS = _env_bool("MAIL_USE_TLS", False)
    MAIL_FROM = os.environ.get("MAIL_FROM", "ims@localhost")
    IMS_BASE_URL = os.environ.get("IMS_BASE_URL", "http://127.0.0.1:5000")
    # The council's own bank account, the originator of Bacs refund payment files.
    IMS_BACS_ORIGINATOR_SORT_CODE = os.environ.get("IMS_BACS_ORIGINATOR_SORT_CODE", "40-50-60")
    IMS_BACS_ORIGINATOR_ACCOUNT = os.environ.get("IMS_BACS_ORIGINATOR_ACCOUNT", "12345678")
    IMS_BACS_ORIGINATOR_NAME = os.environ.get("IMS_BACS_ORIGINATOR_NAME", "")
    IMS_WORKER_INTERVAL = int(os.environ.get("IMS_WORKER_INTERVAL", "30"))
    # Between ticks the worker links newly written audit events into the chain this often (s).
    IMS_AUDIT_CHAIN_INTERVAL = float(os.environ.get("IMS_AUDIT_CHAIN_INTERVAL", "2"))
    # GL export batches run by `ims tick`: daily (up to yesterday), monthly (up to the end of
    # last month) or off; in this layout (app/services/gl_layouts.py)
    GL_EXPORT_SCHEDULE = os.environ.get("GL_EXPORT_SCHEDULE", "daily")
    GL_EXPORT_LAYOUT = os.environ.get("GL_EXPORT_LAYOUT", "generic_journal_csv")
    # Operations: /readyz wants a worker tick within this many seconds (0: no worker required)
    IMS_WORKER_STALE_SECONDS = int(os.environ.get("IMS_WORKER_STALE_SECONDS", "300"))
    # /metrics answers the bearer token, or addresses in these networks (comma-separated)
    IMS_METRICS_TOKEN = os.environ.get("IMS_METRICS_TOKEN", "")
    IMS_METRICS_ALLOW = [n.strip() for n in os.environ.get(
        "IMS_METRICS_ALLOW", "127.0.0.1/32,::1/128").split(",") if n.strip()]
    # Logs: "json" (one object a line, with request ids) or "text"; level; access log on/off
    IMS_LOG_FORMAT = os.environ.get("IMS_LOG_FORMAT", "text")
    IMS_LOG_LEVEL = os.environ.get("IMS_LOG_LEVEL", "")
    IMS_ACCESS_LOG = _env_bool("IMS_ACCESS_LOG", True)
    # Transaction and value dates accepted from people and files: from this date up to this many
    # days after today; anything else is refused as a typo (0202-01-31, 2206-01-31).
    IMS_EARLIEST_TRANSACTION_DATE = date.fromisoformat(
        os.environ.get("IMS_EARLIEST_TRANSACTION_DATE", "2000-01-01"))
    IMS_TRANSACTION_DAYS_AHEAD = int(os.environ.get("IMS_TRANSACTION_DAYS_AHEAD", "365"))

    # Sign-in (issue 20). Local passwords on or off (the login form and the API token by password;
    # service accounts keep API tokens); single sign-on by OpenID Connect when IMS_OIDC_CLIENT_ID
    # is set: the provider's discovery document (IMS_OIDC_METADATA_URL, or IMS_OIDC_ISSUER +
    # /.well-known/openid-configuration), the claim holding the user's groups, and JSON maps of
    # group -> role name(s) and group -> fund group name(s), applied again at every sign-in.
    IMS_LOCAL_PASSWORDS = _env_bool("IMS_LOCAL_PASSWORDS", True)
    IMS_OIDC_ISSUER = os.environ.get("IMS_OIDC_ISSUER", "")
    IMS_OIDC_METADATA_URL = os.environ.get("IMS_OIDC_METADATA_URL", "")
    IMS_OIDC_CLIENT_ID = os.environ.get("IMS_OIDC_CLIENT_ID", "")
    IMS_OIDC_CLIENT_SECRET = os.environ.get("IMS_OIDC_CLIENT_SECRET", "")
    IMS_OIDC_SCOPE = os.environ.get("IMS_OIDC_SCOPE", "openid email profile")
    IMS_OIDC_GROUPS_CLAIM = os.environ.get("IMS_OIDC_GROUPS_CLAIM", "groups")
    IMS_OIDC_ROLE_MAP = os.environ.get("IMS_OIDC_ROLE_MAP", "{}")
    IMS_OIDC_FUND_GROUP_MAP = os.environ.get("IMS_OIDC_FUND_GROUP_MAP", "{}")
    IMS_OIDC_LABEL = os.environ.get("IMS_OIDC_LABEL", "")  # the button's words (default ours)
    # create a user at their first single sign-on (else only users an Administrator linked)
    IMS_OIDC_CREATE_USERS = _env_bool("IMS_OIDC_CREATE_USERS", True)
    # Two-factor sign-in (TOTP) required of local users holding these roles (comma-separated;
    # empty: none). Production requires it by default of the roles that approve or move money;
    # development (demo users, benchmarks) and tests do not unless set. Wrong codes: after this
    # many in a row, codes are refused for some minutes.
    IMS_TOTP_REQUIRED_ROLES = os.environ.get("IMS_TOTP_REQUIRED_ROLES", "")
    IMS_TOTP_ISSUER = os.environ.get("IMS_TOTP_ISSUER", "")  # default IMS_COUNCIL_NAME
    IMS_TOTP_MAX_FAILURES = int(os.environ.get("IMS_TOTP_MAX_FAILURES", "5"))
    IMS_TOTP_LOCK_MINUTES = int(os.environ.get("IMS_TOTP_LOCK_MINUTES", "15"))
    # Accounts not signed in for this many days are disabled by `ims tick` (0: never)
    IMS_DORMANT_DAYS = int(os.environ.get("IMS_DORMANT_DAYS", "90"))
    # A browser session ends after this many minutes without a request (0: never)
    IMS_SESSION_IDLE_MINUTES = int(os.environ.get("IMS_SESSION_IDLE_MINUTES", "30"))


class DevelopmentConfig(Config):
    IMS_ENV = "development"


class TestingConfig(Config):
    IMS_ENV = "testing"
    TESTING = True
    SECRET_KEY = "testing-only-secret-key-0123456789abcdef"
    IMS_AUDIT_KEY = "testing-only-audit-key-0123456789abcdef"
    IMS_AUDIT_PREVIOUS_KEYS = ""
    SQLALCHEMY_DATABASE_URI = _normalise_db_url(
        os.environ.get("TEST_DATABASE_URL", "sqlite:///" + os.path.join(BASE_DIR, "instance", "test.db"))
    )
    WTF_CSRF_ENABLED = False
    AUTH_RATE_LIMIT = "1000 per second"
    IMS_WORKER_STALE_SECONDS = 0  # no worker runs beside the tests
    IMS_DASHBOARD_CACHE_SECONDS = 0  # tests read the figures just after posting

    IMS_SIMULATOR_WEBHOOKS = False  # tests deliver the simulator's webhooks when they want them
    # Tests sign in some thousand times; scrypt (the production default) costs ~0.1 s a check.
    # A cheap hash keeps the suite quick and changes nothing the tests look at.
    FAB_PASSWORD_HASH_METHOD = "pbkdf2:sha256:1000"
    AUTH_DB_FAKE_PASSWORD_HASH_CHECK = (
        "pbkdf2:sha256:1000$PEnwmCcY4MEwPN61$73a2c68ff2fc49c9b457d103739e5167ce856e7928d11c53360d2a87aebede55"
    )
    IMS_TOTP_REQUIRED_ROLES = ""  # two-factor sign-in is off in tests unless a test turns it on
    IMS_OIDC_CLIENT_ID = ""  # single sign-on only where a test configures its local provider


class ProductionConfig(Config):
    IMS_ENV = "production"
    IMS_LOG_FORMAT = os.environ.get("IMS_LOG_FORMAT", "json")
    IMS_AUDIT_KEY = os.environ.get("IMS_AUDIT_KEY", "")  # no default: refuses to start without
    SESSION_COOKIE_SECURE = True
    REMEMBER_COOKIE_SECURE = True
    REMEMBER_COOKIE_HTTPONLY = True
    PREFERRED_URL_SCHEME = "https"
    SQLALCHEMY_ENGINE_OPTIONS = {"pool_pre_ping": True, "pool_size": 10, "max_overflow": 20}
    IMS_PAYMENT_PROVIDER = os.environ.get("IMS_PAYMENT_PROVIDER", "govuk_pay")
    IMS_PAYMENT_REQUEST_SIGNING_KEY = os.environ.get("IMS_PAYMENT_REQUEST_SIGNING_KEY", "")
    IMS_TOTP_REQUIRED_ROLES = os.environ.get(
        "IMS_TOTP_REQUIRED_ROLES", "Head of Finance,Finance Manager,Income Clerk,Cashier")


CONFIGS = {
    "development": DevelopmentConfig,
    "testing": TestingConfig,
    "production": ProductionConfig,
}


def config_for(env: str | None = None):
    """The config class for IMS_ENV (development by default)."""
    return CONFIGS[(env or os.environ.get("IMS_ENV", "development")).lower()]
