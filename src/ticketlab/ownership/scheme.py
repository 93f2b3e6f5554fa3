"""The scheme: every constant of the test, fixed by a version number, never by a claim.

A record names its scheme version; the verifier takes the number of bits, the number of triggers
and the decision level from this table, not from any file a claimant hands over.

Decision level. A dishonest party may search before a dispute: try keys, salts, tickets or records
until one happens to fit a model that is not theirs. Allowing 2^40 tries (about 10^12, far beyond
the 10^5-10^6 per second a laptop reaches for the whole test), and asking that such a search succeed
with probability at most 10^-6, the union bound gives the per-test level

    alpha = 10^-6 / 2^40 ≈ 9.09e-19,

exact for each test because the bits (and trigger labels) are uniform and independent of anything
made without the key. With n bits, k of which agree, p = P(Binomial(n, 1/2) ≥ k); n = 1024 needs
k ≥ 652 (63.7 %) for p ≤ alpha, so a signature survives attacks that flip up to 36 % of its bits
(n = 512 would need 69.3 %, 256 77.0 %: benchmarks/ownership_robustness.py measures the trade-off).
Black-box: m = 256 triggers with uniform random labels over C classes, p = P(Binomial(m, 1/C) ≥ k);
C = 10 needs 77 correct (30 %).
"""

from __future__ import annotations

from dataclasses import dataclass

from ticketlab.errors import TicketlabError


@dataclass(frozen=True)
class Scheme:
    version: int
    bits: int                   # n: white-box signature bits
    triggers: int               # m: black-box trigger inputs
    search_log2: int = 40       # tries a dishonest party is allowed (2^40)
    search_error: float = 1e-6  # chance that all of them together succeed
    blocks_per_bit: int = 4     # carriers must offer at least this many connections per bit
    sketch_bits: int = 128      # sign bits per unit and part in the alignment sketch (at most)
    relative_threshold: float = 1e-3  # reading: a block is dead below this × the layer's scale
    floor_quantile: float = 0.75      # signing: a 1-bit block is kept at least this strong (layer quantile)

    @property
    def alpha(self) -> float:
        return self.search_error / 2 ** self.search_log2

    def describe(self) -> dict:
        return {"scheme": self.version, "bits": self.bits, "triggers": self.triggers, "alpha": self.alpha,
                "search": f"2^{self.search_log2} tries succeed with probability <= {self.search_error:g}"}


SCHEMES = {2: Scheme(version=2, bits=1024, triggers=256)}
CURRENT = SCHEMES[2]


def scheme(version) -> Scheme:
    if isinstance(version, bool) or version not in SCHEMES:
        known = ", ".join(map(str, SCHEMES))
        if version == 1:
            raise TicketlabError("scheme 1 (claims that list their own positions and significance) is no longer "
                                 "accepted: its test trusted the claimant's fields; sign and register the ticket again")
        raise TicketlabError(f"unknown ownership scheme {version!r}; this ticketlab knows scheme {known}")
    return SCHEMES[version]
