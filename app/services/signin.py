"""Sign-in rules of issue 20: two-factor sign-in (TOTP and recovery codes), single sign-on
accounts and their mapped roles and groups, the sign-in history, dormant accounts, and each
user's till settings (default office, the payment methods they may take).

The security manager (app/security/manager.py) and the pages call these; every refusal is kept
in the sign-in history and written to the audit trail. Functions that end a unit of work of
their own (a sign-in step, an Administrator's reset) commit, like FAB's security manager.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import pyotp
from flask import current_app, has_request_context, request
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from app.domain.errors import ValidationError
from app.models.base import utcnow
from app.models.reference import Office, PaymentMethod
from app.models.signin import (
    SigninEvent,
    UserIdpGroup,
    UserPaymentMethod,
    UserRecoveryCode,
    UserSignin,
)
from app.security import secret_box
from app.services import audit

log = logging.getLogger(__name__)

RECOVERY_CODES = 10
#: sign-in methods as kept in the history
PASSWORD, SSO, TOTP, RECOVERY, API = "password", "sso", "totp", "recovery", "api"


class SigninRefused(Exception):
    """A sign-in step refused; ``message`` is English for logs, ``reason`` a short code."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


# --------------------------------------------------------------------------- helpers
def _user_model():
    return current_app.appbuilder.sm.user_model


def profile(session: Session, user_id: int, create: bool = False) -> UserSignin | None:
    row = session.get(UserSignin, int(user_id))
    if row is None and create:
        row = UserSignin(user_id=int(user_id), totp_failures=0, service_account=False)
        session.add(row)
        session.flush()
    return row


def _address() -> str | None:
    if not has_request_context():
        return None
    return (request.remote_addr or "")[:64] or None


def role_names(user) -> set[str]:
    return {r.name for r in (getattr(user, "roles", None) or [])}


def required_roles() -> set[str]:
    raw = current_app.config.get("IMS_TOTP_REQUIRED_ROLES") or ""
    if isinstance(raw, (list, tuple, set, frozenset)):
        return {str(r).strip() for r in raw if str(r).strip()}
    return {r.strip() for r in str(raw).split(",") if r.strip()}


def record_signin(session: Session, *, method: str, outcome: str, user=None,
                  username: str | None = None, detail: str | None = None,
                  commit: bool = True) -> None:
    """Keep one sign-in attempt in the history; a refusal is also audited."""
    name = (getattr(user, "username", None) or username or "")[:200] or None
    session.add(SigninEvent(user_id=getattr(user, "id", None), username=name, at=utcnow(),
                            method=method, outcome=outcome, address=_address(),
                            detail=(detail or None) and detail[:200]))
    if outcome != "ok":
        audit.record(session, "signin.refused", "User", getattr(user, "id", None),
                     after={"username": name, "method": method, "reason": detail,
                            "address": _address()},
                     actor=(getattr(user, "username", None) or "anonymous")[:100])
    if commit:
        session.commit()


def recent_signins(session: Session, user_id: int, limit: int = 20) -> list[SigninEvent]:
    return list(session.scalars(select(SigninEvent).where(SigninEvent.user_id == int(user_id))
                                .order_by(SigninEvent.at.desc(), SigninEvent.id.desc())
                                .limit(limit)))


# --------------------------------------------------------------------------- who needs what
def is_sso_user(session: Session, user) -> bool:
    p = profile(session, user.id)
    return bool(p is not None and p.sso_subject)


def is_service_account(session: Session, user) -> bool:
    p = profile(session, user.id)
    return bool(p is not None and p.service_account)


def totp_enabled(session: Session, user) -> bool:
    p = profile(session, user.id)
    return bool(p is not None and p.totp_enabled_at and p.totp_secret)


def totp_required(session: Session, user) -> bool:
    """Whether this local user must give a second factor at sign-in: they set one up, or one of
    their roles requires it (IMS_TOTP_REQUIRED_ROLES). Single sign-on users sign in at their
    identity provider (which does its own second factor); service accounts use API tokens."""
    p = profile(session, user.id)
    if p is not None and (p.sso_subject or p.service_account):
        return False
    if p is not None and p.totp_enabled_at and p.totp_secret:
        return True
    return bool(role_names(user) & required_roles())


