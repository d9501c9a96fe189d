"""Hostile input, by class: deep nesting, huge numbers and strings, invalid unicode, secrets cut
through the middle. Each class is tried on the shared mechanism (safejson, outside, sensitive)
and on the trigger parser that uses it."""

from __future__ import annotations

import json
import threading

import pytest

from edgescaler import outside, safejson, sensitive
from edgescaler.errors import EventError
from edgescaler.sensitive import Secret
from edgescaler.triggers import parse_event

PASSWORD = "Ab3$fragment42"  # 14 characters


# -- safejson -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[" * 2000 + "]" * 2000, "nested more than 64 levels deep"),
        ('{"a":' * 100 + "1" + "}" * 100, "nested more than 64 levels deep"),
        ('{"n": ' + "1" * 5000 + "}", "a number with 5000 digits"),
        ('{"n": -' + "9" * 41 + "}", "a number with 41 digits"),
        ('{"n": 1e999}', "out of range"),
        ('{"n": NaN}', "NaN is not a JSON value"),
        ('{"n": -Infinity}', "-Infinity is not a JSON value"),
        ('{"s": "\\ud800"}', "lone surrogate"),
        ('{"\\udfff": 1}', "lone surrogate"),
        ('["ok", ["\\ud83d"]]', "lone surrogate"),
        ('{"a": "unterminated', "not JSON"),
        (b"\xff\xfe{}", "not UTF-8"),
    ],
)
def test_safejson_refuses_each_hostile_class(text: str | bytes, expected: str) -> None:
    with pytest.raises(safejson.JSONError) as info:
        safejson.loads(text)
    assert expected in str(info.value)
    assert len(str(info.value)) < 120


def test_safejson_keeps_what_is_fine() -> None:
    nested = "[" * 64 + "]" * 64
    assert safejson.nesting_depth(nested) == 64 and safejson.loads(nested) is not None
    # brackets inside strings do not count; escaped quotes do not end a string
    assert safejson.loads('{"s": "[[[[\\"]]]]", "pair": "\\ud83d\\ude00", "n": 12.5}') == {
        "s": '[[[["]]]]',
        "pair": "\U0001f600",
        "n": 12.5,
    }
    assert safejson.loads('{"big": ' + "9" * 40 + "}")["big"] == int("9" * 40)


def test_an_unterminated_string_is_skipped_in_one_match_not_rescanned_from_every_quote() -> None:
    """A string pattern that needs its closing quote fails on '"\\"\\"...' and the search
    restarts at the next quote inside it, each attempt scanning to the end: quadratic (a 256 KiB
    event of escaped quotes took 300 s). One match to the end is linear."""
    text = '[["' + '\\"' * 1000 + "[[[["
    match = safejson._STRING.search(text)
    assert match is not None and match.span() == (2, len(text))
    assert safejson.nesting_depth(text) == 2
    with pytest.raises(safejson.JSONError, match="not JSON"):
        safejson.loads(text)


