"""Why Thuis processes personal data and who receives it, as the privacy statements say (access export)."""

from __future__ import annotations

from typing import Final

# Purpose, the data it uses, and who receives it; the access export's recipients.json begins with this.
PURPOSES_AND_RECIPIENTS: Final = (
    {
        "purpose": "performing the contract",
        "data": "user data, product information, sensor data, system settings",
        "recipients": "Thuis, which runs the service",
    },
    {
        "purpose": "installing, testing, commissioning, monitoring and managing installations",
        "data": "user data and product data of the installation",
        "recipients": "installers the owner assigned, only while assigned (see installer_assignments)",
    },
    {
        "purpose": "showing sensor data",
        "data": "sensor data of the home",
        "recipients": "the owner, and residents the owner let read the home (see resident_grants)",
    },
    {"purpose": "helpdesk", "data": "user data, product information", "recipients": "Thuis's helpdesk"},
    {
        "purpose": "announcing outages and maintenance",
        "data": "email address",
        "recipients": "Thuis",
    },
    {
        "purpose": "warranty and energy-monitoring insight for the customer and residents",
        "data": "product information, energy data",
        "recipients": "the owner and the residents they let read the home",
    },
    {
        "purpose": "billing and debtor administration",
        "data": "billing records",
        "recipients": "Thuis's billing administration",
    },
    {
        "purpose": "legal duties",
        "data": "what the order names",
        "recipients": "investigating authorities, only when the law obliges Thuis",
    },
    {
        "purpose": "website improvement",
        "data": "analytics cookies, only with consent (the portal itself sets none)",
        "recipients": "Thuis",
    },
    {
        "purpose": "debt collection",
        "data": "user data",
        "recipients": "a collection agency, only for invoices left unpaid",
    },
    {"purpose": "disputes", "data": "what the dispute is about", "recipients": "courts and mediators"},
    {
        "purpose": "marketing and market research",
        "data": "contact details",
        "recipients": "Thuis, only after prior consent that can be withdrawn at any time",
    },
    {
        "purpose": "research with anonymised data",
        "data": (
            "measurements per coarse area of at least 10 households, per household only daily or coarser; "
            "never a name, an address or a raw identifier"
        ),
        "recipients": "researchers; no record is kept of which households were in an export",
    },
)
INSTALLER_PURPOSE: Final = "installing, testing, commissioning, monitoring and managing the installation"
RESIDENT_PURPOSE: Final = "the resident of the home sees its data, read-only, while the owner lets them"
