"""EAN/UPC symbologies: the GS1 mod-10 check digit and UPC-E zero suppression.

These are the rules every retail scanner format shares. They live apart from
the parser so the catalogue side (normalising stored GTINs) and the scanner
side (validating scans) use literally the same arithmetic; a disagreement
between the two would make a correctly scanned item fail to match.

References: GS1 General Specifications §7.9.1 (standard check digit) and its
UPC-E zero-suppression table (the UPC-E symbol itself is ISO/IEC 15420).
"""

from __future__ import annotations

from enum import StrEnum

from cartos.sensors.barcode.errors import InvalidBarcodeError, Rejection


class Symbology(StrEnum):
    """The format of the digits the scanner sent (not of the printed symbol).

    UPC-A and UPC-E symbols that a scanner transmits in their 13-digit form
    (as ISO/IEC 15420 asks when symbology identifiers are on) are reported as
    ``ean13``: the digits are then an EAN-13, and the GTIN is the same either way.
    """

    EAN13 = "ean13"
    EAN8 = "ean8"
    UPCA = "upca"
    UPCE = "upce"


DIGIT_COUNTS: dict[Symbology, int] = {
    Symbology.EAN13: 13,
    Symbology.EAN8: 8,
    Symbology.UPCA: 12,
    Symbology.UPCE: 8,
}
"""Digits each symbology transmits, check digit included."""

UPCE_NUMBER_SYSTEMS = frozenset("01")
"""UPC-E exists only for number systems 0 and 1 (GTIN-12s starting 0 or 1)."""


def gs1_check_digit(payload: str) -> str:
    """The GS1 mod-10 check digit for ``payload`` (all digits but the check digit).

    Weights alternate 3, 1, 3, … starting from the rightmost payload digit, so
    the same function serves GTIN-8, -12, -13 and -14 without knowing which.
    """
    if not (payload.isascii() and payload.isdigit()):
        raise ValueError(f"check digit payload must be ASCII digits, got {payload!r}")
    total = sum(
        int(digit) * (3 if position % 2 == 0 else 1)
        for position, digit in enumerate(reversed(payload))
    )
    return str((10 - total % 10) % 10)


def has_valid_check_digit(digits: str) -> bool:
    """Whether the last digit of ``digits`` is the GS1 check digit of the rest."""
    return len(digits) >= 2 and gs1_check_digit(digits[:-1]) == digits[-1]


def require_check_digit(digits: str, *, label: str) -> None:
    """Raise :class:`InvalidBarcodeError` unless ``digits`` ends in its check digit.

    ``label`` names the code in the reason, number included (``"EAN-13
    4006381333931"``, ``"UPC-E 04252614 (expanded to UPC-A 042100005264)"``), so
    the message says which number was checked.
    """
    expected = gs1_check_digit(digits[:-1])
    got = digits[-1]
    if expected != got:
        raise InvalidBarcodeError(
            f"bad check digit in {label}: expected {expected}, got {got}",
            Rejection.CHECK_DIGIT,
        )


def expand_upce(upce: str) -> str:
    """The UPC-A (GTIN-12) that an 8-digit UPC-E stands for.

    ``upce`` is number system, six data digits X1…X6 and the check digit. The
    last data digit X6 says where the suppressed zeros go:

    ======  ==================  ===============
    X6      manufacturer part   item part
    ======  ==================  ===============
    0, 1, 2 X1 X2 X6 0 0        0 0 X3 X4 X5
    3       X1 X2 X3 0 0        0 0 0 X4 X5
    4       X1 X2 X3 X4 0       0 0 0 0 X5
    5 … 9   X1 X2 X3 X4 X5      0 0 0 0 X6
    ======  ==================  ===============

    The number system and check digit are carried over unchanged (a UPC-E's
    check digit is the check digit of its expansion). The check digit is not
    verified here; :func:`require_check_digit` on the result does that.
    Non-canonical forms (e.g. X6 = 3 with X3 in 0–2, which the X6 = 0–2 row
    could also express) are expanded as written: the expansion is still
    well defined and printers do not produce them.

    Because X6 moves the other digits, the check digit cannot catch every
    misread of X6 (about 7 % of its substitutions give another valid code,
    e.g. 09141773 and 09141713); every other single-digit misread of a UPC-E
    is caught. Against X6 errors only the scanner's own decoding (the UPC-E
    parity pattern) protects.
    """
    if len(upce) != 8 or not (upce.isascii() and upce.isdigit()):
        raise ValueError(f"UPC-E must be 8 ASCII digits, got {upce!r}")
    number_system, data, check = upce[0], upce[1:7], upce[7]
    if number_system not in UPCE_NUMBER_SYSTEMS:
        raise InvalidBarcodeError(
            f"bad UPC-E number system {number_system} in {upce}: must be 0 or 1",
            Rejection.UPCE_NUMBER_SYSTEM,
        )
    x1, x2, x3, x4, x5, x6 = tuple(data)
    if x6 in "012":
        manufacturer, item = x1 + x2 + x6 + "00", "00" + x3 + x4 + x5
    elif x6 == "3":
        manufacturer, item = x1 + x2 + x3 + "00", "000" + x4 + x5
    elif x6 == "4":
        manufacturer, item = x1 + x2 + x3 + x4 + "0", "0000" + x5
    else:
        manufacturer, item = x1 + x2 + x3 + x4 + x5, "0000" + x6
    return number_system + manufacturer + item + check


def to_gtin14(digits: str) -> str:
    """Right-justify a GTIN-8/-12/-13/-14 to 14 digits (GS1's common data form)."""
    return digits.rjust(14, "0")
