"""FAB pages for reference data: funds, methods, VAT codes, offices, validators, accounts, settings."""

from flask import flash
from flask_appbuilder.fieldwidgets import Select2Widget
from flask_babel import lazy_gettext as _l
from sqlalchemy import inspect
from wtforms import SelectField, StringField
from wtforms.validators import Optional as OptionalV
from wtforms.validators import StopValidation

from app.domain.money import percent
from app.extensions import db
from app.formatting import money
from app.models.reference import (
    CHARACTER_CLASSES,
    CHECK_DIGIT_SCHEMES,
    METHOD_KINDS,
    AccountHolder,
    Fund,
    Office,
    PaymentMethod,
    ReferenceValidator,
    Setting,
    VatCode,
)
from app.services.reference import CONTROL_CHARACTERS, check_reference_row, reference_errors
from app.views.base import ImsModelView, datamodel
from app.views.fields import MoneyField, RateField


def _select(label, choices, description=None, required=False):
    items = ([] if required else [("", "—")]) + [(c, c.replace("_", " ")) for c in choices]
    return SelectField(label, choices=items, widget=Select2Widget(), description=description,
                       coerce=lambda v: v or None)


def _no_nul(form, field):
    if "\x00" in field.data:
        raise StopValidation(CONTROL_CHARACTERS)


def _checked_form(form_class, model):
    """The FAB form class, also checked by the service's reference-data rules as it validates, so
    that every problem (a code in use, a length out of range, a control character) shows on its
    field. Text is trimmed first: spaces around what people type are not an error on a page."""

    relations = {rel.key: rel for rel in inspect(model).relationships}

    class Checked(form_class):
        def validate(self, extra_validators=None):
            for field in self:
                if isinstance(field, StringField) and isinstance(field.data, str):
                    field.data = field.data.strip()
                    # before FAB's Unique validator looks the value up: PostgreSQL refuses NUL
                    field.validators = [_no_nul, *field.validators]
            ok = super().validate(extra_validators)
            values, field_of = {}, {}
            for name, field in self._fields.items():
                rel = relations.get(name)
                if rel is None:
                    values[name], field_of[name] = field.data, name
                    continue
                for local, remote in rel.local_remote_pairs:
                    values[local.key] = None if field.data is None else getattr(field.data, remote.key)
                    field_of[local.key] = name
            values.pop("csrf_token", None)
            errors = reference_errors(db.session, model, values, getattr(self, "_id", None))
            for column, messages in errors.items():
                field = self._fields.get(field_of.get(column, column))
                if field is None:
                    for message in messages:
                        flash(message, "danger")
                elif not field.errors:  # the field's own validators spoke first
                    field.errors = list(field.errors) + messages
            return ok and not errors

    Checked.__name__ = form_class.__name__
    return Checked


class ReferenceDataView(ImsModelView):
    """Reference data pages: the add and edit forms answer to the same rules as the API
    (app/services/reference.py), field by field; pre_add/pre_update check the row as saved."""

    def _init_forms(self):
        super()._init_forms()
        self.add_form = _checked_form(self.add_form, self.datamodel.obj)
        self.edit_form = _checked_form(self.edit_form, self.datamodel.obj)

    def pre_add(self, item):
        check_reference_row(db.session, _with_foreign_keys(item))

    def pre_update(self, item):
        check_reference_row(db.session, _with_foreign_keys(item))


def _with_foreign_keys(item):
    """The form set relations (an account holder's fund); their key columns (fund_code) are
    filled only at flush, after pre_add: copy them now so that the rules see the choice."""
    mapper = inspect(type(item))
    for rel in mapper.relationships:
        target = None if rel.uselist else getattr(item, rel.key, None)
        if target is None:
            continue
        for local, remote in rel.local_remote_pairs:
            setattr(item, mapper.get_property_by_column(local).key, getattr(target, remote.key))
    return item


