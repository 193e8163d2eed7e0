"""ldap3's own logging, kept at BASIC for the agent's log setup (agent/logging.py).

At PROTOCOL and above ldap3 dumps modify requests, and it does not strip
``unicodePwd`` values there (its sensitive-attribute list only applies to some
messages). `cap_ldap3_logging` lowers ldap3's detail level to BASIC if anything raised
it and turns on its own hiding of sensitive data; `Ldap3DetailCap` is a handler filter
that drops any ldap3 record tagged PROTOCOL/NETWORK/EXTENDED that slips through.
"""

from __future__ import annotations

import logging

from ldap3.utils import log as ldap3_log


class Ldap3DetailCap(logging.Filter):
    """Drop ldap3 records above BASIC even if someone raised ldap3's detail level.

    ldap3 prefixes every message with its detail level name, so this needs no state.
    """

    _TOO_DETAILED = ("PROTOCOL:", "NETWORK:", "EXTENDED:")

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name != "ldap3" and not record.name.startswith("ldap3."):
            return True
        return not str(record.msg).startswith(self._TOO_DETAILED)


def cap_ldap3_logging() -> None:
    ldap3_log.set_library_log_hide_sensitive_data(True)
    if ldap3_log.get_library_log_detail_level() > ldap3_log.BASIC:
        ldap3_log.set_library_log_detail_level(ldap3_log.BASIC)
