"""Windows: who besides the service account can change a file, read from its security
descriptor by SID, so the answer does not depend on the language of Windows.

`file_sddl` asks advapi32 for the file's owner and DACL as an SDDL string (SIDs and
SDDL aliases such as BU, never localised names like "VORDEFINIERT\\Benutzer"). All
the logic is in `broad_writers`, a pure function of that string, tested on Linux.

Which rights count as "can change it" (`WRITE_BITS`): writing or appending data
(on a directory: adding files or subdirectories), deleting it, deleting a child of a
directory whatever the child's own ACL says, changing the ACL or the owner (either
gives every other right), and the generic write/all and MAXIMUM_ALLOWED masks.
FILE_WRITE_EA (0x10) and FILE_WRITE_ATTRIBUTES (0x100) do not count: they change
extended attributes, the read-only/hidden bits and timestamps, not the bytes or who
may change them. Deny ACEs are ignored (a deny would only make the answer "fewer can
write"; refusing on the allow alone is the conservative side), and so are
inherit-only ACEs (IO), which apply to children only. CREATOR OWNER (CO) is not a
broad principal: on the object itself no token holds it; its ACEs are inherit-only
templates for the owner of a new child. A NULL DACL lets everyone do
everything; an SDDL string we cannot parse raises `BadSddl`, which the caller turns
into "untrusted", never into "trusted".

What has not run on Windows: `file_sddl` itself (ctypes calls into advapi32); it is
replaced by a recorder in tests/unit/agent/test_localfiles.py.
"""

from __future__ import annotations

import re
import sys

__all__ = ["WRITE_BITS", "BadSddl", "broad_writers", "file_sddl"]

# Broad principals, by SDDL alias and by SID: "other users" on any machine.
_BROAD_ALIASES = {
    "WD": "Everyone",
    "AU": "Authenticated Users",
    "BU": "Users",
    "IU": "Interactive",
    "DU": "Domain Users",
    "DG": "Domain Guests",
    "DC": "Domain Computers",
    "BG": "Guests",
    "AN": "Anonymous",
    "NU": "Network",
    "SU": "Service",
    "PU": "Power Users",
    "RD": "Remote Desktop Users",
    "RU": "Pre-Windows 2000 Compatible Access",
    "AC": "All Application Packages",
}
_BROAD_SIDS = {
    "S-1-1-0": "WD",
    "S-1-5-11": "AU",
    "S-1-5-32-545": "BU",
    "S-1-5-4": "IU",
    "S-1-5-32-546": "BG",
    "S-1-5-7": "AN",
    "S-1-5-2": "NU",
    "S-1-5-6": "SU",
    "S-1-5-32-547": "PU",
    "S-1-5-32-555": "RD",
    "S-1-5-32-554": "RU",
    "S-1-15-2-1": "AC",
    "S-1-2-0": "LOCAL",
    "S-1-2-1": "CONSOLE LOGON",
    "S-1-5-1": "DIALUP",
    "S-1-5-3": "BATCH",
    "S-1-5-13": "TERMINAL SERVER USER",
    "S-1-5-14": "REMOTE INTERACTIVE LOGON",
    "S-1-15-2-2": "ALL RESTRICTED APPLICATION PACKAGES",
}
# Well-known domain RIDs: Guest account, Domain Users, Domain Guests, Domain Computers.
_DOMAIN_RIDS = {"501": "Guest", "513": "DU", "514": "DG", "515": "DC"}
_DOMAIN_SID = re.compile(r"S-1-5-21-\d+-\d+-\d+-(\d+)", re.IGNORECASE)

