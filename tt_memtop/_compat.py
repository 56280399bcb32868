"""What Python 3.11 added that we use, for Python 3.10 (TT-Metal's environment on Ubuntu 22.04)."""

from __future__ import annotations

import enum
import sys

__all__ = ["BaseExceptionGroup", "ExceptionGroup", "StrEnum"]

if sys.version_info >= (3, 11):
    from builtins import BaseExceptionGroup, ExceptionGroup  # novermin
    from enum import StrEnum  # novermin
else:  # pragma: no cover - exercised only on 3.10
    from exceptiongroup import BaseExceptionGroup, ExceptionGroup  # novermin (the backport)

    class StrEnum(str, enum.Enum):
        """``enum.StrEnum`` of 3.11: members are strings and print as their value."""

        def __str__(self) -> str:
            return str(self.value)

        def __format__(self, spec: str) -> str:
            return format(str(self.value), spec)
