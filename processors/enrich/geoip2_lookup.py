"""The :class:`GeoLookup` adapter over MaxMind GeoIP2/GeoLite2 databases.

One City (or Country/Enterprise) database, and optionally an ASN and an Anonymous-IP database,
opened with ``MODE_AUTO`` (memory-mapped through the C extension where it is installed).

Records are read with ``maxminddb``, the reader ``geoip2`` itself is built on, and only the
fields trackflow keeps are taken from the decoded record, with ``geoip2``'s meaning (English
names, the most specific subdivision as the region). With ``geoip2``'s model objects, an
address not seen before cost ~120 µs over the three databases; read this way, ~50 µs.
``tests/unit/enrich/test_geoip.py`` checks both give the same answers on every network of
MaxMind's test databases.

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
        mode: int = maxminddb.MODE_AUTO,
    ) -> None:
        self._readers: list[maxminddb.Reader] = []
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

    def _open(self, path: DatabasePath | None, kind: str, mode: int) -> maxminddb.Reader | None:
        """Open ``path`` (None: not configured) and check it is a ``kind`` database."""
        if path is None:
            return None
        try:
            reader = maxminddb.open_database(path, mode)
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
    ) -> tuple[maxminddb.Reader | None, str]:
        reader = self._open(path, "/".join(_LOCATION_KINDS), mode)
        if reader is None:
            return None, ""
        found = reader.metadata().database_type
        kind = next(kind for marker, kind in _LOCATION_KINDS.items() if marker in found)
        return reader, kind

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
        found = _record(self._location, address)
        return {} if found is None else _location(found, self._location_kind != "country")

    def _asn_of(self, address: IPAddress) -> Asn | None:
        if self._asn is None:
            return None
        found = _record(self._asn, address)
        number = None if found is None else found.get("autonomous_system_number")
        if not isinstance(number, int):
            return None
        return Asn(number=number, organization=_text(found, "autonomous_system_organization"))

    def _anonymity_of(self, address: IPAddress) -> Anonymity | None:
        if self._anonymous is None:
            return None
        found = _record(self._anonymous, address)
        if not found:
            return _NOT_ANONYMOUS
        return Anonymity(**{flag: found.get(flag) is True for flag in _ANONYMITY_FLAGS})


_ANONYMITY_FLAGS = tuple(Anonymity.model_fields)


def _record(reader: maxminddb.Reader, address: IPAddress) -> dict[str, Any] | None:
    """The address's record, or None where the database has none (or it is not a map)."""
    try:
        found = reader.get(address)
    except ValueError:  # an IPv6 address in an IPv4-only database
        return None
    return found if isinstance(found, dict) else None


def _part(record: dict[str, Any], key: str) -> dict[str, Any]:
    found = record.get(key)
    return found if isinstance(found, dict) else {}


def _text(record: dict[str, Any] | None, key: str) -> str | None:
    found = None if record is None else record.get(key)
    return found if isinstance(found, str) else None


def _name(part: dict[str, Any]) -> str | None:
    """The English name, as geoip2 gives it for the locale list ``["en"]``."""
    names = part.get("names")
    return _text(names, "en") if isinstance(names, dict) else None


def _number(record: dict[str, Any], key: str) -> float | None:
    found = record.get(key)
    return found if isinstance(found, (int, float)) and not isinstance(found, bool) else None


def _location(record: dict[str, Any], with_city: bool) -> dict[str, Any]:
    """The :class:`Geo` fields of a City/Country/Enterprise record."""
    country, continent = _part(record, "country"), _part(record, "continent")
    fields: dict[str, Any] = {
        "country_code": _text(country, "iso_code"),
        "country": _name(country),
        "continent_code": _text(continent, "code"),
        "continent": _name(continent),
    }
    if with_city:
        subdivisions = record.get("subdivisions")
        region = subdivisions[-1] if isinstance(subdivisions, list) and subdivisions else {}
        region = region if isinstance(region, dict) else {}
        location = _part(record, "location")
        radius = location.get("accuracy_radius")
        fields.update(
            region_code=_text(region, "iso_code"),
            region=_name(region),
            city=_name(_part(record, "city")),
            postal_code=_text(_part(record, "postal"), "code"),
            latitude=_number(location, "latitude"),
            longitude=_number(location, "longitude"),
            accuracy_radius_km=radius if isinstance(radius, int) else None,
            time_zone=_text(location, "time_zone"),
        )
    return fields
