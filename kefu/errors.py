"""Errors that point an operator at the exact place in a file they edit."""
from __future__ import annotations

from typing import Optional


class FileProblem(ValueError):
    """A problem in an operator-edited file; `str()` reads "<file>, line <n>: <problem>"."""

    def __init__(self, file: str, line: Optional[int], problem: str):
        self.file, self.line, self.problem = file, line, problem
        where = f"{file}, line {line}" if line else file
        super().__init__(f"{where}: {problem}")
