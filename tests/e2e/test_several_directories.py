"""One agent, an Active Directory and an OpenLDAP at once: requests are routed by the
user's UPN/mail suffix (or NetBIOS domain) to the right directory and written there."""

from __future__ import annotations

import time
from pathlib import Path

from tests.e2e.harness import AgentSystem, directory_entry
from tests.servers.base import BindOutcome, DirectoryEnv, unique_login
from tests.servers.relay import RelayProcess
from tests.servers.samba_env import UPN_SUFFIX


def test_one_agent_routes_to_ad_and_openldap(
    relay: RelayProcess, samba_env: DirectoryEnv, slapd_env: DirectoryEnv, tmp_path: Path
) -> None:
    system = AgentSystem.create(
        tmp_path / "multi",
        relay,
        [
            directory_entry(
                samba_env.settings, tmp_path, name="ad", upn_suffixes=[UPN_SUFFIX], domains=["CORP"]
            ),
            directory_entry(
                slapd_env.settings, tmp_path, name="lab", upn_suffixes=["wb.test"], domains=["LAB"]
            ),
        ],
    )
    ad_user, lab_user = unique_login("m"), unique_login("m")
    samba_env.create_user(ad_user, "Initial-Pass-1")
    slapd_env.create_user(lab_user, "Initial-Pass-1")
    time.sleep(1)
    try:
        with system.running():
            portal = system.portal
            ad = portal.send(
                "reset", f"{ad_user}@{UPN_SUFFIX}", user_kind="upn", new_password="Routed-To-AD-1"
            )
            lab = portal.send(
                "reset", f"{lab_user}@wb.test", user_kind="upn", new_password="Routed-To-Lab-2"
            )
            by_domain = portal.send("unlock", f"LAB\\{lab_user}")
            unknown = portal.send(
                "reset",
                f"{lab_user}@elsewhere.example",
                user_kind="upn",
                new_password="X-Nowhere-3",
            )
    finally:
        system.close()
    assert (ad.status, ad.dc) == ("succeeded", samba_env.settings.urls[0])
    assert (lab.status, lab.dc) == ("succeeded", slapd_env.settings.urls[0])
    assert by_domain.status == "succeeded"
    assert (unknown.status, unknown.reason) == ("not_managed", "no_directory")
    assert samba_env.bind(ad_user, "Routed-To-AD-1") is BindOutcome.OK
    assert slapd_env.bind(lab_user, "Routed-To-Lab-2") is BindOutcome.OK
