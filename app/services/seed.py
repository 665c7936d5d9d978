"""Reference and demo data. Inserts only what is missing, so running it twice changes nothing."""

from __future__ import annotations

import random
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.domain.check_digits import CheckDigitRule
from app.models.reference import (
    AccountHolder,
    Fund,
    Office,
    PaymentMethod,
    ReferenceValidator,
    Setting,
    VatCode,
)
from app.security import roles as R
from app.services.approval_limits import seed_approval_limits
from app.services.reference import SUSPENSE_FUND, WRITE_OFF_FUND

DEMO_PASSWORD = "Passw0rd!"

VAT_CODES = [
    ("S", "Standard rate", Decimal("0.20")),
    ("R", "Reduced rate", Decimal("0.05")),
    ("Z", "Zero rate", Decimal("0")),
    ("E", "Exempt", Decimal("0")),
    ("O", "Outside the scope of VAT", Decimal("0")),
]

METHODS = [
    # code, name, kind, refundable, min pence, max pence
    ("CASH", "Cash", "cash", False, 1, 1_000_000),
    ("CHQ", "Cheque", "cheque", False, 1, None),
    ("CARD", "Debit/credit card", "card", True, 1, 2_500_000),
    ("WEB", "Online card payment", "card", True, 1, 2_500_000),
    ("BACS", "Bank transfer (BACS/FPS)", "bank_transfer", False, 1, None),
    ("DD", "Direct Debit", "direct_debit", False, 1, None),
    ("PO", "Post Office", "post_office", False, 1, 1_000_000),
    ("PP", "PayPoint", "post_office", False, 1, 1_000_000),
    ("PZ", "Payzone", "post_office", False, 1, 1_000_000),
    ("TEL", "Telephone payment", "card", True, 1, 2_500_000),
    ("JNL", "Journal", "journal", False, None, None),
    ("TRF", "Transfer", "transfer", False, None, None),
    ("RFD", "Refund", "refund", False, None, None),
    ("WO", "Write-off", "write_off", False, None, None),
]

OFFICES = [("CIVIC", "Civic Centre"), ("LIB", "Central Library"), ("CC", "Contact Centre"),
           ("WEB", "Online"), ("BANK", "Bank files")]

VALIDATORS = [
    dict(name="Council Tax account", min_length=9, max_length=9, character_class="alphanumeric",
         input_mask="########@", check_digit_scheme="weighted_sum", modulus=11,
         weights="9,8,7,6,5,4,3,2,0", subtract=True, result_substitutions="10:X,11:0"),
    dict(name="Business Rates account", min_length=10, max_length=10, character_class="numeric",
         input_mask="#########@", check_digit_scheme="luhn"),
    dict(name="Housing rent account", min_length=9, max_length=9, character_class="alphanumeric",
         input_mask="HR######@", check_digit_scheme="weighted_sum", modulus=11,
         weights="8,7,6,5,4,3,2,1,0", subtract=True, source_substitution="HR=07",
         result_substitutions="10:A,11:0"),
    dict(name="PCN (old, 8 digits)", min_length=8, max_length=8, character_class="numeric",
         regex=r"^[0-9]{8}$"),
    dict(name="PCN", min_length=10, max_length=10, character_class="alphanumeric",
         input_mask="$$#######@", check_digit_scheme="weighted_sum", modulus=11,
         weights="0,0,7,6,5,4,3,2,1,0", subtract=True, source_substitution="BJ=05,LW=12",
         result_substitutions="10:X,11:0", chained="PCN (old, 8 digits)"),
    dict(name="Sundry debtor invoice", min_length=7, max_length=8, character_class="numeric"),
    dict(name="Library card (Dynix)", min_length=10, max_length=10, character_class="numeric",
         input_mask="#########@", check_digit_scheme="dynix", modulus=10, weights="2",
         result_substitutions="10:0"),
]