class FundView(ReferenceDataView):
    datamodel = datamodel(Fund)
    class_permission_name = "Fund"
    list_title = _l("Funds")
    show_title = _l("Fund")
    add_title = _l("Add fund")
    edit_title = _l("Edit fund")
    list_columns = ["code", "name", "gl_code", "vat_code", "maximum_amount", "validator",
                    "account_must_exist", "offered_online", "disabled"]
    search_columns = ["code", "name", "gl_code", "vat_code", "validator", "account_must_exist",
                      "offered_online", "disabled"]
    add_columns = ["code", "name", "gl_code", "vat", "vat_override", "maximum_amount",
                   "account_must_exist", "validator", "credit_notes_allowed", "disabled",
                   # the citizen payment portal (/pay); each text with its Welsh version
                   "offered_online", "public_name", "public_name_cy", "reference_label",
                   "reference_label_cy", "reference_help", "reference_help_cy",
                   "public_stop_message", "public_stop_message_cy", "ask_payer_name",
                   "ask_payer_email", "ask_payer_address"]
    edit_columns = add_columns[1:]
    show_columns = add_columns
    order_columns = ["code", "name", "gl_code"]
    base_order = ("code", "asc")
    label_columns = {
        "code": _l("Code"), "name": _l("Name"), "gl_code": _l("GL code"), "vat": _l("VAT code"),
        "vat_code": _l("VAT code"), "vat_override": _l("VAT override allowed"),
        "maximum_amount": _l("Maximum per payment (£)"),
        "account_must_exist": _l("Account must exist"), "validator": _l("Reference validator"),
        "credit_notes_allowed": _l("Credit notes allowed"), "disabled": _l("Disabled"),
        "offered_online": _l("Offered online"),
        "public_name": _l("Public name"), "public_name_cy": _l("Public name (Welsh)"),
        "reference_label": _l("Reference label"),
        "reference_label_cy": _l("Reference label (Welsh)"),
        "reference_help": _l("Reference help text"),
        "reference_help_cy": _l("Reference help text (Welsh)"),
        "public_stop_message": _l("Public stop message"),
        "public_stop_message_cy": _l("Public stop message (Welsh)"),
        "ask_payer_name": _l("Ask for the payer's name"),
        "ask_payer_email": _l("Ask for the payer's email"),
        "ask_payer_address": _l("Ask for the payer's postal address"),
    }
    description_columns = {
        "code": _l("Up to 10 characters, unique. Cannot be changed later."),
        "maximum_amount": _l("Largest single payment accepted, in pounds, e.g. 5000.00."),
        "account_must_exist": _l("Refuse payments to references with no account holder."),
        "offered_online": _l("Citizens may pay this fund on the payment portal (/pay)."),
        "public_name": _l("The name citizens see, e.g. \"Council Tax\". The Welsh version is also "
                          "the fund's name on Welsh staff pages."),
        "reference_label": _l("What the reference is called, e.g. \"Council Tax account number\"."),
        "reference_help": _l("Where to find it and what it looks like, e.g. \"9 characters, on "
                             "your bill\"."),
        "public_stop_message": _l("Shown with every refused reference of this fund (never only for "
                                  "accounts on stop, which would reveal them), e.g. how else to "
                                  "pay. Staff stop reasons are never shown."),
    }
    formatters_columns = {"maximum_amount": money}
    add_form_extra_fields = {"maximum_amount": MoneyField(_l("Maximum per payment (£)"),
                                                          validators=[OptionalV()])}
    edit_form_extra_fields = add_form_extra_fields


class PaymentMethodView(ReferenceDataView):
    datamodel = datamodel(PaymentMethod)
    class_permission_name = "PaymentMethod"
    list_title = _l("Payment methods")
    show_title = _l("Payment method")
    add_title = _l("Add payment method")
    edit_title = _l("Edit payment method")
    list_columns = ["code", "name", "kind", "refundable", "minimum_amount", "maximum_amount",
                    "disabled"]
    search_columns = ["code", "name", "kind", "refundable", "disabled"]
    add_columns = ["code", "name", "kind", "refundable", "minimum_amount", "maximum_amount",
                   "disabled"]
    edit_columns = add_columns[1:]
    show_columns = add_columns
    base_order = ("code", "asc")
    label_columns = {"code": _l("Code"), "name": _l("Name"), "kind": _l("Kind"),
                     "refundable": _l("Refundable"), "minimum_amount": _l("Minimum (£)"),
                     "maximum_amount": _l("Maximum (£)"), "disabled": _l("Disabled")}
    formatters_columns = {"minimum_amount": money, "maximum_amount": money}
    add_form_extra_fields = {
        "kind": _select(_l("Kind"), METHOD_KINDS, required=True),
        "minimum_amount": MoneyField(_l("Minimum (£)"), validators=[OptionalV()]),
        "maximum_amount": MoneyField(_l("Maximum (£)"), validators=[OptionalV()]),
    }
    edit_form_extra_fields = add_form_extra_fields


class VatCodeView(ReferenceDataView):
    datamodel = datamodel(VatCode)
    class_permission_name = "VatCode"
    list_title = _l("VAT codes")
    show_title = _l("VAT code")
    add_title = _l("Add VAT code")
    edit_title = _l("Edit VAT code")
    list_columns = ["code", "name", "rate"]
    search_columns = ["code", "name"]
    add_columns = ["code", "name", "rate"]
    edit_columns = ["name", "rate"]
    show_columns = add_columns
    base_order = ("code", "asc")
    label_columns = {"code": _l("Code"), "name": _l("Name"), "rate": _l("Rate")}
    description_columns = {"rate": _l("A fraction: 0.20 for 20%, 0.05 for 5%, 0 for zero-rated.")}
    add_form_extra_fields = {"rate": RateField(_l("Rate"))}
    edit_form_extra_fields = add_form_extra_fields
    formatters_columns = {"rate": percent}