def password_token_refusal(session: Session, user) -> str | None:
    """Why this user may not get an API token with a password (None: they may).

    Users who must use a second factor or single sign-on sign in through the browser; only
    service accounts (and users needing neither) get tokens by password."""
    if user is None:
        return None
    if is_service_account(session, user):
        return None
    if is_sso_user(session, user):
        return "sso_user"
    if not current_app.config.get("IMS_LOCAL_PASSWORDS", True):
        return "local_passwords_off"
    if totp_required(session, user):
        return "two_factor_user"
    return None


def form_login_refusal(session: Session, user) -> str | None:
    """Why this user may not sign in to the pages with a password (None: they may)."""
    if not current_app.config.get("IMS_LOCAL_PASSWORDS", True):
        return "local_passwords_off"
    if is_sso_user(session, user):
        return "sso_user"
    if is_service_account(session, user):
        return "service_account"
    return None


# --------------------------------------------------------------------------- TOTP
def _issuer() -> str:
    return current_app.config.get("IMS_TOTP_ISSUER") or current_app.config.get(
        "COUNCIL_NAME") or "IMS"


def start_totp_setup(session: Session, user) -> str:
    """A new secret for ``user`` to add to their authenticator app (not in force until
    confirmed with a code). Returns the base32 secret."""
    p = profile(session, user.id, create=True)
    if p.totp_enabled_at and p.totp_secret:
        raise ValidationError("Two-factor sign-in is already set up.",
                              {"code": ["Two-factor sign-in is already set up."]})
    secret = pyotp.random_base32()
    p.totp_secret = secret_box.seal(secret)  # encrypted at rest (app/security/secret_box.py)
    p.totp_enabled_at = None
    p.totp_last_step = None
    session.commit()
    return secret


def totp_secret(p: UserSignin | None) -> str | None:
    """The user's TOTP secret in plain text (it is stored sealed), or None."""
    return secret_box.unseal(p.totp_secret) if p is not None else None


def provisioning_uri(user, secret: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=user.username, issuer_name=_issuer())


def qr_code_data_uri(uri: str) -> str:
    """The otpauth address as a QR code: an SVG drawn on the server (segno, pure Python), as a
    data: URI for an <img> (the page's Content-Security-Policy allows data: images)."""
    import segno

    return segno.make(uri, error="m").svg_data_uri(border=4, dark="#0b0c0c", light="#ffffff",
                                                    omitsize=True)


def _step(at: datetime | None = None) -> int:
    return int((at or utcnow()).timestamp()) // 30


def _matching_step(secret: str | None, code: str) -> int | None:
    """The time step (now, or one either side for clock drift) whose code is ``code``."""
    code = "".join((code or "").split())
    if not secret or not code.isdigit() or len(code) != 6:
        return None
    totp = pyotp.TOTP(secret)
    now = _step()
    for step in (now, now - 1, now + 1):
        if secrets.compare_digest(totp.at(step * 30), code):
            return step
    return None


def confirm_totp_setup(session: Session, user, code: str) -> list[str]:
    """Turn two-factor sign-in on once the user proves their app shows the right code; returns
    the new recovery codes (shown once). Wrong code: ValidationError, nothing changes."""
    p = profile(session, user.id)
    if p is None or not p.totp_secret or p.totp_enabled_at:
        raise ValidationError("Start setting up two-factor sign-in first.",
                              {"code": ["Start setting up two-factor sign-in first."]})
    step = _matching_step(totp_secret(p), code)
    if step is None:
        session.rollback()
        raise ValidationError("The code is not correct.", {"code": ["The code is not correct."]})
    p.totp_enabled_at = utcnow()
    p.totp_last_step = step
    p.totp_failures = 0
    p.totp_locked_until = None
    codes = _new_recovery_codes(session, user.id)
    audit.record(session, "signin.totp_enabled", "User", user.id,
                 after={"username": user.username})
    session.commit()
    return codes


def _hash_code(code: str) -> str:
    return hashlib.sha256("".join(code.split()).lower().replace("-", "").encode()).hexdigest()


def _new_recovery_codes(session: Session, user_id: int) -> list[str]:
    session.execute(delete(UserRecoveryCode).where(UserRecoveryCode.user_id == int(user_id)))
    codes = []
    for _ in range(RECOVERY_CODES):
        raw = secrets.token_hex(5)  # 40 random bits each, shown as xxxxx-xxxxx
        codes.append(f"{raw[:5]}-{raw[5:]}")
        session.add(UserRecoveryCode(user_id=int(user_id), code_hash=_hash_code(raw)))
    return codes


