"""API helpers: the 422 error shape, domain errors to HTTP, money fields in schemas."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from functools import wraps

from flask import jsonify, request
from flask_appbuilder.api import ModelRestApi
from marshmallow import ValidationError as MMValidationError
from marshmallow import fields

from app.domain.errors import DomainError, ValidationError
from app.domain.ids import MAX_ID
from app.domain.money import Money
from app.security.permissions import METHOD_PERMISSIONS


def error_response(exc: DomainError):
    resp = jsonify(exc.to_dict())
    resp.status_code = exc.status
    return resp


def domain_errors(f):
    """Turn DomainError into its HTTP status with {"message", "errors"}."""

    @wraps(f)
    def wrapper(*args, **kwargs):
        try:
            return f(*args, **kwargs)
        except DomainError as exc:
            from app.extensions import db

            db.session.rollback()
            return error_response(exc)

    return wrapper


class BadArgument(DomainError):
    """A query argument that does not parse or is out of range (400)."""

    status = 400


def page_arguments(*, first: int, default_size: int, max_size: int) -> tuple[int, int]:
    """``page`` (numbered from ``first``) and ``page_size`` of a list endpoint's query string,
    or BadArgument: a page beyond MAX_ID would ask the database for an OFFSET it cannot hold."""

    def whole(name: str, default: int, low: int, high: int) -> int:
        raw = request.args.get(name)
        if raw is None or raw == "":
            return default
        raw = raw.strip()
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 10 and low <= int(raw) <= high):
            raise BadArgument(f"{name} must be a whole number from {low} to {high}.",
                              {name: [f"A whole number from {low} to {high}."]})
        return int(raw)

    return (whole("page", first, first, MAX_ID),
            whole("page_size", default_size, 1, max_size))


def normalise_422(message) -> tuple[str, dict]:
    if isinstance(message, dict):
        errors = {k: (v if isinstance(v, list) else [str(v)]) for k, v in message.items()}
        summary = "; ".join(f"{k}: {v[0] if isinstance(v, list) and v else v}"
                            for k, v in errors.items())
        return f"Validation failed: {summary}", errors
    return str(message), {}


class ImsModelRestApi(ModelRestApi):
    """ModelRestApi with can_read/can_write permissions and 422s shaped as API.md says."""

    method_permission_name = METHOD_PERMISSIONS
    base_permissions = ["can_read", "can_write"]
    exclude_route_methods = {"delete"}
    allow_browser_login = True

    def post_headless(self):
        try:
            return super().post_headless()
        except DomainError as exc:
            self.datamodel.session.rollback()
            return error_response(exc)

    def put_headless(self, pk):
        try:
            return super().put_headless(pk)
        except DomainError as exc:
            self.datamodel.session.rollback()
            return error_response(exc)

    def response_422(self, message=None):
        msg, errors = normalise_422(message)
        return self.response(422, message=msg, errors=errors)


class MoneyField(fields.Field):
    """Pence in the database, "12.34" on the wire; floats and 3 decimal places are refused."""

    def _serialize(self, value, attr, obj, **kwargs):
        return None if value is None else str(Money(int(value)))

    def _deserialize(self, value, attr, data, **kwargs):
        if value is None:
            return None
        if not isinstance(value, str):
            raise MMValidationError('Give money as a decimal string, e.g. "12.34".')
        try:
            return Money.parse(value, field=attr or "amount").pence
        except ValidationError as exc:
            raise MMValidationError(next(iter(exc.errors.values()))[0] if exc.errors
                                    else exc.message) from None


class RateField(fields.Field):
    """A VAT rate as a decimal string fraction, 0 <= rate < 1."""

    def _serialize(self, value, attr, obj, **kwargs):
        """"0.20" for 20%; more places only when the rate has them ("0.175")."""
        if value is None:
            return None
        rate = Decimal(value)
        return f"{rate:.2f}" if rate == rate.quantize(Decimal("0.01")) else str(rate.normalize())

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, str):
            raise MMValidationError('Give the rate as a decimal string fraction, e.g. "0.20".')
        try:
            rate = Decimal(value.strip())
        except InvalidOperation:
            raise MMValidationError("Not a valid rate.") from None
        if not rate.is_finite() or rate < 0 or rate >= 1:
            raise MMValidationError("The rate is a fraction from 0 up to (not including) 1, e.g. 0.20.")
        if rate.as_tuple().exponent < -4:
            raise MMValidationError("At most four decimal places.")
        return rate
