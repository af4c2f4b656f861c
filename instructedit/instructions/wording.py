"""From the way people write a request to plain imperative clauses a planner can read.

Lower case, one spelling (British and American forms map to one), one-letter typos of the planner's keywords
corrected, politeness and question forms ("could you ...?", "I'd like ...", "... please") reduced to the
imperative, and compound requests split into clauses ("make the circle blue and remove the square").
"""

from __future__ import annotations

import re

COLOURS = frozenset("""red green blue yellow purple orange cyan pink brown white black gray beige magenta violet gold
golden silver teal navy turquoise maroon lime indigo crimson scarlet lavender olive tan cream ivory bronze copper
khaki amber aqua mint coral salmon peach rust charcoal blonde blond""".split())
"""Colour words the planner knows (``grey`` is read as ``gray``)."""

COLOUR_MODIFIERS = frozenset("light dark bright pale deep neon pastel hot vivid".split())
SIZE_WORDS = frozenset("big large small tiny huge little giant enormous medium".split())
BIGGER = frozenset("bigger larger huger greater".split())
SMALLER = frozenset("smaller tinier littler".split())
SHAPES = frozenset("circle square triangle star diamond cross".split())
POSITION_WORDS = frozenset("top bottom left right center middle upper lower corner".split())

VERBS = frozenset("""add put draw insert place include create paint sketch generate remove delete erase eliminate
get take wipe clear cut drop hide discard omit replace swap switch exchange trade substitute turn change transform
convert morph make move shift drag relocate reposition slide bring push transfer send carry shove nudge scale resize
rescale size enlarge shrink grow reduce increase decrease expand dye color recolor tint repaint set use fill give let
render restyle redraw apply show""".split())
"""Words that start an imperative clause."""

_SPELLING = {
    "colour": "color", "colours": "colors", "coloured": "colored", "recolour": "recolor", "recoloured": "recolored",
    "grey": "gray", "centre": "center", "watercolour": "watercolor", "colourful": "colorful", "colouring":
    "coloring", "greyscale": "grayscale",
}
"""British -> American spellings: one form to match (values keep the meaning; the canonical form is American)."""

_GERUNDS = {"making": "make", "adding": "add", "removing": "remove", "deleting": "delete", "erasing": "erase",
            "changing": "change", "turning": "turn", "swapping": "swap", "replacing": "replace", "moving": "move",
            "putting": "put", "placing": "place", "drawing": "draw", "painting": "paint", "shifting": "shift",
            "coloring": "color", "recoloring": "recolor", "scaling": "scale", "resizing": "resize",
            "shrinking": "shrink", "enlarging": "enlarge", "inserting": "insert", "including": "include",
            "getting": "get", "taking": "take", "setting": "set", "using": "use", "giving": "give",
            "transforming": "transform", "converting": "convert", "dyeing": "dye", "tinting": "tint",
            "relocating": "relocate", "sliding": "slide", "dragging": "drag", "creating": "create",
            "filling": "fill", "switching": "switch", "eliminating": "eliminate", "bringing": "bring"}

_CORRECTABLE = sorted(VERBS | COLOURS | SIZE_WORDS | BIGGER | SMALLER | SHAPES | POSITION_WORDS
                      | {"background", "instead", "color", "size", "into", "with"})
_KNOWN = frozenset(_CORRECTABLE) | COLOUR_MODIFIERS | frozenset("""the a an and then to of at on in it its this
that these those is be me for you your can could would will please pls plz i i'd id like want need want
mind picture image photo so up down one bit very""".split()) | frozenset(_GERUNDS) | frozenset(_SPELLING.values())

_LEADING = re.compile(
    r"^(?:(?:hey|hi|ok|okay|now|so|and|also|just|kindly|please|pls|plz|then|first|firstly|first of all)\b[ ,]*"
    r"|would you mind\b ?|do you mind\b ?"
    r"|(?:could|can|would|will) (?:you|we|u)(?: please| kindly| maybe| possibly| just)?\b ?"
    r"|(?:i'?d|i would) (?:like|love|want) (?:you|u) to\b ?"
    r"|i (?:want|need) (?:you|u) to\b ?|(?:let's|lets|let us)\b ?|try to\b ?|go ahead and\b ?|help me\b ?)")
_TRAILING = re.compile(
    r"(?:[ ,]+(?:please|pls|plz|thanks|thank you|thx|for me|if you can|if possible|if you could|"
    r"in the (?:image|picture|photo|scene)|in this (?:image|picture|photo))|[ ,]+)$")


