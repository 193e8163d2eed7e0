"""A throwaway Samba AD DC: provisioned, started and stopped by `running_samba()`.

The domain's constants and `SambaEnv` (how tests use the DC) are in samba_env.py and
imported here too, so `from tests.servers.samba import SambaEnv` keeps working.

Samba listens on fixed ports (389/636/88/464/3268/3269), so each instance gets its own
loopback address (127.0.0.N, added to `lo` and removed at exit) instead of a free port.
Everything that can be configured before the server starts is done offline against
`private/sam.ldb` with samba-tool (about 0.3 s per call; no network, no credentials);
users and groups for the tests are then created over LDAPS as Administrator, which
costs milliseconds per user instead of a samba-tool process each.

What the domain looks like (see tests/servers/base.py for the shared default policy):

- domain policy: min length 8, complexity on, history 3, min age 0, max age never,
  lockout after 3 bad passwords for 30 min (reset counter after 30 min);
- PSO `young-pso` (min age 1 day, otherwise the domain values) applied to group `young`;
- OU=People (the connector's base DN) and OU=Outside (outside it);
- `svc-writeback`: a plain Domain User with DELEGATED rights on user objects under
  OU=People only: the Reset Password extended right and write lockoutTime / pwdLastSet,
  plus read on the Password Settings Container (Windows and Samba let only admins read
  PSOs by default, but the connector needs their values);
- `svc-limited`: may read (also the PSOs) but has no delegated rights.

`old password allowed period = 0`: Samba otherwise keeps accepting the previous
password for simple binds for 60 minutes after a change (NTLM-style grace), which would
make "the old password no longer works" untestable.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import ldap3
from ldap3.core import exceptions as lexc

from connectors._ad_rights import sid_to_str
from tests.servers._process import (
    ServerUnavailable,
    port_open,
    require_binary,
    stop_process,
    wait_until,
)
from tests.servers.certs import make_server_cert
from tests.servers.samba_env import (
    DOMAIN,
    DOMAIN_DN,
    DOMAIN_POLICY,
    GLOBAL_SECURITY_GROUP,
    LOCKOUT_TIME,
    PROVISION_DATA,
    PWD_LAST_SET,
    REALM,
    RESET_PASSWORD,
    UAC_NORMAL,
    USER_CLASS,
    YOUNG_PSO,
    SambaEnv,
    _password,
)

__all__ = [  # the domain's constants and SambaEnv are re-exported from samba_env
    "DOMAIN",
    "DOMAIN_DN",
    "UAC_NORMAL",
    "YOUNG_PSO",
    "SambaEnv",
    "SambaUnavailable",
    "running_samba",
    "startup_timings",
]

_started: list[str] = []  # startup timings for the terminal summary


def _run(args: list[str], what: str) -> str:
    result = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        output = f"{result.stdout}\n{result.stderr}"
        raise RuntimeError(f"{what} failed ({result.returncode}):\n{output}")
    return result.stdout


def _claim_loopback_address() -> str:
    """Add the first free 127.0.0.N (10..50) to lo. `ip addr add` is atomic: "File
    exists" / "already assigned" means another instance (or session) has it: next."""
    ip_bin = require_binary("ip", "iproute2")
    for n in range(10, 51):
        ip = f"127.0.0.{n}"
        result = subprocess.run(
            [ip_bin, "addr", "add", f"{ip}/32", "dev", "lo"],
            capture_output=True, text=True, check=False,
        )
        if result.returncode == 0:
            if port_open(ip, 389) or port_open(ip, 636):  # something bound to 127/8 wildcard
                _release_loopback_address(ip)
                continue
            return ip
        if "File exists" in result.stderr or "already assigned" in result.stderr:
            continue
        raise SambaUnavailable(
            "cannot add a loopback address for Samba (needs root/CAP_NET_ADMIN): "
            f"{result.stderr.strip()}"
        )
    raise RuntimeError("no free loopback address 127.0.0.10-50 for Samba")


def _release_loopback_address(ip: str) -> None:
    subprocess.run(["ip", "addr", "del", f"{ip}/32", "dev", "lo"], capture_output=True, check=False)


