"""GS1 variable-measure codes: in-store labels that carry a price or a weight.

Weighed goods (deli, produce, meat) are labelled in the store with an EAN-13
whose GS1 prefix is ``02`` or ``20``–``29`` (restricted circulation numbers).
Such a code is not a global GTIN: part of it names the item, part of it is
the price or weight of this particular pack. The catalogue therefore cannot
key on the whole number; it keys on the item reference with the value zeroed
(:attr:`VariableMeasure.lookup_key`), and the value travels with the scan.

Where each part sits is decided per country (by the GS1 Member Organisation)
or per retailer, so the layout is data, a :class:`VariableMeasureScheme`,
configured per store. Every layout supported here reads, in its 13-digit
(EAN-13) form::

    X X  |  I … I  |  [V]      |  P … P  |  C
    prefix   item       verifier    value     GS1 check digit

with ``items + (1 if verifier) + values == 10``. The optional verifier digit
(GS1: "price verifier digit" / "measure verifier digit", computed as in
General Specifications §7.9, "check digit calculation for price/weight
fields") protects the value with its own arithmetic: a misread of any one
value digit changes it, so even a multi-digit misread that keeps the overall
check digit valid is caught if it touches one value digit. GS1's examples of
these data structures place it between item reference and value, the only
position supported here.

:data:`DEFAULT_SCHEME` is ``2X IIII V PPPPP C``: prefixes 20–29, a 4-digit
item reference, a verifier digit (five-digit algorithm) and a 5-digit price
in minor currency units (cents). :data:`UPC_PRICE_SCHEME` is the North
American number-system-2 label ``2 IIIII V PPPP C`` (a UPC-A, i.e. ``02…`` as
EAN-13): 5-digit item, verifier (four-digit algorithm), 4-digit price. A store
whose labels differ (no verifier, 5-digit item reference, weights) configures
its own scheme.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from cartos.sensors.barcode.errors import (
    InvalidBarcodeError,
    Rejection,
    VariableMeasureSchemeError,
)
from cartos.sensors.barcode.symbologies import gs1_check_digit, to_gtin14

VARIABLE_MEASURE_PREFIXES = frozenset({"02", *(f"2{digit}" for digit in range(10))})
"""GS1 prefixes (first two digits of the 13-digit form) reserved for variable measure.

