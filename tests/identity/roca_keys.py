"""RSA moduli built the way the ROCA-vulnerable generator built them (for tests)."""

from __future__ import annotations

import functools
import math
import random

from identity.roca import _PRIMES

M = math.prod(_PRIMES)


def _probable_prime(n: int, rng: random.Random) -> bool:
    if n % 2 == 0:
        return False
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    for _ in range(24):
        x = pow(rng.randrange(2, n - 1), d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


def roca_prime(bits: int, rng: random.Random) -> int:
    """A prime k*M + (65537^a mod M), as RSALib made them."""
    low = math.isqrt(2 ** (2 * bits - 1)) // M + 1  # p >= 2^(bits - 1/2): n has 2*bits bits
    high = (2**bits - 1) // M - 1
    while True:
        p = rng.randrange(low, high) * M + pow(65537, rng.randrange(1, 2**20), M)
        if _probable_prime(p, rng):
            return p


@functools.cache
def roca_modulus(bits: int = 2048, seed: int = 2017) -> int:
    rng = random.Random(seed)
    return roca_prime(bits // 2, rng) * roca_prime(bits // 2, rng)
