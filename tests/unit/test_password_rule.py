"""The product and the emulator check ENS passwords independently, and agree with the docs.

ENS CreateInstance, parameter Password (https://help.aliyun.com/document_detail/148919.html):
8 to 30 characters, at least three of upper case, lower case, digits and the special characters
below; no other character.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from edgescaler import passwords
from edgescaler.emulator import rules

DOCUMENTED_SPECIALS = "()`~!@#$%^&*-_+=|{}[]:;'<>,.?/"
CANDIDATES = [chr(c) for c in range(32, 127) if not chr(c).isalnum()] + [
    "\u00e9",  # é
    "\u00a0",  # no-break space
    "\uff01",  # fullwidth !
    "\t",
]


def product_accepts(value: str) -> bool:
    return passwords.complexity_problem(value) is None


def emulator_accepts(value: str) -> bool:
    return rules.password_problem(value) is None


@pytest.mark.parametrize("accepts", [product_accepts, emulator_accepts])
def test_the_special_characters_are_the_documented_ones(accepts: Callable[[str], bool]) -> None:
    # lower case + digit + the candidate: valid exactly when the candidate is a special character
    accepted = {c for c in CANDIDATES if accepts("abcdefg1" + c)}
    assert accepted == set(DOCUMENTED_SPECIALS)


@pytest.mark.parametrize(
    "value",
    [
        "Abcdefg1",  # three classes, no special
        "abcdefg1!",
        "Abc1!",  # too short
        "Abcdefg1!" + "x" * 22,  # 31
        "abcdefgh",
        "ABCDEFG!",
        "Abcdefg1\u00e9",  # three classes and a character ENS refuses
        "abc def 1",  # a space is not special
        'Abcdefg1"',
        "Abcdefg1\\",
    ],
)
def test_product_and_emulator_agree(value: str) -> None:
    assert product_accepts(value) == emulator_accepts(value)


def test_the_emulator_names_a_refused_character_without_echoing_the_password() -> None:
    problem = rules.password_problem("Abcdefg1\u00e9")
    assert problem == "contains a character ENS does not accept"
    assert rules.password_problem("Abcdefg1") is None
