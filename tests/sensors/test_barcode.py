"""Tests for barcode validation, UPC-E expansion and variable-measure decoding.

Literal codes below are either published examples (Wikipedia's EAN-13, EAN-8,
UPC-A and UPC-E examples, the ISBN-13 example 978-0-306-40615-7, GS1's worked
price check digit examples) or were derived by hand from the GS1 rules, with
the arithmetic written next to them. Property tests compute check digits with
an independent reference formula, not with the code under test.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cartos.errors import CartosError
from cartos.sensors.barcode import (
    DEFAULT_SCHEME,
    UPC_PRICE_SCHEME,
    Barcode,
    InvalidBarcodeError,
    MeasureKind,
    Rejection,
    Symbology,
    VariableMeasureScheme,
    VariableMeasureSchemeError,
    catalogue_key,
    expand_upce,
    gs1_check_digit,
    parse_barcode,
    price_check_digit,
    validate,
)

NO_VARIABLE_MEASURE: tuple[VariableMeasureScheme, ...] = ()


def reference_check_digit(payload: str) -> str:
    """GS1 mod-10, written from the left: weight 3 where (len - index) is odd."""
    n = len(payload)
    total = sum(int(d) * (3 if (n - i) % 2 == 1 else 1) for i, d in enumerate(payload))
    return str(-total % 10)


def rejection_of(
    text: str,
    scheme: VariableMeasureScheme | Sequence[VariableMeasureScheme] | None = None,
    eight_digit_symbology: Symbology = Symbology.EAN8,
) -> InvalidBarcodeError:
    with pytest.raises(InvalidBarcodeError) as info:
        parse_barcode(text, scheme, eight_digit_symbology=eight_digit_symbology)
    return info.value


# --- published codes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "symbology", "gtin14", "gtin13"),
    [
        ("4006381333931", Symbology.EAN13, "04006381333931", "4006381333931"),
        ("9780306406157", Symbology.EAN13, "09780306406157", "9780306406157"),
        ("036000291452", Symbology.UPCA, "00036000291452", "0036000291452"),
        ("73513537", Symbology.EAN8, "00000073513537", None),
    ],
)
def test_published_codes_are_valid_and_normalised(
    text: str, symbology: Symbology, gtin14: str, gtin13: str | None
) -> None:
    barcode = parse_barcode(text)
    assert barcode.symbology is symbology
    assert barcode.digits == text
    assert barcode.gtin14 == gtin14
    assert barcode.gtin13 == gtin13
    assert barcode.lookup_key == gtin14
    assert barcode.variable_measure is None
    assert barcode.aim_identifier is None


def test_upca_and_its_ean13_form_are_the_same_item() -> None:
    upca = parse_barcode("036000291452")
    ean13 = parse_barcode("0036000291452")
    assert (upca.symbology, ean13.symbology) == (Symbology.UPCA, Symbology.EAN13)
    assert upca.gtin14 == ean13.gtin14 == "00036000291452"
    assert upca.gtin13 == ean13.gtin13 == "0036000291452"
    assert upca.lookup_key == ean13.lookup_key


def test_scanner_framing_is_stripped_and_raw_kept() -> None:
    raw = "\t 4006381333931\r\n"
    barcode = parse_barcode(raw)
    assert barcode.raw == raw
    assert barcode.digits == "4006381333931"


# --- UPC-E ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("upce", "upca"),
    [
        # X6 = 0: manufacturer X1 X2 0 0 0, item 0 0 X3 X4 X5.
        # 0 12000 00345: 3*(0+2+0+0+3+5) + (1+0+0+0+4) = 35 -> check 5.
        ("01234505", "012000003455"),
        # X6 = 1 (Wikipedia's UPC-E example).
        ("04252614", "042100005264"),
        # X6 = 2: 0 12200 00345: 3*(0+2+0+0+3+5) + (1+2+0+0+4) = 37 -> check 3.
        ("01234523", "012200003453"),
        # X6 = 3: manufacturer X1 X2 X3 0 0, item 0 0 0 X4 X5.
        # 0 12300 00045: 3*(0+2+0+0+0+5) + (1+3+0+0+4) = 29 -> check 1.
        ("01234531", "012300000451"),
        # X6 = 4: manufacturer X1 X2 X3 X4 0, item 0 0 0 0 X5.
        # 0 12340 00005: 3*(0+2+4+0+0+5) + (1+3+0+0+0) = 37 -> check 3.
        ("01234543", "012340000053"),
        # X6 = 5..9: manufacturer X1..X5, item 0 0 0 0 X6.
        # 0 12345 00006: 3*(0+2+4+0+0+6) + (1+3+5+0+0) = 45 -> check 5.
        ("01234565", "012345000065"),
        # Number system 1: 1 12345 00007: 3*(1+2+4+0+0+7) + (1+3+5+0+0) = 51 -> check 9.
        ("11234579", "112345000079"),
    ],
)
def test_upce_expansion_cases(upce: str, upca: str) -> None:
    assert expand_upce(upce) == upca
    barcode = parse_barcode("]E0" + upce)
    assert barcode.symbology is Symbology.UPCE
    assert barcode.digits == upce
    assert barcode.gtin14 == "00" + upca
    assert barcode.gtin13 == "0" + upca
    # The catalogue stores UPC-E items as their UPC-A; both must meet on one key.
    assert barcode.lookup_key == parse_barcode(upca).lookup_key == catalogue_key(upca)


def test_eight_digits_default_to_ean8_unless_configured_or_identified() -> None:
    # 01234565 is check-digit valid both as EAN-8 (3*(0+2+4+6) + (1+3+5) = 45 -> 5)
    # and as UPC-E (expanding to 012345000065): two different items.
    as_ean8 = parse_barcode("01234565")
    assert as_ean8.symbology is Symbology.EAN8
    assert as_ean8.gtin14 == "00000001234565"
    as_upce = parse_barcode("01234565", eight_digit_symbology=Symbology.UPCE)
    assert as_upce.symbology is Symbology.UPCE
    assert as_upce.gtin14 == "00012345000065"
    # An AIM identifier overrides the configured default in both directions.
    assert parse_barcode("]E001234565").symbology is Symbology.UPCE
    assert (
        parse_barcode("]E401234565", eight_digit_symbology=Symbology.UPCE).symbology
        is Symbology.EAN8
    )


def test_eight_digit_symbology_must_be_an_eight_digit_symbology() -> None:
    with pytest.raises(ValueError, match="ean8 or upce"):
        parse_barcode("73513537", eight_digit_symbology=Symbology.EAN13)


def test_upce_number_system_other_than_0_or_1_is_rejected() -> None:
    error = rejection_of("]E024252614")
    assert error.rejection is Rejection.UPCE_NUMBER_SYSTEM
    assert "number system 2" in error.reason
    assert "must be 0 or 1" in error.reason


def test_upce_check_digit_is_checked_on_the_expansion() -> None:
    error = rejection_of("]E004252615")
    assert error.rejection is Rejection.CHECK_DIGIT
    assert "042100005265" in error.reason
    assert "expected 4, got 5" in error.reason


def test_upce_last_data_digit_is_a_known_blind_spot() -> None:
    # X6 moves the other digits around, so a substitution there can yield another valid
    # UPC-E. 09141773 -> 0 91417 00007 3: 3*(0+1+1+0+0+7) + (9+4+7+0+0) = 47 -> 3.
    # 09141713 -> 0 91100 00417 3: 3*(0+1+0+0+4+7) + (9+1+0+0+1) = 47 -> 3.
    original = parse_barcode("]E009141773")
    misread = parse_barcode("]E009141713")
    assert original.gtin14 == "00091417000073"
    assert misread.gtin14 == "00091100004173"


# --- AIM symbology identifiers ----------------------------------------------------------------


def test_aim_identifiers_for_ean_upc() -> None:
    ean13 = parse_barcode("]E04006381333931\r\n")
    assert (ean13.aim_identifier, ean13.symbology, ean13.digits) == (
        "]E0",
        Symbology.EAN13,
        "4006381333931",
    )
    # UPC-A as the standard asks (13 digits) and as many scanners send it (12).
    assert parse_barcode("]E00036000291452").gtin14 == "00036000291452"
    assert parse_barcode("]E0036000291452").symbology is Symbology.UPCA
    assert parse_barcode("]E473513537").symbology is Symbology.EAN8


def test_add_on_is_separated_from_the_main_code() -> None:
    five = parse_barcode("]E3978030640615751234")
    assert (five.digits, five.add_on, five.gtin14) == ("9780306406157", "51234", "09780306406157")
    two = parse_barcode("]E3400638133393112")
    assert (two.digits, two.add_on) == ("4006381333931", "12")
    # The main code is still checked.
    assert rejection_of("]E3400638133393212").rejection is Rejection.CHECK_DIGIT


@pytest.mark.parametrize(
    ("text", "rejection", "words"),
    [
        ("]C1123456", Rejection.SYMBOLOGY_IDENTIFIER, "]C1 (Code 128"),
        ("]e00104006381333931", Rejection.SYMBOLOGY_IDENTIFIER, "GS1 DataBar"),
        ("]Q1hello", Rejection.SYMBOLOGY_IDENTIFIER, "QR Code"),
        ("]E112", Rejection.SYMBOLOGY_IDENTIFIER, "without its main EAN/UPC code"),
        ("]", Rejection.SYMBOLOGY_IDENTIFIER, "malformed symbology identifier"),
        ("]E", Rejection.SYMBOLOGY_IDENTIFIER, "malformed symbology identifier"),
        ("]E0", Rejection.EMPTY, "no digits after symbology identifier ]E0"),
        ("]E44006381333931", Rejection.LENGTH, "13 digits after ]E4 (EAN-8): expected 8"),
        ("]E01234567890", Rejection.LENGTH, "10 digits after ]E0"),
        ("]E34006381333931", Rejection.LENGTH, "expected 15 or 18"),
        ("]E473513538", Rejection.CHECK_DIGIT, "EAN-8 73513538: expected 7, got 8"),
    ],
)
def test_aim_identifier_rejections(text: str, rejection: Rejection, words: str) -> None:
    error = rejection_of(text)
    assert error.rejection is rejection
    assert words in error.reason


# --- rejections and their reasons ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "rejection", "words"),
    [
        ("", Rejection.EMPTY, "empty scan"),
        (" \r\n", Rejection.EMPTY, "empty scan"),
        ("40063813339x1", Rejection.NON_DIGIT, "'x' at position 12"),
        ("4006381 333931", Rejection.NON_DIGIT, "' ' at position 8"),
        ("\u0664006381333931", Rejection.NON_DIGIT, "position 1"),  # Arabic-Indic four
        ("12345", Rejection.LENGTH, "5 digits, expected 13, 12 or 8"),
        ("04006381333931", Rejection.LENGTH, "GTIN-14"),
        ("0425261", Rejection.LENGTH, "UPC-E sent without"),
        ("400638133393112", Rejection.LENGTH, "enable AIM symbology identifiers"),
        ("4006381333932", Rejection.CHECK_DIGIT, "EAN-13 4006381333932: expected 1, got 2"),
        ("036000291453", Rejection.CHECK_DIGIT, "UPC-A 036000291453: expected 2, got 3"),
    ],
)
def test_rejections_name_their_reason(text: str, rejection: Rejection, words: str) -> None:
    error = rejection_of(text)
    assert error.rejection is rejection
    assert words in error.reason
    assert str(error) == error.reason
    assert error.raw == text


def test_invalid_barcode_error_is_a_cartos_error() -> None:
    error = rejection_of("4006381333932")
    assert isinstance(error, CartosError)
    assert error.exit_code == 2


def test_validate_returns_barcode_or_reason() -> None:
    barcode, reason = validate("4006381333931")
    assert isinstance(barcode, Barcode)
    assert reason is None
    assert barcode.gtin14 == "04006381333931"
    barcode, reason = validate("4006381333932")
    assert barcode is None
    assert reason == "bad check digit in EAN-13 4006381333932: expected 1, got 2"


# --- check digit properties -----------------------------------------------------------------

LENGTHS = {Symbology.EAN13: 13, Symbology.UPCA: 12, Symbology.EAN8: 8}


@st.composite
def valid_codes(draw: st.DrawFn) -> tuple[Symbology, str]:
    symbology = draw(st.sampled_from(sorted(LENGTHS)))
    size = LENGTHS[symbology] - 1
    payload = draw(st.text("0123456789", min_size=size, max_size=size))
    return symbology, payload + reference_check_digit(payload)


@given(st.text("0123456789", min_size=1, max_size=17))
def test_check_digit_matches_reference_formula(payload: str) -> None:
    assert gs1_check_digit(payload) == reference_check_digit(payload)


@given(valid_codes())
def test_valid_codes_parse(code: tuple[Symbology, str]) -> None:
    symbology, digits = code
    barcode = parse_barcode(digits, NO_VARIABLE_MEASURE)
    assert barcode.symbology is symbology
    assert barcode.gtin14 == digits.rjust(14, "0")


@given(valid_codes(), st.data())
def test_every_single_digit_substitution_is_rejected(
    code: tuple[Symbology, str], data: st.DataObject
) -> None:
    _, digits = code
    position = data.draw(st.integers(0, len(digits) - 1))
    replacement = data.draw(st.sampled_from([d for d in "0123456789" if d != digits[position]]))
    mutated = digits[:position] + replacement + digits[position + 1 :]
    error = rejection_of(mutated, scheme=NO_VARIABLE_MEASURE)
    assert error.rejection is Rejection.CHECK_DIGIT
    assert "expected" in error.reason


@given(valid_codes(), st.data())
def test_adjacent_transpositions_are_detected_unless_digits_differ_by_five(
    code: tuple[Symbology, str], data: st.DataObject
) -> None:
    # Swapping neighbours a, b shifts the weighted sum by 2(a - b): a multiple of 10
    # exactly when |a - b| = 5, the known blind spot of the 3-1 weighting.
    _, digits = code
    position = data.draw(st.integers(0, len(digits) - 2))
    a, b = digits[position], digits[position + 1]
    swapped = digits[:position] + b + a + digits[position + 2 :]
    barcode, reason = validate(swapped, NO_VARIABLE_MEASURE)
    if a == b:
        assert barcode is not None and barcode.digits == digits
    elif abs(int(a) - int(b)) == 5:
        assert barcode is not None and barcode.gtin14 != digits.rjust(14, "0")
    else:
        assert barcode is None
        assert reason is not None and "bad check digit" in reason


@settings(max_examples=200)
@given(st.sampled_from("01"), st.text("0123456789", min_size=6, max_size=6), st.data())
def test_upce_substitutions_outside_the_last_data_digit_are_rejected(
    number_system: str, data_digits: str, data: st.DataObject
) -> None:
    upca_payload = expand_upce(number_system + data_digits + "0")[:11]
    upce = number_system + data_digits + reference_check_digit(upca_payload)
    assert parse_barcode(upce, eight_digit_symbology=Symbology.UPCE).digits == upce
    position = data.draw(st.sampled_from([0, 1, 2, 3, 4, 5, 7]))  # 6 is X6, see above
    replacement = data.draw(st.sampled_from([d for d in "0123456789" if d != upce[position]]))
    mutated = upce[:position] + replacement + upce[position + 1 :]
    error = rejection_of(mutated, eight_digit_symbology=Symbology.UPCE)
    assert error.rejection in (Rejection.CHECK_DIGIT, Rejection.UPCE_NUMBER_SYSTEM)


# --- variable measure -----------------------------------------------------------------------


def test_gs1_price_check_digit_examples() -> None:
    # GS1 General Specifications worked examples.
    # 2875, weights 2- 2- 3 5-: 4 + 5 + 1 + 3 = 13; 13 * 3 = 39 -> 9.
    assert price_check_digit("2875") == "9"
    # 14685, weights 5+ 2- 5- 5+ 2-: 5 + 8 + 7 + 4 + 9 = 33; 40 - 33 = 7 = 5-(6) -> 6.
    assert price_check_digit("14685") == "6"
    with pytest.raises(ValueError, match="4 or 5 digits"):
        price_check_digit("123")


def _two_minus(d: int) -> int:
    product = 2 * d
    return (product % 10 - product // 10) % 10


def _five_plus(d: int) -> int:
    product = 5 * d
    return (product % 10 + product // 10) % 10


def _five_minus(d: int) -> int:
    product = 5 * d
    return (product % 10 - product // 10) % 10


def reference_price_check_digit(value: str) -> str:
    """The GS1 price/weight check digit rules written out from their wording."""
    d = [int(c) for c in value]
    if len(d) == 4:
        total = _two_minus(d[0]) + _two_minus(d[1]) + 3 * d[2] % 10 + _five_minus(d[3])
        return str(total * 3 % 10)
    total = (
        _five_plus(d[0])
        + _two_minus(d[1])
        + _five_minus(d[2])
        + _five_plus(d[3])
        + _two_minus(d[4])
    )
    target = (-total) % 10
    (digit,) = [c for c in range(10) if _five_minus(c) == target]
    return str(digit)


def test_price_check_digit_matches_the_rules_for_every_value() -> None:
    for size in (4, 5):
        for number in range(10**size):
            value = str(number).rjust(size, "0")
            assert price_check_digit(value) == reference_price_check_digit(value), value


@given(st.text("0123456789", min_size=4, max_size=5), st.data())
def test_price_check_digit_catches_every_single_substitution(
    value: str, data: st.DataObject
) -> None:
    position = data.draw(st.integers(0, len(value) - 1))
    replacement = data.draw(st.sampled_from([d for d in "0123456789" if d != value[position]]))
    mutated = value[:position] + replacement + value[position + 1 :]
    assert price_check_digit(mutated) != price_check_digit(value)


def test_default_scheme_price_label() -> None:
    # 28 | 1234 | V=6 (price check of 14685) | 14685 | C
    # C: 2 + 3*8 + 1 + 3*2 + 3 + 3*4 + 6 + 3*1 + 4 + 3*6 + 8 + 3*5 = 102 -> 8.
    barcode = parse_barcode("2812346146858")
    measure = barcode.variable_measure
    assert measure is not None
    assert (measure.prefix, measure.item_reference) == ("28", "1234")
    assert (measure.kind, measure.value) == (MeasureKind.PRICE, 14685)
    # Key 28 1234 0 00000: 2 + 24 + 1 + 6 + 3 + 12 = 48 -> check 2.
    assert measure.lookup_key == barcode.lookup_key == "02812340000002"
    assert barcode.gtin14 == "02812346146858"
    assert DEFAULT_SCHEME.layout == "XX IIII V PPPPP C"


def test_packs_of_one_item_share_a_lookup_key() -> None:
    keys = {
        parse_barcode(DEFAULT_SCHEME.encode("21", "0042", price)).lookup_key
        for price in (0, 199, 2875, 14685, 99999)
    }
    assert len(keys) == 1
    (key,) = keys
    # The key is itself a valid label of the item, with value zero.
    zero = parse_barcode(key[1:]).variable_measure
    assert zero is not None and zero.value == 0 and zero.lookup_key == key
    other_item = parse_barcode(DEFAULT_SCHEME.encode("21", "0043", 199)).lookup_key
    assert other_item != key


def test_bad_price_check_digit_is_rejected_even_with_a_valid_check_digit() -> None:
    # 2812346146858 with the verifier 6 misread as 5; the GS1 check digit then
    # becomes 102 - 6 + 5 = 101 -> 9, so only the verifier can tell.
    error = rejection_of("2812345146859")
    assert error.rejection is Rejection.PRICE_CHECK_DIGIT
    assert "bad price check digit" in error.reason
    assert "expected 6 for value 14685, got 5" in error.reason


def test_upc_number_system_2_price_label() -> None:
    # UPC-A 2 | 01234 | V=9 (price check of 2875) | 2875 | C
    # C: 3*(2+1+3+9+8+5) + (0+2+4+2+7) = 99 -> 1.
    barcode = parse_barcode("201234928751", UPC_PRICE_SCHEME)
    measure = barcode.variable_measure
    assert barcode.symbology is Symbology.UPCA
    assert measure is not None
    assert (measure.prefix, measure.item_reference, measure.value) == ("02", "01234", 2875)
    # Key 2 01234 0 0000: 3*(2+1+3) + (0+2+4) = 24 -> check 6.
    assert barcode.lookup_key == "00201234000006"
    # The same label in its 13-digit form is the same item.
    assert parse_barcode("]E00201234928751", UPC_PRICE_SCHEME).lookup_key == barcode.lookup_key


def test_weight_scheme_without_price_check_digit() -> None:
    weight = VariableMeasureScheme(
        prefixes=frozenset({"23"}),
        item_reference_digits=5,
        kind=MeasureKind.WEIGHT,
        value_digits=5,
        has_price_check_digit=False,
    )
    # 23 | 12345 | 01500 | C: 2 + 9 + 1 + 6 + 3 + 12 + 5 + 0 + 1 + 15 + 0 + 0 = 54 -> 6.
    measure = parse_barcode("2312345015006", weight).variable_measure
    assert measure is not None
    assert (measure.item_reference, measure.kind, measure.value) == (
        "12345",
        MeasureKind.WEIGHT,
        1500,
    )
    # Key 23 12345 00000: 2 + 9 + 1 + 6 + 3 + 12 + 5 = 38 -> check 2.
    assert measure.lookup_key == "02312345000002"
    # Prefix 28 is not this store's: a plain in-store number keyed by its GTIN-14.
    plain = parse_barcode("2812346146858", weight)
    assert plain.variable_measure is None
    assert plain.lookup_key == plain.gtin14 == "02812346146858"


def test_several_schemes_split_by_prefix() -> None:
    prices = VariableMeasureScheme(frozenset({"20", "21", "22"}), 5, MeasureKind.PRICE, 5, False)
    weights = VariableMeasureScheme(frozenset({"23"}), 5, MeasureKind.WEIGHT, 5, False)
    by_weight = parse_barcode("2312345015006", [prices, weights]).variable_measure
    assert by_weight is not None and by_weight.kind is MeasureKind.WEIGHT
    price_label = prices.encode("20", "12345", 1500)
    by_price = parse_barcode(price_label, [prices, weights]).variable_measure
    assert by_price is not None and by_price.kind is MeasureKind.PRICE
    assert by_price.value == 1500
    with pytest.raises(VariableMeasureSchemeError, match="23"):
        parse_barcode(price_label, [weights, DEFAULT_SCHEME])


def test_variable_measure_decoding_can_be_turned_off() -> None:
    barcode = parse_barcode("2812346146858", NO_VARIABLE_MEASURE)
    assert barcode.variable_measure is None
    assert barcode.lookup_key == "02812346146858"
    # Without decoding, a wrong verifier is not noticed: the store said it has none.
    assert parse_barcode("2812345146859", NO_VARIABLE_MEASURE).gtin14 == "02812345146859"


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"prefixes": frozenset()}, "at least one prefix"),
        ({"prefixes": frozenset({"40", "20"})}, "'40'"),
        ({"item_reference_digits": 5}, "uses 11 digits"),
        ({"item_reference_digits": 6, "value_digits": 3}, "4- or 5-digit values"),
        ({"item_reference_digits": 0, "value_digits": 9}, "at least one digit"),
        ({"kind": "volume"}, "kind must be one of price, weight"),
    ],
)
def test_inconsistent_schemes_are_refused(kwargs: dict[str, object], words: str) -> None:
    fields: dict[str, object] = {
        "prefixes": frozenset({"20"}),
        "item_reference_digits": 4,
        "kind": MeasureKind.PRICE,
        "value_digits": 5,
        "has_price_check_digit": True,
    }
    fields.update(kwargs)
    with pytest.raises(VariableMeasureSchemeError, match=words):
        VariableMeasureScheme(**fields)  # type: ignore[arg-type]
    assert issubclass(VariableMeasureSchemeError, CartosError)


@st.composite
def schemes_and_labels(draw: st.DrawFn) -> tuple[VariableMeasureScheme, str, str, int]:
    verifier = draw(st.booleans())
    value_digits = draw(st.sampled_from([4, 5])) if verifier else draw(st.integers(1, 9))
    item_digits = 10 - value_digits - int(verifier)
    prefix = draw(st.sampled_from(["02", *(f"2{d}" for d in range(10))]))
    scheme = VariableMeasureScheme(
        frozenset({prefix}),
        item_digits,
        draw(st.sampled_from(list(MeasureKind))),
        value_digits,
        verifier,
    )
    item = draw(st.text("0123456789", min_size=item_digits, max_size=item_digits))
    value = draw(st.integers(0, 10**value_digits - 1))
    return scheme, prefix, item, value


@given(schemes_and_labels())
def test_labels_round_trip_through_any_scheme(
    case: tuple[VariableMeasureScheme, str, str, int],
) -> None:
    scheme, prefix, item, value = case
    label = scheme.encode(prefix, item, value)
    assert len(label) == 13
    assert label[-1] == reference_check_digit(label[:-1])
    barcode = parse_barcode(label, scheme)
    measure = barcode.variable_measure
    assert measure is not None
    assert (measure.prefix, measure.item_reference, measure.value) == (prefix, item, value)
    assert measure.kind is scheme.kind
    assert measure.lookup_key == parse_barcode(scheme.encode(prefix, item, 0), scheme).gtin14
    assert catalogue_key(label, scheme) == measure.lookup_key


@given(schemes_and_labels().filter(lambda case: case[0].has_price_check_digit), st.data())
def test_misread_value_with_recomputed_check_digit_is_caught_by_the_verifier(
    case: tuple[VariableMeasureScheme, str, str, int], data: st.DataObject
) -> None:
    scheme, prefix, item, value = case
    label = scheme.encode(prefix, item, value)
    value_start = 2 + scheme.item_reference_digits + 1
    position = data.draw(st.integers(value_start, value_start + scheme.value_digits - 1))
    replacement = data.draw(st.sampled_from([d for d in "0123456789" if d != label[position]]))
    payload = label[:position] + replacement + label[position + 1 : -1]
    misread = payload + reference_check_digit(payload)
    error = rejection_of(misread, scheme=scheme)
    assert error.rejection is Rejection.PRICE_CHECK_DIGIT
    assert f"bad {scheme.kind} check digit" in error.reason


# --- catalogue side --------------------------------------------------------------------------


def test_catalogue_keys_meet_scan_keys() -> None:
    assert catalogue_key("036000291452") == parse_barcode("]E00036000291452").lookup_key
    assert catalogue_key("00036000291452") == parse_barcode("036000291452").lookup_key
    assert catalogue_key("042100005264") == parse_barcode("]E004252614").lookup_key
    assert catalogue_key("73513537") == parse_barcode("]E473513537").lookup_key
    # A stored label of any price, or the value-zeroed template, keys the item.
    assert catalogue_key("2812346146858") == catalogue_key("2812340000002") == "02812340000002"
    # A GTIN-14 with a packaging indicator stays as it is.
    assert catalogue_key("10036000291459") == "10036000291459"


@pytest.mark.parametrize(
    ("stored", "rejection"),
    [
        ("036000291453", Rejection.CHECK_DIGIT),
        ("12345", Rejection.LENGTH),
        ("03600029145x", Rejection.NON_DIGIT),
        ("2812345146859", Rejection.PRICE_CHECK_DIGIT),
    ],
)
def test_catalogue_key_rejects_invalid_stored_codes(stored: str, rejection: Rejection) -> None:
    with pytest.raises(InvalidBarcodeError) as info:
        catalogue_key(stored)
    assert info.value.rejection is rejection
    assert info.value.raw == stored
