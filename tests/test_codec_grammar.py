"""The codec spec grammar is strict: specs come from strangers (form fields, sweep
grids), so what a spec means must never depend on Python's lenient int()/float(),
on option order, or on an option overriding another."""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from vesselzip.codecs import codec_config_from_options, get_codec, parse_codec_spec
from vesselzip.errors import InvalidCodecConfigError
from vesselzip.sweeps.grid import setting_spec

# Numbers each mode accepts, and the ways a spec may write one.
MODE_NUMBERS = {
    "rate": st.floats(0.25, 64),
    "tolerance": st.floats(0, 1e300, exclude_min=True),
    "relative_tolerance": st.floats(0, 1, exclude_min=True),
    "precision": st.integers(1, 64).map(float),
}
NUMBER_FORMATS = (repr, "{:g}".format, "{:e}".format, "{:+.17g}".format, "{:.17E}".format)
NON_ASCII_DIGITS = st.characters(categories=("Nd",)).filter(lambda c: not c.isascii())


@st.composite
def numeric_options(draw) -> tuple[str, str, list[str]]:
    """(mode, number as written, options) for a zfp mode that takes a value."""
    mode = draw(st.sampled_from(sorted(MODE_NUMBERS)))
    value = draw(MODE_NUMBERS[mode])
    written = draw(st.sampled_from(NUMBER_FORMATS))(value)
    if mode == "precision" and draw(st.booleans()):
        written = str(int(value))
    if draw(st.booleans()):
        options = [f"{mode}={written}"]
    else:
        options = [f"mode={mode}", f"value={written}"]
    if draw(st.booleans()):
        options.append("backend=zfpy")
    return mode, written, draw(st.permutations(options))


@st.composite
def valid_specs(draw) -> tuple[str, dict]:
    """A valid spec and the config it must mean."""
    kind = draw(st.sampled_from(["numeric", "reversible", "none"]))
    if kind == "none":
        return "none", {"id": "none"}
    if kind == "reversible":
        spec = draw(st.sampled_from(["zfp", "zfp:reversible", "zfp:mode=reversible"]))
        return spec, {"id": "zfp", "mode": "reversible"}
    mode, written, options = draw(numeric_options())
    value = float(written)
    return "zfp:" + "+".join(options), {
        "id": "zfp",
        "mode": mode,
        "value": int(value) if mode == "precision" else value,
    }


def refused(spec: str) -> InvalidCodecConfigError:
    with pytest.raises(InvalidCodecConfigError) as caught:
        parse_codec_spec(spec)
    return caught.value


@given(valid_specs())
@example(("zfp:rate=2.1234567", {"id": "zfp", "mode": "rate", "value": 2.1234567}))
@example(("zfp:tolerance=1e+3", {"id": "zfp", "mode": "tolerance", "value": 1000.0}))
def test_a_valid_spec_means_its_numbers_and_round_trips(spec_and_config):
    spec, config = spec_and_config
    parsed = parse_codec_spec(spec)
    assert parsed == config
    assert get_codec(parsed).get_config() == parsed
    assert parse_codec_spec(setting_spec(parsed)) == parsed


@given(numeric_options(), NON_ASCII_DIGITS, st.data())
@example(("rate", "3", ["rate=3"]), "\u0663", None)  # Arabic-Indic three: int() reads 3
def test_a_non_ascii_digit_in_a_number_is_refused(options, digit, data):
    _, written, parts = options
    text = "+".join(parts)
    at = 0 if data is None else data.draw(st.integers(0, len(written)))
    spoiled = text.replace(written, written[:at] + digit + written[at + 1 :], 1)
    refused(f"zfp:{spoiled}")


@given(numeric_options(), st.data())
@example(("rate", "16", ["rate=16"]), None)  # int() reads 1_6 as 16
def test_an_underscore_in_a_number_is_refused(options, data):
    _, written, parts = options
    text = "+".join(parts)
    at = 1 if data is None else data.draw(st.integers(0, len(written)))
    refused(f"zfp:{text.replace(written, written[:at] + '_' + written[at:], 1)}")


@given(numeric_options(), st.data())
def test_an_option_given_twice_is_refused(options, data):
    _, _, parts = options
    again = data.draw(st.sampled_from(parts))
    with_twice = data.draw(st.permutations([*parts, again]))
    error = refused("zfp:" + "+".join(with_twice))
    assert "given twice" in str(error)


@given(
    st.sampled_from(["none", "zfp:rate=2", "zfp:reversible", "zfp:mode=rate+value=2"]),
    st.sampled_from(["zfp", "none", ""]),
    st.data(),
)
@example("zfp:reversible", "none", None)
@example("none", "zfp+mode=rate+value=2", None)  # would swap in zfp rate 2
def test_an_id_option_is_refused(spec, other_id, data):
    codec_id, _, rest = spec.partition(":")
    parts = rest.split("+") if rest else []
    at = 0 if data is None else data.draw(st.integers(0, len(parts)))
    parts.insert(at, f"id={other_id}" if other_id else "id")
    error = refused(f"{codec_id}:{'+'.join(parts)}")
    assert "'id' is not an option" in str(error)


