"""The two real directories of the chaos run, each with what the benchmark needs besides
the test env: stop and start it (the 10 s outage), and count the password writes per
user FROM THE DIRECTORY ITSELF, never from the agents' own claims.

- slapd runs with the `stats` log level (`-d 256`): every RFC 3062 Password Modify is
  logged as `conn=C op=O PASSMOD id="<dn>"` and its answer as `conn=C op=O RESULT
  ... err=N`; a write is a PASSMOD answered err=0. (pwdHistory holds at most
  pwdInHistory entries, so it cannot count three writes to one user.)
- Samba AD: the `unicodePwd` version in the user's replication metadata
  (replPropertyMetaData); it is 1 after the add that set the first password and grows
  by one with every write.

Both use their own servers (from tests/servers) so that stopping one hurts nobody (the
CI test may lend a running Samba, which is then never stopped), and a policy without
lockout for the benchmark's users (the final check binds with each
candidate password of a user; wrong ones must not lock the account). History (3) and
complexity stay as in every test env, so a second write of one password is refused on
slapd the way issue 8 describes.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import struct
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from tests.servers._process import port_open, stop_process, wait_until
from tests.servers.base import BindOutcome, DirectoryEnv
from tests.servers.certs import make_server_cert
from tests.servers.samba import DOMAIN_DN, YOUNG_PSO, SambaEnv, _SambaProcess

_groups = itertools.count(1)

INITIAL_PASSWORD = "Chaos-Initial-1x"  # noqa: S105 - a throwaway test account's first password


class ChaosDirectory(Protocol):
    name: str  # "slapd" | "samba"
    can_stop: bool  # the benchmark may stop it (its own server)

    @property
    def env(self) -> DirectoryEnv: ...

    def create_users(self, logins: list[str]) -> None: ...
    def stop(self) -> None: ...
    def start(self) -> None: ...
    def write_counts(self, logins: list[str]) -> dict[str, int]: ...
    def binds(self, login: str, password: str) -> bool: ...


def _binds(env: DirectoryEnv, login: str, password: str) -> bool:
    """The password is the user's (a must-change answer proves it too)."""
    return env.bind(login, password) in (BindOutcome.OK, BindOutcome.MUST_CHANGE)


# --------------------------------------------------------------------------- slapd

_PASSMOD = re.compile(r'conn=(\d+) op=(\d+) PASSMOD id="([^"]*)"')
_RESULT = re.compile(r"conn=(\d+) op=(\d+) RESULT .*?err=(\d+)")


def count_passmods(log_text: str) -> Counter[str]:
    """Successful Password Modify operations per DN (lowercase) in a slapd stats log.
    Connection numbers restart with slapd; a RESULT pairs with the latest PASSMOD of
    the same conn/op before it, which is right across restarts too."""
    pending: dict[tuple[str, str], str] = {}
    writes: Counter[str] = Counter()
    for line in log_text.splitlines():
        if match := _PASSMOD.search(line):
            pending[(match[1], match[2])] = match[3].lower()
        elif (match := _RESULT.search(line)) and (match[1], match[2]) in pending:
            dn = pending.pop((match[1], match[2]))
            if match[3] == "0":
                writes[dn] += 1
    return writes


class SlapdDirectory:
    name = "slapd"
    can_stop = True

    def __init__(self, root: Path) -> None:
        from tests.servers.slapd import POLICIES, _start

        self._root = root
        env, proc = _start(root)
        self.env = env
        self._args = [str(a) for a in proc.args]  # type: ignore[union-attr]
        stop_process(proc)
        self._args[self._args.index("-d") + 1] = "256"  # stats: one line per operation
        self.stats_log = root / "slapd-stats.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self.start()
        self.policy_dn = f"cn=chaos,{POLICIES}"
        with env.admin() as conn:
            conn.add(self.policy_dn, ["device", "pwdPolicy"], {
                "cn": "chaos", "pwdAttribute": "userPassword", "pwdMinLength": 8,
                "pwdCheckQuality": 2, "pwdInHistory": 3, "pwdMinAge": 0, "pwdLockout": "FALSE",
                "pwdMustChange": "TRUE", "pwdAllowUserChange": "TRUE",
            })

    def _ports(self) -> list[int]:
        urls = self._args[self._args.index("-h") + 1].split()
        return [int(url.rstrip("/").rsplit(":", 1)[1]) for url in urls]

    def start(self) -> None:
        with self.stats_log.open("ab") as out:
            self._proc = subprocess.Popen(self._args, stdout=out, stderr=subprocess.STDOUT)
        proc = self._proc
        wait_until(lambda: all(port_open("127.0.0.1", p) for p in self._ports()),
                   timeout=20, what="slapd", proc=proc, log=self.stats_log)

    def stop(self) -> None:
        if self._proc is not None:
            stop_process(self._proc)
            self._proc = None

    def create_users(self, logins: list[str]) -> None:
        from tests.servers.slapd import PEOPLE

        with self.env.admin() as conn:
            for login in logins:
                conn.add(f"uid={login},{PEOPLE}", ["inetOrgPerson"], {
                    "uid": login, "cn": f"Chaos {login}", "sn": login, "givenName": "Chaos",
                    "mail": f"{login}@wb.test", "userPassword": INITIAL_PASSWORD,
                    "pwdPolicySubentry": self.policy_dn,
                })

    def write_counts(self, logins: list[str]) -> dict[str, int]:
        from tests.servers.slapd import PEOPLE

        writes = count_passmods(self.stats_log.read_text(errors="replace"))
        return {login: writes[f"uid={login},{PEOPLE}".lower()] for login in logins}

    def binds(self, login: str, password: str) -> bool:
        return _binds(self.env, login, password)

    def close(self) -> None:
        close = getattr(self.env, "close", None)
        if close is not None:
            close()
        self.stop()


