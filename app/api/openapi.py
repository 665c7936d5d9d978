"""The OpenAPI document at /api/v1/_openapi: FAB's, completed with what every operation shares.

FAB builds the document from each endpoint's docstring YAML (ours) or its own generator
(ModelRestApi). What is true of every operation is added here once, so that no docstring has to
repeat it and none can forget it: the path parameters of its URL (typed as the route's converter
reads them: ids are integers from 1 to MAX_ID), the errors the request guards and FAB's ``protect``
answer (400, 401, 403, 404, 422, in the shape API.md gives), and 405 for a method a path does not
serve.
"""

from __future__ import annotations

import re

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin, OpenAPIConverter
from flask import current_app, request
from flask_appbuilder.api.manager import OpenApi as FabOpenApi
from flask_appbuilder.api.manager import resolver
from marshmallow import fields

from app.domain.ids import MAX_ID

ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        # FAB's own security API puts marshmallow's field errors in "message"
        "message": {"oneOf": [{"type": "string"}, {"type": "object"}]},
        "errors": {"oneOf": [{"type": "object"}, {"type": "array"}],
                   "description": 'field -> ["what is wrong", ...]'},
    },
}
_MONEY = {"$ref": "#/components/schemas/Money"}
_NULLABLE_TEXT = {"type": "string", "nullable": True}
_NULLABLE_ID = {"type": "integer", "nullable": True}
_TIMESTAMP = {"type": "string", "nullable": True, "description": "ISO 8601"}
_LINE = {"type": "object", "required": ["fund_code", "account_reference", "amount"],
         "properties": {"fund_code": {"type": "string"}, "account_reference": {"type": "string"},
                        "amount": _MONEY}}