FUNDS = [
    # code, name, gl, vat, override, max pence, must exist, validator, credit notes
    ("CTAX", "Council Tax", "1001-CT", "O", False, 1_000_000, False, "Council Tax account", False),
    ("NNDR", "Business Rates", "1002-NR", "O", False, 50_000_000, False, "Business Rates account", False),
    ("HRA", "Housing Rents", "2001-HR", "E", False, 500_000, True, "Housing rent account", False),
    ("PCN", "Parking Fines", "3001-PK", "O", False, 100_000, False, "PCN", False),
    ("SUN", "Sundry Debtors", "4001-SD", "S", True, 10_000_000, True, "Sundry debtor invoice", True),
    ("LIB", "Library Charges", "5001-LB", "S", True, 50_000, False, "Library card (Dynix)", False),
    ("TWS", "Trade Waste", "4002-TW", "S", False, 2_000_000, False, None, False),
    ("CPK", "Car Parks", "3002-CP", "S", False, 5_000_000, False, None, False),
    ("SUSP", "Suspense", "9001-SU", None, False, None, False, None, False),
    ("WOFF", "Write-offs", "9002-WO", None, False, None, False, None, False),
]

#: How an imported row's reference identifies its fund when the file names none (data, not code).
REFERENCE_PATTERNS = [
    ("CTAX", r"^[0-9]{8}[0-9X]$", 10, "Council Tax: 8 digits and a check character"),
    ("NNDR", r"^[0-9]{10}$", 20, "Business Rates: 10 digits"),
    ("HRA", r"^HR[0-9]{6}[0-9A]$", 30, "Housing rent: HR, 6 digits and a check character"),
    ("PCN", r"^(BJ|LW)[0-9]{7}[0-9X]$", 40, "Penalty charge notice"),
]

#: rows an office always counts on its cash-up: office, description, fund, reference, order
CASH_UP_TEMPLATE_ROWS = [
    ("CIVIC", "Car park machine – Civic Centre level 1", "CPK", "CPK-CIVIC-1", 1),
    ("CIVIC", "Car park machine – Civic Centre level 2", "CPK", "CPK-CIVIC-2", 2),
    ("LIB", "Car park machine – Library", "CPK", "CPK-LIB-1", 1),
]

SETTINGS = [
    (SUSPENSE_FUND, "SUSP", "The fund that holds unmatched income."),
    (WRITE_OFF_FUND, "WOFF", "The fund that written-off money is posted to."),
    # GL exports (app/services/gl_export.py)
    ("gl.default_cost_centre", "C100", "Cost centre of GL export rows when the fund has none."),
    ("gl.vat_gl_code", "8100-VAT", "GL code of VAT when the VAT code has none."),
    ("gl.account.BANK", "7001-BK", "GL code of the bank (income received) in GL exports."),
    ("gl.account.SUSPENSE", "9001-SU", "GL code of the suspense account in GL exports."),
    ("gl.account.REFUNDS_PAYABLE", "7101-RP", "GL code of refunds payable in GL exports."),
    ("gl.account.WRITE_OFFS", "9002-WO", "GL code of written-off money in GL exports."),
    # clearing accounts (app/services/clearing.py) and the migration control account
    ("gl.account.CASH_IN_HAND", "7002-CH", "GL code of cash in hand (tills) in GL exports."),
    ("gl.account.CASH_IN_TRANSIT", "7003-CT", "GL code of cash in transit in GL exports."),
    ("gl.account.CARD_CLEARING", "7004-CC", "GL code of card clearing in GL exports."),
    ("gl.account.AGENT_CLEARING", "7005-AC", "GL code of payment-agent clearing in GL exports."),
    ("gl.account.CASH_VARIANCE", "9003-CV", "GL code of cash-up over/short in GL exports."),
    ("gl.account.MIGRATION", "9004-MG", "GL code of the migration control account in GL exports."),
    ("gl.account.CARD_FEES", "9005-CF", "GL code of card providers' fees (bank reconciliation)."),
    ("gl.account.BANK_CHARGES", "9006-BC", "GL code of bank charges (bank reconciliation)."),
    # retention of personal data (app/services/retention.py): years after the end of the
    # financial year a record is dated in
    ("retention_years_transaction", "6",
     "Years after the financial year a payment's narrative is kept."),
    ("retention_years_suspense_item", "6",
     "Years after the financial year a suspense item's narrative is kept."),
    ("retention_years_refund", "6",
     "Years after the financial year a refund's payer, payee and bank details are kept."),
    ("retention_years_card_payment", "6",
     "Years after the financial year a card payer's details are kept."),
    ("retention_years_payment_request", "6",
     "Years after the financial year a payment request's name and email are kept."),
    ("retention_years_account_holder", "6",
     "Years after the financial year an account holder closed that their details are kept."),
]
#: where each VAT code's VAT goes in the general ledger (vat_code.gl_code)
VAT_GL_CODES = {"S": "8101-VAT", "R": "8102-VAT"}

