"""Reference-data resources: /api/v1/funds/, payment-methods, vat-codes, reference-validators, accounts."""

from __future__ import annotations

from marshmallow import ValidationError as MMValidationError
from marshmallow import fields, validate
from marshmallow_sqlalchemy import SQLAlchemyAutoSchema

from app.api.base import ImsModelRestApi, MoneyField, RateField
from app.domain.errors import ValidationError
from app.domain.money import parse_rate
from app.extensions import db
from app.models.reference import (
    CHARACTER_CLASSES,
    CHECK_DIGIT_SCHEMES,
    METHOD_KINDS,
    AccountHolder,
    Fund,
    Office,
    PaymentMethod,
    ReferenceValidator,
    VatCode,
)
from app.services.reference import check_reference_row
from app.models.interface import datamodel


class VatRateField(RateField):
    """A VAT rate read by the strict parser (money.parse_rate): "0.20", not 0.2, " 0.20" or "2e-1"."""

    def _deserialize(self, value, attr, data, **kwargs):
        try:
            return parse_rate(value, field=attr or "rate")
        except ValidationError as exc:
            raise MMValidationError(next(iter(exc.errors.values()))[0]) from None


class _Base(SQLAlchemyAutoSchema):
    """Types and required fields only: the rules (codes, lengths, ranges, codes in use, unknown
    references, duplicates) are the service's, checked in pre_add/pre_update like the forms'."""

    class Meta:
        load_instance = True
        include_fk = True
        sqla_session = db.session

    id = fields.Integer(dump_only=True)


class VatCodeSchema(_Base):
    class Meta(_Base.Meta):
        model = VatCode

    code = fields.String(required=True)
    name = fields.String(load_default="")
    rate = VatRateField(required=True)


class ReferenceValidatorSchema(_Base):
    class Meta(_Base.Meta):
        model = ReferenceValidator
        exclude = ("next_validator",)

    name = fields.String(required=True)
    character_class = fields.String(load_default="any", validate=validate.OneOf(CHARACTER_CLASSES))
    check_digit_scheme = fields.String(allow_none=True,
                                       validate=validate.OneOf(CHECK_DIGIT_SCHEMES))


class FundSchema(_Base):
    class Meta(_Base.Meta):
        model = Fund
        exclude = ("vat", "validator")

    code = fields.String(required=True)
    name = fields.String(required=True)
    maximum_amount = MoneyField(allow_none=True)
    vat_code = fields.String(allow_none=True)
    validator_id = fields.Integer(allow_none=True)


class PaymentMethodSchema(_Base):
    class Meta(_Base.Meta):
        model = PaymentMethod

    code = fields.String(required=True)
    name = fields.String(required=True)
    kind = fields.String(required=True, validate=validate.OneOf(METHOD_KINDS))
    minimum_amount = MoneyField(allow_none=True)
    maximum_amount = MoneyField(allow_none=True)


class OfficeSchema(_Base):
    class Meta(_Base.Meta):
        model = Office

    code = fields.String(required=True)
    name = fields.String(required=True)


class AccountHolderSchema(_Base):
    class Meta(_Base.Meta):
        model = AccountHolder
        exclude = ("fund",)

    fund_code = fields.String(required=True)
    account_reference = fields.String(required=True)
    name = fields.String(required=True)
    address = fields.String(allow_none=True)
    postcode = fields.String(allow_none=True)
    stop_message = fields.String(allow_none=True)


def _check_row(self, item):
    """The service's rules for the row as loaded (codes in use, ranges, characters): a 422."""
    check_reference_row(db.session, item)


def _rest(name, model, schema, resource, permission, columns, search=None):
    attrs = {
        "datamodel": datamodel(model),
        "resource_name": resource,
        "class_permission_name": permission,
        "list_columns": ["id", *columns],
        "show_columns": ["id", *columns],
        "add_columns": columns,
        "edit_columns": columns,
        "search_columns": search or columns,
        "order_columns": columns,
        "list_model_schema": schema(),
        "show_model_schema": schema(),
        "add_model_schema": schema(),
        "edit_model_schema": schema(),
        "pre_add": _check_row,
        "pre_update": _check_row,
    }
    return type(name, (ImsModelRestApi,), attrs)


FundApi = _rest("FundApi", Fund, FundSchema, "funds", "Fund",
                ["code", "name", "gl_code", "vat_code", "vat_override", "maximum_amount",
                 "account_must_exist", "validator_id", "credit_notes_allowed", "disabled"])
PaymentMethodApi = _rest("PaymentMethodApi", PaymentMethod, PaymentMethodSchema,
                         "payment-methods", "PaymentMethod",
                         ["code", "name", "kind", "refundable", "minimum_amount",
                          "maximum_amount", "disabled"])
VatCodeApi = _rest("VatCodeApi", VatCode, VatCodeSchema, "vat-codes", "VatCode",
                   ["code", "name", "rate"])
OfficeApi = _rest("OfficeApi", Office, OfficeSchema, "offices", "Office", ["code", "name"])
ReferenceValidatorApi = _rest(
    "ReferenceValidatorApi", ReferenceValidator, ReferenceValidatorSchema,
    "reference-validators", "ReferenceValidator",
    ["name", "min_length", "max_length", "character_class", "regex", "input_mask",
     "check_digit_scheme", "modulus", "weights", "source_substitution", "result_substitutions",
     "subtract", "next_validator_id"])
AccountHolderApi = _rest("AccountHolderApi", AccountHolder, AccountHolderSchema, "accounts",
                         "AccountHolder",
                         ["fund_code", "account_reference", "name", "address", "postcode",
                          "stop_message"])