def new_recovery_codes(session: Session, user) -> list[str]:
    """Replace the user's recovery codes (the old ones stop working)."""
    if not totp_enabled(session, user):
        raise ValidationError("Set up two-factor sign-in first.")
    codes = _new_recovery_codes(session, user.id)
    audit.record(session, "signin.recovery_codes", "User", user.id,
                 after={"username": user.username})
    session.commit()
    return codes


def unused_recovery_codes(session: Session, user_id: int) -> int:
    return session.scalar(select(func.count(UserRecoveryCode.id)).where(
        UserRecoveryCode.user_id == int(user_id), UserRecoveryCode.used_at.is_(None))) or 0


def _aware(value: datetime | None) -> datetime | None:
    from datetime import timezone

    return value if value is None or value.tzinfo else value.replace(tzinfo=timezone.utc)


def check_second_factor(session: Session, user, code: str) -> str:
    """Check a TOTP code or a recovery code at sign-in. Returns the method used ("totp" or
    "recovery"); raises SigninRefused (recorded and audited) otherwise. After
    IMS_TOTP_MAX_FAILURES wrong codes in a row, every code is refused for
    IMS_TOTP_LOCK_MINUTES."""
    from app.services.locking import for_update

    p = session.scalar(for_update(session, select(UserSignin).where(UserSignin.user_id == user.id)))
    if p is None or not p.totp_secret or not p.totp_enabled_at:
        raise SigninRefused("no_second_factor", "Two-factor sign-in is not set up.")
    now = utcnow()
    if p.totp_locked_until is not None and _aware(p.totp_locked_until) > now:
        record_signin(session, method=TOTP, outcome="refused", user=user, detail="locked")
        raise SigninRefused("locked", "Too many wrong codes; wait and try again.")
    cleaned = "".join((code or "").split()).lower()
    method = TOTP
    ok = False
    reason = "wrong_code"
    if cleaned.isdigit() and len(cleaned) == 6:
        step = _matching_step(totp_secret(p), cleaned)
        if step is not None and (p.totp_last_step is None or step > p.totp_last_step):
            p.totp_last_step = step
            ok = True
        elif step is not None:
            reason = "code_reused"
    else:
        method = RECOVERY
        row = session.scalar(for_update(session, select(UserRecoveryCode).where(
            UserRecoveryCode.user_id == user.id,
            UserRecoveryCode.code_hash == _hash_code(cleaned))))
        if row is not None and row.used_at is None:
            row.used_at = now
            ok = True
        elif row is not None:
            reason = "recovery_code_reused"
    if ok:
        p.totp_failures = 0
        p.totp_locked_until = None
        record_signin(session, method=method, outcome="ok", user=user, commit=False)
        if method == RECOVERY:
            audit.record(session, "signin.recovery_used", "User", user.id,
                         after={"username": user.username,
                                "left": unused_recovery_codes(session, user.id)},
                         actor=user.username)
        session.commit()
        return method
    p.totp_failures = (p.totp_failures or 0) + 1
    if p.totp_failures >= int(current_app.config.get("IMS_TOTP_MAX_FAILURES", 5)):
        p.totp_locked_until = now + timedelta(
            minutes=int(current_app.config.get("IMS_TOTP_LOCK_MINUTES", 15)))
        p.totp_failures = 0
        reason += ",locked"
    record_signin(session, method=method, outcome="refused", user=user, detail=reason)
    raise SigninRefused(reason.split(",")[0], "The code is not correct.")


def reset_totp(session: Session, user_id: int, actor: str) -> None:
    """An Administrator's reset: the user's second factor and recovery codes go; they set up a
    new one at their next sign-in (when a role requires it). Audited."""
    user = session.get(_user_model(), int(user_id))
    if user is None:
        raise ValidationError("Unknown user.")
    p = profile(session, user.id)
    if p is not None:
        p.totp_secret = None
        p.totp_enabled_at = None
        p.totp_last_step = None
        p.totp_failures = 0
        p.totp_locked_until = None
    session.execute(delete(UserRecoveryCode).where(UserRecoveryCode.user_id == user.id))
    audit.record(session, "signin.totp_reset", "User", user.id,
                 after={"username": user.username}, actor=actor)
    session.commit()


