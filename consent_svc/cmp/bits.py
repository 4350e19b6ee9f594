"""The bit reader shared by the IAB decoders (TCF, GPP): base64url characters, 6 bits each, read MSB first."""

from __future__ import annotations

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
BINARY = {c: f"{i:06b}" for i, c in enumerate(ALPHABET)}


class DecodeError(ValueError):
    """A string that is not what it claims; `code` is one of the shared vectors' error codes."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code


class Bits:
    """Fields read in order from one segment. Trailing zero-fill is ignored; reading past the end is
    `truncated` (never zero-filled). The bits are kept as text, so that a read costs its width, not the
    segment's length (a 20,000-character string read bit by bit as one big integer is quadratic)."""

    __slots__ = ("bits", "pos")

    def __init__(self, text: str) -> None:
        if not text:
            raise DecodeError("truncated", "empty segment")
        chunks = []
        for c in text:
            chunk = BINARY.get(c)
            if chunk is None:
                raise DecodeError("malformed_base64", f"character {c!r} is not base64url")
            chunks.append(chunk)
        self.bits, self.pos = "".join(chunks), 0

    def _take(self, width: int) -> str:
        end = self.pos + width
        if end > len(self.bits):
            raise DecodeError(
                "truncated", f"needs {width} bits at bit {self.pos}, has {len(self.bits) - self.pos}"
            )
        field, self.pos = self.bits[self.pos : end], end
        return field

    def int(self, width: int) -> int:
        return int(self._take(width) or "0", 2)

    def bool(self) -> bool:
        return self.int(1) == 1

    def bitfield(self, width: int) -> list[int]:
        """IDs 1..width whose bit is set (ID 1 is the leftmost bit)."""
        return [i for i, bit in enumerate(self._take(width), 1) if bit == "1"]

    def letters(self) -> str:
        return chr(ord("A") + self.int(6)) + chr(ord("A") + self.int(6))

    def fibonacci(self, most: int) -> int:
        """A Fibonacci-coded integer (>= 1): Zeckendorf bits, smallest weight first, ended by `11`. A value
        above `most` comes back as most + 1: the weights stop growing there, so a long code stays cheap."""
        total, previous, weight, following = 0, 0, 1, 2
        while True:
            bit = self.int(1)
            if bit and previous:
                return total
            if bit:
                total = min(total + weight, most + 1)
            previous, weight, following = bit, following, min(weight + following, most + 1)
