"""What the subcommand modules share."""

from __future__ import annotations

import argparse
from typing import TypeAlias

Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
"""The object ``add_subparsers`` returns (argparse has no public name for its type)."""