# --------------------------------------------------------------------------- single sign-on
def _json_map(name: str) -> dict[str, list[str]]:
    raw = current_app.config.get(name) or "{}"
    try:
        data = raw if isinstance(raw, dict) else json.loads(raw)
    except ValueError:
        log.error("%s is not JSON; no mapping applied", name)
        return {}
    if not isinstance(data, dict):
        return {}
    out = {}
    for key, value in data.items():
        values = value if isinstance(value, list) else [value]
        out[str(key)] = [str(v) for v in values if isinstance(v, str) and v]
    return out


def claimed_groups(claims: dict) -> list[str]:
    raw = claims.get(current_app.config.get("IMS_OIDC_GROUPS_CLAIM") or "groups")
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list):
        return []
    return sorted({g.strip()[:200] for g in raw if isinstance(g, str) and g.strip()})


def mapped_roles(groups: list[str]) -> list[str]:
    mapping = _json_map("IMS_OIDC_ROLE_MAP")
    return sorted({role for g in groups for role in mapping.get(g, [])})


def mapped_fund_groups(groups: list[str]) -> list[str]:
    """The fund-group names the identity provider's groups map to (IMS_OIDC_FUND_GROUP_MAP)."""
    mapping = _json_map("IMS_OIDC_FUND_GROUP_MAP")
    return sorted({name for g in groups for name in mapping.get(g, [])})


def idp_groups(session: Session, user_id: int) -> list[str]:
    """The groups the identity provider claimed at the user's last single sign-on."""
    return list(session.scalars(select(UserIdpGroup.name).where(
        UserIdpGroup.user_id == int(user_id)).order_by(UserIdpGroup.name)))


def idp_fund_groups(session: Session, user_id: int) -> list[str]:
    """The fund-group names the user's claimed groups map to now (for the fund-group scoping)."""
    return mapped_fund_groups(idp_groups(session, user_id))


#: called at every single sign-on, in its transaction, before it commits:
#: fn(session, user, claimed_groups, fund_group_names). The fund-group scoping registers one to
#: give the user the fund groups IMS_OIDC_FUND_GROUP_MAP maps their claimed groups to.
_SSO_HOOKS: list = []


def register_sso_hook(fn) -> None:
    if fn not in _SSO_HOOKS:
        _SSO_HOOKS.append(fn)


@dataclass
class SsoResult:
    user: object
    created: bool
    roles: list[str]
    groups: list[str]


def _clean_name(value, limit: int) -> str:
    return (value if isinstance(value, str) else "").strip()[:limit]