# SDDL string rights: file, generic, standard and directory-service codes (the latter
# share bits with the file rights: DC is 0x2, FILE_WRITE_DATA; DT is 0x40, delete child).
_RIGHT_CODES = {
    "GA": 0x10000000, "GR": 0x80000000, "GW": 0x40000000, "GX": 0x20000000,
    "RC": 0x20000, "SD": 0x10000, "WD": 0x40000, "WO": 0x80000,
    "CC": 0x1, "DC": 0x2, "LC": 0x4, "SW": 0x8, "RP": 0x10, "WP": 0x20,
    "DT": 0x40, "LO": 0x80, "CR": 0x100,
    "FA": 0x1F01FF, "FR": 0x120089, "FW": 0x120116, "FX": 0x1200A0,
    "KA": 0xF003F, "KR": 0x20019, "KW": 0x20006, "KX": 0x20019,
    "NR": 0x0, "NW": 0x0, "NX": 0x0,  # mandatory-label policy bits, not access rights
}
_WRITE_NAMES = {
    0x2: "write data",
    0x4: "append data",
    0x40: "delete child",
    0x10000: "delete",
    0x40000: "change permissions",
    0x80000: "take ownership",
    0x2000000: "maximum allowed",
    0x10000000: "generic all",
    0x40000000: "generic write",
}
WRITE_BITS = sum(_WRITE_NAMES)
# Allow ACEs: plain, object, callback (conditional) and callback object ones. A
# condition may hold, so a conditional allow counts as an allow.
_ALLOW_TYPES = frozenset({"A", "OA", "XA", "ZA"})
_ACE_FLAGS = frozenset({"CI", "OI", "NP", "IO", "ID", "SA", "FA", "TP", "CR"})


class BadSddl(ValueError):
    """An SDDL string this module cannot read; the file must then not be trusted."""


def _broad_name(sid: str) -> str | None:
    """'BU (Users)' for a broad principal given by alias or SID, else None."""
    sid = sid.strip()
    upper = sid.upper()
    alias = _BROAD_SIDS.get(upper, upper if upper in _BROAD_ALIASES else None)
    if alias is None and (match := _DOMAIN_SID.fullmatch(sid)):
        alias = _DOMAIN_RIDS.get(match.group(1))
        if alias is not None and alias not in _BROAD_ALIASES:
            return f"{sid} (domain {alias})"
    if alias is None:
        return None
    return f"{alias} ({_BROAD_ALIASES[alias]})" if alias in _BROAD_ALIASES else alias


def _mask(rights: str) -> int:
    text = rights.strip()
    if text.lower().startswith("0x"):
        try:
            return int(text, 16)
        except ValueError:
            raise BadSddl(f"bad access mask {text!r}") from None
    if text.isdigit():
        return int(text)
    if len(text) % 2:
        raise BadSddl(f"bad access rights {text!r}")
    mask = 0
    for i in range(0, len(text), 2):
        code = text[i : i + 2].upper()
        if code not in _RIGHT_CODES:
            raise BadSddl(f"unknown access right {code!r}")
        mask |= _RIGHT_CODES[code]
    return mask


def _describe(rights: str, mask: int) -> str:
    names = [name for bit, name in _WRITE_NAMES.items() if mask & bit]
    return f"{rights.strip()} ({', '.join(names)})"


def _sections(sddl: str) -> dict[str, str]:
    """{'O': owner, 'G': group, 'D': dacl, 'S': sacl}, split at top-level tags only
    (a conditional ACE's expression in parentheses may contain anything)."""
    found: dict[str, str] = {}
    depth, tag, start, i = 0, None, 0, 0
    quoted = False
    while i < len(sddl):
        char = sddl[i]
        if quoted:
            quoted = char != '"'
        elif char == '"':
            quoted = True
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise BadSddl("unbalanced parentheses")
        elif depth == 0 and sddl[i : i + 2].upper() in ("O:", "G:", "D:", "S:"):
            if tag is not None:
                found[tag] = sddl[start:i]
            tag, start = sddl[i].upper(), i + 2
            if tag in found:
                raise BadSddl(f"{tag}: appears twice")
            i += 2
            continue
        elif tag is None and not char.isspace():
            raise BadSddl("does not start with O:, G:, D: or S:")
        i += 1
    if depth or quoted:
        raise BadSddl("unbalanced parentheses or quotes")
    if tag is not None:
        found[tag] = sddl[start:]
    return found


def _aces(dacl: str) -> tuple[str, list[str]]:
    """The DACL's flags (P, AI, NO_ACCESS_CONTROL...) and its ACE strings."""
    flags_end = dacl.find("(")
    flags = dacl if flags_end < 0 else dacl[:flags_end]
    aces, depth, start, quoted = [], 0, 0, False
    rest = "" if flags_end < 0 else dacl[flags_end:]
    for i, char in enumerate(rest):
        if quoted:
            quoted = char != '"'
        elif char == '"':
            quoted = True
        elif char == "(":
            if depth == 0:
                start = i + 1
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise BadSddl("unbalanced parentheses")
            if depth == 0:
                aces.append(rest[start:i])
        elif depth == 0 and not char.isspace():
            raise BadSddl(f"text between ACEs: {char!r}")
    return flags.strip().upper(), aces


