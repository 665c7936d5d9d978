"""Imports of bank and payment-agent files: what each module does, in the order a file meets them.

- ``receiving``  — store an upload, hash it (the same file twice is refused), check it whole:
  every line parsed and named if bad; nothing posts unless every line is good.
- ``rows``       — what happens to one row: processing rules, the fund (the file's code, a rule's
  or a reference pattern's), reference validation; a row that fails goes to suspense. Also the
  rule tester's dry run of one pasted row.
- ``lookups``    — the database look-ups of a chunk: account holders and stops by reference, and
  possible duplicates of earlier imports.
- ``processing`` — post a received file in chunks: this thread parses, decides and stages each
  chunk while writer threads with connections of their own post them, committing in file order
  with the batch's progress, so a crash resumes after the last line committed.
- ``staging``    — a chunk as the writers take it (one row per file line).
- ``postgres`` / ``sqlite`` — the one writer of each database: how a staged chunk becomes
  posting groups, transactions, ledger lines and suspense items (COPY and one statement on
  PostgreSQL; multi-row VALUES under SQLite's write lock), chunk sizes and writer connections.
- ``reversal``   — reverse a whole import by reversal postings.
- ``background`` — run an import in a thread of the web process, the `ims tick` job, retry.
- ``batches``    — a batch's status history and its result as the pages and the API show it.
- ``uploads``    — a file uploaded through a page or the API: receive it, then start posting it.

Posting writes the ledger's own tables (app/models/ledger.py) with the ledger's conventions —
one posting group per row: receipts Dr BANK / Cr FUND (kind "import", one Transaction per row)
and unmatched money Dr BANK / Cr SUSPENSE (kind "suspense", one SuspenseItem per row) — in bulk,
(an agent's file, allpay, debits AGENT_CLEARING instead of BANK: app/services/clearing.py)
since post_group()/record_income() work one group at a time. A row's posting number names the
import and the file line (I42-17, S42-18).
"""

from app.services.imports.background import retry_import, run_queued, start_background
from app.services.imports.batches import import_result
from app.services.imports.processing import process_import
from app.services.imports.receiving import ImportRejected, receive_import, storage_dir, validate_file
from app.services.imports.reversal import reverse_import
from app.services.imports.rows import Decision, RowContext, allpay_methods, dry_run
from app.services.imports.uploads import submit_upload

__all__ = ["Decision", "ImportRejected", "RowContext", "allpay_methods", "dry_run",
           "import_result", "process_import", "receive_import", "retry_import",
           "reverse_import", "run_queued", "start_background", "storage_dir", "submit_upload",
           "validate_file"]