DEMO_USERS = [
    ("admin", "Alun", "Administrator", R.ADMIN),
    ("wfadmin", "Wendy", "Workflow-Admin", R.WFADMIN),
    ("head", "Huw", "Head-of-Finance", R.HEAD),
    ("manager", "Megan", "Manager", R.MANAGER),
    ("manager2", "Marc", "Manager-Two", R.MANAGER),
    ("clerk", "Carys", "Clerk", R.CLERK),
    ("clerk2", "Cai", "Clerk-Two", R.CLERK),
    ("cashier", "Catrin", "Cashier", R.CASHIER),
    ("auditor", "Aled", "Auditor", R.AUDITOR),
    ("payint", "Pawl", "Payment-Integration", R.PAYINT),
]
#: demo users who hold the funds of one fund group only (the others hold all funds)
DEMO_SCOPED_USERS = [
    ("parking", "Padrig", "Parking", R.CLERK, "Parking"),
]
#: demo fund groups: name, description, funds
DEMO_FUND_GROUPS = [
    ("Parking", "The parking team: penalty charge notices and car parks.", ("PCN", "CPK")),
    ("Revenues", "Council Tax and Business Rates.", ("CTAX", "NNDR")),
    ("Housing", "Housing rents.", ("HRA",)),
]

FIRST = ["Aled", "Bethan", "Carys", "Dafydd", "Eleri", "Ffion", "Gareth", "Huw", "Ioan", "Lowri",
         "Megan", "Nia", "Owain", "Rhys", "Sian", "Tomos", "Alice", "James", "Olivia", "Harry",
         "Amelia", "George", "Isla", "Jack", "Sophie", "Mohammed", "Priya", "Wei", "Zofia", "Kemi"]
LAST = ["Jones", "Williams", "Davies", "Evans", "Thomas", "Roberts", "Hughes", "Lewis", "Morgan",
        "Griffiths", "Price", "Owen", "Jenkins", "Powell", "Smith", "Taylor", "Brown", "Khan",
        "Patel", "Nowak", "Okafor", "Chen", "Edwards", "Phillips", "Rees"]
STREETS = ["Heol y Coed", "Stryd Fawr", "High Street", "Church Road", "Station Road", "Ffordd y Parc",
           "Mill Lane", "Castle Street", "Heol Isaf", "Victoria Road", "Bryn Glas", "Maes y Dre"]
TOWNS = [("Llanwern", "NP18"), ("Caerleon", "NP18"), ("Newport", "NP20"), ("Cwmbran", "NP44"),
         ("Risca", "NP11"), ("Chepstow", "NP16")]
BUSINESSES = ["Café", "Garage", "Stores", "Bakery", "Florist", "Pharmacy", "Joinery", "Salon",
              "Dental Practice", "Hotel", "Pub", "Print Shop"]
STOPS = ["Do not accept payment – BAILIFF", "Do not accept payment – account in litigation",
         "Refer to Revenues: insolvency", "Do not accept payment – deceased, refer to Probate team"]