def test_an_event_of_escaped_quotes_ends_long_before_its_deadline() -> None:
    """The whole handler on the 256 KiB event that used to run for 300 s (a guard against a
    hang, not a speed assertion: it takes milliseconds)."""
    from edgescaler.handler import handle

    event = b'"' + b'\\"' * 131_071
    result: list[dict[str, object]] = []
    worker = threading.Thread(target=lambda: result.append(handle(event, None)), daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive() and result, "the handler did not finish within 60 s"
    assert "not JSON" in str(result[0]["error"])


# -- redaction and quoting ------------------------------------------------------------------------


def test_redaction_masks_every_fragment_of_a_known_secret() -> None:
    Secret(PASSWORD)  # registered on construction
    assert outside.message(f"echo: {PASSWORD}") == "echo: ***"
    # cut anywhere: any 8+ character piece is masked, whatever surrounds it
    for start in range(0, len(PASSWORD) - 8 + 1):
        for end in range(start + 8, len(PASSWORD) + 1):
            piece = PASSWORD[start:end]
            assert piece not in sensitive.redact(f"x{piece}y"), piece
    # two separate occurrences, and adjacent spans merge into one mask
    assert sensitive.redact(f"{PASSWORD} and {PASSWORD[:9]}") == "*** and ***"


def test_redact_before_cut_leaves_no_half_secret() -> None:
    """The defect: cutting at 200 first kept 10 of 14 password characters."""
    Secret(PASSWORD)
    text = "x" * 190 + PASSWORD + " rest of the echoed request"
    shown = outside.message(text, 200)
    assert len(shown) <= 200
    for k in range(8, len(PASSWORD) + 1):
        for i in range(len(PASSWORD) - k + 1):
            assert PASSWORD[i : i + k] not in shown


def test_the_registry_pieces_follow_every_change_of_the_registry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Pieces follow the registry: a secret registered after a redaction is masked at once, the
    oldest fall out once the pieces pass the bound, forget_all() forgets."""
    monkeypatch.setattr(sensitive, "_MAX_PIECES", 40)  # 9 pieces per 16-character secret
    first = Secret("q7Zp2Lm9Xw4Rt8Yb")
    assert sensitive.redact("q7Zp2Lm9Xw4Rt8Yb") == "***"
    later = Secret("k3Jh6Fd1Sa5Gq0Wn")
    assert sensitive.redact("x k3Jh6Fd1Sa5Gq0Wn y") == "x *** y"
    for filler in ("Mx8Qw2Er5Ty7Ui0P", "Zc4Vb6Nm1Lk3Jh9G", "Df2Sa7Pq5Wo8Ie1R"):
        Secret(filler)
    assert sensitive.redact(first.reveal()) == first.reveal()  # evicted, the oldest
    assert sensitive.redact("x k3Jh6Fd1Sa5Gq0Wn y") == "x *** y"  # kept
    assert sensitive.redact("Df2Sa7Pq5Wo8Ie1R") == "***"
    assert len(sensitive._pieces) <= 40
    sensitive.forget_all()
    assert sensitive.redact("Df2Sa7Pq5Wo8Ie1R") == "Df2Sa7Pq5Wo8Ie1R"
    assert sensitive.redact("x k3Jh6Fd1Sa5Gq0Wn y", later) == "x *** y"  # given explicitly


def test_the_passwords_of_hundreds_of_policies_all_stay_redacted() -> None:
    """A run of many policies registers a password each, besides an STS token: none may fall
    out (the registry used to keep the newest 32 secrets)."""
    passwords = [Secret(f"Edge-Pass-{i:04d}!x") for i in range(500)]
    Secret("STS." + "t" * 1200)
    for p in passwords:
        assert sensitive.redact(f"ScaleOutCluster refused {p.reveal()} here") == (
            "ScaleOutCluster refused *** here"
        )


@pytest.mark.parametrize(
    ("password", "echoed"),
    [
        ("Xy7!pq#Rz9@k2024", "login_password=Xy7%21pq%23Rz9%40k2024"),
        ("Xy7 pq#Rz9@k2024", "login_password=Xy7+pq%23Rz9%40k2024"),
        ("Ab1=cd2<ef3>gh4!", "login_password=Ab1\\u003dcd2\\u003cef3\\u003egh4!"),
        ("Ab1=cd2<ef3>gh4!", "login_password=Ab1\\u003dcd2\\u003cef3\\u003egh4\\u0021"),
        ("Ab1&cd2<ef3>gh4!", "login_password=Ab1&amp;cd2&lt;ef3&gt;gh4!"),
        ('Ab1"cd2\\ef3gh4!', 'login_password=Ab1\\"cd2\\\\ef3gh4!'),
    ],
    ids=["percent", "form", "gson", "json-every", "html", "json-quote"],
)
def test_a_secret_echoed_in_an_encoded_form_is_masked(password: str, echoed: str) -> None:
    """An API that quotes the request back may encode it: every piece of 8 characters of the
    raw value is then broken up, and only the encoded form can be recognised."""
    Secret(password)
    shown = sensitive.redact(f"InvalidParameter {echoed} (request id R)")
    assert shown == "InvalidParameter login_password=*** (request id R)", shown


def test_a_secret_and_its_encoded_forms_are_kept_and_evicted_together(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Registering a secret again keeps all its forms: they used to be separate entries, and
    the encoded ones were evicted first while the raw value stayed."""
    monkeypatch.setattr(sensitive, "_MAX_PIECES", 60)  # the encoded one: 48 pieces
    Secret("Xy7!pq#Rz9@k2024")
    Secret("Mx8Qw2Er5Ty7Ui0P")
    Secret("Xy7!pq#Rz9@k2024")  # used again: now the newest
    Secret("Zc4Vb6Nm1Lk3Jh9G")  # past the bound: evicts the oldest secret, whole
    assert sensitive.known_secrets() == ["Xy7!pq#Rz9@k2024", "Zc4Vb6Nm1Lk3Jh9G"]
    assert sensitive.redact("echo Xy7%21pq%23Rz9%40k2024") == "echo ***"


def test_an_unregistered_secret_given_to_redact_is_masked_in_its_encoded_forms() -> None:
    shown = sensitive.redact("x Qz9%21pq%23Rz9%40k2024 y", "Qz9!pq#Rz9@k2024")
    assert shown == "x *** y"


def test_short_values_are_not_registered_but_masked_when_given() -> None:
    Secret("abc")
    assert "abc" not in sensitive.known_secrets()
    assert outside.message("abcabc") == "abcabc"
    assert sensitive.redact("xabcx", "abc") == "x***x"


def test_quote_shows_a_short_escaped_excerpt() -> None:
    key = "k" * 100_000
    shown = outside.quote(key)
    assert len(shown) <= outside.QUOTE_LIMIT + 5 and shown.endswith("...'")
    assert outside.quote("a\ud800b\nc") == "'a\\ud800b\\nc'"
    assert outside.quote(10**5000) == "<huge int>"
    assert outside.one_line("a\r\n\tb\x00c\u2028d\x85e") == "a b\\x00c d e"


@pytest.mark.parametrize("start", [33, 35, 38])
def test_quote_redacts_a_secret_straddling_its_cut(start: int) -> None:
    """The first 2-7 characters of a secret cut at the quote's 40th character are too short to
    recognise on their own: the value is redacted before it is cut."""
    Secret(PASSWORD)
    shown = outside.quote("x" * start + PASSWORD + " and more text after it")
    assert PASSWORD[:2] not in shown.replace("x", ""), shown
    assert "*" in shown  # the mask, itself cut when it starts near the end


def test_quote_redacts_a_secret_an_earlier_mask_moved_into_the_excerpt() -> None:
    """A 90-character token masked as *** pulls what follows it forward: the password after
    it must be masked too, and the cut still marked."""
    token = Secret("T" * 45 + "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLM")
    Secret("Pw9zQx7K")
    shown = outside.quote("id=" + token.reveal() + "fill." + "Pw9zQx7K" + "tail" * 50)
    assert "Pw9z" not in shown and shown.endswith("...'"), shown


# -- events ---------------------------------------------------------------------------------------

SURROGATE = "\\ud800"
TIMER = '{"triggerTime": "2026-11-27T07:05:00Z", "triggerName": "%s", "payload": ""}'
EVENTBRIDGE = '{"specversion": "1.0", "source": "%s", "id": "%s", "type": "cms:Alert"}'
CALLBACK = '{"alertName": "a", "alertState": "ALERT", "ruleId": "%s", "timestamp": "1"}'


@pytest.mark.parametrize(
    "event",
    [
        "[" * 2000 + "]" * 2000,
        '{"policies": ' + "[" * 5000 + "]" * 5000 + "}",
        TIMER % SURROGATE,
        f'{{"request_id": "{SURROGATE}"}}',
        EVENTBRIDGE % (SURROGATE, "id-1"),
        EVENTBRIDGE % ("acs.cms", SURROGATE),
        CALLBACK % SURROGATE,
        '{"dry_run": ' + "1" * 5000 + "}",
        json.dumps({"x" * 100_000: 1}),
        json.dumps({"triggerTime": "2026-11-27T07:05:00Z", "triggerName": "t", "y" * 50_000: 1}),
        '{"triggerTime": "2026-11-27T07:05:00Z", "triggerName": "t", "payload": "'
        + "[" * 3000
        + '"}',
        "\ud800",  # a str event holding a raw lone surrogate
    ],
)
def test_hostile_events_are_one_short_line(event: str) -> None:
    with pytest.raises(EventError) as info:
        parse_event(event)
    msg = str(info.value)
    assert "\n" not in msg and len(msg) < 300, msg[:400]
    msg.encode("utf-8")  # printable and encodable: no raw surrogate in the message
