"""The bit reader shared by the IAB decoders (TCF, GPP): base64url characters, 6 bits each, read MSB first."""

from __future__ import annotations

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
VALUE = {c: i for i, c in enumerate(ALPHABET)}


class DecodeError(ValueError):
    """A string that is not what it claims; `code` is one of the shared vectors' error codes."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code


class Bits:
    """Fields read in order from one segment. Trailing zero-fill is ignored; reading past the end is
    `truncated` (never zero-filled)."""

    __slots__ = ("value", "length", "pos")

    def __init__(self, text: str) -> None:
        if not text:
            raise DecodeError("truncated", "empty segment")
        value = 0
        for c in text:
            v = VALUE.get(c)
            if v is None:
                raise DecodeError("malformed_base64", f"character {c!r} is not base64url")
            value = value << 6 | v
        self.value, self.length, self.pos = value, len(text) * 6, 0

    def int(self, width: int) -> int:
        end = self.pos + width
        if end > self.length:
            raise DecodeError(
                "truncated", f"needs {width} bits at bit {self.pos}, has {self.length - self.pos}"
            )
        self.pos = end
        return (self.value >> (self.length - end)) & ((1 << width) - 1)

    def bool(self) -> bool:
        return self.int(1) == 1

    def bitfield(self, width: int) -> list[int]:
        """IDs 1..width whose bit is set (ID 1 is the leftmost bit)."""
        field = self.int(width)
        return [i + 1 for i in range(width) if field >> (width - 1 - i) & 1]

    def letters(self) -> str:
        return chr(ord("A") + self.int(6)) + chr(ord("A") + self.int(6))

    def fibonacci(self) -> int:
        """A Fibonacci-coded integer (>= 1): Zeckendorf bits, smallest weight first, ended by `11`."""
        weights, total, previous = [1, 2], 0, 0
        i = 0
        while True:
            bit = self.int(1)
            if bit and previous:
                return total
            if bit:
                while len(weights) <= i:
                    weights.append(weights[-1] + weights[-2])
                total += weights[i]
            previous, i = bit, i + 1