#: The shapes our own endpoints answer with, referenced from their docstrings.
SCHEMAS = {
    "Money": {"type": "string", "pattern": r"^-?\d+\.\d{2}$", "example": "12.34",
              "description": "Pounds and pence as a decimal string with two places"},
    "Error": ERROR_SCHEMA,
    "Reason": {"type": "object", "required": ["reason"], "properties": {"reason": {"type": "string"}}},
    "Line": _LINE,
    "Transaction": {"type": "object", "properties": {
        "id": {"type": "integer"}, "receipt_number": _NULLABLE_TEXT,
        "fund_code": {"type": "string"}, "account_reference": _NULLABLE_TEXT, "amount": _MONEY,
        "available_amount": _MONEY, "vat_code": _NULLABLE_TEXT,
        "vat_amount": {**_MONEY, "nullable": True}, "payment_method_code": _NULLABLE_TEXT,
        "narrative": _NULLABLE_TEXT, "transaction_date": {"type": "string", "format": "date"},
        "external_reference": _NULLABLE_TEXT, "office_code": _NULLABLE_TEXT,
        "created_by": _NULLABLE_TEXT, "import_id": _NULLABLE_ID,
        "source_transaction_id": _NULLABLE_ID, "posting_group_id": _NULLABLE_ID}},
    "TransactionPage": {"type": "object", "properties": {
        "count": {"type": "integer"}, "page": {"type": "integer"}, "page_size": {"type": "integer"},
        "result": {"type": "array", "items": {"$ref": "#/components/schemas/Transaction"}}}},
    "Report": {"type": "object", "description": "A finance report: its tables' rows and totals "
               "(money as decimal strings); the month-end pack has one per report under "
               "\"reports\"", "properties": {
        "report": {"type": "string"}, "title": {"type": "string"},
        "from": {"type": "string", "format": "date"}, "to": {"type": "string", "format": "date"},
        "tables": {"type": "object", "additionalProperties": {"type": "object", "properties": {
            "rows": {"type": "array", "items": {"type": "object"}},
            "totals": {"type": "object", "nullable": True}}}},
        "reports": {"type": "object"}}},
    "PostingGroup": {"type": "object", "properties": {
        "id": {"type": "integer"}, "number": {"type": "string"}, "kind": {"type": "string"},
        "accounting_date": {"type": "string", "format": "date", "nullable": True},
        "period_message": _NULLABLE_TEXT,
        "targets": {"type": "array", "items": {"type": "object", "properties": {
            "id": {"type": "integer"}, "fund_code": {"type": "string"},
            "account_reference": _NULLABLE_TEXT, "amount": _MONEY,
            "source_transaction_id": _NULLABLE_ID}}}}},
    "Reversal": {"type": "object", "properties": {
        "id": {"type": "integer"}, "number": {"type": "string"}, "reverses_id": {"type": "integer"}}},
    "Refund": {"type": "object", "properties": {
        "id": {"type": "integer"}, "amount": _MONEY, "transaction_id": {"type": "integer"},
        "status": {"type": "string",
                   "enum": ["awaiting_approval", "approved", "rejected", "paid", "failed"]},
        "method": {"type": "string", "enum": ["card", "bacs", "cheque"]},
        "reason": {"type": "string"}, "payee": {"type": "object", "nullable": True},
        "requested_by": {"type": "string"}, "requested_at": _TIMESTAMP,
        "workflow_instance_id": _NULLABLE_ID, "decided_at": _TIMESTAMP, "paid_at": _TIMESTAMP}},
    "WriteOff": {"type": "object", "properties": {
        "id": {"type": "integer"}, "amount": _MONEY,
        "status": {"type": "string", "enum": ["awaiting_approval", "approved", "rejected", "posted"]},
        "reason": {"type": "string"}, "suspense_item_id": _NULLABLE_ID,
        "transaction_id": _NULLABLE_ID, "requested_by": {"type": "string"},
        "requested_at": _TIMESTAMP, "workflow_instance_id": _NULLABLE_ID,
        "posting_number": _NULLABLE_TEXT, "posted_at": _TIMESTAMP}},
    "CashUpInput": {"type": "object", "required": ["bag_number"], "properties": {
        "office_code": _NULLABLE_TEXT,
        "till_date": {"type": "string", "format": "date", "description": "Default today"},
        "denominations": {"type": "object", "description":
                          'Notes and coins counted: {"50.00": 2, "0.01": 3} (whole counts >= 0; '
                          "keys 50.00 20.00 10.00 5.00 2.00 1.00 0.50 0.20 0.10 0.05 0.02 0.01)",
                          "additionalProperties": {"type": "integer", "minimum": 0}},
        "cheques": {"type": "array", "items": {"type": "object",
                    "required": ["drawer", "sort_code", "cheque_number", "amount"], "properties": {
                        "drawer": {"type": "string"}, "sort_code": {"type": "string",
                                                                   "example": "12-34-56"},
                        "cheque_number": {"type": "string"}, "amount": _MONEY}}},
        "lines": {"type": "array", "items": {"type": "object", "required": ["template_row_id"],
                  "properties": {"template_row_id": {"type": "integer"}, "amount": _MONEY}}},
        "bag_number": {"type": "string", "description": "Bag / paying-in slip; unique per day"},
        "variance_reason": {"type": "string", "description": "Required when over or short"}}},
    "CashUp": {"type": "object", "properties": {
        "id": {"type": "integer"}, "number": {"type": "string"}, "cashier": {"type": "string"},
        "office_code": _NULLABLE_TEXT, "till_date": {"type": "string", "format": "date"},
        "status": {"type": "string", "enum": ["submitted", "returned", "approved", "voided"]},
        "bag_number": {"type": "string"}, "receipted_cash": _MONEY, "receipted_cheques": _MONEY,
        "template_total": _MONEY, "expected": _MONEY, "cash_counted": _MONEY,
        "cheques_total": _MONEY, "counted": _MONEY,
        "variance": {**_MONEY, "description": "counted - expected: over > 0, short < 0"},
        "variance_reason": _NULLABLE_TEXT, "destination": {"type": "string"},
        "submitted_at": _TIMESTAMP, "decided_by": _NULLABLE_TEXT,
        "decision_comment": _NULLABLE_TEXT, "void_reason": _NULLABLE_TEXT,
        "workflow_instance_id": _NULLABLE_ID, "posting": _NULLABLE_TEXT,
        "denominations": {"type": "object"}, "cheques": {"type": "array", "items": {"type": "object"}},
        "lines": {"type": "array", "items": {"type": "object"}},
        "receipts": {"type": "array", "items": {"type": "object"}}}},
    "Import": {"type": "object", "properties": {
        "id": {"type": "integer"}, "status": {"type": "string"}, "format": {"type": "string"},
        "filename": {"type": "string"}, "rows_total": {"type": "integer"},
        "rows_posted": {"type": "integer"}, "rows_suspense": {"type": "integer"},
        "rows_settlement": {"type": "integer"}, "settlement_amount": _MONEY,
        "bank_account_id": _NULLABLE_ID,
        "total_amount": _MONEY, "posted_amount": _MONEY, "suspense_amount": _MONEY,
        "errors": {"type": "array", "items": {"type": "object", "properties": {
            "line": {"type": "integer", "nullable": True}, "message": {"type": "string"}}}}}},
    "Allocation": {"type": "object", "properties": {
        "id": {"type": "integer"}, "status": {"type": "string"},
        "suspense_item_id": {"type": "integer"}, "amount": _MONEY, "remaining_amount": _MONEY,
        "item_status": {"type": "string"}, "posting_number": _NULLABLE_TEXT,
        "workflow_instance_id": _NULLABLE_ID,
        "lines": {"type": "array", "items": {"type": "object", "properties": {
            "fund_code": {"type": "string"}, "account_reference": {"type": "string"},
            "amount": _MONEY, "transaction_id": _NULLABLE_ID}}}}},
}
_ERRORS = {
    "400": "The body or an argument does not parse (not JSON, nested too deeply, bad rison)",
    "401": "Not authenticated",
    "403": "The role may not do this (or four-eyes)",
    "404": "No such record",
    "409": "A concurrent change or a duplicate won; try again or reload",
    "405": "The path does not serve this method",
    "422": "Validation failed; nothing was changed",
}
#: What any operation may answer: the request guards (400, 404, 422), FAB's protect (401, 403),
#: the router (404, 405).
_EVERY_OPERATION = ("400", "401", "403", "404", "405", "422")
_RULE_ARGUMENT = re.compile(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>")
#: What marshmallow writes for a DateTime: ISO 8601, with an offset only for an aware value
#: (FAB's own timestamps, and any read back from SQLite, have none), so not RFC 3339's date-time.
_ISO_DATETIME = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$"


class OpenApi(FabOpenApi):
    """FAB's OpenApi view (same name, route and permission), returning the completed document."""

    @staticmethod
    def _create_api_spec(version):
        servers = current_app.config.get("FAB_OPENAPI_SERVERS", [{"url": request.host_url}])
        return _CompletedSpec(title=current_app.appbuilder.app_name, version=version,
                              openapi_version="3.0.2",
                              info={"description": current_app.appbuilder.app_name},
                              plugins=[_Plugin(schema_name_resolver=resolver)],
                              servers=servers)


class _Converter(OpenAPIConverter):
    """apispec's converter, describing what marshmallow writes: a Nested field with ``many=True``
    around a schema instance (FAB's related lists: a user's roles) is a list, an optional related
    record may be null, and a DateTime is ISO 8601 text that may lack an offset."""

    def nested2properties(self, field, ret):
        if not isinstance(field, fields.Nested) or isinstance(field, fields.Pluck):
            return super().nested2properties(field, ret)
        if field.many and not getattr(field.schema, "many", False):
            ret.update({"type": "array", "items": super().nested2properties(field, {})})
            return ret
        if not field.many and not field.required:
            ret["nullable"] = True  # marshmallow writes null for a missing related record
        return super().nested2properties(field, ret)

    def field2property(self, field):
        ret = super().field2property(field)
        if ret.get("format") == "date-time":
            del ret["format"]
            ret["pattern"] = _ISO_DATETIME
        return ret


class _Plugin(MarshmallowPlugin):
    Converter = _Converter


class _CompletedSpec(APISpec):
    def to_dict(self):
        return complete(super().to_dict(), current_app.url_map)


def _path_converters(url_map) -> dict[str, dict[str, str]]:
    """OpenAPI path -> {parameter: converter name} for every route."""
    found: dict[str, dict[str, str]] = {}
    for rule in url_map.iter_rules():
        path = _RULE_ARGUMENT.sub(lambda m: "{" + m.group(2) + "}", rule.rule)
        found[path] = {m.group(2): m.group(1) or "default" for m in _RULE_ARGUMENT.finditer(rule.rule)}
    return found


def _parameter_schema(converter: str) -> dict:
    if converter == "int":
        return {"type": "integer", "minimum": 1, "maximum": MAX_ID}
    return {"type": "string", "minLength": 1, "pattern": "^[^/]+$"}


def complete(doc: dict, url_map) -> dict:
    """Declare every operation's path parameters and shared error responses (in place)."""
    components = doc.setdefault("components", {})
    for name, schema in components.setdefault("schemas", {}).items():
        if re.search(r"\.get(_list)?(\.|$)", name):
            # FAB's list and show answer only the columns asked for (q=(columns:!(...))), so no
            # column of theirs is required; what a POST or PUT requires stays in .post / .put
            schema.pop("required", None)
    components["schemas"].update(SCHEMAS)
    responses = components.setdefault("responses", {})
    for code, description in _ERRORS.items():
        responses[code] = {"description": description, "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    converters = _path_converters(url_map)
    for path, item in doc.get("paths", {}).items():
        names = re.findall(r"{(\w+)}", path)
        shared = [p for p in item.get("parameters", []) if p.get("in") == "path"]
        for method, operation in item.items():
            if method == "parameters" or not isinstance(operation, dict):
                continue
            parameters = operation.setdefault("parameters", [])
            declared = {p.get("name") for p in parameters + shared if p.get("in") == "path"}
            for name in names:
                if name not in declared:
                    parameters.append({"in": "path", "name": name, "required": True,
                                       "schema": _parameter_schema(
                                           converters.get(path, {}).get(name, "default"))})
            if not parameters:
                del operation["parameters"]
            codes = operation.setdefault("responses", {})
            for code in _EVERY_OPERATION:
                codes.setdefault(code, {"$ref": f"#/components/responses/{code}"})
            _correct_fab_documentation(codes)
    return doc


def _correct_fab_documentation(codes: dict) -> None:
    """Slips of FAB's own documentation: the ``ids`` of a list and the ``id`` of a record are the
    records' keys (integers here), not strings; ``add_columns`` and ``edit_columns`` of ``_info``
    are lists of column descriptions, not objects; FAB's menu puts "-" between groups of items."""
    key = {"oneOf": [{"type": "integer"}, {"type": "string"}]}
    for code in ("200", "201"):
        properties = (codes.get(code, {}).get("content", {}).get("application/json", {})
                      .get("schema", {}).get("properties", {}))
        if properties.get("ids", {}).get("items") == {"type": "string"}:
            properties["ids"]["items"] = key
        if properties.get("id", {}).get("type") == "string":
            properties["id"] = {**key, "description": properties["id"].get("description", "")}
        for name in ("add_columns", "edit_columns"):
            if properties.get(name, {}).get("type") == "object":
                properties[name] = {"type": "array", "items": {"type": "object"}}
        menu = properties.get("result", {}).get("items", {})
        if "childs" in menu.get("properties", {}):
            separator = {"type": "string", "enum": ["-"]}
            menu["properties"]["childs"]["items"] = {"oneOf": [{"type": "object"}, separator]}
            properties["result"]["items"] = {"oneOf": [menu, separator]}


__all__ = ["OpenApi", "complete"]
