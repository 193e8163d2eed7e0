"""Which directory a request's user belongs to, when the agent serves several
(e.g. two AD forests and an OpenLDAP): by UPN/mail suffix, by NetBIOS domain in
DOMAIN\\login, else the directory marked default (or the only one)."""

from __future__ import annotations

from dataclasses import dataclass

from agent.config import DirectoryConfig
from connectors.base import LookupKind, UserQuery


@dataclass(frozen=True)
class Route:
    directory: DirectoryConfig
    query: UserQuery


class DirectoryRouter:
    def __init__(self, directories: list[DirectoryConfig]) -> None:
        self._directories = directories
        self._by_suffix = {s.lower().lstrip("@"): d for d in directories for s in d.upn_suffixes}
        self._by_domain = {s.lower(): d for d in directories for s in d.domains}
        defaults = [d for d in directories if d.default]
        self._default = (
            defaults[0] if defaults else (directories[0] if len(directories) == 1 else None)
        )

    def route(self, kind: LookupKind, value: str) -> Route | None:
        """The directory and the lookup to run there; None if no directory claims it."""
        if kind is LookupKind.UPN and "@" in value:
            directory = self._by_suffix.get(value.rsplit("@", 1)[1].lower())
            if directory is not None:
                return Route(directory, UserQuery(kind, value))
        if kind is LookupKind.LOGIN and "\\" in value:
            domain, login = value.split("\\", 1)
            directory = self._by_domain.get(domain.lower())
            if directory is not None:
                return Route(directory, UserQuery(kind, login))
            return None  # an explicit domain we do not serve
        if self._default is None:
            return None
        return Route(self._default, UserQuery(kind, value))