def _add_missing(session: Session, model, key: str, rows: list[dict]) -> int:
    existing = set(session.scalars(select(getattr(model, key))))
    added = 0
    for row in rows:
        if row[key] not in existing:
            session.add(model(**row))
            added += 1
    session.flush()
    return added


def seed_reference(session: Session) -> dict[str, int]:
    """VAT codes, payment methods, offices, validators, funds and fund settings."""
    counts = {}
    counts["vat codes added"] = _add_missing(session, VatCode, "code", [
        dict(code=c, name=n, rate=r, gl_code=VAT_GL_CODES.get(c)) for c, n, r in VAT_CODES])
    counts["payment methods added"] = _add_missing(session, PaymentMethod, "code", [
        dict(code=c, name=n, kind=k, refundable=rf, minimum_amount=lo, maximum_amount=hi)
        for c, n, k, rf, lo, hi in METHODS])
    counts["offices added"] = _add_missing(session, Office, "code", [
        dict(code=c, name=n) for c, n in OFFICES])
    plain = [{k: v for k, v in spec.items() if k != "chained"} for spec in VALIDATORS]
    counts["validators added"] = _add_missing(session, ReferenceValidator, "name", plain)
    by_name = {v.name: v for v in session.scalars(select(ReferenceValidator))}
    for spec in VALIDATORS:
        if spec.get("chained") and by_name[spec["name"]].next_validator_id is None:
            by_name[spec["name"]].next_validator_id = by_name[spec["chained"]].id
    counts["funds added"] = _add_missing(session, Fund, "code", [
        dict(code=c, name=n, gl_code=gl, vat_code=vat, vat_override=ov, maximum_amount=mx,
             account_must_exist=must, validator_id=by_name[v].id if v else None,
             credit_notes_allowed=cn)
        for c, n, gl, vat, ov, mx, must, v, cn in FUNDS])
    from app.models.imports import FundReferencePattern

    counts["reference patterns added"] = _add_missing(session, FundReferencePattern, "pattern", [
        dict(fund_code=f, pattern=p, priority=pr, description=d) for f, p, pr, d in REFERENCE_PATTERNS])
    counts["settings added"] = _add_missing(session, Setting, "key", [
        dict(key=k, value=v, description=d) for k, v, d in SETTINGS])
    counts["approval limits added"] = seed_approval_limits(session)
    from app.models.cashup import CashUpTemplateRow

    have = {(r.office_code, r.description) for r in session.scalars(select(CashUpTemplateRow))}
    added = 0
    for office, desc, fund, ref, order in CASH_UP_TEMPLATE_ROWS:
        if (office, desc) not in have:
            session.add(CashUpTemplateRow(office_code=office, description=desc, fund_code=fund,
                                          account_reference=ref, sort_order=order))
            added += 1
    session.flush()
    counts["cash-up template rows added"] = added
    session.commit()
    return counts


def _rule(v: ReferenceValidator) -> CheckDigitRule:
    return CheckDigitRule.from_fields(v.check_digit_scheme, v.modulus, v.weights, v.subtract,
                                      v.source_substitution, v.result_substitutions)


def make_reference(v: ReferenceValidator | None, rng: random.Random) -> str:
    """A reference that passes validator v (used for demo accounts and tests)."""
    if v is None:
        return str(rng.randint(10_000_000, 99_999_999))
    mask = v.input_mask
    if not mask:
        length = v.max_length or 8
        return "".join(str(rng.randint(0, 9)) for _ in range(length))
    rule = _rule(v) if v.check_digit_scheme else None
    prefixes = [src for src, _ in rule.source_substitution] if rule else []
    while True:
        # letters at the start come from one of the substituted prefixes (e.g. BJ, LW), if any
        prefix = rng.choice(prefixes) if prefixes else ""
        chars = []
        for m in mask:
            if m == "#":
                chars.append(str(rng.randint(0, 9)))
            elif m == "$":
                pos = len(chars)
                chars.append(prefix[pos] if pos < len(prefix)
                             else rng.choice("ABCDEFGHJKLMNPRSTUVWXYZ"))
            elif m in "?*":
                chars.append(str(rng.randint(0, 9)))
            elif m == "@":
                chars.append("0")
            else:
                chars.append(m)
        body = "".join(chars)
        if v.check_digit_scheme is None:
            return body
        pos = mask.index("@") if "@" in mask else len(body) - 1
        ref = rule.with_check(body[:pos] + body[pos + 1:], pos)
        if ref is not None and (v.character_class != "numeric" or ref.isdigit()):
            return ref


