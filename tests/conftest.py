"""Session-wide fixtures: the real directories, started once, shared by all tests.

`directory` is the contract-test fixture: parametrized over every back end, so one
test body checks Samba AD DC and slapd alike.
"""

from __future__ import annotations

import pytest

from tests.servers.base import DirectoryEnv

pytest_plugins = [
    "tests.servers.slapd",
    "tests.servers.samba",
    "tests.servers.postgres",
]


@pytest.fixture(params=["openldap", "active_directory"])
def directory(request: pytest.FixtureRequest) -> DirectoryEnv:
    fixture = {"openldap": "slapd_env", "active_directory": "samba_env"}[request.param]
    env: DirectoryEnv = request.getfixturevalue(fixture)
    return env
