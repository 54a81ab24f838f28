"""docs/privacy.md, generated from the catalogue so that the two cannot drift apart."""

from __future__ import annotations

from pathlib import Path

from thuis.catalogue import MEASURED_FROM, ON_ERASURE, Catalogue

PRIVACY_DOC = Path(__file__).resolve().parent.parent / "docs" / "privacy.md"
NOTES = """\
## How to read it

- **Exact to the day.** Hypertables kept for a limited period have one-day chunks starting at midnight
  UTC (`thuis retention check` refuses any other) and lose whole expired days with `drop_chunks`: a
  record goes at the first run after the day it falls in has passed out of its period. Other tables lose
  expired rows, each at the first run after the exact moment, in batched `DELETE`s.
- **User data** is two categories, because the regulation gives it two periods: the account (username,
  password hash) is needed only while the contract runs and goes at the first run after the contract ended
  (`0 days` after its end); the billing records (who held the contract, where invoices went, which account
  paid) stay 7 years after the end, as the fiscal duty requires. Ending a contract closes its accounts.
- **Indefinitely** means as long as what it belongs to exists: display preferences go with their account,
  system settings with their site, and everything of a person on erasure, where no legal duty applies.
- **Consent** lapses with its record: after 2 years the portal asks again rather than rely on old proof.
- **Audit records** are kept 2 years: no law sets a period; it is long enough to answer an owner who asks
  who read their data over the past year and to investigate a breach found late, and no longer than the
  consent records they sit beside. They are evidence, so they are kept whole for that period: no role may
  change or delete one (a trigger refuses it even to the schema owner), and retention's function refuses to
  drop a day younger than 2 years, whatever clock the worker was given (migration 0013).
- **Erasure** at a person's request (`docs/data-subject-rights.md`) removes every category above that
  holds their data, except what a legal duty still holds: billing records until 7 years after the contract
  ended, webshop orders until 7 years after the order. The refusal names the duty and the date; retention
  removes them then. Energy readings have a 10-year minimum in the regulation as a promise to the customer,
  not a duty towards anyone else, so a person who asks for erasure loses them too. The audit records and
  data-subject requests about the person stay for their period, pseudonymised: their id (and their homes')
  replaced by one random pseudonym kept nowhere else, details that could name them dropped, so that who read
  or acted on their data, and when, remains on record without them.
- **Personal fields** (names, addresses, email, phone, bank account, TOTP secrets) are stored encrypted with
  a data key per person (`docs/encryption.md`); destroying the key makes every copy unreadable."""


def render_privacy_doc(catalogue: Catalogue) -> str:
    """Return docs/privacy.md for the catalogue."""
    lines = [
        "# Data categories and their retention",
        "",
        "<!-- Generated from thuis/policies.toml by `thuis retention docs --write`; do not edit. -->",
        "",
        "Every table of the database belongs to one of these categories, or holds no personal data",
        "(listed at the end); `thuis retention check` and the tests refuse a database where that is not so,",
        "and a policy shorter than its legal minimum. The catalogue was last reviewed on "
        f"{catalogue.reviewed}.",
        "",
        "| category | examples | kept | counted from | legal minimum | on erasure | tables |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for category in catalogue.categories:
        minimum = category.legal_minimum_text
        tables = ", ".join(f"`{table}`" for table in category.tables)
        counted_from = MEASURED_FROM[category.measured_from]
        if category.time_column is not None and category.keep is not None:
            counted_from += f" (`{category.time_column}`)"
        lines.append(
            f"| {category.name} | {category.examples} | {category.keep_text} | {counted_from} | {minimum} "
            f"| {ON_ERASURE[category.on_erasure]} | {tables} |"
        )
    lines += ["", *NOTES.splitlines(), "", "## Legal basis and source", ""]
    for category in catalogue.categories:
        lines.append(f"- **{category.name}**: {category.legal_basis}. Period from: {category.source}.")
    lines += ["", "## Tables without personal data", ""]
    lines += [f"- `{table}`: {why}" for table, why in sorted(catalogue.not_personal.items())]
    return "\n".join(lines) + "\n"