def broad_writers(sddl: str) -> list[str]:
    """Who among the broad principals (Everyone, Users, Authenticated Users, Domain
    Users, Guests...) may change the object this SDDL describes, readable:
    ['BU (Users): 0x1301bf (write data, append data, delete)']. [] when none may.
    Raises BadSddl for anything it cannot read (no DACL, garbled ACEs)."""
    if not isinstance(sddl, str) or "\x00" in sddl.rstrip("\x00"):
        raise BadSddl("not an SDDL string")
    parts = _sections(sddl.rstrip("\x00"))
    if "D" not in parts:
        raise BadSddl("no DACL in the security descriptor")
    found = []
    owner = parts.get("O")
    if owner is not None and (name := _broad_name(owner)):
        found.append(f"owner {name}")
    flags, aces = _aces(parts["D"])
    if "NO_ACCESS_CONTROL" in flags:
        return [*found, "WD (Everyone): no DACL at all (full control for everyone)"]
    for ace in aces:
        fields = [field.strip() for field in ace.split(";")]
        if len(fields) < 6:
            raise BadSddl(f"ACE with {len(fields)} fields: ({ace[:60]})")
        ace_type, ace_flags, rights, sid = fields[0].upper(), fields[1], fields[2], fields[5]
        flag_codes = {ace_flags[i : i + 2].upper() for i in range(0, len(ace_flags), 2)}
        if len(ace_flags) % 2 or not flag_codes <= _ACE_FLAGS:
            raise BadSddl(f"bad ACE flags {ace_flags!r}")
        if not sid:
            raise BadSddl(f"ACE without a SID: ({ace[:60]})")
        mask = _mask(rights)
        if ace_type not in _ALLOW_TYPES or "IO" in flag_codes or not mask & WRITE_BITS:
            continue
        name = _broad_name(sid)
        if name is not None:
            inherited = " inherited" if "ID" in flag_codes else ""
            found.append(f"{name}:{inherited} {_describe(rights, mask & WRITE_BITS)}")
    return found


def file_sddl(path: str) -> str:
    """The owner and DACL of `path` as SDDL (Windows only; OSError if unreadable)."""
    if sys.platform != "win32":
        raise OSError(f"{path}: reading a Windows ACL needs Windows")
    import ctypes
    from ctypes import wintypes

    advapi32 = ctypes.WinDLL("advapi32", use_last_error=True)
    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    se_file_object, owner_and_dacl, sddl_revision_1 = 1, 0x1 | 0x4, 1
    get_info = advapi32.GetNamedSecurityInfoW
    get_info.restype = wintypes.DWORD
    get_info.argtypes = [
        wintypes.LPCWSTR, ctypes.c_int, wintypes.DWORD, ctypes.c_void_p, ctypes.c_void_p,
        ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p),
    ]
    to_string = advapi32.ConvertSecurityDescriptorToStringSecurityDescriptorW
    to_string.restype = wintypes.BOOL
    to_string.argtypes = [
        ctypes.c_void_p, wintypes.DWORD, wintypes.DWORD,
        ctypes.POINTER(wintypes.LPWSTR), ctypes.c_void_p,
    ]
    kernel32.LocalFree.argtypes = [ctypes.c_void_p]
    kernel32.LocalFree.restype = ctypes.c_void_p
    descriptor = ctypes.c_void_p()
    error = get_info(path, se_file_object, owner_and_dacl, None, None, None, None,
                     ctypes.byref(descriptor))
    if error:
        raise OSError(0, ctypes.FormatError(error), path, error)
    try:
        text = wintypes.LPWSTR()
        if not to_string(descriptor, sddl_revision_1, owner_and_dacl, ctypes.byref(text), None):
            error = ctypes.get_last_error()
            raise OSError(0, ctypes.FormatError(error), path, error)
        try:
            return text.value or ""
        finally:
            kernel32.LocalFree(text)
    finally:
        kernel32.LocalFree(descriptor)