def sso_sign_in(session: Session, claims: dict) -> SsoResult:
    """Find or create the user of validated ID-token claims and apply the role and group
    mappings to them (again at every sign-in). Raises SigninRefused (recorded, audited) for an
    unknown user when users are not created, a disabled user, or no mapped role."""
    sm = current_app.appbuilder.sm
    issuer, sub = _clean_name(claims.get("iss"), 150), _clean_name(claims.get("sub"), 140)
    if not issuer or not sub:
        record_signin(session, method=SSO, outcome="refused", detail="no_subject")
        raise SigninRefused("no_subject", "The identity provider gave no subject.")
    subject = f"{issuer}|{sub}"
    email = _clean_name(claims.get("email"), 64)
    username = _clean_name(claims.get("preferred_username"), 64) or email or sub[:64]
    groups = claimed_groups(claims)
    roles = mapped_roles(groups)
    User = sm.user_model
    p = session.scalar(select(UserSignin).where(UserSignin.sso_subject == subject))
    user = session.get(User, p.user_id) if p is not None else None
    created = False
    if user is None:
        # an existing local user of that name is linked only if not yet linked to another
        # subject: an Administrator creates the user, the first sign-on links them
        user = session.scalar(select(User).where(func.lower(User.username) == username.lower()))
        if user is not None:
            linked = profile(session, user.id)
            if linked is not None and linked.sso_subject and linked.sso_subject != subject:
                record_signin(session, method=SSO, outcome="refused", user=user,
                              detail="linked_to_another_subject")
                raise SigninRefused("linked_elsewhere", "This user is linked to another account.")
    if not roles:
        record_signin(session, method=SSO, outcome="refused", user=user, username=username,
                      detail="no_mapped_role")
        raise SigninRefused("no_role", "None of your groups gives a role in the IMS.")
    if user is not None and not user.active:
        record_signin(session, method=SSO, outcome="refused", user=user, detail="inactive")
        raise SigninRefused("inactive", "This account is disabled.")
    role_objs = [r for r in (sm.find_role(name) for name in roles) if r is not None]
    if not role_objs:
        record_signin(session, method=SSO, outcome="refused", user=user, username=username,
                      detail="unknown_roles")
        raise SigninRefused("no_role", "None of your groups gives a role in the IMS.")
    if user is None:
        if not current_app.config.get("IMS_OIDC_CREATE_USERS", True):
            record_signin(session, method=SSO, outcome="refused", username=username,
                          detail="unknown_user")
            raise SigninRefused("unknown_user", "There is no IMS user for this account.")
        if email and session.scalar(select(User.id).where(User.email == email)) is not None:
            record_signin(session, method=SSO, outcome="refused", username=username,
                          detail="email_of_another_user")
            raise SigninRefused("email_in_use", "Another user has this e-mail address.")
        user = User(username=username, email=email or f"{username}@sso.invalid",
                    first_name=_clean_name(claims.get("given_name"), 64) or username,
                    last_name=_clean_name(claims.get("family_name"), 64) or "-",
                    active=True, password=None)
        session.add(user)
        created = True
    if email and not created and user.email != email:
        clash = session.scalar(select(User.id).where(User.email == email, User.id != user.id))
        if clash is None:
            user.email = email
    user.roles = role_objs
    session.flush()
    p = profile(session, user.id, create=True)
    p.sso_subject = subject
    p.totp_secret, p.totp_enabled_at = None, None
    user.password = None  # single sign-on users have no password here
    session.execute(delete(UserIdpGroup).where(UserIdpGroup.user_id == user.id))
    now = utcnow()
    for name in groups:
        session.add(UserIdpGroup(user_id=user.id, name=name, claimed_at=now))
    for hook in list(_SSO_HOOKS):
        hook(session, user, groups, mapped_fund_groups(groups))
    user.last_login = datetime.now()
    user.login_count = (user.login_count or 0) + 1
    user.fail_login_count = 0
    audit.record(session, "signin.sso", "User", user.id,
                 after={"username": user.username, "roles": [r.name for r in role_objs],
                        "groups": groups, "fund_groups": mapped_fund_groups(groups),
                        "created": created}, actor=user.username)
    record_signin(session, method=SSO, outcome="ok", user=user, commit=False)
    session.commit()
    return SsoResult(user=user, created=created, roles=[r.name for r in role_objs],
                     groups=groups)


# --------------------------------------------------------------------------- dormant accounts
def disable_dormant(session: Session, days: int | None = None, now: datetime | None = None
                    ) -> list[str]:
    """Disable active users not signed in (nor created) within ``days`` (IMS_DORMANT_DAYS).
    Audited per user. Returns the usernames disabled."""
    days = int(current_app.config.get("IMS_DORMANT_DAYS", 90) if days is None else days)
    if days <= 0:
        return []
    User = _user_model()
    # FAB writes last_login and created_on in local naive time
    cutoff = (now or datetime.now()) - timedelta(days=days)
    last = func.coalesce(User.last_login, User.created_on)
    users = list(session.scalars(select(User).where(User.active.is_(True), last < cutoff)
                                 .order_by(User.id)))
    names = []
    for user in users:
        user.active = False
        audit.record(session, "user.dormant_disabled", "User", user.id,
                     after={"username": user.username, "days": days,
                            "last_login": user.last_login or user.created_on})
        names.append(user.username)
    for user in users:
        session.execute(_end_sessions(user.id))
    session.commit()
    return names


def _end_sessions(user_id: int):
    from app.models.security import UserSession

    return delete(UserSession).where(UserSession.user_id == int(user_id))


def _dormant_job() -> str | None:
    from app.extensions import db

    names = disable_dormant(db.session)
    return f"{len(names)} dormant account(s) disabled" if names else None


def _register() -> None:
    from app.services.jobs import register_job

    register_job("dormant-accounts", _dormant_job)


