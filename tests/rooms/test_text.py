"""Chat text: clean() strips what cannot be seen, skeleton() undoes disguises, Blocklist matches whole words."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.rooms.text import Blocklist, clean, skeleton

ATTACKS = [
    "SCAM!",
    "a scam.",
    "\u0455\u0441\u0430\u043c",  # Cyrillic dze, es, a, em
    "s\u0441am",  # Cyrillic es between Latin letters
    "\u0405\u0421\u0410\u041c",  # the same in Cyrillic capitals
    "\uff53\uff43\uff41\uff4d",  # fullwidth
    "s\u0336c\u0336a\u0336m\u0336",  # combining long stroke overlay
    "\u0161\u010d\u00e1m",  # precomposed accents
    "sc\u200bam",  # zero-width space inside the word
    "sc\u00adam",  # soft hyphen inside the word
    "s c a m",
    "s.c.a.m",
    "s-c-a-m",
    "S_C_A_M",
    "\ua731\u1d04\u1d00\u1d0d",  # Latin small capitals
    "\U0001d42c\U0001d41c\U0001d41a\U0001d426",  # mathematical bold
    "this is a \x1b[1ms\x1b[0mcam",  # ANSI codes inside the word
]


@pytest.mark.parametrize("message", ATTACKS)
def test_disguised_listed_word_is_found(message: str) -> None:
    """Case, punctuation, look-alikes, fullwidth, accents, invisible characters and spacing out do not hide the word."""
    assert Blocklist(["scam"]).find(message) == "scam"


@pytest.mark.parametrize("message", ["scampi", "scamper", "escama", "SCAMPI!", "the scampi is fresh"])
def test_longer_word_containing_a_listed_word_passes(message: str) -> None:
    """A listed word matches whole words only: "scampi" and "scamper" are not "scam"."""
    assert Blocklist(["scam"]).find(message) is None


def test_disguised_entry_matches_plain_message() -> None:
    """The entry is reduced to its skeleton too, so a list typed with look-alike letters still works."""
    assert Blocklist(["\u0455\u0441\u0430\u043c"]).find("Scam") == "\u0455\u0441\u0430\u043c"


def test_entry_in_another_script_matches_its_words() -> None:
    """A Cyrillic entry matches the word in any case and with punctuation, not a longer word."""
    blocklist = Blocklist(["\u043c\u043e\u0448\u0435\u043d\u043d\u0438\u043a"])  # swindler
    assert blocklist.find("\u041c\u041e\u0428\u0415\u041d\u041d\u0418\u041a!") is not None
    assert blocklist.find("\u043c\u043e\u0448\u0435\u043d\u043d\u0438\u043a\u0438") is None  # plural


def test_phrase_matches_the_same_words_in_a_row() -> None:
    """A phrase matches its words consecutively, or run together into one word, whatever the case and separators;
    each word must be equal, so "free moneys" and "money free" pass."""
    blocklist = Blocklist(["free money"])
    assert blocklist.find("FREE   money!!") == "free money"
    assert blocklist.find("get free, money here") == "free money"
    assert blocklist.find("#FreeMoney") == "free money"
    assert blocklist.find("f r e e m o n e y") == "free money"
    assert blocklist.find("free m o n e y") == "free money"
    assert blocklist.find("free moneys") is None
    assert blocklist.find("money free") is None
    assert blocklist.find("free of money") is None


def test_phrase_with_a_one_letter_word_survives_letter_joining() -> None:
    """Joining one-letter words does not hide a phrase that has one: "it's a scam" still holds "a scam"."""
    assert Blocklist(["a scam"]).find("it's a scam") == "a scam"


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("骗子", "你是骗子吗"),
        ("骗子", "骗 子!"),
        ("詐欺", "これは詐欺です"),
        ("サギ", "サギだよ"),
        ("โกง", "เขาโกงเงิน!"),
    ],
)
def test_entry_in_unspaced_script_matches_inside_words(entry: str, message: str) -> None:
    """Chinese, Japanese and Thai are written without spaces, so their entries match anywhere inside the letters."""
    assert Blocklist([entry]).find(message) == entry


def test_unspaced_entry_does_not_match_other_text() -> None:
    """A Chinese entry does not match a message without those characters in a row."""
    assert Blocklist(["骗子"]).find("你是骗人的子") is None


def test_emoji_entry_matches_anywhere() -> None:
    """An entry without letters or digits matches inside the message, with or without a variation selector."""
    blocklist = Blocklist(["\U0001f346"])
    assert blocklist.find("nice\U0001f346\ufe0f!") == "\U0001f346"
    assert blocklist.find("nice peach \U0001f351") is None


def test_digits_are_not_read_as_letters() -> None:
    """Digits stay digits, so prices and sizes never match a word: "50% off" is not "so"."""
    assert Blocklist(["so"]).find("50% off") is None


def test_first_listed_entry_is_returned() -> None:
    """When several entries match, find() names the earliest in the list, not the earliest in the message."""
    assert Blocklist(["fraud", "scam", "free money"]).find("free money scam fraud") == "fraud"


def test_blank_entries_are_ignored() -> None:
    """Empty, whitespace-only and invisible entries match nothing."""
    blocklist = Blocklist(["", "   ", "\u200b", "\t\n"])
    assert blocklist.find("any message at all") is None
    assert blocklist.find("") is None


@pytest.mark.parametrize(
    "message",
    [
        "\u200b\u200c\u200d\u2060\ufeff\u180e",  # zero-width characters
        "\x00",
        "\x00\x01\x07\x7f\x9b",  # C0 and C1 controls
        "\x1b[31m",
        "\x1b[1;38;5;196m\x1b[0m",
        "\u202e",
        "\u200e\u200f\u202a\u202b\u202c\u202d\u2066\u2067\u2068\u2069\u061c",  # bidi controls
        "\u00ad",
        " \t\n\r ",
        "\u3164\u3164",  # Hangul fillers
        "\u2800",  # braille blank
        "\u0301\u0336\ufe0f",  # combining marks and a variation selector with no base
        "\ue000\U000e0041",  # private use and a tag character
    ],
)
def test_invisible_only_message_cleans_to_empty(message: str) -> None:
    """A message of controls, ANSI codes, zero-width, bidi or filler characters is empty once cleaned (refused)."""
    assert clean(message) == ""


@pytest.mark.parametrize(
    ("message", "cleaned"),
    [
        ("he\x00llo", "hello"),
        ("\x1b[31mred\x1b[0m alert", "red alert"),
        ("\x1b]8;;https://evil.example\x07click\x1b]8;;\x07", "click"),
        ("abc\u202edcba", "abcdcba"),
        ("zero\u200bwidth", "zerowidth"),
        ("  line one\n\n\tline two  ", "line one line two"),
        ("a\u00a0\u2003\u3000b", "a b"),  # no-break, em and ideographic spaces
        ("ｆｕｌｌ　ｗｉｄｔｈ", "full width"),  # noqa: RUF001
    ],
)
def test_mixed_message_is_stripped(message: str, cleaned: str) -> None:
    """Invisible characters and ANSI codes are removed, other whitespace becomes one space, NFKC is applied."""
    assert clean(message) == cleaned


@pytest.mark.parametrize(
    "message",
    [
        "Привет, как дела? Сколько стоит?",
        "你好，这个多少钱？",  # noqa: RUF001
        "これはいくらですか。",
        "مرحبا، كم السعر؟",
        "שלום, מה המחיר?",
        "안녕하세요 얼마예요?",
        "Γειά σου, πόσο κάνει;",  # noqa: RUF001
        "नमस्ते, इसकी कीमत क्या है?",
        "สวัสดีครับ ราคาเท่าไหร่",
        "Ça coûte combien ? Größe XL, ñ",
        "❤️ 👍🏽 🇫🇷 great!",
    ],
)
def test_ordinary_text_survives_clean(message: str) -> None:
    """Every real script and ordinary emoji come through clean() unchanged apart from NFKC."""
    assert clean(message) == unicodedata.normalize("NFKC", message)


def test_skeleton_is_for_matching_only() -> None:
    """skeleton() casefolds, drops accents and makes look-alike letters Latin; clean() keeps the text as typed."""
    message = "\u0421\u0430f\u00e9 SCAM"
    assert skeleton(message) == "cafe scam"
    assert clean(message) == message


@settings(database=None)
@given(st.text())
def test_clean_is_idempotent_and_leaves_nothing_invisible(message: str) -> None:
    """For any text, cleaning twice changes nothing, and the result has no control or format characters and no
    leading, trailing or repeated spaces."""
    cleaned = clean(message)
    assert clean(cleaned) == cleaned
    assert not any(unicodedata.category(char) in ("Cc", "Cf", "Co", "Cs", "Cn") for char in cleaned)
    assert cleaned == " ".join(cleaned.split())


def test_an_emoji_newer_than_pythons_unicode_tables_is_kept() -> None:
    """An emoji this Python does not know yet (U+1FAE8, Unicode 15) stays in the message; an unassigned code point
    outside the emoji blocks does not."""
    assert clean("new emoji \U0001fae8 ok") == "new emoji \U0001fae8 ok"
    assert clean("odd \U000e0080 one") == "odd one"
