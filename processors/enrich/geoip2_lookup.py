"""The :class:`GeoLookup` adapter over MaxMind databases, read with ``geoip2``.

One City (or Country/Enterprise) database, and optionally an ASN and an Anonymous-IP database,
opened with ``MODE_AUTO`` (memory-mapped through the C extension where it is installed).
Results are cached per address in a bounded LRU (``cache_size`` addresses): the same clients
send many events. Equal results are shared, so the cache costs a few hundred bytes an address.

When no City database is configured, :func:`default_city_database` finds the GeoLite2-City
file shipped in the PyPI package ``maxminddb-geolite2`` (a 2018 snapshot, CC BY-SA; good enough
for a local run, not for production).
"""

from __future__ import annotations

import importlib.util
import os
from functools import lru_cache
from pathlib import Path
from types import TracebackType
from typing import Any

import geoip2.database
import geoip2.errors
import maxminddb

from processors.enrich.ip import IPAddress
from schemas.enrichment import Anonymity, Asn, Geo

__all__ = ["GeoDatabaseError", "GeoIP2Lookup", "default_city_database"]

DatabasePath = str | os.PathLike[str]

_NOT_ANONYMOUS = Anonymity()
_LOCATION_KINDS = {"City": "city", "Enterprise": "enterprise", "Country": "country"}


class GeoDatabaseError(Exception):
    """A configured MaxMind database cannot be opened or is not of the expected kind."""


def default_city_database() -> Path | None:
    """``GeoLite2-City.mmdb`` from the ``maxminddb-geolite2`` package, if it is installed."""
    spec = importlib.util.find_spec("_maxminddb_geolite2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "GeoLite2-City.mmdb"
        if path.is_file():
            return path
    return None


class GeoIP2Lookup:
    """Looks addresses up in MaxMind databases; use as a context manager or call ``close()``."""

    def __init__(
        self,
        city: DatabasePath | None,
        asn: DatabasePath | None = None,
        anonymous: DatabasePath | None = None,
        *,
        cache_size: int = 32_768,
        mode: int = geoip2.database.MODE_AUTO,
    ) -> None:
        self._readers: list[geoip2.database.Reader] = []
        try:
            self._location, self._location_kind = self._open_location(city, mode)
            self._asn = self._open(asn, "ASN", mode)
            self._anonymous = self._open(anonymous, "Anonymous-IP", mode)
        except BaseException:
            self.close()
            raise
        self._interned: dict[Geo, Geo] = {}
        self._intern_limit = max(cache_size, 1024)
        self._cached = lru_cache(maxsize=cache_size)(self._lookup)

    def lookup(self, address: IPAddress) -> Geo | None:
        return self._cached(address)

    def close(self) -> None:
        for reader in self._readers:
            reader.close()
        self._readers.clear()

    def __enter__(self) -> GeoIP2Lookup:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- opening ---------------------------------------------------------------------------

    def _open(
        self, path: DatabasePath | None, kind: str, mode: int
    ) -> geoip2.database.Reader | None:
        """Open ``path`` (None: not configured) and check it is a ``kind`` database."""
        if path is None:
            return None
        try:
            reader = geoip2.database.Reader(path, mode=mode)
        except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
            raise GeoDatabaseError(
                f"cannot open the MaxMind {kind} database {str(path)!r}: {exc}"
            ) from exc
        self._readers.append(reader)
        found = reader.metadata().database_type
        if not any(marker in found for marker in kind.split("/")):
            raise GeoDatabaseError(
                f"{str(path)!r} is a {found} database, expected a GeoIP2/GeoLite2 {kind} one"
            )
        return reader

    def _open_location(
        self, path: DatabasePath | None, mode: int
    ) -> tuple[geoip2.database.Reader | None, str]:
        reader = self._open(path, "/".join(_LOCATION_KINDS), mode)
        if reader is None:
            return None, ""
        found = reader.metadata().database_type
        method = next(method for marker, method in _LOCATION_KINDS.items() if marker in found)
        return reader, method

    # -- looking up ------------------------------------------------------------------------

    def _lookup(self, address: IPAddress) -> Geo | None:
        fields = self._location_fields(address)
        asn = self._asn_of(address)
        anonymity = self._anonymity_of(address)
        if not fields and asn is None and anonymity in (None, _NOT_ANONYMOUS):
            return None  # nothing known beyond "not listed as anonymous"
        return self._intern(Geo(**fields, asn=asn, anonymity=anonymity))

    def _intern(self, found: Geo) -> Geo:
        """One shared object per distinct result: many addresses have the same answer, and a
        result costs ~3 KB, an extra cache entry a few hundred bytes."""
        shared = self._interned.get(found)
        if shared is None:
            if len(self._interned) >= self._intern_limit:
                self._interned.clear()
            self._interned[found] = shared = found
        return shared

    def _location_fields(self, address: IPAddress) -> dict[str, Any]:
        if self._location is None:
            return {}
        try:
            found = getattr(self._location, self._location_kind)(address)
        except geoip2.errors.AddressNotFoundError:
            return {}
        return _location(found)

    def _asn_of(self, address: IPAddress) -> Asn | None:
        if self._asn is None:
            return None
        try:
            found = self._asn.asn(address)
        except geoip2.errors.AddressNotFoundError:
            return None
        if found.autonomous_system_number is None:
            return None
        return Asn(
            number=found.autonomous_system_number,
            organization=found.autonomous_system_organization,
        )

    def _anonymity_of(self, address: IPAddress) -> Anonymity | None:
        if self._anonymous is None:
            return None
        try:
            found = self._anonymous.anonymous_ip(address)
        except geoip2.errors.AddressNotFoundError:
            return Anonymity()
        return Anonymity(
            is_anonymous=found.is_anonymous,
            is_anonymous_vpn=found.is_anonymous_vpn,
            is_hosting_provider=found.is_hosting_provider,
            is_public_proxy=found.is_public_proxy,
            is_residential_proxy=found.is_residential_proxy,
            is_tor_exit_node=found.is_tor_exit_node,
        )


def _location(found: Any) -> dict[str, Any]:
    """The :class:`Geo` fields of a geoip2 City/Country/Enterprise model."""
    fields: dict[str, Any] = {
        "country_code": found.country.iso_code,
        "country": found.country.name,
        "continent_code": found.continent.code,
        "continent": found.continent.name,
    }
    city = getattr(found, "city", None)
    if city is not None:
        region = found.subdivisions.most_specific
        location = found.location
        fields.update(
            region_code=region.iso_code,
            region=region.name,
            city=city.name,
            postal_code=found.postal.code,
            latitude=location.latitude,
            longitude=location.longitude,
            accuracy_radius_km=location.accuracy_radius,
            time_zone=location.time_zone,
        )
    return fields
