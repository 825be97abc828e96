"""Errors raised for bad input data."""

from __future__ import annotations


class DataError(ValueError):
    """A data file or record cannot be used; the message names the file, the record and the problem."""
