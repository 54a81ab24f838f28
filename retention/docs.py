"""docs/privacy.md, generated from the catalogue so that the two cannot drift apart."""

from __future__ import annotations

from pathlib import Path

from retention.catalogue import MEASURED_FROM, Catalogue

PRIVACY_DOC = Path(__file__).resolve().parent.parent / "docs" / "privacy.md"


def render_privacy_doc(catalogue: Catalogue) -> str:
    """Return docs/privacy.md for the catalogue."""
    lines = [
        "# Data categories and their retention",
        "",
        "<!-- Generated from retention/policies.toml by `thuis retention docs --write`; do not edit. -->",
        "",
        "Every table of the database belongs to one of these categories, or holds no personal data",
        "(listed at the end); `thuis retention check` and the tests refuse a database where that is not so,",
        "and a policy shorter than its legal minimum. The catalogue was last reviewed on "
        f"{catalogue.reviewed}.",
        "",
        "| category | examples | kept | counted from | legal minimum | tables |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for category in catalogue.categories:
        minimum = category.legal_minimum_text
        tables = ", ".join(f"`{table}`" for table in category.tables) or "(none yet)"
        counted_from = MEASURED_FROM[category.measured_from]
        if category.time_column is not None and category.keep is not None:
            counted_from += f" (`{category.time_column}`)"
        lines.append(
            f"| {category.name} | {category.examples} | {category.keep_text} | {counted_from} | {minimum} "
            f"| {tables} |"
        )
    lines += ["", "## Legal basis and source", ""]
    for category in catalogue.categories:
        lines.append(f"- **{category.name}**: {category.legal_basis}. Period from: {category.source}.")
    lines += ["", "## Tables without personal data", ""]
    lines += [f"- `{table}`: {why}" for table, why in sorted(catalogue.not_personal.items())]
    return "\n".join(lines) + "\n"
