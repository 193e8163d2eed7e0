"""Settings precedence and secret files, the journal's state machine, scope rules and
routing: the agent's own decisions, without a server."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import tomli_w

from agent.config import ConfigError, DirectoryConfig, load_settings
from agent.journal import ClaimKind, Journal, JournalError, State
from agent.routing import DirectoryRouter
from agent.scope import dn_within, not_managed_reason
from connectors.base import DirectoryUser, LookupKind
from wire.status import NotManagedReason


def _directory(**extra: object) -> dict[str, object]:
    return {
        "name": "corp",
        "kind": "active_directory",
        "urls": ["ldaps://dc1:636"],
        "bind_dn": "CN=svc,DC=corp",
        "bind_password": "pw-from-toml",
        "base_dns": ["DC=corp"],
        **extra,
    }


def _write(tmp_path: Path, document: dict[str, object]) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(tomli_w.dumps(document))
    return path


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = _write(
        tmp_path,
        {
            "data_dir": str(tmp_path),
            "workers": 2,
            "log": {"level": "info"},
            "directories": [_directory()],
        },
    )
    monkeypatch.setenv("WRITEBACK_WORKERS", "7")
    monkeypatch.setenv("WRITEBACK_LOG__LEVEL", "debug")
    settings = load_settings(config)
    assert settings.workers == 7
    assert settings.log.level == "debug"
    assert settings.directories[0].bind_password.get_secret_value() == "pw-from-toml"


def test_bind_password_file_and_systemd_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "corp-pw").write_text("from-credential\n")
    (creds / "corp-pw").chmod(0o400)  # as systemd hands credentials over
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    entry = _directory()
    del entry["bind_password"]
    entry["bind_password_file"] = "corp-pw"
    settings = load_settings(_write(tmp_path, {"data_dir": str(tmp_path), "directories": [entry]}))
    assert settings.directories[0].bind_password.get_secret_value() == "from-credential"
    assert "from-credential" not in repr(settings)


def test_bad_configuration_names_the_key_and_never_the_secret(tmp_path: Path) -> None:
    entry = _directory(kind="novell", bind_password="Sup3r-Secret-Bind")
    with pytest.raises(ConfigError) as info:
        load_settings(_write(tmp_path, {"data_dir": str(tmp_path), "directories": [entry]}))
    assert "directories.0.kind" in str(info.value)
    assert "Sup3r-Secret-Bind" not in str(info.value)
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.toml")
    missing_file = _directory()
    del missing_file["bind_password"]
    missing_file["bind_password_file"] = str(tmp_path / "nope")
    with pytest.raises(ConfigError, match="bind_password_file"):
        load_settings(_write(tmp_path, {"data_dir": str(tmp_path), "directories": [missing_file]}))


def test_journal_states_and_recovery(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    assert journal.claim("r1", op="reset", user_ref="alice").kind is ClaimKind.NEW
    assert journal.claim("r1", op="reset", user_ref="alice").kind is ClaimKind.BUSY
    journal.finish("r1", status="succeeded", result=b"signed-1")
    assert journal.claim("r1", op="reset", user_ref="alice") == journal.claim(
        "r1", op="reset", user_ref="alice"
    )
    assert journal.claim("r1", op="reset", user_ref="alice").result == b"signed-1"

    journal.claim("r2", op="reset", user_ref="bob")
    journal.mark_writing("r2")  # then the process dies
    journal.claim("r3", op="reset", user_ref="carol")  # claimed, never written
    journal.claim("r4", op="reset", user_ref="dave")
    journal.mark_writing("r4", lease_id="L4")  # under a relay permit, then the process dies
    journal.close()
    reopened = Journal(tmp_path / "j.sqlite3")
    assert reopened.recover() == (["r2"], ["r4"])
    assert reopened.claim("r2", op="reset", user_ref="bob").kind is ClaimKind.IN_DOUBT
    assert reopened.claim("r3", op="reset", user_ref="carol").kind is ClaimKind.NEW  # safe to redo
    # the relay's permit decides for r4 (it keeps the permit and its write marker)
    assert reopened.claim("r4", op="reset", user_ref="dave").kind is ClaimKind.NEW
    assert reopened.state("r2") is State.IN_DOUBT


def test_journal_mark_made_beside_the_permit_ask_and_undone(tmp_path: Path) -> None:
    """The pipeline starts the synced "writing" mark while it asks the relay for the
    permit. Done, it is on disk (another connection sees it, recover() treats it as a
    permitted write); undone because no write followed, the claim can be forgotten and
    a redelivery is claimed afresh; an answer already stored is never undone."""
    journal = Journal(tmp_path / "j.sqlite3")
    journal.claim("r1", op="reset", user_ref="alice")
    journal.mark_writing_soon("r1", lease_id="L1").result(timeout=10)
    other = Journal(tmp_path / "j.sqlite3")  # another connection, as after a restart
    assert other.state("r1") is State.WRITING
    journal.forget("r1")  # forget() drops only claims that never reached the write
    assert other.state("r1") is State.WRITING

    journal.unmark_writing("r1")  # the permit was not granted: nothing was sent
    assert other.state("r1") is State.RECEIVED
    journal.forget("r1")
    assert journal.claim("r1", op="reset", user_ref="alice").kind is ClaimKind.NEW

    journal.mark_writing_soon("r1", lease_id="L2").result(timeout=10)
    journal.finish("r1", status="superseded", result=b"signed-superseded")
    journal.unmark_writing("r1")
    assert other.state("r1") is State.DONE
    journal.close()
    assert other.recover() == ([], [])


def test_journal_claim_is_exclusive_across_threads(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    kinds: list[ClaimKind] = []
    barrier = threading.Barrier(8)

    def claim() -> None:
        barrier.wait()
        kinds.append(journal.claim("same", op="reset", user_ref="u").kind)

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert kinds.count(ClaimKind.NEW) == 1 and kinds.count(ClaimKind.BUSY) == 7


def _config(**scope: object) -> DirectoryConfig:
    return DirectoryConfig.model_validate(_directory(scope=scope, base_dns=["DC=corp"]))


def _user(dn: str = "CN=a,OU=People,DC=corp", protected: bool = False) -> DirectoryUser:
    return DirectoryUser(dn=dn, id="1", login="a", protected=protected)


def test_scope_rules_in_order() -> None:
    def groups() -> frozenset[str]:
        return frozenset({"cn=inner,dc=corp", "cn=all,dc=corp"})

    def decide(d: DirectoryConfig, u: DirectoryUser | None = None) -> NotManagedReason | None:
        return not_managed_reason(
            writeback_enabled=True, directory=d, user=u or _user(), groups=groups
        )
    assert decide(_config()) is None
    assert (
        not_managed_reason(
            writeback_enabled=False, directory=_config(), user=_user(), groups=groups
        )
        is NotManagedReason.WRITEBACK_DISABLED
    )
    assert decide(_config(writeback_enabled=False)) is NotManagedReason.WRITEBACK_DISABLED
    assert decide(_config(base_dns=["OU=Staff,DC=corp"])) is NotManagedReason.OUTSIDE_SCOPE
    assert decide(_config(), _user(protected=True)) is NotManagedReason.PROTECTED_ACCOUNT
    assert decide(_config(protect_admin_accounts=False), _user(protected=True)) is None
    assert decide(_config(denied_groups=["CN=Inner, DC=Corp"])) is NotManagedReason.IN_DENIED_GROUP
    assert (
        decide(_config(allowed_groups=["cn=other,dc=corp"]))
        is NotManagedReason.NOT_IN_ALLOWED_GROUP
    )
    assert decide(_config(allowed_groups=["cn=all,dc=corp"])) is None
    assert (
        decide(_config(protected_groups=["cn=all,dc=corp"])) is NotManagedReason.PROTECTED_ACCOUNT
    )


def test_dn_containment_is_by_components() -> None:
    assert dn_within("CN=a,OU=People,DC=corp", "ou=people, dc=CORP")
    assert not dn_within("CN=a,OU=NotPeople,DC=corp", "OU=People,DC=corp")
    assert not dn_within("CN=x,DC=evilcorp", "DC=corp")


def test_routing_by_suffix_domain_and_default() -> None:
    ad = DirectoryConfig.model_validate(
        _directory(name="ad", upn_suffixes=["corp.example"], domains=["CORP"], default=True)
    )
    ldap = DirectoryConfig.model_validate(
        _directory(name="ldap", kind="openldap", upn_suffixes=["lab.example"], domains=["LAB"])
    )
    router = DirectoryRouter([ad, ldap])
    assert router.route(LookupKind.UPN, "bo@LAB.example").directory.name == "ldap"  # type: ignore[union-attr]
    routed = router.route(LookupKind.LOGIN, "lab\\bo")
    assert routed is not None and routed.directory.name == "ldap" and routed.query.value == "bo"
    assert router.route(LookupKind.LOGIN, "bo").directory.name == "ad"  # type: ignore[union-attr]
    assert router.route(LookupKind.LOGIN, "OTHER\\bo") is None
    assert (
        DirectoryRouter([ad, ldap.model_copy(update={"default": False})]).route(LookupKind.ID, "x")
        is not None
    )


def test_marks_asked_while_one_is_synced_share_the_next_commit(tmp_path: Path) -> None:
    """A burst of permits comes back in one answer, and each worker's "writing" mark
    must be on disk before its write: the marks asked while the sync thread is busy go
    in one synced commit (one fsync), each done only once that commit is."""
    path = tmp_path / "j.sqlite3"
    journal = Journal(path)
    for n in range(10):
        journal.claim(f"r{n}", op="reset", user_ref=f"user{n}")
    journal.mark_writing_soon("r0", lease_id="L0").result(timeout=10)
    sync = journal._sync
    assert sync is not None
    statements: list[str] = []
    sync.submit(lambda: journal._conn().set_trace_callback(statements.append)).result()
    busy = threading.Event()
    sync.submit(busy.wait, 10)  # the sync thread is syncing something else
    marks = [journal.mark_writing_soon(f"r{n}", lease_id=f"L{n}") for n in range(1, 10)]
    assert not any(mark.done() for mark in marks)
    busy.set()
    for mark in marks:
        mark.result(timeout=10)
    assert statements.count("COMMIT") == 1, statements
    other = Journal(path)  # as after a restart: all on disk, each under its lease
    assert all(other.state(f"r{n}") is State.WRITING for n in range(10))
    journal.finish("r3", status="succeeded", result=b"{}")
    assert [row[:2] for row in other.unposted(60)] == [("r3", "L3")]


def test_a_failed_mark_fails_every_write_waiting_on_it(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    journal.claim("r1", op="reset", user_ref="alice")
    journal.mark_writing_soon("r1", lease_id="L1").result(timeout=10)
    sync = journal._sync
    assert sync is not None
    sync.submit(lambda: journal._conn().close()).result()  # the sync thread's file is gone
    with pytest.raises(JournalError, match="writing mark of r2 failed"):
        journal.mark_writing_soon("r2", lease_id="L2").result(timeout=10)


def test_a_result_batch_is_journaled_posted_in_one_commit(tmp_path: Path) -> None:
    """The relay acknowledges a batch of results in one answer: their "posted" marks
    go in one commit, and none of them is posted again after a restart."""
    path = tmp_path / "j.sqlite3"
    journal = Journal(path)
    for n in range(4):
        journal.claim(f"r{n}", op="reset", user_ref=f"user{n}")
        journal.mark_writing(f"r{n}", lease_id=f"L{n}")
        journal.finish(f"r{n}", status="succeeded", result=b"{}")
    statements: list[str] = []
    journal._conn().set_trace_callback(statements.append)
    journal.mark_posted("r0", "r1", "r2")
    assert statements.count("COMMIT") == 1, statements
    assert [row[0] for row in Journal(path).unposted(60)] == ["r3"]


def test_an_id_claimed_again_after_it_was_forgotten_is_new(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    assert journal.claim("r1", op="reset", user_ref="alice").kind is ClaimKind.NEW
    journal.forget("r1")  # shut down before the work began
    assert journal.claim("r1", op="reset", user_ref="alice").kind is ClaimKind.NEW
    assert journal.claim("r1", op="reset", user_ref="alice").kind is ClaimKind.BUSY
