"""Chat text: the clean form stored and shown, the skeleton used for matching, and the block-list matcher. No I/O."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from itertools import groupby
from typing import Any

from server.errors import BadRequest

# ANSI control sequences, removed whole: CSI (ESC [ or C1 CSI, parameters, final byte) and OSC (ESC ] ... BEL or ST).
_ANSI = re.compile(r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?")
# Control, format (zero-width, bidi, soft hyphen, tags), private-use, surrogate and unassigned code points.
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cs", "Cn"})
_INVISIBLE_LETTERS = frozenset("\u115f\u1160")  # Hangul fillers (NFKC folds U+3164 and U+FFA0 into U+1160)
_SPACES = frozenset("\t\n\v\f\r\x85\u2800")  # become one space, like every Z* separator; U+2800 is the braille blank

# Letters that look like a Latin letter (after UTS #39 confusables.txt, plus the small capitals and the Cyrillic and
# Greek lower-case letters that read as one), mapped to it. Each string lists Cyrillic, Greek, Latin small capitals
# and IPA, Armenian, Cherokee and Lisu, upper case before lower. Digits are not mapped: prices and sizes are numbers.
_LOOKALIKES = {
    "a": "\u0410\u0430\u0391\u03b1\u0251\u1d00\u13aa\ua4ee",
    "b": "\u0412\u042c\u0432\u044c\u0392\u0299\u13cf\u13f4\ua4d0",
    "c": "\u0421\u0441\u1d04\u13df\uabaf\ua4da",
    "d": "\u0501\u1d05\u13a0\u13e7\ua4d2\ua4d3",
    "e": "\u0415\u0435\u04bd\u0395\u03b5\u1d07\u13ac\ua4f0",
    "f": "\u03dc\ua730\ua4dd",
    "g": "\u0261\u0262\u0581\u13c0\u13f3\ua4d6",
    "h": "\u041d\u043d\u04bb\u0397\u029c\u0570\u13bb\u13c2\ua4e7",
    "i": "\u0406\u0456\u04c0\u04cf\ua647\u0399\u03b9\u0131\u0196\u0269\u026a\u13a5\uab75\ua4f2",
    "j": "\u0408\u0458\u1d0a\u13ab\ua4d9",
    "k": "\u041a\u043a\u039a\u03ba\u1d0b\u13e6\ua4d7",
    "l": "\u029f\u13de\ua4e1",
    "m": "\u041c\u043c\u039c\u03fa\u1d0d\u13b7\ua4df",
    "n": "\u039d\u03b7\u0274\u0578\u057c\ua4e0",
    "o": "\u041e\u043e\u039f\u03bf\u1d0f\u0555\u0585\ua4f3",
    "p": "\u0420\u0440\u03a1\u03c1\u1d18\u13e2\ua4d1",
    "q": "\u051b\u0563\u0566",
    "r": "\u0433\u1d26\u0280\u13a1\u13d2\uab81\ua4e3",
    "s": "\u0405\u0455\ua731\u054f\u13d5\u13da\uabaa\ua4e2",
    "t": "\u0422\u0442\u03a4\u03c4\u1d1b\u13a2\ua4d4",
    "u": "\u03bc\u03c5\u1d1c\u054d\u057d\ua4f4",
    "v": "\u0474\u0475\u03bd\u1d20\u13d9\uaba9\ua4e6",
    "w": "\u051c\u051d\u03c9\u1d21\u0561\u13b3\u13d4\uab83\ua4ea",
    "x": "\u0425\u0445\u03a7\u03c7\ua4eb",
    "y": "\u0423\u0443\u04ae\u04af\u03a5\u03b3\u028f\u13a9\u13bd\ua4ec",
    "z": "\u0396\u1d22\u13c3\uab93\ua4dc",
}
_TO_LATIN = str.maketrans({lookalike: latin for latin, chars in _LOOKALIKES.items() for lookalike in chars})
# Scripts written without spaces between words: entries in them match anywhere inside the message's letters.
_UNSPACED_SCRIPTS = ("CJK UNIFIED", "CJK COMPATIBILITY", "HIRAGANA", "KATAKANA", "THAI", "LAO", "KHMER", "MYANMAR")


def clean(text: str) -> str:
    """The text as stored and shown: NFKC, without control, invisible or ANSI characters, whitespace collapsed.

    An empty result (nothing visible was sent) means the message must be refused.
    """
    kept: list[str] = []
    for char in _ANSI.sub("", unicodedata.normalize("NFKC", text)):
        category = unicodedata.category(char)
        if category[0] == "Z" or char in _SPACES:
            kept.append(" ")
        elif (category not in _INVISIBLE_CATEGORIES or _newer_emoji(char, category)) and char not in _INVISIBLE_LETTERS:
            kept.append(char)
    cleaned = " ".join(unicodedata.normalize("NFKC", "".join(kept)).split())
    # Combining marks or variation selectors with no base character show nothing either.
    return cleaned if any(unicodedata.category(char)[0] not in "MZ" for char in cleaned) else ""


def text_field(body: dict[str, Any], name: str, limit: int, *, required: bool = True) -> str | None:
    """A JSON body's text field, cleaned as chat is, 1 to `limit` characters (None when absent and not required)."""
    value = body.get(name)
    if value is None and not required:
        return None
    cleaned = clean(value).strip() if isinstance(value, str) else ""
    if not 0 < len(cleaned) <= limit:
        raise BadRequest(f"'{name}' must be text of 1 to {limit} characters")
    return cleaned


