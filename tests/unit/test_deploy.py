"""The shipped service definitions: the systemd unit's hardening score and its
readiness/restart rules, and the WinSW XML against the elements WinSW v2 documents
(its docs/xmlConfigFile.md; v2 ignores elements it does not know, such as v3's
<username>, so a wrong element silently runs the service as LocalSystem)."""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
UNIT = DEPLOY / "writeback-agent.service"
RELAY_UNIT = DEPLOY / "writeback-relay.service"
UNITS = pytest.mark.parametrize("unit", [UNIT, RELAY_UNIT], ids=lambda u: u.stem)
WINSW = DEPLOY / "windows" / "writeback-agent.xml"

# WinSW v2.12.0, docs/xmlConfigFile.md and docs/loggingAndErrorReporting.md.
WINSW_V2_SERVICE = {
    "id", "name", "description", "executable", "startmode", "delayedAutoStart", "depend",
    "logpath", "logmode", "log", "argument", "arguments", "startargument", "stopargument",
    "stopexecutable", "stoptimeout", "env", "interactive", "beeponshutdown", "download",
    "onfailure", "resetfailure", "securtityDescriptor", "serviceaccount", "workingdirectory",
    "priority", "stopparentprocessfirst", "extensions",
}
WINSW_V2_SERVICEACCOUNT = {"domain", "user", "password", "allowservicelogon"}
WINSW_V2_LOG = {"sizeThreshold", "keepFiles", "pattern", "autoRollAtTime", "zipOlderThanNumDays",
                "zipDateFormat"}
WINSW_V2_LOG_MODES = {"append", "reset", "ignore", "none", "roll", "roll-by-time",
                      "roll-by-size", "roll-by-size-time"}
WINSW_DURATION = re.compile(r"^\d+(\.\d+)?\s*(ms|sec|secs|min|mins|hour|hours|day|days)?$")


def _unit(path: Path = UNIT) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(path)
    return parser


def test_unit_is_notify_with_watchdog_and_no_check_before_start() -> None:
    service = _unit()["Service"]
    assert service["Type"] == "notify"
    assert int(service["WatchdogSec"]) > 120  # longer than HealthState's wedge_after
    assert service["RestartPreventExitStatus"] == "2"
    assert "ExecStartPre" not in service
    assert service["ExecStart"].endswith(" run")
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"


def _need_systemd_analyze() -> None:
    if shutil.which("systemd-analyze") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("systemd-analyze missing: apt-get install systemd")
        pytest.skip("systemd-analyze not installed (apt-get install systemd)")


@UNITS
def test_unit_directives_are_all_known_to_systemd(unit: Path) -> None:
    """`systemd-analyze verify` ignores unknown keys with a warning: none allowed. The
    only complaint left is the ExecStart binary, which is not installed here."""
    _need_systemd_analyze()
    result = subprocess.run(["systemd-analyze", "verify", str(unit)],
                            capture_output=True, text=True, check=False)
    complaints = [line for line in (result.stdout + result.stderr).splitlines()
                  if line and "is not executable: No such file or directory" not in line]
    assert complaints == []


@UNITS
def test_unit_hardening_score_is_2_or_lower(unit: Path) -> None:
    _need_systemd_analyze()
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--threshold=20", str(unit)],
        capture_output=True, text=True, check=False,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= 2.0, result.stdout
    assert result.returncode == 0, result.stdout


def test_relay_unit_serves_loopback_with_the_token_as_a_credential() -> None:
    """docs/relay.md: `serve` on 127.0.0.1 behind a TLS proxy, the admin token from
    $CREDENTIALS_DIRECTORY/admin-token, the database in the state directory."""
    service = _unit(RELAY_UNIT)["Service"]
    assert service["ExecStart"].endswith(" serve --host 127.0.0.1 --port 8080")
    assert "--admin-token-file" not in service["ExecStart"]
    assert service["LoadCredential"] == "admin-token:/etc/writeback-relay/admin-token"
    assert service["StateDirectory"] == "writeback-relay"
    assert service["Environment"] == (
        "WRITEBACK_RELAY_DB=/var/lib/writeback-relay/relay.sqlite3"
    )
    assert service["User"] == "writeback-relay"


def test_winsw_xml_uses_only_winsw_v2_elements() -> None:
    root = ET.parse(WINSW).getroot()  # noqa: S314 - our own file, not untrusted input
    assert root.tag == "service"
    children = [child.tag for child in root]
    assert set(children) <= WINSW_V2_SERVICE, set(children) - WINSW_V2_SERVICE
    for required in ("id", "executable", "serviceaccount"):
        assert required in children

    account = root.find("serviceaccount")
    assert account is not None
    assert {c.tag for c in account} <= WINSW_V2_SERVICEACCOUNT
    user = account.findtext("user")
    assert user and user.endswith("$"), "a gMSA: name ends in $"
    assert account.find("password") is None, "a gMSA has no password element"
    assert account.findtext("domain")

    log = root.find("log")
    assert log is not None and log.get("mode") in WINSW_V2_LOG_MODES
    assert {c.tag for c in log} <= WINSW_V2_LOG
    for timed in ("stoptimeout", "resetfailure"):
        assert WINSW_DURATION.match(root.findtext(timed) or ""), timed
    for failure in root.findall("onfailure"):
        assert failure.get("action") in {"restart", "reboot", "none"}
        assert WINSW_DURATION.match(failure.get("delay", "0"))
    arguments = root.findtext("arguments") or ""
    assert arguments.endswith(" run") and "agent.toml" in arguments


def test_container_image_has_a_healthcheck_and_a_volume_its_user_owns() -> None:
    """Static: building the image needs a registry this machine cannot reach."""
    lines = [line.strip() for line in (DEPLOY / "Containerfile").read_text().splitlines()]
    text = "\n".join(lines)
    assert re.search(r"^HEALTHCHECK .*\n?.*127\.0\.0\.1:9464/healthz", text, re.M)
    install = re.search(r"install -d -m 0700 -o writeback -g writeback /var/lib/writeback-agent",
                        text)
    volume = text.index('VOLUME ["/var/lib/writeback-agent"]')
    user = text.index("USER writeback")
    assert install and install.start() < volume and user < volume
    assert "agent.toml.example" not in text, "the example ships inside the package now"