def normalise(text: str) -> str:
    """Lower case, straight quotes, one spelling, single spaces, no trailing punctuation, keyword typos fixed."""
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("\u201c", '"').replace("\u201d", '"')
    text = text.lower().strip()
    text = re.sub(r"[\"`]", "", text)
    text = re.sub(r"\s+", " ", text)
    text = re.sub(r"[.!?\s]+$", "", text)
    text = re.sub(r"\s+([,;:])", r"\1", text)
    text = re.sub(r"^ad (?=(?:a|an|the|some|another) )", "add ", text)
    words = re.split(r"(\W+)", text)
    out = []
    for word in words:
        if word and word[0].isalpha():
            word = _SPELLING.get(word, word)
            word = correct(word)
        out.append(word)
    return "".join(out).strip()


def correct(word: str) -> str:
    """``word``, or the one keyword it is a one-letter typo of (swapped neighbours, one letter missing, extra or
    wrong). Short words are only un-swapped ("teh" -> "the"); a wrong letter is fixed only in words of six or
    more letters, so that ordinary nouns ("bed", "lake", "shirt", "beach", "power") are never read as keywords.
    A comparative missing a letter ("biger") is fixed before the inflection check would take it for "big" + "er"."""
    comparative = {k for k in BIGGER | SMALLER if _one_edit(word, k)}
    if word not in _KNOWN and len(comparative) == 1:
        return comparative.pop()
    if word in _KNOWN or len(word) < 3 or _inflected(word):
        return word
    if word == "teh" or word == "hte":
        return "the"
    found = {k for k in _CORRECTABLE if _one_edit(word, k)}
    return found.pop() if len(found) == 1 else word


def _inflected(word: str) -> bool:
    """True for an inflection of a known word ("moved", "circles", "painting"), which is no typo."""
    for suffix in ("s", "es", "d", "ed", "ing", "er", "r", "est", "ly", "y", "ish", "ness"):
        stem = word[: -len(suffix)]
        if word.endswith(suffix) and (stem in _KNOWN or stem + "e" in _KNOWN or stem[:-1] in _KNOWN):
            return True
    return False


def _one_edit(word: str, key: str) -> bool:
    if abs(len(word) - len(key)) > 1 or word == key:
        return False
    if len(word) == len(key):
        diff = [i for i, (a, b) in enumerate(zip(word, key, strict=True)) if a != b]
        i, j = (diff + [0, 0])[:2]
        if len(diff) == 2 and j == i + 1 and word[i] == key[j] and word[j] == key[i]:
            return True  # swapped neighbours
        return len(diff) == 1 and len(word) >= 6
    short, long_ = (word, key) if len(word) < len(key) else (key, word)
    if len(key) < 4:
        return False
    return any(long_[:i] + long_[i + 1:] == short for i in range(len(long_)))


def imperative(clause: str) -> str:
    """A clause without politeness or question wrapping, in the imperative where it can be ("could you make the
    circle red" -> "make the circle red"; "i'd like the star moved to the left" -> "move the star to the left";
    "can the square be bigger" -> "make the square bigger"; "there should be a star" -> "add a star")."""
    clause = clause.strip(" ,;:")
    previous = None
    while previous != clause:
        previous = clause
        clause = _LEADING.sub("", clause).strip(" ,")
        clause = _TRAILING.sub("", clause).strip(" ,")
    first, _, rest = clause.partition(" ")
    if first in _GERUNDS:
        clause = f"{_GERUNDS[first]} {rest}".strip()
    wish = re.match(r"^(?:i'?d|i would|i'll|we'd|i) (?:like|love|want|need|prefer)(?: to (?:have|see|get))? (.+)$",
                    clause)
    if wish:
        clause = _wish(wish.group(1))
    unwanted = re.match(r"^i (?:don't|do not|dont) (?:want|need|like) (.+?)(?: (?:there|anymore|any more))?$", clause)
    if unwanted:
        clause = f"remove {unwanted.group(1)}"
    no_more = re.match(r"^no (?:more )?(?:the )?(?P<thing>[\w' ]+)$", clause)
    if no_more:
        clause = f"remove the {no_more.group('thing')}"
    there = re.match(r"^there (?:should|must|could|has to|needs to) be (.+)$", clause)
    if there:
        clause = f"add {there.group(1)}"
    asked = re.match(r"^(?:can|could|should|would|will|may|might) (the .+?|its .+?|it) "
                     r"(?:be|become|get|look|turn) (.+)$",
                     clause)
    if asked:
        clause = _become(asked.group(1), asked.group(2))
    subject = re.match(r"^(the .+?|it) (?:should|must|needs to|has to|ought to|could|would|will|is to) "
                       r"(?:be|become|get|"
                       r"look|turn) (.+)$", clause)
    if subject:
        clause = _become(subject.group(1), subject.group(2))
    becomes = re.match(r"^(the .+?) (?:becomes|turns into|is turned into|changes into) (.+)$", clause)
    if becomes:
        clause = _become(becomes.group(1), becomes.group(2))
    goes = re.match(r"^(?:(?:can|could|should|would|will) )?(the .+?) (?:go|move|goes|moves|"
                    r"should (?:go|move|be moved|be)|must (?:go|move|be)|"
                    r"needs to (?:go|move|be)|"
                    r"has to (?:go|move|be)|belongs) (?P<rest>(?:to|on|at|in|towards|over to|into) .+)$", clause)
    if goes and "background" not in goes.group(1):
        clause = f"move {goes.group(1)} {goes.group('rest')}"
    gone = re.match(r"^(the .+?) (?:has to|must|should|needs to|can) (?:go|go away|disappear|vanish|leave)$", clause)
    if gone:
        clause = f"remove {gone.group(1)}"
    return clause


