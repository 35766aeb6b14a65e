"""FastAPI dependencies shared by every feature.

Dependencies here and in each feature's ``deps`` are ``async def`` even when they await nothing: FastAPI
runs a plain ``def`` dependency in a worker thread, a thread round trip per request for a dictionary
lookup."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from agentic_backend.core.config import Settings


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_settings)]
