"""Plain edwards25519 arithmetic for crafting and checking signature vectors (test only).

Used to build signatures that a lenient (ZIP-215 style, cofactored) verifier accepts
and an RFC 8032 cofactorless one refuses, and to check the small-order y table in
wire.keys. Not constant time; never for real keys.
"""

from __future__ import annotations

import hashlib

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, P - 2, P) % P
_SQRT_M1 = pow(2, (P - 1) // 4, P)
Point = tuple[int, int, int, int]
IDENTITY: Point = (0, 1, 1, 0)


def _inv(x: int) -> int:
    return pow(x, P - 2, P)


def recover_x(y: int, sign: int) -> int | None:
    xx = (y * y - 1) * _inv(D * y * y + 1) % P
    x = pow(xx, (P + 3) // 8, P)
    if (x * x - xx) % P:
        x = x * _SQRT_M1 % P
    if (x * x - xx) % P or (x == 0 and sign):
        return None
    return P - x if x & 1 != sign else x


def point(y: int, sign: int = 0) -> Point | None:
    x = recover_x(y % P, sign)
    return None if x is None else (x, y % P, 1, x * y % P)


def add(p1: Point, p2: Point) -> Point:
    x1, y1, z1, t1 = p1
    x2, y2, z2, t2 = p2
    a = (y1 - x1) * (y2 - x2) % P
    b = (y1 + x1) * (y2 + x2) % P
    c = t1 * 2 * D * t2 % P
    d = z1 * 2 * z2 % P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def mul(s: int, pt: Point) -> Point:
    q = IDENTITY
    while s:
        if s & 1:
            q = add(q, pt)
        pt = add(pt, pt)
        s >>= 1
    return q


def encode(pt: Point) -> bytes:
    x, y, z, _ = pt
    zi = _inv(z)
    x, y = x * zi % P, y * zi % P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def decode_lenient(raw: bytes) -> Point | None:
    """Accepts y >= p (reduced), as ZIP-215 does."""
    v = int.from_bytes(raw, "little")
    return point(v & ((1 << 255) - 1), v >> 255)


_GY = 4 * _inv(5) % P
BASE: Point = point(_GY)  # type: ignore[assignment]


def h512(data: bytes) -> int:
    return int.from_bytes(hashlib.sha512(data).digest(), "little")


def expand_seed(seed: bytes) -> tuple[int, bytes]:
    h = hashlib.sha512(seed).digest()
    a = int.from_bytes(h[:32], "little") & ((1 << 254) - 8) | (1 << 254)
    return a, h[32:]


def torsion8() -> Point:
    """A point of order 8."""
    for y in range(2, 1000):
        pt = point(y)
        if pt is None:
            continue
        t = mul(L, pt)
        if encode(mul(4, t)) != encode(IDENTITY):
            return t
    raise AssertionError("no torsion point found")


def sign_with_torsion_r(seed: bytes, msg: bytes) -> bytes:
    """A signature with R = rB + T (T of order 8) and S = r + k*a: the cofactored
    equation holds, the cofactorless one of RFC 8032 does not."""
    a, prefix = expand_seed(seed)
    big_a = encode(mul(a, BASE))
    r = h512(prefix + msg) % L
    r_enc = encode(add(mul(r, BASE), torsion8()))
    k = h512(r_enc + big_a + msg) % L
    return r_enc + ((r + k * a) % L).to_bytes(32, "little")


def verify_cofactored(public: bytes, sig: bytes, msg: bytes) -> bool:
    """ZIP-215 style: lenient encodings, S not range-checked, [8]SB = [8]R + [8]kA."""
    big_a, r = decode_lenient(public), decode_lenient(sig[:32])
    if big_a is None or r is None:
        return False
    s = int.from_bytes(sig[32:], "little")
    k = h512(sig[:32] + public + msg) % L
    return encode(mul(8 * s, BASE)) == encode(add(mul(8, r), mul(8 * k, big_a)))


def sign_with_noncanonical_identity_r(seed: bytes, msg: bytes) -> bytes:
    """R = the identity written non-canonically (y = p + 1) and S = k*a: the equation
    holds when R is compared as a point, never when compared as bytes (RFC 8032)."""
    a, _ = expand_seed(seed)
    big_a = encode(mul(a, BASE))
    r_enc = (P + 1).to_bytes(32, "little")
    k = h512(r_enc + big_a + msg) % L
    return r_enc + (k * a % L).to_bytes(32, "little")