def seed_demo(session: Session, appbuilder) -> dict[str, int]:
    """Roles, demo users and about 1,000 account holders (some on stop)."""
    from app.security.sync import sync_roles

    sync_roles(appbuilder, session)
    sm = appbuilder.sm
    users_added = 0
    for username, first, last, role_name in DEMO_USERS:
        if sm.find_user(username=username) is None:
            sm.add_user(username, first, last, f"{username}@llanwern.gov.uk.invalid",
                        [sm.find_role(role_name)], password=DEMO_PASSWORD)
            users_added += 1
    from app.models.fund_group import FundGroup, UserFundAccess
    from app.services.fund_groups import grant_all_funds

    groups_added = 0
    for name, description, codes in DEMO_FUND_GROUPS:
        if session.scalar(select(FundGroup.id).where(FundGroup.name == name)) is None:
            session.add(FundGroup(name=name, description=description, funds=list(
                session.scalars(select(Fund).where(Fund.code.in_(codes))))))
            groups_added += 1
    session.flush()
    for username, first, last, role_name in DEMO_USERS:
        user = sm.find_user(username=username)
        if session.get(UserFundAccess, user.id) is None:  # never set: the demo's all funds
            grant_all_funds(session, user.id)
    from app.models.fund_group import user_fund_group

    for username, first, last, role_name, group in DEMO_SCOPED_USERS:
        if sm.find_user(username=username) is None:
            user = sm.add_user(username, first, last, f"{username}@llanwern.gov.uk.invalid",
                               [sm.find_role(role_name)], password=DEMO_PASSWORD)
            session.add(UserFundAccess(user_id=user.id, all_funds=False))
            group_id = session.scalar(select(FundGroup.id).where(FundGroup.name == group))
            session.execute(user_fund_group.insert().values(user_id=user.id, group_id=group_id))
            users_added += 1
    session.commit()
    counts = {"demo users added": users_added, "fund groups added": groups_added}
    if session.scalar(select(func.count(AccountHolder.id))) == 0:
        rng = random.Random(2026)
        plan = [("CTAX", 400), ("NNDR", 150), ("HRA", 200), ("PCN", 100), ("SUN", 100), ("LIB", 50)]
        added = 0
        for fund_code, n in plan:
            fund = session.scalar(select(Fund).where(Fund.code == fund_code))
            seen = set()
            while len(seen) < n:
                ref = make_reference(fund.validator, rng)
                if ref in seen:
                    continue
                seen.add(ref)
                town, pc = rng.choice(TOWNS)
                if fund_code in ("NNDR", "SUN") and rng.random() < 0.7:
                    name = f"{rng.choice(LAST)}'s {rng.choice(BUSINESSES)}"
                else:
                    name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
                session.add(AccountHolder(
                    fund_code=fund_code, account_reference=ref, name=name,
                    address=f"{rng.randint(1, 180)} {rng.choice(STREETS)}, {town}",
                    postcode=f"{pc} {rng.randint(1, 9)}{rng.choice('ABDEFGHJLNPQRSTUWXYZ')}"
                             f"{rng.choice('ABDEFGHJLNPQRSTUWXYZ')}",
                    stop_message=rng.choice(STOPS) if rng.random() < 0.03 else None))
                added += 1
        session.commit()
        counts["account holders added"] = added
    else:
        counts["account holders added"] = 0
    from app.services.portal import seed_portal

    counts["funds offered online"] = seed_portal(session)
    session.commit()
    return counts
