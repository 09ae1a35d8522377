"""CLI commands for this stage (added to the root ``astro`` app by ``register``)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this stage's commands to ``app``. (Filled in by the stage's implementation.)"""