Schemes may only claim these: a scheme that claimed, say, ``40`` would turn
real manufacturer GTINs into nonsense prices.
"""

_BODY_DIGITS = 10
"""Digits between the 2-digit prefix and the check digit of a 13-digit code."""

# GS1 General Specifications §7.9: weighted products for the price verifier.
# "2-": digit x 2, tens digit subtracted from units digit (mod 10).
_TWO_MINUS = (0, 2, 4, 6, 8, 9, 1, 3, 5, 7)
# "3": digit x 3, units digit.
_THREE = (0, 3, 6, 9, 2, 5, 8, 1, 4, 7)
# "5+": digit x 5, tens digit added to units digit (mod 10).
_FIVE_PLUS = (0, 5, 1, 6, 2, 7, 3, 8, 4, 9)
# "5-": digit x 5, tens digit subtracted from units digit (mod 10).
_FIVE_MINUS = (0, 5, 9, 4, 8, 3, 7, 2, 6, 1)

_FOUR_DIGIT_WEIGHTS = (_TWO_MINUS, _TWO_MINUS, _THREE, _FIVE_MINUS)
_FIVE_DIGIT_WEIGHTS = (_FIVE_PLUS, _TWO_MINUS, _FIVE_MINUS, _FIVE_PLUS, _TWO_MINUS)


class MeasureKind(StrEnum):
    """What the value digits of a variable-measure code mean."""

    PRICE = "price"
    """Price of this pack in minor currency units (e.g. cents)."""
    WEIGHT = "weight"
    """Net weight of this pack in grams."""


def price_check_digit(value: str) -> str:
    """The GS1 price/measure verifier digit of a 4- or 5-digit value field.

    Four digits: weights 2-, 2-, 3, 5-; the verifier is the units digit of
    three times the sum of the weighted products. Five digits: weights 5+,
    2-, 5-, 5+, 2-; the sum is subtracted from the next multiple of ten and
    the verifier is the digit whose 5- product equals the result. GS1's worked
    examples: ``2875`` → 9, ``14685`` → 6.
    """
    if not (value.isascii() and value.isdigit()):
        raise ValueError(f"price field must be ASCII digits, got {value!r}")
    digits = [int(digit) for digit in value]
    if len(digits) == 4:
        total = sum(table[d] for table, d in zip(_FOUR_DIGIT_WEIGHTS, digits, strict=True))
        return str(total * 3 % 10)
    if len(digits) == 5:
        total = sum(table[d] for table, d in zip(_FIVE_DIGIT_WEIGHTS, digits, strict=True))
        return str(_FIVE_MINUS.index((10 - total % 10) % 10))
    raise ValueError(f"the price check digit is defined for 4 or 5 digits, got {len(digits)}")


@dataclass(frozen=True)
class VariableMeasure:
    """The variable part of a scanned in-store label.

    ``item_reference`` keeps its leading zeros (it is a code, not a
    quantity). ``lookup_key`` is the GTIN-14 form of the same label with the
    value (and its verifier) set to zero: one key per item, whatever the pack
    weighed or cost, and itself a valid code of the scheme.
    """

    prefix: str
    item_reference: str
    kind: MeasureKind
    value: int
    lookup_key: str


@dataclass(frozen=True)
class VariableMeasureScheme:
    """One store's layout of variable-measure labels (see the module docstring).

    ``prefixes`` are the two-digit GS1 prefixes (of the 13-digit form) this
    layout applies to, all within ``02`` / ``20``–``29``. A store that uses
    different layouts under different prefixes (say prices under 20–22 and
    weights under 23–25) passes several schemes with disjoint prefixes.
    """

    prefixes: frozenset[str]
    item_reference_digits: int
    kind: MeasureKind
    value_digits: int
    has_price_check_digit: bool

    def __post_init__(self) -> None:
        # Accept any iterable of prefixes from configuration code, store a frozenset.
        object.__setattr__(self, "prefixes", frozenset(self.prefixes))
        if not self.prefixes:
            raise VariableMeasureSchemeError("a variable-measure scheme needs at least one prefix")
        foreign = sorted(p for p in self.prefixes if p not in VARIABLE_MEASURE_PREFIXES)
        if foreign:
            raise VariableMeasureSchemeError(
                f"prefixes {', '.join(map(repr, foreign))} are not GS1 variable-measure "
                "prefixes (02, 20-29)"
            )
        if self.kind not in set(MeasureKind):
            raise VariableMeasureSchemeError(
                f"kind must be one of {', '.join(MeasureKind)}, got {self.kind!r}"
            )
        object.__setattr__(self, "kind", MeasureKind(self.kind))
        if self.item_reference_digits < 1 or self.value_digits < 1:
            raise VariableMeasureSchemeError(
                "item reference and value need at least one digit each, got "
                f"{self.item_reference_digits} and {self.value_digits}"
            )
        used = self.item_reference_digits + self.value_digits + int(self.has_price_check_digit)
        if used != _BODY_DIGITS:
            raise VariableMeasureSchemeError(
                f"layout {self.layout} uses {used} digits between prefix and check digit, "
                f"an EAN-13 has {_BODY_DIGITS}"
            )
        if self.has_price_check_digit and self.value_digits not in (4, 5):
            raise VariableMeasureSchemeError(
                f"the price check digit is defined for 4- or 5-digit values, "
                f"not {self.value_digits}"
            )

    @property
    def layout(self) -> str:
        """The layout as text, e.g. ``XX IIII V PPPPP C`` (P: the price or weight digits)."""
        verifier = " V" if self.has_price_check_digit else ""
        return f"XX {'I' * self.item_reference_digits}{verifier} {'P' * self.value_digits} C"

    def _value_start(self) -> int:
        return 2 + self.item_reference_digits + int(self.has_price_check_digit)

    def decode(self, gtin13: str) -> VariableMeasure:
        """Split a check-digit-valid 13-digit code with one of this scheme's prefixes.

        Raises :class:`InvalidBarcodeError` when the verifier digit does not
        match the value.
        """
        prefix = gtin13[:2]
        if len(gtin13) != 13 or prefix not in self.prefixes:
            raise ValueError(f"{gtin13!r} is not a 13-digit code with prefix in {self.prefixes}")
        item_end = 2 + self.item_reference_digits
        value_start = self._value_start()
        item_reference = gtin13[2:item_end]
        value = gtin13[value_start : value_start + self.value_digits]
        if self.has_price_check_digit:
            expected = price_check_digit(value)
            got = gtin13[item_end]
            if expected != got:
                raise InvalidBarcodeError(
                    f"bad {self.kind} check digit in {gtin13} ({self.layout}): "
                    f"expected {expected} for value {value}, got {got}",
                    Rejection.PRICE_CHECK_DIGIT,
                )
        return VariableMeasure(
            prefix=prefix,
            item_reference=item_reference,
            kind=self.kind,
            value=int(value),
            lookup_key=to_gtin14(self.encode(prefix, item_reference, 0)),
        )

    def encode(self, prefix: str, item_reference: str, value: int) -> str:
        """The 13-digit code (verifier and check digit computed) for one label.

        The inverse of :meth:`decode`; it also builds the value-zeroed lookup key.
        """
        if prefix not in self.prefixes:
            raise ValueError(f"prefix {prefix!r} is not one of this scheme's {self.prefixes}")
        if len(item_reference) != self.item_reference_digits or not (
            item_reference.isascii() and item_reference.isdigit()
        ):
            raise ValueError(
                f"item reference must be {self.item_reference_digits} digits, "
                f"got {item_reference!r}"
            )
        if not 0 <= value < 10**self.value_digits:
            raise ValueError(f"value {value} does not fit in {self.value_digits} digits")
        value_field = str(value).rjust(self.value_digits, "0")
        verifier = price_check_digit(value_field) if self.has_price_check_digit else ""
        payload = prefix + item_reference + verifier + value_field
        return payload + gs1_check_digit(payload)


DEFAULT_SCHEME = VariableMeasureScheme(
    prefixes=frozenset(f"2{digit}" for digit in range(10)),
    item_reference_digits=4,
    kind=MeasureKind.PRICE,
    value_digits=5,
    has_price_check_digit=True,
)
"""``2X IIII V PPPPP C``: the layout :func:`parse_barcode` assumes unless told otherwise."""

UPC_PRICE_SCHEME = VariableMeasureScheme(
    prefixes=frozenset({"02"}),
    item_reference_digits=5,
    kind=MeasureKind.PRICE,
    value_digits=4,
    has_price_check_digit=True,
)
"""UPC-A number system 2, ``2 IIIII V PPPP C`` (``02 IIIII V PPPP C`` as EAN-13)."""


def scheme_set(
    scheme: VariableMeasureScheme | Sequence[VariableMeasureScheme] | None,
) -> tuple[VariableMeasureScheme, ...]:
    """Normalise the ``scheme`` argument: ``None`` → the default, one → a 1-tuple.

    An empty sequence means "this store has no variable-measure labels".
    Overlapping prefixes are refused: which layout applies must never depend
    on the order the schemes were listed in.
    """
    if scheme is None:
        return (DEFAULT_SCHEME,)
    schemes = (scheme,) if isinstance(scheme, VariableMeasureScheme) else tuple(scheme)
    _require_disjoint(schemes)
    return schemes


def _require_disjoint(schemes: Iterable[VariableMeasureScheme]) -> None:
    seen: set[str] = set()
    for scheme in schemes:
        overlap = seen & scheme.prefixes
        if overlap:
            raise VariableMeasureSchemeError(
                f"prefixes {', '.join(sorted(overlap))} are claimed by more than one scheme"
            )
        seen |= scheme.prefixes


def decode_variable_measure(
    gtin13: str, schemes: Sequence[VariableMeasureScheme]
) -> VariableMeasure | None:
    """Decode ``gtin13`` with the scheme that claims its prefix; ``None`` if none does."""
    prefix = gtin13[:2]
    for scheme in schemes:
        if prefix in scheme.prefixes:
            return scheme.decode(gtin13)
    return None
