"""`ims migrate-localgov DIR`: load a LocalGov IMS export (CSV files of its tables) — its
configuration, account holders and history — into the IMS, in one transaction.

- Funds, Mops, Vats (optional) and their metadata: LocalGov's flags become explicit settings
  (IsACreditNoteEnabledFund -> credit notes allowed, GeneralLedgerCode -> GL code,
  IsASuspenseTransactionFund -> the suspense fund setting, MOP flags -> the method's kind and
  whether it is refundable). Flags the IMS has no use for are listed in the report.
- CheckDigitConfiguration and AccountReferenceValidators (optional) -> reference validators, with
  their meaning kept: SourceSubstitutions "98" replaces the first characters whatever they are.
- AccountHolders -> account holders (a stop message is a stop the file set).
- ProcessedTransactions: each single-row transaction becomes a balanced posting group against
  the MIGRATION control account (Dr MIGRATION / Cr FUND; a negative row the other way round),
  reported with totals per fund so that finance can agree the migrated balances.

Every row is checked before anything is written; a bad row refuses the whole export. Running
it again adds nothing twice (configuration is matched by code, transactions by their
TransactionReference, recorded in migration_record).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.domain.errors import ValidationError
from app.domain.phonetic import name_key
from app.models.accounts import MigrationRecord
from app.models.ledger import LedgerLine, PostingGroup
from app.models.reference import (
    AccountHolder,
    Fund,
    PaymentMethod,
    ReferenceValidator,
    Setting,
    VatCode,
)
from app.services import audit
from app.services.ledger import FUND, MIGRATION, Leg, post_group, record_income
from app.services.reference import SUSPENSE_FUND

SOURCE = "localgov"

#: file -> (required?, columns that must be present)
FILES = {
    "Funds.csv": (True, ["FundCode", "FundName", "VatCode", "VatOverride", "MaximumAmount",
                         "AccountExist", "Disabled"]),
    "Mops.csv": (True, ["MopCode", "MopName", "MinimumAmount", "MaximumAmount", "Disabled"]),
    "Vats.csv": (False, ["VatCode", "Percentage"]),
    "FundMetadata.csv": (True, ["FundCode", "MetadataKey", "Value"]),
    "MopMetadata.csv": (True, ["MopCode", "MetadataKey", "Value"]),
    "VatMetadata.csv": (True, ["VatCode", "MetadataKey", "Value"]),
    "CheckDigitConfiguration.csv": (True, ["Id", "Name", "Type", "Modulus",
                                           "SourceSubstitutions", "Weightings",
                                           "ResultSubstitutions", "ApplySubtraction"]),
    "AccountReferenceValidators.csv": (False, ["Id", "Name", "MinLength", "MaxLength", "Regex",
                                               "InputMask", "CharacterType",
                                               "CheckDigitConfigurationId"]),
    "AccountHolders.csv": (True, ["AccountReference", "FundCode", "Surname", "Postcode"]),
    "ProcessedTransactions.csv": (True, ["TransactionReference", "FundCode", "MopCode", "Amount",
                                         "TransactionDate"]),
}
CHARACTER_TYPES = {"1": "alpha", "2": "alpha_space", "3": "numeric", "4": "numeric_space",
                   "5": "alphanumeric", "6": "alphanumeric_space"}
CHECK_TYPES = {"1": "weighted_sum", "2": "dynix"}
#: MOP flags -> our payment method kind (first flag that is set wins)
MOP_KINDS = [("IsAJournal", "journal"), ("IsAJournalReallocation", "journal"),
             ("IsATransferIn", "transfer"), ("IsATransferOut", "transfer"),
             ("IsACashPayment", "cash"), ("IsAChequePayment", "cheque"),
             ("IsAnEReturnChequePayment", "cheque"), ("IsACardSelfServicePayment", "card"),
             ("IsACardAtpPayment", "card"), ("IsACardViaStaffPayment", "card"),
             ("IsACardPaymentFee", "card")]
FUND_FLAGS_USED = {"IsACreditNoteEnabledFund", "GeneralLedgerCode", "IsASuspenseTransactionFund"}
MOP_FLAGS_USED = {k for k, _ in MOP_KINDS} | {"IsARefundablePayment"}
DATE_FORMATS = ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d",
                "%d/%m/%Y %H:%M:%S", "%d/%m/%Y %H:%M", "%d/%m/%Y")


class ExportRefused(ValidationError):
    def __init__(self, problems: list[str]):
        super().__init__(f"The export was refused ({len(problems)} problem(s)); nothing was "
                         f"migrated.", {"export": problems})
        self.problems = problems


@dataclass
class Report:
    created: dict[str, int] = field(default_factory=dict)
    existing: dict[str, int] = field(default_factory=dict)
    settings: list[str] = field(default_factory=list)
    not_carried: list[str] = field(default_factory=list)
    #: fund -> {"rows", "file_total", "ledger_total"} (pence)
    funds: dict[str, dict] = field(default_factory=dict)
    control_total: int = 0

    def count(self, what: str, created: bool) -> None:
        bucket = self.created if created else self.existing
        bucket[what] = bucket.get(what, 0) + 1

    @property
    def agreed(self) -> bool:
        return all(f["file_total"] == f["ledger_total"] for f in self.funds.values()) and \
            sum(f["ledger_total"] for f in self.funds.values()) == self.control_total

    def lines(self) -> list[str]:
        from app.domain.money import Money

        out = []
        for what in sorted(set(self.created) | set(self.existing)):
            out.append(f"{what}: {self.created.get(what, 0)} added, "
                       f"{self.existing.get(what, 0)} already there")
        out += [f"setting: {s}" for s in self.settings]
        out += [f"not carried over: {s}" for s in self.not_carried]
        out.append("history per fund (rows in the export; export total; IMS ledger total for the "
                   "fund's migrated postings):")
        for code in sorted(self.funds):
            f = self.funds[code]
            mark = "agreed" if f["file_total"] == f["ledger_total"] else "DIFFERENT"
            out.append(f"  {code}: {f['rows']} rows; £{Money(f['file_total'])}; "
                       f"£{Money(f['ledger_total'])} ({mark})")
        out.append(f"MIGRATION control account: £{Money(self.control_total)} "
                   f"({'balances the funds' if self.agreed else 'DOES NOT AGREE'})")
        return out

    def to_dict(self) -> dict:
        return {"created": self.created, "existing": self.existing, "settings": self.settings,
                "not_carried": self.not_carried, "funds": self.funds,
                "control_total": self.control_total, "agreed": self.agreed}


def _read(folder: str) -> tuple[dict[str, list[dict]], list[str]]:
    data, problems = {}, []
    for name, (required, columns) in FILES.items():
        path = os.path.join(folder, name)
        if not os.path.exists(path):
            if required:
                problems.append(f"{name}: missing from the export.")
            data[name] = []
            continue
        try:
            with open(path, encoding="utf-8-sig", newline="") as fh:
                reader = csv.DictReader(fh)
                header = [h.strip() for h in (reader.fieldnames or [])]
                missing = [c for c in columns if c not in header]
                if missing:
                    problems.append(f"{name}: no column(s) {', '.join(missing)}.")
                    data[name] = []
                    continue
                rows = []
                for row in reader:
                    clean = {(k or "").strip(): (v or "").strip() for k, v in row.items()
                             if k is not None}
                    clean["_line"] = reader.line_num
                    rows.append(clean)
                data[name] = rows
        except UnicodeDecodeError:
            problems.append(f"{name}: not UTF-8 text.")
            data[name] = []
    return data, problems


def _bool(value: str) -> bool:
    return (value or "").strip().upper() in ("TRUE", "1", "YES", "Y")


def _pence(value: str, where: str, problems: list[str], *, allow_empty=True) -> int | None:
    if value in ("", "NULL") and allow_empty:
        return None
    try:
        d = Decimal(value)
    except InvalidOperation:
        problems.append(f"{where}: {value!r} is not an amount.")
        return None
    if not d.is_finite() or d != d.quantize(Decimal("0.01")):
        problems.append(f"{where}: {value!r} has more than two decimal places.")
        return None
    return int(d * 100)


def _date(value: str, where: str, problems: list[str]) -> date | None:
    for fmt in DATE_FORMATS:
        try:
            return datetime.strptime(value, fmt).date()
        except ValueError:
            continue
    problems.append(f"{where}: {value!r} is not a date that exists.")
    return None


def _meta(rows: list[dict], key_col: str) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for r in rows:
        out.setdefault(r[key_col].upper(), {})[r["MetadataKey"]] = r["Value"]
    return out


def _record(session: Session, kind: str, key: str) -> MigrationRecord | None:
    return session.scalar(select(MigrationRecord).where(
        MigrationRecord.source == SOURCE, MigrationRecord.kind == kind,
        MigrationRecord.source_key == key))


def migrate(session: Session, folder: str, *, actor: str) -> Report:
    """Check the whole export, then load it in one transaction (committed at the end)."""
    if not os.path.isdir(folder):
        raise ExportRefused([f"{folder}: not a folder."])
    data, problems = _read(folder)
    if problems:
        raise ExportRefused(problems)
    report = Report()
    fund_meta = _meta(data["FundMetadata.csv"], "FundCode")
    mop_meta = _meta(data["MopMetadata.csv"], "MopCode")
    vat_meta = _meta(data["VatMetadata.csv"], "VatCode")
    try:
        with audit.reason_for("LocalGov IMS migration"):
            _vats(session, data, vat_meta, report, problems)
            validators = _validators(session, data, report, problems)
            funds = _funds(session, data, fund_meta, validators, report, problems)
            _mops(session, data, mop_meta, report, problems)
            if problems:
                raise ExportRefused(problems)
            session.flush()
            _accounts(session, data, funds, report, problems)
            _transactions(session, data, funds, report, problems, actor)
            if problems:
                raise ExportRefused(problems)
            _totals(session, report)
            audit.record(session, "localgov.migrate", "Migration", folder[-50:],
                         after={"created": report.created, "existing": report.existing,
                                "control_total": report.control_total,
                                "agreed": report.agreed}, actor=actor)
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return report


def _vats(session, data, vat_meta, report, problems):
    for r in data["Vats.csv"]:
        where = f"Vats.csv line {r['_line']}"
        code = r["VatCode"].upper()
        try:
            rate = Decimal(r["Percentage"])
        except InvalidOperation:
            problems.append(f"{where}: {r['Percentage']!r} is not a rate.")
            continue
        if rate >= 1:  # LocalGov stores 0.2 for 20%; a few exports carry 20
            rate = rate / 100
        existing = session.scalar(select(VatCode).where(VatCode.code == code))
        if existing is None:
            session.add(VatCode(code=code, name=f"VAT {code}", rate=rate))
        report.count("VAT codes", existing is None)
    for code, meta in vat_meta.items():
        for key, value in meta.items():
            if key == "IsASuspenseTransactionVatCode" and _bool(value):
                report.settings.append(f"VAT code {code} was LocalGov's suspense VAT code (the "
                                       f"IMS posts suspense without VAT)")
            else:
                report.not_carried.append(f"VAT {code} {key}={value}")


def _validators(session, data, report, problems) -> dict[str, str]:
    """LocalGov validator id -> our validator name."""
    configs = {}
    for r in data["CheckDigitConfiguration.csv"]:
        where = f"CheckDigitConfiguration.csv line {r['_line']}"
        scheme = CHECK_TYPES.get(r["Type"])
        if scheme is None:
            problems.append(f"{where}: Type {r['Type']!r} is not 1 (weighted sum) or 2 (Dynix).")
            continue
        if not r["Modulus"].isdigit() or int(r["Modulus"]) < 2:
            problems.append(f"{where}: Modulus {r['Modulus']!r} is not a whole number above 1.")
            continue
        configs[r["Id"]] = {
            "check_digit_scheme": scheme, "modulus": int(r["Modulus"]),
            "weights": r["Weightings"] or None,
            "source_substitution": r["SourceSubstitutions"] or None,
            "result_substitutions": r["ResultSubstitutions"] or None,
            "subtract": _bool(r["ApplySubtraction"]), "name": r["Name"]}
    out = {}
    rows = data["AccountReferenceValidators.csv"]
    if not rows:  # no validators exported: one validator per check-digit configuration
        rows = [{"Id": f"cd{cid}", "Name": c["name"], "MinLength": "", "MaxLength": "",
                 "Regex": "", "InputMask": "", "CharacterType": "", "_line": 0,
                 "CheckDigitConfigurationId": cid} for cid, c in configs.items()]
    for r in rows:
        where = f"AccountReferenceValidators.csv line {r['_line']}"
        cd = configs.get(r["CheckDigitConfigurationId"]) if r["CheckDigitConfigurationId"] \
            else None
        if r["CheckDigitConfigurationId"] and cd is None:
            problems.append(f"{where}: no check-digit configuration "
                            f"{r['CheckDigitConfigurationId']}.")
            continue
        name = f"LocalGov {r['Name']}"[:100]
        existing = session.scalar(select(ReferenceValidator).where(ReferenceValidator.name == name))
        if existing is None:
            v = ReferenceValidator(
                name=name, min_length=int(r["MinLength"]) if r["MinLength"].isdigit() else None,
                max_length=int(r["MaxLength"]) if r["MaxLength"].isdigit() else None,
                character_class=CHARACTER_TYPES.get(r["CharacterType"], "any"),
                regex=r["Regex"] or None, input_mask=r["InputMask"] or None,
                check_digit_scheme=cd["check_digit_scheme"] if cd else None,
                modulus=cd["modulus"] if cd else None, weights=cd["weights"] if cd else None,
                source_substitution=cd["source_substitution"] if cd else None,
                result_substitutions=cd["result_substitutions"] if cd else None,
                subtract=cd["subtract"] if cd else False)
            session.add(v)
        report.count("reference validators", existing is None)
        out[r["Id"]] = name
    return out


def _funds(session, data, fund_meta, validators, report, problems) -> set[str]:
    codes = set()
    for r in data["Funds.csv"]:
        where = f"Funds.csv line {r['_line']}"
        code = r["FundCode"].upper()
        if not code or len(code) > 10:
            problems.append(f"{where}: FundCode {code!r} is empty or longer than 10 characters.")
            continue
        codes.add(code)
        meta = fund_meta.get(code, {})
        maximum = _pence(r["MaximumAmount"], where, problems)
        vat = r["VatCode"].upper() or None
        validator_name = validators.get(r.get("AccountReferenceValidatorId", ""))
        validator = session.scalar(select(ReferenceValidator).where(
            ReferenceValidator.name == validator_name)) if validator_name else None
        values = dict(name=r["FundName"][:100] or code, vat_code=vat,
                      vat_override=_bool(r["VatOverride"]),
                      maximum_amount=maximum if maximum and maximum > 0 else None,
                      account_must_exist=_bool(r["AccountExist"]), disabled=_bool(r["Disabled"]),
                      credit_notes_allowed=_bool(meta.get("IsACreditNoteEnabledFund", "")),
                      gl_code=(meta.get("GeneralLedgerCode") or None))
        existing = session.scalar(select(Fund).where(Fund.code == code))
        if existing is None:
            session.add(Fund(code=code, validator=validator, **values))
        report.count("funds", existing is None)
        if _bool(meta.get("IsASuspenseTransactionFund", "")):
            setting = session.get(Setting, SUSPENSE_FUND)
            if setting is None:
                session.add(Setting(key=SUSPENSE_FUND, value=code))
                report.settings.append(f"suspense fund = {code}")
            elif setting.value != code:
                report.settings.append(f"LocalGov's suspense fund was {code}; the IMS's stays "
                                       f"{setting.value}")
        for key, value in meta.items():
            if key not in FUND_FLAGS_USED:
                report.not_carried.append(f"fund {code} {key}={value}")
    for r in data["Funds.csv"]:
        vat = r["VatCode"].upper()
        if vat and not session.scalar(select(VatCode.id).where(VatCode.code == vat)) and \
                vat not in {v["VatCode"].upper() for v in data["Vats.csv"]}:
            problems.append(f"Funds.csv line {r['_line']}: VAT code {vat} is not in Vats.csv "
                            f"nor in the IMS.")
    return codes | set(session.scalars(select(Fund.code)).all())


def _mops(session, data, mop_meta, report, problems):
    for r in data["Mops.csv"]:
        where = f"Mops.csv line {r['_line']}"
        code = r["MopCode"].upper()
        if not code or len(code) > 10:
            problems.append(f"{where}: MopCode {code!r} is empty or longer than 10 characters.")
            continue
        meta = mop_meta.get(code, {})
        kind = next((k for flag, k in MOP_KINDS if _bool(meta.get(flag, ""))), "bank_transfer")
        minimum = _pence(r["MinimumAmount"], where, problems)
        maximum = _pence(r["MaximumAmount"], where, problems)
        existing = session.scalar(select(PaymentMethod).where(PaymentMethod.code == code))
        if existing is None:
            session.add(PaymentMethod(
                code=code, name=r["MopName"][:100] or code, kind=kind,
                refundable=_bool(meta.get("IsARefundablePayment", "")),
                minimum_amount=minimum if minimum and minimum >= 0 else None,
                maximum_amount=maximum if maximum and maximum > 0 else None,
                disabled=_bool(r["Disabled"])))
        report.count("payment methods", existing is None)
        for key, value in meta.items():
            if key not in MOP_FLAGS_USED:
                report.not_carried.append(f"payment method {code} {key}={value}")


def _accounts(session, data, funds, report, problems):
    seen = set()
    rows = []
    for r in data["AccountHolders.csv"]:
        where = f"AccountHolders.csv line {r['_line']}"
        ref, fund = r["AccountReference"], r["FundCode"].upper()
        if not ref or len(ref) > 30:
            problems.append(f"{where}: AccountReference {ref!r} is empty or too long.")
            continue
        if fund not in funds:
            problems.append(f"{where}: fund {fund} is not in Funds.csv nor in the IMS.")
            continue
        if (fund, ref) in seen:
            problems.append(f"{where}: {fund}/{ref} is in the file twice.")
            continue
        seen.add((fund, ref))
        name = " ".join(x for x in (r.get("Title"), r.get("Forename"), r["Surname"]) if x)
        address = ", ".join(r.get(f"AddressLine{i}", "") for i in range(1, 5)
                            if r.get(f"AddressLine{i}")) or None
        balance = _pence(r.get("CurrentBalance", ""), where, problems)
        stop = r.get("StopMessage") or None
        rows.append(dict(fund_code=fund, account_reference=ref, name=name[:200] or ref,
                         address=address, postcode=(r["Postcode"].upper() or None),
                         balance=balance, stop_message=stop[:200] if stop else None,
                         stop_source="file" if stop else None,
                         phonetic_key=name_key(r["Surname"] or name)))
    if problems:
        return
    existing = set(session.execute(select(AccountHolder.fund_code,
                                          AccountHolder.account_reference)).all())
    new = [r for r in rows if (r["fund_code"], r["account_reference"]) not in existing]
    if new:
        session.execute(AccountHolder.__table__.insert(), new)
    report.created["account holders"] = len(new)
    report.existing["account holders"] = len(rows) - len(new)


def _transactions(session, data, funds, report, problems, actor):
    parsed = []
    refs = set()
    for r in data["ProcessedTransactions.csv"]:
        where = f"ProcessedTransactions.csv line {r['_line']}"
        ref = r["TransactionReference"]
        fund = r["FundCode"].upper()
        amount = _pence(r["Amount"], where, problems, allow_empty=False)
        when = _date(r["TransactionDate"], where, problems)
        if not ref or len(ref) > 90:
            problems.append(f"{where}: TransactionReference is empty or too long.")
            continue
        if ref in refs:
            problems.append(f"{where}: TransactionReference {ref} is in the file twice.")
            continue
        refs.add(ref)
        if fund not in funds:
            problems.append(f"{where}: fund {fund} is not in Funds.csv nor in the IMS.")
            continue
        if amount == 0:
            problems.append(f"{where}: a zero amount cannot be posted.")
            continue
        if amount is None or when is None:
            continue
        vat_amount = _pence(r.get("VatAmount", ""), where, problems) or 0
        parsed.append((when, r["_line"], ref, fund, amount, vat_amount, r))
    if problems:
        return
    for when, _line, ref, fund, amount, vat_amount, r in sorted(parsed):
        stats = report.funds.setdefault(fund, {"rows": 0, "file_total": 0, "ledger_total": 0})
        stats["rows"] += 1
        stats["file_total"] += amount
        if _record(session, "transaction", ref) is not None:
            report.count("transactions", False)
            continue
        account_ref = r.get("AccountReference") or None
        office = (r.get("OfficeCode") or None)
        group = post_group(session, "migration", [
            Leg(MIGRATION, amount), Leg(FUND, -amount, fund, account_ref)], actor=actor,
            office_code=None, reason=f"LocalGov IMS {ref}")
        if amount > 0:
            record_income(
                session, group=group, fund_code=fund, account_reference=account_ref,
                amount=amount, payment_method_code=r["MopCode"].upper() or "MIG",
                transaction_date=when, narrative=(r.get("Narrative") or None),
                vat_code=(r.get("VatCode") or "").upper() or None,
                external_reference=(r.get("PspReference") or ref)[:100],
                office_code=office[:10] if office else None, created_by=actor,
                vat_amount=abs(vat_amount))
        session.add(MigrationRecord(source=SOURCE, kind="transaction", source_key=ref,
                                    target_id=group.id))
        report.count("transactions", True)


def _totals(session, report):
    migrated = select(PostingGroup.id).where(PostingGroup.kind == "migration")
    for code, stats in report.funds.items():
        total = session.scalar(select(func.coalesce(func.sum(LedgerLine.amount), 0)).where(
            LedgerLine.group_id.in_(migrated), LedgerLine.account == FUND,
            LedgerLine.fund_code == code))
        stats["ledger_total"] = -int(total)
    report.control_total = int(session.scalar(select(func.coalesce(func.sum(LedgerLine.amount), 0))
                                              .where(LedgerLine.group_id.in_(migrated),
                                                     LedgerLine.account == MIGRATION)))
    # the control account against every migrated fund (not only those in this export)
    all_funds = -int(session.scalar(select(func.coalesce(func.sum(LedgerLine.amount), 0)).where(
        LedgerLine.group_id.in_(migrated), LedgerLine.account == FUND)))
    if all_funds != report.control_total:
        report.not_carried.append("the MIGRATION control account does not equal the migrated "
                                  "funds' total")
