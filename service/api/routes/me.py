"""Who the presented API key belongs to: its name, its role and what that role may do.

The review page asks this at sign-in, so it can name the signed-in key and refuse one that may not
review; the role rules stay in `Principal.may`, not in the page's JavaScript.
"""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from service.api.convert import error_responses
from service.api.deps import CallerDep
from service.core.config import Role

router = APIRouter(prefix="/v1/me", tags=["auth"])


class MeOut(BaseModel):
    """The caller, as the service sees the key it sent."""

    name: str = Field(description="the key's configured name (recorded as `client`)")
    role: Role
    may_predict: bool = Field(description="may code notes (role ehr or admin)")
    may_review: bool = Field(description="may read predictions and send feedback (coder or admin)")
    may_administer: bool = Field(description="may export feedback and read the model (admin)")


@router.get("", summary="The calling key", responses=error_responses(401))
async def read_me(caller: CallerDep) -> MeOut:
    """Name and role of the key sent; 401 when it is missing or unknown. Any role may ask."""
    return MeOut(
        name=caller.name,
        role=caller.role,
        may_predict=caller.may(("ehr",)),
        may_review=caller.may(("coder",)),
        may_administer=caller.may(("admin",)),
    )
