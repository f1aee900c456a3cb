#!/usr/bin/env python3
"""Lucy, the first stage of the OWL skill pipeline: normalise a skill name and
reject junk before any model sees it (a model asked about "asdf" invents an
answer, and that answer costs a 12-second call).

Protocol (turing's script handler): one JSON object on stdin,
    {"key": "s0001", "name": "  Kubernetes   cluster administration "}
one JSON object on stdout, exit 0:
    {"outcome": "passed",
     "output": {"key": "s0001", "name": "Kubernetes cluster administration",
                "raw_name": "  Kubernetes   cluster administration "}}
    {"outcome": "rejected", "output": {"key": "s0001", "reason": "url",
                                       "detail": "..."}}
Malformed input (not JSON, not an object, key or name missing or not a
string) is not a verdict about a skill: a message on stderr and exit 2, so the
runtime records a failed attempt instead of a rejection.

Rejection reasons, checked in this order on the normalised name:
    empty          nothing left after trimming whitespace
    too_long       more than 120 characters
    url            a scheme ("https://"), "www.", or a host followed by a path
    no_letters     only digits, punctuation and symbols
    keyboard_mash  every word is a keyboard-row run ("asdf", "lkjh"), a
                   repeated fragment ("sdfsdf", "aaaa") or a long vowel-less
                   lowercase string ("xcvbn"); acronyms in capitals pass

`--batch` reads JSON Lines and writes one verdict per line; tooling and tests
use it to run the whole dataset in one process.

`--worker` is turing's worker mode (a stage with `mode = "worker"`): Lucy
stays alive and serves one skill per line, so Python starts once per pool
slot instead of once per skill. Protocol:
    stdin   one JSON object per line, e.g. {"key": "s0001", "name": "..."}
    stdout  for each input line, exactly one line holding one JSON object,
            the same {"outcome": ..., "output": ...} as above, flushed at
            once (the runtime waits for it; a block-buffered reply would
            never arrive)
    stderr  free-form; the runtime keeps the tail for its error messages
Lucy exits 0 when stdin closes. Malformed input is handled as in the
one-shot mode: a message on stderr and exit 2, so that execution fails
(retryable) and the runtime starts a fresh Lucy for the next one.

Python 3 standard library only.
"""

import json
import re
import sys

MAX_LENGTH = 120

_KEYBOARD_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
_URL_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*://", re.IGNORECASE)
_URL_WWW = re.compile(r"(^|[^a-z0-9])www\.", re.IGNORECASE)
# A dotted host directly followed by a path: "example.com/skills". A bare
# "ASP.NET" or "Node.js" has no slash after it, so it stays a skill.
_URL_HOST_PATH = re.compile(r"(^|\s)[a-z0-9-]+(\.[a-z0-9-]+)+/", re.IGNORECASE)
_WORD = re.compile(r"[^\W\d_]+")  # runs of letters, any script


class MalformedInput(ValueError):
    """The input is not a skill record at all."""


def normalise(name):
    """Trimmed, with every run of whitespace collapsed to one space."""
    return " ".join(name.split())


def _is_keyboard_run(word):
    if len(word) < 4:
        return False
    for row in _KEYBOARD_ROWS:
        if word in row or word in row[::-1]:
            return True
    return False


def _is_repeated_fragment(word):
    # "aaaa" (one letter, 3+ times) or "sdfsdf" (a 2-4 letter unit, 2+ times).
    if len(word) >= 3 and len(set(word)) == 1:
        return True
    for unit in range(2, 5):
        if len(word) >= 6 and len(word) % unit == 0 and word == word[:unit] * (len(word) // unit):
            return True
    return False


def _is_mash_word(raw_word):
    word = raw_word.lower()
    if not word.isascii():
        return False  # the keyboard rules below only know the QWERTY layout
    if _is_keyboard_run(word) or _is_repeated_fragment(word):
        return True
    # Acronyms ("HTML", "GDPR", "BPMN") are written in capitals; a lowercase
    # five-letter string without a vowel is someone hitting keys.
    return len(word) >= 5 and not raw_word.isupper() and not re.search(r"[aeiouy]", word)


def rejection(name):
    """The (reason, detail) for a normalised name that is junk, else None."""
    if not name:
        return ("empty", "nothing left after trimming whitespace")
    if len(name) > MAX_LENGTH:
        return ("too_long", f"{len(name)} characters, at most {MAX_LENGTH} allowed")
    if _URL_SCHEME.search(name) or _URL_WWW.search(name) or _URL_HOST_PATH.search(name):
        return ("url", "looks like a web address, not a skill")
    words = _WORD.findall(name)
    if not words:
        return ("no_letters", "only digits, punctuation or symbols")
    if all(_is_mash_word(w) for w in words):
        return ("keyboard_mash", "every word looks like random keystrokes")
    return None


def check(record):
    """The verdict for one decoded record; raises MalformedInput."""
    if not isinstance(record, dict):
        raise MalformedInput("expected a JSON object")
    key = record.get("key")
    name = record.get("name")
    if not isinstance(key, str) or not key:
        raise MalformedInput("field 'key' must be a non-empty string")
    if not isinstance(name, str):
        raise MalformedInput("field 'name' must be a string")
    clean = normalise(name)
    rejected = rejection(clean)
    if rejected:
        reason, detail = rejected
        return {"outcome": "rejected", "output": {"key": key, "reason": reason, "detail": detail}}
    return {"outcome": "passed", "output": {"key": key, "name": clean, "raw_name": name}}


def _decode(text):
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise MalformedInput(f"not valid JSON: {e}") from None


def _emit(verdict):
    # ASCII escapes keep the output valid whatever locale the runtime gives us.
    sys.stdout.write(json.dumps(verdict) + "\n")


def _lines(data):
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise MalformedInput(f"not UTF-8: {e}") from None


def _serve():
    """The --worker loop: one verdict line per input line, until EOF."""
    stdin = sys.stdin.buffer
    while True:
        raw = stdin.readline()
        if not raw:
            return
        _emit(check(_decode(_lines(raw))))
        # A pipe is block-buffered: without this the reply sits in our buffer
        # while the runtime waits for it.
        sys.stdout.flush()


def main(argv):
    try:
        if argv[1:] == ["--worker"]:
            _serve()
        elif argv[1:] == ["--batch"]:
            text = _lines(sys.stdin.buffer.read())
            for number, line in enumerate(text.splitlines(), start=1):
                if not line.strip():
                    continue
                try:
                    _emit(check(_decode(line)))
                except MalformedInput as e:
                    raise MalformedInput(f"line {number}: {e}") from None
        elif len(argv) == 1:
            _emit(check(_decode(_lines(sys.stdin.buffer.read()))))
        else:
            print("usage: lucy.py [--batch | --worker] < input", file=sys.stderr)
            return 2
    except MalformedInput as e:
        print(f"lucy: malformed input: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
