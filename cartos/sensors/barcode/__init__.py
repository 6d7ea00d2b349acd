"""Barcode scanner text → validated, normalised product identity.

The scanner reports whatever it decoded; this package decides whether that is
a real EAN-13, EAN-8, UPC-A or UPC-E (check digits, UPC-E expansion, in-store
variable-measure labels with their price check digit) and gives the
catalogue one key per item regardless of the symbology it was printed in.
Anything doubtful is rejected with a reason rather than guessed: a misread
must never become an item.
"""

from cartos.sensors.barcode.errors import (
    BarcodeError,
    InvalidBarcodeError,
    Rejection,
    VariableMeasureSchemeError,
)
from cartos.sensors.barcode.parse import Barcode, catalogue_key, parse_barcode, validate
from cartos.sensors.barcode.symbologies import (
    Symbology,
    expand_upce,
    gs1_check_digit,
    has_valid_check_digit,
)
from cartos.sensors.barcode.variable_measure import (
    DEFAULT_SCHEME,
    UPC_PRICE_SCHEME,
    MeasureKind,
    VariableMeasure,
    VariableMeasureScheme,
    price_check_digit,
)

__all__ = [
    "DEFAULT_SCHEME",
    "UPC_PRICE_SCHEME",
    "Barcode",
    "BarcodeError",
    "InvalidBarcodeError",
    "MeasureKind",
    "Rejection",
    "Symbology",
    "VariableMeasure",
    "VariableMeasureScheme",
    "VariableMeasureSchemeError",
    "catalogue_key",
    "expand_upce",
    "gs1_check_digit",
    "has_valid_check_digit",
    "parse_barcode",
    "price_check_digit",
    "validate",
]
