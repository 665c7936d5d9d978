"""Reference-data resources: /api/v1/funds/, payment-methods, vat-codes, reference-validators, accounts."""

from __future__ import annotations

from marshmallow import ValidationError as MMValidationError
from marshmallow import fields, validate, validates_schema
from marshmallow_sqlalchemy import SQLAlchemyAutoSchema
from sqlalchemy import select

from app.api.base import ImsModelRestApi, MoneyField, RateField
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
from app.views.base import datamodel


def _code(max_len: int, required=True):
    return fields.String(required=required, validate=[
        validate.Length(min=1, max=max_len), validate.Regexp(r"^\S(.*\S)?$",
                                                             error="No leading or trailing spaces.")])


class _Base(SQLAlchemyAutoSchema):
    class Meta:
        load_instance = True
        include_fk = True
        sqla_session = db.session

    id = fields.Integer(dump_only=True)

    def _unique(self, model, column: str, value, message: str):
        instance = self.instance
        q = select(model.id).where(getattr(model, column) == value)
        found = db.session.scalar(q)
        if found is not None and (instance is None or instance.id != found):
            raise MMValidationError(message, column)


class VatCodeSchema(_Base):
    class Meta(_Base.Meta):
        model = VatCode

    code = _code(10)
    name = fields.String(load_default="", validate=validate.Length(max=100))
    rate = RateField(required=True)

    @validates_schema
    def unique_code(self, data, **kwargs):
        if "code" in data:
            self._unique(VatCode, "code", data["code"], "A VAT code with this code already exists.")


class ReferenceValidatorSchema(_Base):
    class Meta(_Base.Meta):
        model = ReferenceValidator
        exclude = ("next_validator",)

    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    character_class = fields.String(load_default="any", validate=validate.OneOf(CHARACTER_CLASSES))
    check_digit_scheme = fields.String(allow_none=True,
                                       validate=validate.OneOf(CHECK_DIGIT_SCHEMES))

    @validates_schema
    def unique_name(self, data, **kwargs):
        if "name" in data:
            self._unique(ReferenceValidator, "name", data["name"],
                         "A validator with this name already exists.")


class FundSchema(_Base):
    class Meta(_Base.Meta):
        model = Fund
        exclude = ("vat", "validator")

    code = _code(10)
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    maximum_amount = MoneyField(allow_none=True)
    vat_code = fields.String(allow_none=True)
    validator_id = fields.Integer(allow_none=True)

    @validates_schema
    def rules(self, data, **kwargs):
        if "code" in data:
            self._unique(Fund, "code", data["code"], "A fund with this code already exists.")
        if data.get("vat_code") and db.session.scalar(
                select(VatCode.id).where(VatCode.code == data["vat_code"])) is None:
            raise MMValidationError("Unknown VAT code.", "vat_code")
        if data.get("validator_id") and db.session.get(ReferenceValidator, data["validator_id"]) is None:
            raise MMValidationError("Unknown validator.", "validator_id")


class PaymentMethodSchema(_Base):
    class Meta(_Base.Meta):
        model = PaymentMethod

    code = _code(10)
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    kind = fields.String(required=True, validate=validate.OneOf(METHOD_KINDS))
    minimum_amount = MoneyField(allow_none=True)
    maximum_amount = MoneyField(allow_none=True)

    @validates_schema
    def rules(self, data, **kwargs):
        if "code" in data:
            self._unique(PaymentMethod, "code", data["code"],
                         "A payment method with this code already exists.")
        lo, hi = data.get("minimum_amount"), data.get("maximum_amount")
        if lo is not None and hi is not None and lo > hi:
            raise MMValidationError("The minimum is more than the maximum.", "minimum_amount")


class OfficeSchema(_Base):
    class Meta(_Base.Meta):
        model = Office

    code = _code(10)
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))

    @validates_schema
    def unique_code(self, data, **kwargs):
        if "code" in data:
            self._unique(Office, "code", data["code"], "An office with this code already exists.")


class AccountHolderSchema(_Base):
    class Meta(_Base.Meta):
        model = AccountHolder
        exclude = ("fund",)

    fund_code = fields.String(required=True)
    account_reference = fields.String(required=True, validate=validate.Length(min=1, max=30))
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    postcode = fields.String(allow_none=True, validate=validate.Length(max=10))
    stop_message = fields.String(allow_none=True, validate=validate.Length(max=200))

    @validates_schema
    def rules(self, data, **kwargs):
        fund_code = data.get("fund_code", getattr(self.instance, "fund_code", None))
        if fund_code and db.session.scalar(select(Fund.id).where(Fund.code == fund_code)) is None:
            raise MMValidationError("Unknown fund.", "fund_code")
        ref = data.get("account_reference")
        if ref and fund_code:
            found = db.session.scalar(select(AccountHolder.id).where(
                AccountHolder.fund_code == fund_code, AccountHolder.account_reference == ref))
            if found is not None and (self.instance is None or self.instance.id != found):
                raise MMValidationError("This fund already has an account with this reference.",
                                        "account_reference")


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


def _check_validator(self, item):
    from app.services.reference import check_validator_fields

    check_validator_fields(item)


ReferenceValidatorApi.pre_add = _check_validator
ReferenceValidatorApi.pre_update = _check_validator