def _become(subject: str, predicate: str) -> str:
    if re.match(r"^(?:at|on|in|to|next to|beside|near|above|below|under) (?:the )", predicate):
        return f"move {subject} {predicate}"
    if re.match(r"^(?:a|an|one) ", predicate) and not re.match(r"^(?:a|an) (?:bit|little|lot|tad) ", predicate):
        return f"turn {subject} into {predicate}"
    return f"make {subject} {predicate}"


def _wish(rest: str) -> str:
    """What follows "I'd like ..." as an imperative clause."""
    participle = re.match(r"^(the .+?|it) (moved|shifted|placed|put|swapped(?: out)?|replaced|removed|deleted|gone|"
                          r"erased|"
                          r"taken out|changed|turned|painted|colored|recolored|made|resized|scaled) ?(.*)$", rest)
    if participle:
        thing, verb, tail = participle.groups()
        if verb in ("removed", "deleted", "gone", "erased", "taken out"):
            return f"remove {thing}"
        base = {"moved": "move", "shifted": "shift", "placed": "move", "put": "move", "swapped": "swap",
                "swapped out": "swap", "replaced": "replace", "changed": "change", "turned": "turn",
                "painted": "paint", "colored": "color", "recolored": "recolor", "made": "make", "resized": "resize",
                "scaled": "scale"}[verb]
        return f"{base} {thing} {tail}".strip()
    to_be = re.match(r"^(the .+?|it) to (?:be|become|look|turn) (.+)$", rest)
    if to_be:
        return _become(to_be.group(1), to_be.group(2))
    to_verb = re.match(r"^to (.+)$", rest)
    if to_verb:
        return to_verb.group(1)
    if re.match(r"^(?:the|its|it) ", rest):
        return f"make {rest}"
    if re.match(r"^(?:a|an|one|some|another|two|three) ", rest):
        return f"add {rest}"
    return rest


_HARD_SPLIT = re.compile(r"\s*(?:;|\. |,? and then |, then |,? after that,? |,? then |, also |,? and also |"
                         r",? afterwards,? |, next,? |,? finally,? )\s*")
_SOFT_SPLIT = re.compile(r"\s*(?:,? and |, )\s*")


def clauses(text: str, parses) -> list[str]:
    """The clauses of a normalised request, in order. A split at "and" or a comma is kept only where both sides
    parse (``parses(clause) -> bool``): "add a red and blue star" stays one clause, "remove the circle and the
    square" becomes two (the second borrows the first's verb)."""
    out: list[str] = []
    for part in filter(None, (p.strip() for p in _HARD_SPLIT.split(text))):
        out.extend(_soft_split(imperative(part), parses))
    return out


def _soft_split(clause: str, parses) -> list[str]:
    for match in _SOFT_SPLIT.finditer(clause):
        left, right = clause[: match.start()].strip(), imperative(clause[match.end():])
        if not left or not right or not parses(left):
            continue
        candidates = [right]
        if right.split(" ", 1)[0] not in VERBS:
            if not re.match(r"^(?:the|a|an|its|this|that|these|those|all|both|his|her|their) ", right):
                continue
            verb = left.split(" ", 1)[0]
            candidates = [f"{verb} {right}"]
            if verb == "make" and " background" not in right:
                candidates.append(f"make {right}")
        for candidate in candidates:
            rest = _soft_split(candidate, parses)
            if all(parses(c) for c in rest):
                return [left, *rest]
    return [clause]
