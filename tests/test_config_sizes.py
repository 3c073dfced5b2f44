"""The one byte-size parser (service/config/sizes.py) in each notation the configs use."""

from __future__ import annotations

import pytest

from service.config.sizes import BASE2, DATASIZE, SI_OR_IEC, SizeNotation, parse_size


@pytest.mark.parametrize(("notation", "text", "size"), [
    (BASE2, "10MB", 10 << 20), (BASE2, "1KiB", 1024), (BASE2, "500", 500), (BASE2, "2EB", 2 << 60),
    (BASE2, "1B", 1), (BASE2, "1mb", None), (BASE2, "1.5MB", None), (BASE2, "1K", None),
    (DATASIZE, "8KB", 8192), (DATASIZE, "8kib", 8192), (DATASIZE, "1.5MB", 3 << 19), (DATASIZE, " 7 ", 7),
    (DATASIZE, "1PB", None),
    (SI_OR_IEC, "1GB", 10**9), (SI_OR_IEC, "1GiB", 1 << 30), (SI_OR_IEC, "1048576", 1 << 20),
    (SI_OR_IEC, "0.5 kb", 500), (SI_OR_IEC, "1EB", None), (SI_OR_IEC, "", None),
])
def test_each_notation_reads_what_its_program_reads(notation: SizeNotation, text: str, size: int | None) -> None:
    assert parse_size(text, notation) == size


@pytest.mark.parametrize("text", ["5i", "5ib", "1.5iB"])
def test_a_unit_without_a_factor_is_not_a_size(text: str) -> None:
    """`longer_than: 5i` in a drop stage raised KeyError (a 500 from the config API) instead of a config error."""
    assert parse_size(text, DATASIZE) is None