# --------------------------------------------------------------------------- Samba AD

UNICODE_PWD_ATTID = 0x9005A  # attid of unicodePwd in the AD schema


def unicode_pwd_version(blob: bytes) -> int | None:
    """The unicodePwd version in a replPropertyMetaData blob (MS-DRSR 5.1.5): dwVersion,
    reserved, cNumEntries, reserved, then 48-byte entries (attid, version, change time,
    invocation id, originating usn, local usn). Samba answers no msDS-ReplAttributeMetaData."""
    (count,) = struct.unpack_from("<I", blob, 8)
    for i in range(count):
        attid, version = struct.unpack_from("<II", blob, 16 + 48 * i)
        if attid == UNICODE_PWD_ATTID:
            return int(version)
    return None


class SambaDirectory:
    """A Samba AD DC: its own (`own`, on its own loopback address as `running_samba`,
    kept as a process the benchmark can stop and start again) or a running one
    (`SambaDirectory(env)`, e.g. the test session's, which it never stops)."""

    name = "samba"

    def __init__(self, env: SambaEnv, process: _SambaProcess | None = None) -> None:
        self.env = env
        self._process = process
        self.can_stop = process is not None
        # No lockout for the benchmark's users (a PSO on their group, so a shared DC's
        # domain policy stays as its other tests expect it).
        tag = f"{os.getpid()}x{next(_groups)}"
        self._group = env.create_group(f"chaos-{tag}", [])
        pso = {**YOUNG_PSO, "msDS-PasswordSettingsPrecedence": "1",
               "msDS-MinimumPasswordAge": "0", "msDS-LockoutThreshold": "0",
               "msDS-PSOAppliesTo": self._group}
        pso_dn = f"CN=chaos-pso-{tag},CN=Password Settings Container,CN=System,{DOMAIN_DN}"
        env.admin().add(pso_dn, ["top", "msDS-PasswordSettings"], pso)

    @classmethod
    def own(cls, stack: contextlib.ExitStack, root: Path) -> SambaDirectory:
        from tests.servers import samba

        samba._preflight()
        root.mkdir(parents=True, exist_ok=True)
        ip = samba._claim_loopback_address()
        stack.callback(samba._release_loopback_address, ip)
        process = samba._SambaProcess(root, ip)
        stack.callback(process.stop)
        cert = make_server_cert(root / "tls", [ip])
        process.provision(cert.cert_file, cert.key_file, cert.ca_file)
        env = samba.SambaEnv(ip, cert.ca_file, process.passwords)
        stack.callback(env.close)
        process.start(env)
        process.configure(env)
        return cls(env, process)

    def start(self) -> None:
        if self._process is not None:
            self._process.start(self.env)

    def stop(self) -> None:
        if self._process is not None:
            self.env.close()
            self._process.stop()

    def create_users(self, logins: list[str]) -> None:
        for login in logins:
            dn = self.env.create_user(login, INITIAL_PASSWORD, given_name="Chaos", surname="User")
            self.env.add_member(self._group, dn)

    def write_counts(self, logins: list[str]) -> dict[str, int]:
        counts = {}
        for login in logins:
            dn = f"CN={login},{self.env.base_dn}"
            entry = self.env.read(dn, ["replPropertyMetaData"])
            version = unicode_pwd_version(entry["raw"]["replPropertyMetaData"][0])
            counts[login] = (version or 1) - 1  # version 1: the password set by the add
        return counts

    def binds(self, login: str, password: str) -> bool:
        return _binds(self.env, login, password)


@contextlib.contextmanager
def open_directory(
    kind: str, root: Path, shared: SambaEnv | None = None
) -> Iterator[ChaosDirectory]:
    """The benchmark's own server of `kind`, stopped at exit; for samba, `shared` uses a
    running DC instead (no outage then: `can_stop` is false)."""
    with contextlib.ExitStack() as stack:
        if kind == "slapd":
            slapd = SlapdDirectory(root)
            stack.callback(slapd.close)
            yield slapd
        elif shared is not None:
            yield SambaDirectory(shared)
        else:
            yield SambaDirectory.own(stack, root)

