from __future__ import annotations

from collections.abc import Iterator

import pytest

from processors.enrich import GeoIP2Lookup
from tests.unit.enrich.helpers import ANONYMOUS_DB, ASN_DB, CITY_DB


@pytest.fixture(scope="session")
def geoip() -> Iterator[GeoIP2Lookup]:
    """MaxMind's City, ASN and Anonymous-IP test databases."""
    with GeoIP2Lookup(CITY_DB, ASN_DB, ANONYMOUS_DB) as lookup:
        yield lookup