_register()


# --------------------------------------------------------------------------- till settings
def _user_id_of(session: Session, username: str | None) -> int | None:
    if not username:
        return None
    User = _user_model()
    return session.scalar(select(User.id).where(User.username == username))


def receipt_rules(session: Session, username: str | None) -> tuple[set[str] | None, str | None]:
    """(the payment methods ``username`` may take or None for any, their default office), in
    one small query: what a receipt checks for the user taking it."""
    if not username:
        return None, None
    from app.services import sharedcache

    allowed, office = sharedcache.get(session, ("receipt_rules", username),
                                      lambda: _read_receipt_rules(session, username))
    return (set(allowed) if allowed is not None else None), office


def _read_receipt_rules(session: Session, username: str) -> tuple[frozenset[str] | None,
                                                                  str | None]:
    User = _user_model()
    rows = session.execute(select(UserSignin.default_office_code,
                                  UserPaymentMethod.payment_method_code)
                           .select_from(User)
                           .outerjoin(UserSignin, UserSignin.user_id == User.id)
                           .outerjoin(UserPaymentMethod, UserPaymentMethod.user_id == User.id)
                           .where(User.username == username)).all()
    if not rows:
        return None, None
    codes = frozenset(code for _, code in rows if code is not None)
    return codes or None, rows[0][0]


def allowed_method_codes(session: Session, username: str | None) -> set[str] | None:
    """The payment methods ``username`` may take (None: no restriction)."""
    user_id = _user_id_of(session, username)
    if user_id is None:
        return None
    codes = set(session.scalars(select(UserPaymentMethod.payment_method_code).where(
        UserPaymentMethod.user_id == user_id)))
    return codes or None


def default_office(session: Session, username: str | None) -> str | None:
    user_id = _user_id_of(session, username)
    if user_id is None:
        return None
    p = profile(session, user_id)
    return p.default_office_code if p is not None else None


def till_settings(session: Session, user_id: int) -> dict:
    p = profile(session, user_id)
    return {"default_office_code": p.default_office_code if p is not None else None,
            "service_account": bool(p is not None and p.service_account),
            "payment_method_codes": sorted(session.scalars(
                select(UserPaymentMethod.payment_method_code).where(
                    UserPaymentMethod.user_id == int(user_id))))}


def set_user_settings(session: Session, user_id: int, *, default_office_code: str | None,
                      payment_method_codes: list[str], service_account: bool,
                      actor: str) -> None:
    """An Administrator sets a user's default office, the payment methods they may take (none:
    every method) and whether the account is an integration's service account. Audited."""
    user = session.get(_user_model(), int(user_id))
    if user is None:
        raise ValidationError("Unknown user.")
    errors: dict[str, list[str]] = {}
    office = (default_office_code or "").strip().upper() or None
    if office and session.scalar(select(Office.id).where(Office.code == office)) is None:
        errors.setdefault("default_office_code", []).append(f"Unknown office {office!r}.")
    codes = sorted({(c or "").strip().upper() for c in payment_method_codes if (c or "").strip()})
    known = set(session.scalars(select(PaymentMethod.code).where(PaymentMethod.code.in_(codes))))
    for code in codes:
        if code not in known:
            errors.setdefault("payment_method_codes", []).append(
                f"Unknown payment method {code!r}.")
    if errors:
        raise ValidationError("The settings were not saved: " + "; ".join(
            f"{k}: {v[0]}" for k, v in errors.items()), errors)
    before = till_settings(session, user.id)
    p = profile(session, user.id, create=True)
    p.default_office_code = office
    p.service_account = bool(service_account)
    session.execute(delete(UserPaymentMethod).where(UserPaymentMethod.user_id == user.id))
    for code in codes:
        session.add(UserPaymentMethod(user_id=user.id, payment_method_code=code))
    after = {"default_office_code": office, "service_account": bool(service_account),
             "payment_method_codes": codes}
    if before != after:
        audit.record(session, "user.settings", "User", user.id,
                     before={"username": user.username, **before},
                     after={"username": user.username, **after}, actor=actor)
    session.commit()


def clear_lock(session: Session, user_id: int) -> None:
    session.execute(update(UserSignin).where(UserSignin.user_id == int(user_id))
                    .values(totp_failures=0, totp_locked_until=None))