class _SambaProcess:
    """Provision, configure offline, start and stop one Samba AD DC."""

    def __init__(self, root: Path, ip: str) -> None:
        self.root = root
        self.ip = ip
        self.target = root / "dc"
        self.conf = self.target / "etc" / "smb.conf"
        self.log = self.target / "samba.log"
        accounts = ("Administrator", "svc-writeback", "svc-limited")
        self.passwords = {name: _password() for name in accounts}
        self.proc: subprocess.Popen[bytes] | None = None
        self.also_delegate: tuple[str, ...] = ()  # containers besides OU=People

    def _tool(self, *args: str) -> str:
        return _run(["samba-tool", *args, "-H", str(self.target / "private" / "sam.ldb")],
                    f"samba-tool {args[0]} {args[1] if len(args) > 1 else ''}")

    def provision(self, cert_file: Path, key_file: Path, ca_file: Path) -> None:
        options = {
            "interfaces": self.ip,
            "bind interfaces only": "yes",
            "netbios name": f"WBDC{self.ip.rsplit('.', 1)[1]}",
            "server services": "ldap kdc",
            "pid directory": str(self.target / "run"),
            "log file": str(self.log),
            "tls enabled": "yes",
            "tls keyfile": str(key_file),
            "tls certfile": str(cert_file),
            "tls cafile": str(ca_file),
        }
        _run(
            [
                "samba-tool", "domain", "provision", f"--targetdir={self.target}",
                f"--realm={REALM}", f"--domain={DOMAIN}", "--server-role=dc",
                "--dns-backend=NONE", f"--adminpass={self.passwords['Administrator']}",
                f"--host-ip={self.ip}",
                *(f"--option={k}={v}" for k, v in options.items()),
            ],
            "samba-tool domain provision",
        )
        (self.target / "run").mkdir(exist_ok=True)
        # provision does not carry every --option into smb.conf (this one is dropped)
        text = self.conf.read_text()
        extra = "\told password allowed period = 0\n"
        self.conf.write_text(text.replace("[global]\n", "[global]\n" + extra, 1))

    def configure(self, env: SambaEnv) -> None:
        """Policy, PSO, OUs and the two service accounts over LDAPS as Administrator
        (milliseconds each, where a samba-tool process costs ~0.3 s); only the ACEs go
        through samba-tool (offline on sam.ldb), because Samba's LDAP server takes an
        nTSecurityDescriptor in binary only and samba-tool speaks SDDL."""
        conn = env.admin()
        conn.modify(DOMAIN_DN, {name: [(ldap3.MODIFY_REPLACE, [value])]
                                for name, value in DOMAIN_POLICY.items()})
        for ou in (env.base_dn, env.outside_base_dn):
            conn.add(ou, ["top", "organizationalUnit"])
        conn.add(env.young_group_dn, ["top", "group"],
                 {"sAMAccountName": "young", "groupType": str(GLOBAL_SECURITY_GROUP)})
        conn.add(env.pso_dn, ["top", "msDS-PasswordSettings"],
                 {**YOUNG_PSO, "msDS-PSOAppliesTo": env.young_group_dn})
        sids = {}
        for name in ("svc-writeback", "svc-limited"):
            dn = f"CN={name},CN=Users,{DOMAIN_DN}"
            conn.add(dn, ["top", "person", "organizationalPerson", "user"], {
                "sAMAccountName": name,
                "userAccountControl": str(UAC_NORMAL),
                "unicodePwd": f'"{self.passwords[name]}"'.encode("utf-16-le"),
            })
            sids[name] = sid_to_str(env.read(dn, ["objectSid"])["raw"]["objectSid"][0])
        svc = sids["svc-writeback"]
        # CIIO + inherited object type user: applies to user objects below the OU only.
        aces = "".join(f"(OA;CIIO;{right};{guid};{USER_CLASS};{svc})" for right, guid in
                       (("CR", RESET_PASSWORD), ("WP", LOCKOUT_TIME), ("WP", PWD_LAST_SET)))
        for dn in (env.base_dn, *self.also_delegate):
            self._tool("dsacl", "set", f"--objectdn={dn}", f"--sddl={aces}")
        readers = "".join(f"(A;CI;RPLCLORC;;;{sid})" for sid in sids.values())
        self._tool("dsacl", "set",
                   f"--objectdn=CN=Password Settings Container,CN=System,{DOMAIN_DN}",
                   f"--sddl={readers}")

    def start(self, env: SambaEnv) -> None:
        out = (self.target / "samba.out").open("wb")
        self.proc = subprocess.Popen(
            ["samba", "-F", "-s", str(self.conf)],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
        out.close()

        def ready() -> bool:
            if not port_open(self.ip, 636):
                return False
            try:
                env.admin()
            except (lexc.LDAPException, OSError):
                env.close()
                return False
            return True

        wait_until(ready, timeout=60, what="samba AD DC", proc=self.proc, log=self.log)

    def stop(self) -> None:
        if self.proc is None:
            return
        pgid = self.proc.pid  # start_new_session: the group we created, samba's workers
        stop_process(self.proc)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)


class SambaUnavailable(ServerUnavailable):
    """This machine cannot run the throwaway DC; the message says what to install."""


def _preflight() -> None:
    for binary, package in (("samba", "samba-ad-dc"), ("samba-tool", "samba-common-bin")):
        if not any((Path(d) / binary).exists() for d in ("/usr/sbin", "/usr/bin", "/sbin")):
            raise SambaUnavailable(f"{binary} not found: install the Debian package {package!r}")
    if not PROVISION_DATA.is_dir():
        raise SambaUnavailable("Samba provisioning data missing: install the Debian package "
                               "'samba-ad-provision' (apt-get install samba-ad-provision)")
    if os.geteuid() != 0:
        raise SambaUnavailable(
            "the throwaway Samba AD DC needs root (loopback address, ports 389/636)"
        )


@contextlib.contextmanager
def running_samba(root: Path, *, also_delegate: tuple[str, ...] = ()) -> Iterator[SambaEnv]:
    """A provisioned, configured Samba AD DC on its own loopback address, stopped and
    cleaned up on exit. Used by the `samba_env` fixture and by scripts/demo.py.
    `also_delegate`: containers (besides OU=People) where svc-writeback gets the
    reset rights, e.g. CN=Users for a demo whose scope is the whole domain."""
    _preflight()
    started = time.monotonic()
    root.mkdir(parents=True, exist_ok=True)
    ip = _claim_loopback_address()
    process = _SambaProcess(root, ip)
    process.also_delegate = also_delegate
    env: SambaEnv | None = None
    try:
        cert = make_server_cert(root / "tls", [ip])
        process.provision(cert.cert_file, cert.key_file, cert.ca_file)
        provisioned = time.monotonic()
        env = SambaEnv(ip, cert.ca_file, process.passwords)
        process.start(env)
        running = time.monotonic()
        process.configure(env)
        now = time.monotonic()
        _started.append(
            f"samba AD DC on {ip} ready in {now - started:.1f}s (provision "
            f"{provisioned - started:.1f}s, start {running - provisioned:.1f}s, "
            f"configure {now - running:.1f}s)"
        )
        yield env
    finally:
        if env is not None:
            env.close()
        process.stop()
        _release_loopback_address(ip)


def startup_timings() -> list[str]:
    """One line per DC started by this process (shown in pytest's terminal summary)."""
    return list(_started)
