"""Scanner text in, validated product identity out: the barcode entry point.

The scanner behind the cart's microcontroller hands over whatever it decoded,
possibly with an AIM symbology identifier in front (``]E0…``) and a line
ending behind. :func:`parse_barcode` turns that into a :class:`Barcode` whose
:attr:`~Barcode.lookup_key` the catalogue matches on, or raises
:class:`InvalidBarcodeError` with the reason; nothing in between, because a
misread that slipped through would put the wrong item in the basket.

Deciding the symbology
----------------------
13 digits are an EAN-13, 12 a UPC-A. 8 digits are ambiguous: EAN-8 and UPC-E
both transmit 8. With an AIM identifier the scanner settles it (GS1 General
Specifications, symbology identifiers for EAN/UPC, ISO/IEC 15420):

* ``]E0`` — EAN-13, UPC-A or UPC-E. 13 digits is the form the standard asks
  for (UPC-A and UPC-E sent as 13 digits with a leading zero); 12 digits
  (UPC-A) and 8 digits (UPC-E, not expanded) are what many scanners send in
  practice and are accepted. EAN-8 never uses ``]E0``, so 8 digits here are
  a UPC-E.
* ``]E4`` — EAN-8 (8 digits).
* ``]E3`` — EAN-13/UPC with a 2- or 5-digit add-on (15 or 18 digits): the
  first 13 are the main code, the rest the add-on (:attr:`Barcode.add_on`).
* ``]E1``/``]E2`` (an add-on on its own) and other symbologies (``]C1``
  GS1-128, ``]e0`` GS1 DataBar, ``]Q1`` QR, …) are refused.

Without an identifier, 8 digits are read as ``eight_digit_symbology`` (EAN-8
unless the deployment says its scanner sends UPC-E unexpanded). There is no
fallback "try the other one if the check digit fails": that would accept as a
UPC-E a misread EAN-8 whose digits happen to pass the UPC-E check.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cartos.sensors.barcode.errors import InvalidBarcodeError, Rejection
from cartos.sensors.barcode.symbologies import (
    DIGIT_COUNTS,
    Symbology,
    expand_upce,
    require_check_digit,
    to_gtin14,
)
from cartos.sensors.barcode.variable_measure import (
    VariableMeasure,
    VariableMeasureScheme,
    decode_variable_measure,
    scheme_set,
)

AIM_EAN_UPC = "]E0"
AIM_EAN_UPC_WITH_ADD_ON = "]E3"
AIM_EAN8 = "]E4"

_ADD_ON_ONLY = {"]E1": "a two-digit add-on", "]E2": "a five-digit add-on"}
_OTHER_SYMBOLOGIES = {
    "A": "Code 39",
    "C": "Code 128 / GS1-128",
    "d": "Data Matrix",
    "e": "GS1 DataBar",
    "F": "Codabar",
    "G": "Code 93",
    "I": "Interleaved 2 of 5 / ITF-14",
    "L": "PDF417",
    "Q": "QR Code",
    "z": "Aztec",
}
_ADD_ON_LENGTHS = (2, 5)

_LABELS = {
    Symbology.EAN13: "EAN-13",
    Symbology.EAN8: "EAN-8",
    Symbology.UPCA: "UPC-A",
    Symbology.UPCE: "UPC-E",
}


@dataclass(frozen=True)
class Barcode:
    """One validated scan.

    ``raw`` is the text exactly as received; ``digits`` the code as
    transmitted (a UPC-E stays 8 digits), without identifier or add-on.
    ``gtin14`` is the GS1 14-digit form (GTIN-8/-12/-13 right-justified with
    zeros; a UPC-E expanded first), so UPC-A ``036000291452`` and EAN-13
    ``0036000291452`` are the same item. ``gtin13`` is the EAN-13 form, or
    ``None`` for an EAN-8: a GTIN-8 is not a GTIN-13 and cannot be printed as
    one. ``variable_measure`` is set for in-store price/weight labels.
    """

    raw: str
    symbology: Symbology
    digits: str
    gtin14: str
    gtin13: str | None
    variable_measure: VariableMeasure | None = None
    aim_identifier: str | None = None
    add_on: str | None = None

    @property
    def lookup_key(self) -> str:
        """The key the catalogue stores the item under (see :func:`catalogue_key`).

        The GTIN-14, except for variable-measure labels, where it is the
        value-zeroed key shared by every pack of the item.
        """
        if self.variable_measure is not None:
            return self.variable_measure.lookup_key
        return self.gtin14


def parse_barcode(
    text: str,
    scheme: VariableMeasureScheme | Sequence[VariableMeasureScheme] | None = None,
    *,
    eight_digit_symbology: Symbology = Symbology.EAN8,
) -> Barcode:
    """Validate and normalise one scan, or raise :class:`InvalidBarcodeError`.

    ``scheme`` is the store's variable-measure layout: ``None`` means
    :data:`~cartos.sensors.barcode.variable_measure.DEFAULT_SCHEME`, several
    schemes (disjoint prefixes) are allowed, and an empty sequence turns
    variable-measure decoding off (``02``/``2x`` codes are then plain
    in-store numbers keyed by their GTIN-14). ``eight_digit_symbology`` (EAN-8
    or UPC-E) decides 8 digits that arrive without an AIM identifier.

    A bad ``scheme`` raises
    :class:`~cartos.sensors.barcode.errors.VariableMeasureSchemeError`, a bad
    ``eight_digit_symbology`` :class:`ValueError`: both are configuration
    mistakes, not scans to reject.
    """
    schemes = scheme_set(scheme)
    if eight_digit_symbology not in (Symbology.EAN8, Symbology.UPCE):
        raise ValueError(
            f"eight_digit_symbology must be ean8 or upce, got {eight_digit_symbology!r}"
        )
    try:
        return _parse(text, schemes, eight_digit_symbology)
    except InvalidBarcodeError as exc:
        if exc.raw is None:
            exc.raw = text
        raise


def validate(
    text: str,
    scheme: VariableMeasureScheme | Sequence[VariableMeasureScheme] | None = None,
    *,
    eight_digit_symbology: Symbology = Symbology.EAN8,
) -> tuple[Barcode | None, str | None]:
    """:func:`parse_barcode` without the exception: ``(barcode, None)`` or ``(None, reason)``.

    Only rejected scans become a reason; configuration mistakes still raise.
    """
    try:
        return parse_barcode(text, scheme, eight_digit_symbology=eight_digit_symbology), None
    except InvalidBarcodeError as exc:
        return None, exc.reason


def catalogue_key(
    gtin: str,
    scheme: VariableMeasureScheme | Sequence[VariableMeasureScheme] | None = None,
) -> str:
    """The :attr:`Barcode.lookup_key` a scan of the item stored as ``gtin`` will have.

    For the catalogue side: stored barcodes are GTIN-8, -12, -13 or -14 text
    (8 digits are always a GTIN-8 here, never a UPC-E: a UPC-E item is stored
    as its UPC-A). A stored variable-measure label, with any value or with the
    value zeroed, gives the item's value-zeroed key under the same ``scheme``
    the cart scans with. Raises :class:`InvalidBarcodeError` for anything that
    is not a check-digit-valid GTIN.
    """
    schemes = scheme_set(scheme)
    digits = gtin.strip()
    try:
        _require_digits(digits)
        if len(digits) not in (8, 12, 13, 14):
            raise InvalidBarcodeError(
                f"a GTIN has 8, 12, 13 or 14 digits, got {len(digits)}", Rejection.LENGTH
            )
        require_check_digit(digits, label=f"GTIN-{len(digits)} {digits}")
        gtin14 = to_gtin14(digits)
        measure = decode_variable_measure(gtin14[1:], schemes) if gtin14[0] == "0" else None
    except InvalidBarcodeError as exc:
        if exc.raw is None:
            exc.raw = gtin
        raise
    return measure.lookup_key if measure is not None else gtin14


def _parse(
    raw: str, schemes: Sequence[VariableMeasureScheme], eight_digit_symbology: Symbology
) -> Barcode:
    text = raw.strip()
    if not text:
        raise InvalidBarcodeError("empty scan: no characters besides whitespace", Rejection.EMPTY)
    aim, body = _split_aim_identifier(text)
    if not body:
        raise InvalidBarcodeError(
            f"empty scan: no digits after symbology identifier {aim}", Rejection.EMPTY
        )
    _require_digits(body)
    symbology, digits, add_on = _classify(body, aim, eight_digit_symbology)

    if symbology is Symbology.UPCE:
        gtin = expand_upce(digits)
        require_check_digit(gtin, label=f"UPC-E {digits} (expanded to UPC-A {gtin})")
    else:
        gtin = digits
        require_check_digit(gtin, label=f"{_LABELS[symbology]} {digits}")

    gtin14 = to_gtin14(gtin)
    gtin13 = None if symbology is Symbology.EAN8 else gtin14[1:]
    measure = decode_variable_measure(gtin13, schemes) if gtin13 is not None else None
    return Barcode(
        raw=raw,
        symbology=symbology,
        digits=digits,
        gtin14=gtin14,
        gtin13=gtin13,
        variable_measure=measure,
        aim_identifier=aim,
        add_on=add_on,
    )


def _split_aim_identifier(text: str) -> tuple[str | None, str]:
    """Separate a leading ``]Xm`` identifier; refuse identifiers of other symbologies."""
    if not text.startswith("]"):
        return None, text
    aim = text[:3]
    if len(aim) < 3 or not aim[1].isascii() or not aim[1].isalpha() or not aim[2].isalnum():
        raise InvalidBarcodeError(
            f"malformed symbology identifier {aim!r}: expected ']' + letter + modifier",
            Rejection.SYMBOLOGY_IDENTIFIER,
        )
    if aim in (AIM_EAN_UPC, AIM_EAN_UPC_WITH_ADD_ON, AIM_EAN8):
        return aim, text[3:]
    if aim in _ADD_ON_ONLY:
        what = _ADD_ON_ONLY[aim]
        raise InvalidBarcodeError(
            f"symbology identifier {aim} is {what} without its main EAN/UPC code",
            Rejection.SYMBOLOGY_IDENTIFIER,
        )
    name = _OTHER_SYMBOLOGIES.get(aim[1], "a symbology other than EAN/UPC")
    raise InvalidBarcodeError(
        f"unsupported symbology identifier {aim} ({name}): only EAN-13, EAN-8, UPC-A and "
        "UPC-E identify products",
        Rejection.SYMBOLOGY_IDENTIFIER,
    )


def _require_digits(body: str) -> None:
    for position, char in enumerate(body, start=1):
        if not ("0" <= char <= "9"):
            raise InvalidBarcodeError(
                f"non-digit character {char!r} at position {position} of {body!r}",
                Rejection.NON_DIGIT,
            )


def _classify(
    body: str, aim: str | None, eight_digit_symbology: Symbology
) -> tuple[Symbology, str, str | None]:
    """Symbology, main digits and add-on of an all-digit body."""
    count = len(body)
    if aim == AIM_EAN_UPC_WITH_ADD_ON:
        main = DIGIT_COUNTS[Symbology.EAN13]
        if count - main not in _ADD_ON_LENGTHS:
            raise InvalidBarcodeError(
                f"{count} digits after {aim}: expected 15 or 18 (13-digit code + 2- or 5-digit "
                "add-on)",
                Rejection.LENGTH,
            )
        return Symbology.EAN13, body[:main], body[main:]
    if aim == AIM_EAN8:
        if count != DIGIT_COUNTS[Symbology.EAN8]:
            raise InvalidBarcodeError(
                f"{count} digits after {aim} (EAN-8): expected 8", Rejection.LENGTH
            )
        return Symbology.EAN8, body, None
    eight = Symbology.UPCE if aim == AIM_EAN_UPC else eight_digit_symbology
    by_count = {13: Symbology.EAN13, 12: Symbology.UPCA, 8: eight}
    if count in by_count:
        return by_count[count], body, None
    raise InvalidBarcodeError(_length_reason(count, aim), Rejection.LENGTH)


def _length_reason(count: int, aim: str | None) -> str:
    after = f" after {aim} (EAN-13, UPC-A or UPC-E)" if aim else ""
    reason = f"unsupported length: {count} digits{after}, expected 13, 12 or 8"
    if count == 14:
        reason += " (a GTIN-14 marks trade units such as cases, not retail items)"
    elif count in (6, 7):
        reason += (
            " (a UPC-E sent without its number system or check digit? configure the scanner "
            "to transmit both)"
        )
    elif aim is None and count - 13 in _ADD_ON_LENGTHS:
        reason += " (an EAN/UPC with add-on? enable AIM symbology identifiers on the scanner)"
    return reason
