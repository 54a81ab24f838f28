"""A site's address: the owner sets and corrects it, an assigned installer reads it to find the home."""

from __future__ import annotations

from fastapi import APIRouter, Request

from api.params import Id
from api.problems import PROBLEM_RESPONSES, Problem
from api.queries import portal as queries
from api.schemas.portal import SiteAddress, SiteAddressChange
from api.security import SignedIn, pool_of
from api.services.access import owned_site, record_read, site_access
from api.services.personal import keyring_of
from privacy.address import Address
from privacy.keys.crypto import seal_json
from privacy.keys.fields import SITES_ADDRESS, open_document
from privacy.keys.subject_keys import load_key
from privacy.location import LocationError

router = APIRouter(prefix="/api/v1", tags=["sites"], responses=PROBLEM_RESPONSES)


@router.get("/sites/{site_id}/address", summary="Where a site is (owner, assigned installer)")
async def get_address(request: Request, principal: SignedIn, site_id: Id) -> SiteAddress:
    """Return the site's address and the coarse cells derived from it; an installer's read is recorded."""
    async with pool_of(request).acquire() as conn:
        access = await site_access(conn, principal=principal, site_id=site_id)
        if access.via == "resident":
            raise Problem(403, "a resident does not see the address data of the owner")
        row = await conn.fetchrow(queries.SELECT_SITE_ADDRESS, site_id)
        document = {}
        if row is not None and row["address_key_id"] is not None:
            key = await load_key(conn, keyring_of(request), row["address_key_id"])
            document = open_document(key, row["address_ciphertext"], context=SITES_ADDRESS)
        await record_read(conn, principal=principal, access=access, resource="address")
    address = Address.from_document(document)
    return SiteAddress(
        **address.document(),
        postcode_area=row["postcode_area"] if row else None,
        h3_cell=row["h3_cell"] if row else None,
    )


@router.put("/sites/{site_id}/address", summary="Set or correct where a site is (owner)")
async def set_address(
    request: Request, principal: SignedIn, site_id: Id, body: SiteAddressChange
) -> SiteAddress:
    """Store the address sealed with the owner's data key; keep only its coarse cells in the clear."""
    try:
        address = Address(**body.model_dump()).normalised()
        postcode_area, cell = address.postcode_area(), address.h3_cell()
    except LocationError as err:
        raise Problem(422, f"body: {err}") from None
    keyring = keyring_of(request)
    async with pool_of(request).acquire() as conn, conn.transaction():
        await owned_site(conn, principal=principal, site_id=site_id)
        key_id = await conn.fetchval(queries.SELECT_KEY_OF_USER, principal.user_id)
        key = await load_key(conn, keyring, key_id)
        sealed = seal_json(key, address.document(), context=SITES_ADDRESS)
        await conn.execute(queries.SET_SITE_ADDRESS, site_id, postcode_area, cell, key_id, sealed)
    return SiteAddress(**address.document(), postcode_area=postcode_area, h3_cell=cell)