class OfficeView(ReferenceDataView):
    datamodel = datamodel(Office)
    class_permission_name = "Office"
    list_title = _l("Offices")
    show_title = _l("Office")
    add_title = _l("Add office")
    edit_title = _l("Edit office")
    list_columns = ["code", "name"]
    search_columns = ["code", "name"]
    add_columns = ["code", "name"]
    edit_columns = ["name"]
    base_order = ("code", "asc")
    label_columns = {"code": _l("Code"), "name": _l("Name")}


class ReferenceValidatorView(ReferenceDataView):
    datamodel = datamodel(ReferenceValidator)
    class_permission_name = "ReferenceValidator"
    list_title = _l("Reference validators")
    show_title = _l("Reference validator")
    add_title = _l("Add reference validator")
    edit_title = _l("Edit reference validator")
    list_columns = ["name", "min_length", "max_length", "character_class", "input_mask",
                    "check_digit_scheme", "modulus", "next_validator"]
    search_columns = ["name", "character_class", "check_digit_scheme", "input_mask"]
    add_columns = ["name", "min_length", "max_length", "character_class", "regex", "input_mask",
                   "check_digit_scheme", "modulus", "weights", "subtract", "source_substitution",
                   "result_substitutions", "next_validator"]
    edit_columns = add_columns
    show_fieldsets = [
        (_l("Format"), {"fields": ["name", "min_length", "max_length", "character_class", "regex",
                                    "input_mask"]}),
        (_l("Check digit"), {"fields": ["check_digit_scheme", "modulus", "weights", "subtract",
                                         "source_substitution", "result_substitutions"]}),
        (_l("Chaining"), {"fields": ["next_validator"]}),
    ]
    base_order = ("name", "asc")
    label_columns = {
        "name": _l("Name"), "min_length": _l("Minimum length"), "max_length": _l("Maximum length"),
        "character_class": _l("Characters allowed"), "regex": _l("Regular expression"),
        "input_mask": _l("Input mask"), "check_digit_scheme": _l("Check digit scheme"),
        "modulus": _l("Modulus"), "weights": _l("Weights"), "subtract": _l("Subtract from modulus"),
        "source_substitution": _l("Source substitution"),
        "result_substitutions": _l("Result substitutions"),
        "next_validator": _l("Also accept (chained validator)"),
    }
    description_columns = {
        "input_mask": _l("$ letter, # digit, ? letter or digit, * letter/digit/space/'/'/'-', "
                         "@ check character; anything else is literal."),
        "weights": _l("Comma-separated, one per position, e.g. 0,0,7,6,5,4,3,2,0."),
        "source_substitution": _l("Replace leading characters before scoring, e.g. BJ=05."),
        "result_substitutions": _l("Map remainders to check characters, e.g. 10:A,11:0."),
        "next_validator": _l("A reference valid under either validator is accepted."),
    }
    add_form_extra_fields = {
        "character_class": _select(_l("Characters allowed"), CHARACTER_CLASSES, required=True),
        "check_digit_scheme": _select(_l("Check digit scheme"), CHECK_DIGIT_SCHEMES),
    }
    edit_form_extra_fields = add_form_extra_fields


class AccountHolderView(ReferenceDataView):
    datamodel = datamodel(AccountHolder)
    class_permission_name = "AccountHolder"
    list_title = _l("Account holders")
    show_title = _l("Account holder")
    add_title = _l("Add account holder")
    edit_title = _l("Edit account holder")
    list_columns = ["fund_code", "account_reference", "name", "postcode", "stop_message"]
    search_columns = ["fund", "account_reference", "name", "postcode", "stop_message"]
    add_columns = ["fund", "account_reference", "name", "address", "postcode", "stop_message"]
    edit_columns = ["name", "address", "postcode", "stop_message"]
    show_columns = add_columns
    base_order = ("account_reference", "asc")
    label_columns = {"fund": _l("Fund"), "fund_code": _l("Fund"),
                     "account_reference": _l("Account reference"), "name": _l("Name"),
                     "address": _l("Address"), "postcode": _l("Postcode"),
                     "stop_message": _l("Stop message")}
    description_columns = {"stop_message": _l(
        "Leave empty to accept payments. Otherwise payments are refused with this message, "
        "e.g. 'Do not accept payment – BAILIFF' (Finance Managers may override).")}


class SettingView(ImsModelView):
    datamodel = datamodel(Setting)
    class_permission_name = "Setting"
    list_title = _l("System settings")
    list_columns = ["key", "value", "description"]
    search_columns = ["key", "value"]
    add_columns = ["key", "value", "description"]
    edit_columns = ["value", "description"]
    label_columns = {"key": _l("Setting"), "value": _l("Value"), "description": _l("Description")}

    def pre_add(self, item):
        from app.services.reference import check_setting

        check_setting(item)

    pre_update = pre_add