GRAMMAR_ALPHABET = "zfpnoe:=+-._,eEid0123456789ratlvsbcky \n\u0663\u00b2\u2155"


@given(st.one_of(st.text(), st.text(alphabet=GRAMMAR_ALPHABET)))
def test_any_text_is_a_config_or_an_invalid_codec_config_error(text):
    try:
        config = parse_codec_spec(text)
    except InvalidCodecConfigError:
        return
    assert parse_codec_spec(setting_spec(config)) == config


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("zfp:id=none", "'id' is not an option"),
        ("none:id=zfp+mode=rate+value=2", "'id' is not an option"),
        ("zfp:reversible=1", "takes no value"),
        ("zfp:mode=reversible+value=1", "takes no value"),
        ("zfp:rate=2+rate=3", "given twice"),
        ("zfp:rate=2+mode=tolerance", "one zfp mode, not rate and mode"),
        ("zfp:rate=2+value=3", "not as a separate value"),
        ("zfp:rate=\u0663", "numeric value"),
        ("zfp:rate=1_6", "numeric value"),
        ("zfp:rate=inf", "numeric value"),
        ("zfp:tolerance=nan", "numeric value"),
        ("zfp:rate=2\u00b2", "numeric value"),  # a superscript two
        ("zfp:rate", "numeric value"),
        ("zfp:", "bad option ''"),
        ("zfp:rate=2++backend=zfpy", "numeric value"),  # "2+" is not a number
        ("zfp:Rate=2", "unknown option 'Rate'"),
        ("zfp:r\u00e4te=2", "bad option"),
    ],
)
def test_what_the_grammar_refuses(spec, message):
    assert message in str(refused(spec))


def test_form_fields_follow_the_grammar():
    """The form's codec/mode/value fields reach the same checks as a spec."""
    for options, message in [
        ({"id": "none"}, "'id' is not an option"),
        ({"reversible": "1"}, "takes no value"),
        ({"rate": "1_6"}, "numeric value"),
        ({"rate": "\u0663"}, "numeric value"),
        ({"value": "3"}, "takes no value"),  # mode=value: no mode given, so reversible
    ]:
        with pytest.raises(InvalidCodecConfigError, match=re.escape(message)):
            codec_config_from_options("zfp", options)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"id": "zfp", "mode": "rate", "value": True}, "numeric value"),
        ({"id": "zfp", "mode": "rate", "value": "2"}, "numeric value"),
        ({"id": "zfp", "mode": "precision", "value": False}, "numeric value"),
        ({"id": "zfp", "mode": "reversible", "value": 0}, "takes no value"),
        ({"id": "zfp", "mode": True, "value": 2}, "unknown zfp mode"),
        ({"id": "zfp", "mode": ["rate"], "value": 2}, "unknown zfp mode"),
        ({"id": "zfp", "mode": "rate", "value": 2, "backend": 1}, "unknown zfp backend"),
        ({"id": ["zfp"]}, "unknown codec"),
        ({"id": None}, "unknown codec"),
        ({"id": "zfp", 7: 1}, "unknown option 7"),
    ],
)
def test_json_configs_are_checked_alike(config, message):
    with pytest.raises(InvalidCodecConfigError, match=re.escape(message)):
        get_codec(config)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=6,
)


@given(
    st.dictionaries(
        st.sampled_from(["id", "mode", "value", "backend", "level"]) | st.text(max_size=4),
        JSON_VALUES | st.sampled_from(["zfp", "none", "rate", "tolerance", "reversible"]),
    )
)
def test_any_json_config_is_a_codec_or_an_invalid_codec_config_error(config):
    try:
        codec = get_codec(config)
    except InvalidCodecConfigError:
        return
    assert get_codec(codec.get_config()) == codec


@pytest.mark.parametrize(
    "spec",
    [
        "x" * 100_000,
        "zfp:" + "k" * 100_000 + "=1",
        "zfp:rate=" + "x" * 100_000,
        "zfp:rate=" + "\u0663" * 100_000,
        "zfp:backend=" + "b" * 100_000 + "+rate=2",
        "zfp:rate=2+" + "+".join(f"k{i}=1" for i in range(20_000)),
        "zfp:" + "=" * 100_000,
    ],
)
def test_an_error_quotes_a_bounded_part_of_a_huge_spec(spec):
    message = str(refused(spec))
    assert len(message) < 400, message


def test_an_error_quotes_a_bounded_part_of_a_huge_json_config():
    with pytest.raises(InvalidCodecConfigError) as caught:
        get_codec({"id": "zfp", "mode": "rate", "value": "9" * 100_000})
    assert len(str(caught.value)) < 400
    with pytest.raises(InvalidCodecConfigError) as caught:
        get_codec({"id": "zfp", **{f"k{i}": i for i in range(10_000)}})
    assert len(str(caught.value)) < 400 and "(and 9999 more)" in str(caught.value)
