"""Errors the corpus readers raise: a missing file or folder, or content that breaks its format.

Both subclass ValueError and name the offending path (and line, where there is one), so a user
can fix the copy on disk without reading reader code.
"""

from __future__ import annotations


class CorpusLayoutError(ValueError):
    """A corpus folder or file is missing, or the folder does not have the expected layout."""


class CorpusFormatError(ValueError):
    """A corpus file exists but its content is malformed (bad header, JSON, offsets...)."""
