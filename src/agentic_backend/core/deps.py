"""FastAPI dependencies shared by every feature.

Dependencies here and in each feature's ``deps`` are ``async def`` even when they await nothing: FastAPI
runs a plain ``def`` dependency in a worker thread, a thread round trip per request for a dictionary
lookup."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from agentic_backend.core.config import Settings
from agentic_backend.core.security import core_state


async def get_settings(request: Request) -> Settings:
    return core_state(request).settings


SettingsDep = Annotated[Settings, Depends(get_settings)]
