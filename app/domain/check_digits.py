"""Reference check digits: weighted sum (with substitutions), Luhn and the Dynix library variant."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CheckDigitRule:
    """The check-digit part of a reference validator, as plain values."""

    scheme: str  # weighted_sum | luhn | dynix
    modulus: int = 11
    weights: tuple[int, ...] = ()
    subtract: bool = False
    source_substitution: tuple[tuple[str, str], ...] = ()
    result_substitutions: tuple[tuple[int, str], ...] = ()

    @classmethod
    def from_fields(cls, scheme, modulus=None, weights=None, subtract=False,
                    source_substitution=None, result_substitutions=None) -> "CheckDigitRule":
        w = tuple(int(p) for p in (weights or "").replace(" ", "").split(",") if p != "")
        src = []
        for pair in (source_substitution or "").split(","):
            a, sep, b = pair.partition("=")
            if sep and a.strip():
                src.append((a.strip().upper(), b.strip()))
            elif not sep and a.strip():
                # LocalGov IMS's form: "98" replaces the first two characters, whatever they are
                src.append(("", a.strip().upper()))
        res = []
        for pair in (result_substitutions or "").split(","):
            a, sep, b = pair.partition(":")
            if sep and a.strip().isdigit():
                res.append((int(a.strip()), b.strip().upper()))
        return cls(scheme=scheme or "weighted_sum", modulus=int(modulus or (10 if scheme == "luhn" else 11)),
                   weights=w, subtract=bool(subtract), source_substitution=tuple(src),
                   result_substitutions=tuple(res))

    def _map_result(self, r: int) -> str | None:
        for key, char in self.result_substitutions:
            if key == r:
                return char
        return str(r) if 0 <= r <= 9 else None

    def _prefix_len(self, ref: str) -> int:
        for src, dst in self.source_substitution:
            if not src:
                return min(len(dst), len(ref))
            if ref.startswith(src):
                return len(src)
        return 0

    def substitute_source(self, ref: str) -> str:
        """``BJ=05``: a reference starting BJ is scored as if it started 05. ``98`` (no "="):
        the first two characters are replaced by 98, whatever they are (LocalGov IMS)."""
        for src, dst in self.source_substitution:
            if not src:
                return dst + ref[len(dst):]
            if ref.startswith(src):
                return dst + ref[len(src):]
        return ref

    def expected(self, ref: str, check_pos: int) -> str | None:
        """The check character that ``ref`` should carry at ``check_pos`` (None: no valid one)."""
        ref = ref.upper()
        if self.scheme == "luhn":
            payload = ref[:check_pos] + ref[check_pos + 1:]
            return luhn_check_digit(payload)
        if self.scheme == "dynix":
            payload = ref[:check_pos] + ref[check_pos + 1:]
            return self._dynix(payload)
        scored = self.substitute_source(ref)
        # a substitution of another length (e.g. "B=05") shifts the positions after it
        shift = len(scored) - len(ref)
        skip = check_pos + shift if shift and check_pos >= self._prefix_len(ref) else check_pos
        total = 0
        for i, ch in enumerate(scored):
            if i == skip or not ch.isdigit():
                continue
            weight = self.weights[i] if i < len(self.weights) else 0
            total += int(ch) * weight
        r = total % self.modulus
        if self.subtract:
            r = self.modulus - r
        return self._map_result(r)

    def _dynix(self, payload: str) -> str | None:
        total = 0
        for i, ch in enumerate(payload):
            if not ch.isdigit():
                continue
            d = int(ch)
            if i % 2 == 1:
                total += d
            else:
                weight = self.weights[i] if i < len(self.weights) else (self.weights[0] if self.weights else 2)
                v = d * weight
                if v > 10:
                    v -= 10
                if d > 4:
                    v += 1
                total += v
        r = self.modulus - (total % self.modulus)
        return self._map_result(r)

    def is_valid(self, ref: str, check_pos: int | None = None) -> bool:
        ref = ref.upper()
        if not ref:
            return False
        pos = len(ref) - 1 if check_pos is None else check_pos
        if pos >= len(ref):
            return False
        exp = self.expected(ref, pos)
        return exp is not None and ref[pos] == exp

    def with_check(self, body: str, check_pos: int | None = None) -> str | None:
        """Insert the computed check character into ``body`` (at the end by default)."""
        pos = len(body) if check_pos is None else check_pos
        candidate = body[:pos] + "0" + body[pos:]
        exp = self.expected(candidate, pos)
        return None if exp is None else candidate[:pos] + exp + candidate[pos + 1:]


def luhn_check_digit(payload: str) -> str | None:
    """Mod 10 double-add-double check digit for the digits of payload."""
    digits = [int(c) for c in payload if c.isdigit()]
    if len(digits) != len(payload):
        return None
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)