def _newer_emoji(char: str, category: str) -> bool:
    """An emoji newer than this Python's Unicode tables (unassigned to it, in the emoji blocks): kept, not dropped."""
    return category == "Cn" and 0x1F000 <= ord(char) <= 0x1FAFF


def skeleton(text: str) -> str:
    """The form used only for matching: clean, without combining marks, look-alike letters made Latin, casefolded."""
    decomposed = unicodedata.normalize("NFD", clean(text))
    bare = "".join(char for char in decomposed if unicodedata.category(char) not in ("Mn", "Me"))
    return unicodedata.normalize("NFC", bare).translate(_TO_LATIN).casefold()


def _words(skeleton_text: str) -> list[str]:
    """The runs of letters, digits and spacing marks; every other character separates words."""
    return "".join(char if unicodedata.category(char)[0] in "LNM" else " " for char in skeleton_text).split()


def _join_single_letters(words: list[str]) -> list[str]:
    """Words with each run of one-character words joined into one, so `s c a m` and `s.c.a.m` read `scam`."""
    joined: list[str] = []
    for single, run in groupby(words, key=lambda word: len(word) == 1):
        if single:
            joined.append("".join(run))
        else:
            joined.extend(run)
    return joined


def _unspaced(skeleton_text: str) -> bool:
    """Whether the text has a letter of a script written without spaces between words."""
    return any(unicodedata.name(char, "").startswith(_UNSPACED_SCRIPTS) for char in skeleton_text)


class Blocklist:
    """A merchant's blocked words and phrases, matched on skeletons at word boundaries.

    A word matches a whole word of the message ("scam" blocks "SCAM!" and "s c a m", not "scampi"); a phrase matches
    its words in a row or run together ("free money" blocks "FREE   money!!" and "#FreeMoney", not "free moneys").
    An entry in a script written without spaces (Chinese, Japanese, Thai...) matches anywhere inside the message's
    letters, and one without any letter or digit (an emoji) anywhere inside the message. Blank entries are ignored.
    """

    def __init__(self, words: Iterable[str]) -> None:
        self._entries: list[str] = []
        self._single: dict[str, int] = {}  # one-word skeleton -> index of its first entry
        self._phrases: list[tuple[str, int]] = []  # " word word " -> entry index
        self._inside_letters: list[tuple[str, int]] = []  # unspaced-script letters -> entry index
        self._inside_text: list[tuple[str, int]] = []  # symbols without spaces -> entry index
        for entry in words:
            shape = skeleton(entry)
            if not shape:
                continue
            index = len(self._entries)
            self._entries.append(entry)
            words_of_entry = _words(shape)
            if not words_of_entry:
                self._inside_text.append((shape.replace(" ", ""), index))
            elif _unspaced(shape):
                self._inside_letters.append(("".join(words_of_entry), index))
            elif len(words_of_entry) == 1:
                self._single.setdefault(words_of_entry[0], index)
            else:  # a phrase, also matched written as one word ("#FreeMoney", "f r e e m o n e y")
                self._phrases.append((f" {' '.join(words_of_entry)} ", index))
                self._single.setdefault("".join(words_of_entry), index)

    def find(self, text: str) -> str | None:
        """The first listed entry (in list order) that the message contains, or None."""
        shape = skeleton(text)
        words = _words(shape)
        readings = (words, _join_single_letters(words))
        hits = [self._single[word] for reading in readings for word in reading if word in self._single]
        spaced = [f" {' '.join(reading)} " for reading in readings]
        hits += [index for phrase, index in self._phrases if any(phrase in line for line in spaced)]
        letters = "".join(words)
        hits += [index for needle, index in self._inside_letters if needle in letters]
        compact = shape.replace(" ", "")
        hits += [index for needle, index in self._inside_text if needle in compact]
        return self._entries[min(hits)] if hits else None
