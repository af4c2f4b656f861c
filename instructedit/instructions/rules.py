"""The offline rule-based planner: an instruction -> edit plans, by patterns over the imperative clause.

Each clause (see :mod:`instructedit.instructions.wording` for how a request becomes clauses) is matched
against one pattern family per edit type, tried in an order that settles the ambiguous verbs: "paint the
circle red" is a colour change, "paint a star" an addition; "turn the square into a heart" a replacement,
"turn the square blue" a colour change; "put the star at the top" a move, "put a star at the top" an addition.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from ..errors import InvalidRequestError
from .captions import bare, edited_captions, with_article
from .plan import MAX_PLANS, EditPlan
from .wording import BIGGER, COLOUR_MODIFIERS, COLOURS, SIZE_WORDS, SMALLER, clauses, normalise

_DET = r"(?:the|this|that|these|those|its|his|her|their|my|our|your)"
_PRONOUN = r"(?:it|them)"
_POS = (r"(?:(?:very |far )?(?:(?:top|bottom|upper|lower|middle|center)(?:[ -](?:left|right|center|middle))?|left|right"
        r"|center|middle)(?: (?:corner|side|edge|half|part|area|hand side))?(?: of (?:the )?(?:image|picture|photo"
        r"|scene|canvas|frame))?)")
_PLACE = rf"(?:the {_POS}|(?:the )?(?:left|right|top|bottom) (?:of|side of) the [\w ]+?|next to the [\w ]+?|" \
         rf"(?:above|below|under|beside|behind|near|over) the [\w ]+?|{_POS})"
_LOCATION = re.compile(rf"^(?P<e>.+?) (?P<loc>(?:(?:at|on|in|to|near|from) (?:the )?{_POS}|(?:next to|near|beside|"
                       rf"above|below|under|behind|left of|right of|to the left of|to the right of|on top of|in front "
                       rf"of|inside|on|in|at|to) the [\w' ]+))$")
_IMAGE = r"(?:it|the (?:whole )?(?:image|picture|photo|photograph|scene|painting|drawing|thing|whole thing)|" \
         r"everything|" \
         r"this(?: (?:image|picture|photo))?)"
_STYLE_WORDS = re.compile(r"\b(?:painting|sketch|drawing|style|cartoon|anime|watercolor|oil|pixel|art|illustration|"
                          r"impressionist|cubist|comic|manga|poster|photograph|vintage|retro|sepia|grayscale|black and "
                          r"white|noir|3d|render|claymation|mosaic|pastel drawing|charcoal|van gogh|monet|picasso|"
                          r"ukiyo|lego|origami|cyberpunk|steampunk|pop art|low poly|line art|woodcut|engraving)\b")
_SIZE_VALUE = re.compile(r"^(?:(?:a|an) )?(?:(?:little|bit|lot|tad|touch|slightly|much|way|even|somewhat|really|"
                         r"very|far|"
                         r"much) )*(?P<s>\w+)(?: in size| than (?:it is|before|now))?$")

_ARTICLE_RE = re.compile(r"^(?:a|an|one|some|another|two|three|four|five|more) ")
_REMOVE = r"(?:remove|delete|erase|eliminate|get rid of|take away|take out|wipe away|wipe out|clear away|clear out|" \
          r"clear|cut out|cut|drop|hide|discard|omit|rub out|scrub out|take off|lose|ditch|get)"
_MOVE = r"(?:move|shift|drag|relocate|reposition|slide|bring|push|transfer|send|carry|place|put|shove|nudge|" \
        r"set|pull|position)"
_ADD = r"(?:add|put|draw|insert|place|include|create|paint|sketch|generate|make|stick|drop|throw in|bring in|" \
       r"show|give|set|position)"


def is_colour(value: str) -> bool:
    """True for a colour phrase: "red", "light blue", "dark grey", "red and white"."""
    words = [w for w in re.split(r"[ -]", value.strip()) if w not in ("and", "ish")]
    if not words or any(w not in COLOURS and w not in COLOUR_MODIFIERS for w in words):
        return False
    return any(w in COLOURS for w in words)


def colour_of(phrase: str | None) -> str | None:
    """The colour phrase inside ``phrase`` ("the small light blue circle" -> "light blue"), if any."""
    words = (phrase or "").split()
    for i, word in enumerate(words):
        if word in COLOURS:
            if i and words[i - 1] in COLOUR_MODIFIERS:
                return f"{words[i - 1]} {word}"
            return word
    return None


def _definite(phrase: str) -> str:
    phrase = phrase.strip()
    if phrase in ("it", "them") or re.match(rf"^(?:{_DET}|all|both|every|each) ", phrase + " "):
        return phrase
    return "the " + bare(phrase)


def split_location(phrase: str) -> tuple[str, str | None]:
    """("the circle", "on the left") from "the circle on the left"; (phrase, None) when it names no place."""
    match = _LOCATION.match(phrase)
    if match and match.group("e").split()[-1] not in ("a", "an", "the"):
        return match.group("e"), match.group("loc")
    return phrase, None


def _place(value: str) -> str:
    """A destination without its preposition and article: "to the top left" -> "top left"."""
    value = re.sub(r"^(?:over |all the way |back )?(?:to|towards|toward|into|onto|over to|up to|down to|at|on|in)"
                   r"(?: the)? ", "", value.strip())
    value = re.sub(r"^the ", "", value)
    value = re.sub(r" (?:corner|side|edge|hand side|part|area)$", "", value)
    value = re.sub(r" of (?:the )?(?:image|picture|photo|scene|canvas|frame)$", "", value)
    return {"middle": "center", "upper left": "top left", "upper right": "top right", "lower left": "bottom left",
            "lower right": "bottom right", "top-left": "top left", "top-right": "top right", "bottom-left":
            "bottom left", "bottom-right": "bottom right"}.get(value, value)


def _size(word: str) -> str | None:
    match = _SIZE_VALUE.match(word.strip())
    if not match:
        return None
    size = match.group("s")
    if size in BIGGER or word.strip() in ("up", "up in size"):
        return "bigger"
    if size in SMALLER or word.strip() in ("down", "down in size"):
        return "smaller"
    return size if size in SIZE_WORDS and word.strip() == size else None


def _new_value(value: str) -> str:
    value = re.sub(r" (?:instead|in its place|rather|there)$", "", value.strip())
    return bare(value)


# One parser per edit type: clause -> the plan's fields, or None.
def _background(c: str) -> dict | None:
    if "background" not in c and "backdrop" not in c:
        return None
    old = r"(?:the |its |a |an )?(?:(?P<old>[\w ]+?) )?(?:background|backdrop)"
    patterns = (
        r"^(?:put|place|set|show) (?:.+?) (?:on|in front of|against|over) (?:a |an |the )?(?P<v>[\w ]+?) "
        r"(?:background|backdrop)$",
        rf"^(?:make|turn|paint|change|set|switch|color|recolor|repaint|dye|tint|fill|replace|swap|convert) {old}"
        r"(?: color)?(?: (?:to|into|with|in|as|for|by|so it is|so that it is|to be))? (?P<v>.+)$",
        rf"^(?:change|set|switch|make) the color of {old} (?:to|into) (?P<v>.+)$",
        r"^(?:use|give (?:it|the (?:image|picture|photo|scene))|put|add|have|make it|draw|paint|set|switch to|"
        r"go with|choose) (?:a |an |the )?(?P<v>[\w ]+?) (?:background|backdrop)(?: instead)?$",
        r"^(?:a |an )(?P<v>[\w ]+?) (?:background|backdrop)$",
    )
    for pattern in patterns:
        match = re.match(pattern, c)
        if match:
            value = re.sub(r" (?:background|backdrop|one|color|instead)$", "", match.group("v").strip())
            value = bare(re.sub(r"^(?:a|an|the) (.+) (?:background|backdrop)$", r"\1", value))
            old_value = match.groupdict().get("old")
            if old_value and old_value in ("whole", "entire"):
                old_value = None
            if value:
                return {"type": "background", "value": value, "old_value": old_value}
    return None


def _style(c: str) -> dict | None:
    match = re.match(rf"^(?:make|turn|convert|transform|render|change|redo|restyle|redraw|paint|draw|recreate|"
                     rf"reimagine|show)(?: {_IMAGE})?(?: look)?(?: like| into| as| in| to)?"
                     r"(?: the style of| a style of)? (?P<v>.+)$",
                     c)
    if not match:
        match = re.match(r"^(?:apply|give it|use|add) (?:a |an )?(?P<v>.+?)(?: style| effect| filter| look)"
                         r"(?: to (?:it|the (?:image|picture|photo)))?$", c)
        if match:
            value = match.group("v")
            if c.split(" ")[-1] == "style" or c.endswith("style to it") or len(value.split()) == 1 and \
                    not _STYLE_WORDS.search(value):
                value = f"{value} style"
            return {"type": "style", "value": value}
        return None
    value = match.group("v")
    named_image = re.match(rf"^(?:make|turn|convert|transform|render|change|redo|restyle|redraw|paint|draw|recreate|"
                           rf"reimagine|show) {_IMAGE}\b", c)
    if not named_image and not re.match(r"^(?:restyle|render|redraw|reimagine)", c):
        return None
    if not _STYLE_WORDS.search(value) and named_image is None:
        return None
    if is_colour(value) and value not in ("black and white", "black-and-white") or _size(value):
        return None
    value = re.sub(r"^(?:a|an|the) ", "", value)
    value = re.sub(r" style$", " style", value)
    return {"type": "style", "value": value}


def _remove(c: str) -> dict | None:
    patterns = (
        rf"^{_REMOVE} (?P<e>.+?)(?: (?:from|out of|off) (?:the |this )?(?:image|picture|photo|scene|background|"
        r"canvas|frame))?(?: (?:and|but) (?:keep|leave) (?:the rest|everything else)(?: as it is| unchanged)?)?$",
        r"^take (?P<e>.+?) (?:out|away|off)(?: (?:of |from )?(?:the |this )[\w ]+)?$",
        r"^(?:make|let) (?P<e>.+?) (?:disappear|vanish|go away|be gone|gone)$",
        r"^get (?P<e>.+?) (?:out|away)(?: of (?:the |this )?(?:image|picture|photo|scene))?$",
    )
    for pattern in patterns:
        match = re.match(pattern, c)
        if match:
            entity = match.group("e")
            if not re.match(rf"^(?:{_DET}|all|both|every|each) ", entity) and re.match(r"^(?:rid|away|out)\b", entity):
                return None
            if c.startswith("get ") and not c.startswith("get rid") and "out" not in c and "away" not in c:
                return None
            if re.match(r"^(?:a|an) ", entity) and not c.startswith(("remove", "delete", "erase")):
                return None
            return {"type": "remove", "entity": _definite(entity)}
    return None


def _replace(c: str) -> dict | None:
    patterns = (
        r"^substitute (?P<v>(?:a|an|one|some) .+?) for (?P<e>.+)$",
        r"^(?:replace|swap(?: out)?|switch(?: out)?|exchange|trade|substitute|change out) (?P<e>.+?) (?:with|for|by)"
        r" (?P<v>.+)$",
        r"^(?:turn|change|transform|convert|morph|make|switch) (?P<e>.+?) (?:into|to|in to) "
        r"(?P<v>(?:a|an|one|some) .+)$",
        r"^(?:make|turn) (?P<e>(?:the|this|that|its) .+?) (?P<v>(?:a|an) (?!bit |little |lot |tad ).+?)(?: instead| "
        r"rather)?$",
        r"^instead of (?P<e>.+?),? (?:draw|put|add|use|have|make|place|show|there should be) (?P<v>.+)$",
        r"^(?:put|draw|place|add) (?P<v>(?:a|an) .+?) (?:where|in place of|instead of) (?P<e>.+?)(?: (?:was|is|"
        r"used to be|stands))?$",
        r"^(?:turn|change|transform|convert|morph) (?P<e>.+?) (?:into|to) (?P<v>(?!the\b).+)$",
    )
    for i, pattern in enumerate(patterns):
        match = re.match(pattern, c)
        if not match:
            continue
        entity, value = match.group("e"), _new_value(match.group("v"))
        if "background" in entity or not value:
            return None
        if i == len(patterns) - 1 and (is_colour(value) or _size(value) or len(value.split()) > 1 and
                                       not re.search(r"\b(?:a|an)\b", match.group("v"))):
            return None
        if is_colour(value):
            return None
        return {"type": "replace", "entity": _definite(entity), "value": value}
    return None


def _move(c: str) -> dict | None:
    patterns = (
        rf"^{_MOVE}(?: over| back| across)? (?P<e>(?:{_DET}|all|both) .+?|{_PRONOUN}) "
        r"(?P<v>(?:over |all the way |back )?"
        rf"(?:to|towards|toward|into|onto|over to|up to|down to) {_PLACE})$",
        rf"^{_MOVE}(?: over| back)? (?P<e>(?:{_DET}|all|both) .+?|{_PRONOUN}) (?P<v>(?:at|on|in) {_PLACE})$",
        rf"^{_MOVE} (?P<e>(?:{_DET}|all|both) .+?) (?P<v>(?:next to|beside|near|above|below|under|behind|in front of"
        r"|on top of) the [\w ]+)$",
        rf"^{_MOVE} (?P<e>(?:{_DET}|all|both) .+?|{_PRONOUN}) "
        r"(?P<v>up|down|left|right|higher|lower|further left|further right)"
        r"(?: a bit| a little| slightly)?$",
    )
    for pattern in patterns:
        match = re.match(pattern, c)
        if match:
            entity, value = match.group("e"), _place(match.group("v"))
            if entity.startswith(("the background", "its background")):
                return None
            return {"type": "move", "entity": entity, "value": value}
    return None


def _size_edit(c: str) -> dict | None:
    patterns = (
        (r"^(?:increase the size of|enlarge|grow|expand|magnify|blow up|upscale|scale up|size up|make bigger|"
         r"make larger|increase) (?P<e>.+?)(?: (?:a bit|a little|slightly|a lot))?$", "bigger"),
        (r"^(?:decrease the size of|reduce the size of|shrink|reduce|minimize|downsize|scale down|size down|"
         r"make smaller|decrease)"
         r" (?P<e>.+?)(?: (?:a bit|a little|slightly|a lot))?$", "smaller"),
        (r"^(?:scale|size|make|resize|rescale) (?P<e>.+?)(?: go| get)? (?P<v>up|down)(?: in size)?"
         r"(?: (?:a bit|a little|slightly))?$",
         None),
        (r"^(?:resize|rescale|change the size of|adjust the size of|set the size of|scale|size) (?P<e>.+?)(?: so that"
         r" it is| so it is| so it's| to be| to| into)? (?P<v>(?:a |an )?\w+)(?: size| one)?$", None),
        (r"^(?:make|turn|get|render|have) (?P<e>.+?) (?P<v>(?:(?:a|an|little|bit|lot|tad|touch|slightly|much|way|even|"
         r"somewhat|really|very|far) )*\w+)(?: in size| than (?:it is|before|now))?$", None),
        (r"^give (?P<e>.+?) (?:a|an) (?P<v>\w+) size$", None),
    )
    for pattern, fixed in patterns:
        match = re.match(pattern, c)
        if not match:
            continue
        value = fixed or _size(match.group("v"))
        if value is None:
            value = {"up": "bigger", "down": "smaller"}.get(match.group("v"))
        if value is None:
            continue
        entity = match.group("e")
        if "background" in entity:
            return None
        return {"type": "size", "entity": _definite(entity), "value": value}
    return None


def _colour(c: str) -> dict | None:
    patterns = (
        r"^(?:change|set|switch|make|turn|alter) the color of (?P<e>.+?) (?:to|into|in) (?P<v>.+)$",
        r"^(?:change|set|switch|make|turn|alter) (?P<e>.+?)'s? color (?:to|into|in) (?P<v>.+)$",
        r"^set (?P<e>.+?) to (?P<v>[\w -]+)$",
        r"^(?:make|turn|paint|dye|color|recolor|tint|repaint|shade|change|switch|render|have|get) (?P<e>.+?)"
        r"(?: (?:to|into|in|so (?:that )?it is|to be|look))? (?P<v>(?:(?:a|an) )?[\w -]+?)(?: (?:color|colored|"
        r"instead|in color|now))?$",
        r"^give (?P<e>.+?) (?:a|an) (?P<v>[\w -]+?) (?:color|hue|tint|shade|paint job)$",
        r"^(?:color|paint|dye|tint|repaint) (?P<e>.+?) (?:with|using) (?P<v>[\w -]+?)(?: paint| color)?$",
    )
    for pattern in patterns:
        match = re.match(pattern, c)
        if not match:
            continue
        value = re.sub(r"^(?:a|an) ", "", match.group("v").strip())
        for split in range(len(value.split()), 0, -1):  # "the circle light blue": the longest colour suffix
            head = " ".join(value.split()[:-split])
            tail = " ".join(value.split()[-split:])
            if is_colour(tail):
                entity = re.sub(r" (?:to|into|in|to be|so that it is|so it is|look)$", "",
                                f"{match.group('e')} {head}".strip())
                if "background" in entity or entity == "everything":
                    return None
                entity = _definite(entity)
                return {"type": "colour", "entity": entity, "value": tail, "old_value": colour_of(entity)}
    return None


def _attribute(c: str) -> dict | None:
    match = re.match(r"^(?:make|turn|render|have|get) (?P<e>(?:the|this|that|its|his|her|their) .+?)(?: look)? "
                     r"(?P<v>[\w-]+(?: and [\w-]+)?)$", c)
    if not match:
        match = re.match(r"^give (?P<e>(?:the|this|that|its|his|her|their) .+?) (?:a |an )?(?P<v>[\w-]+ (?:texture|"
                         r"finish|look|surface|pattern|material|expression))$", c)
    if not match:
        return None
    entity, value = match.group("e"), match.group("v")
    if "background" in entity or len(entity.split()) < 2:
        return None
    return {"type": "attribute", "entity": entity, "value": value}


def _add(c: str) -> dict | None:
    match = re.match(rf"^(?:{_ADD})(?: in| on| back)? (?P<v>(?:a|an|one|some|another|two|three|four|five|more) .+)$", c)
    if not match:  # a mass noun or plural with no article ("add snow", "add sunglasses to the woman")
        match = re.match(r"^(?:add|insert|include) (?P<v>(?!the |this |that |its |his |her |their |it\b)[\w' -]+)$", c)
    if not match:
        match = re.match(r"^let (?P<v>(?:a|an|one|some) .+?) (?:appear|be|show up|pop up)(?: (?P<loc>.+))?$", c)
        if match and match.group("loc"):
            value, loc = match.group("v"), match.group("loc")
            return {"type": "add", "value": bare(value), "location": loc}
    if not match:
        return None
    value = re.sub(r"^(?:one more|another|a new|an extra|one) (?:object|thing|shape|item)[:,]? ", "", match.group("v"))
    value = re.sub(r"^(?:another|some|more) ", "", value)
    value = re.sub(r" (?:to|in|into) (?:it|the (?:image|picture|photo|scene))$", "", value)
    value, location = split_location(value)
    if location is None:
        front = re.match(r"^(?P<loc>(?:at|on|in) the [\w ]+?), (?P<v>.+)$", match.group("v"))
        if front:
            value, location = front.group("v"), front.group("loc")
    value = bare(re.sub(r" (?:to (?:it|the (?:image|picture|photo|scene))|for me|too|as well|somewhere)$", "", value))
    if c.startswith(("make ", "give ", "set ")) and not location:
        return None
    return {"type": "add", "value": value, "location": location}


def _add_located_first(c: str) -> dict | None:
    """ "at the top left, add a small red star" (a place first, then the clause)."""
    match = re.match(r"^(?P<loc>(?:at|on|in|near|next to) (?:the )?[\w ]+?),? (?P<rest>(?:add|put|draw|insert|place|"
                     r"include|create|paint) .+)$", c)
    if not match:
        return None
    fields = _add(match.group("rest"))
    if fields is None or fields.get("location"):
        return None
    return {**fields, "location": match.group("loc")}


_PARSERS: tuple[Callable[[str], dict | None], ...] = (
    _background, _add_located_first, _style, _replace, _remove, _move, _size_edit, _colour, _add, _attribute,
)


def parse_clause(clause: str) -> dict | None:
    """The plan fields of one imperative clause, or ``None`` when no pattern reads it."""
    for parser in _PARSERS:
        fields = parser(clause)
        if fields is not None:
            return fields
    return None


def canonical(fields: dict) -> str:
    """The edit in the wording learned editors follow best (the reference domain's training wording)."""
    kind, entity, value, location = fields["type"], fields.get("entity"), fields.get("value"), fields.get("location")
    if kind == "add":
        return f"add {with_article(value)}" + (f" {location}" if location else "")
    if kind == "remove":
        return f"remove {entity}"
    if kind == "replace":
        return f"replace {entity} with {with_article(value)}"
    if kind in ("colour", "attribute", "size"):
        return f"make {entity} {value}"
    if kind == "move":
        return f"move {entity} to the {value}" if not value.startswith(("the ", "next ", "above ", "below ")) \
            else f"move {entity} to {value}"
    if kind == "background":
        return f"make the background {value}"
    return f"make it look like {with_article(value)}"


def _swap_word(phrase: str, old: str, new: str) -> str:
    return re.sub(rf"\b{re.escape(old)}\b", new, phrase, count=1)


def reverse_of(fields: dict) -> str | None:
    """The instruction that undoes the edit, or ``None`` when the old state is unknown."""
    kind, entity, value, old = (fields["type"], fields.get("entity"), fields.get("value"), fields.get("old_value"))
    if kind == "add":
        return f"remove the {bare(value)}"
    if kind == "remove" and old:
        return f"add {with_article(old)}"
    if kind == "remove":
        thing, location = split_location(entity)
        return f"add {with_article(bare(thing))}" + (f" {location}" if location else "")
    if kind == "replace":
        return f"replace the {bare(value)} with {with_article(old or bare(entity))}"
    if kind == "colour" and old:
        return f"make {_swap_word(entity, old, value)} {old}"
    if kind == "size":
        if value in ("bigger", "smaller"):
            return f"make {entity} {'smaller' if value == 'bigger' else 'bigger'}"
        for word in SIZE_WORDS:
            if re.search(rf"\b{word}\b", entity) and word != value:
                return f"make {_swap_word(entity, word, value)} {word}"
        return None
    if kind == "move":
        thing, location = split_location(entity)
        old_place = old or (_place(location) if location else None)
        return f"move {thing} to the {old_place}" if old_place else None
    if kind == "background" and old:
        return f"make the background {old}"
    return None


def _antecedent(pronoun: str, clause: str, plans: list[EditPlan]) -> str:
    """What "it" names in a chain: the object the previous edit left ("turn the square into a circle and make it
    orange" colours the circle; "add a star, then move it" moves the star), else the previous edit's entity."""
    if not plans or plans[-1].type in ("background", "style"):
        raise InvalidRequestError(f"{pronoun!r} in {clause!r} names nothing before it: name the object, e.g. "
                                  "'make the circle red'", field="instruction")
    previous = plans[-1]
    if previous.type in ("add", "replace"):
        return f"the {bare(previous.value or '')}".strip()
    return previous.entity or pronoun


class RuleBasedPlanner:
    """The offline default planner: patterns over the user's words, no model.

    ``plan(instruction, caption=None)`` returns one :class:`EditPlan` per clause, in order. With the caption
    of the source image, each plan also gets the source and target captions (the caption before and after
    that plan, the next plan starting from the previous one's target) and old values read from the caption
    (the old colour, position or background), which make more edits reversible.
    """

    name = "rules"

    def plan(self, instruction: str, *, caption: str | None = None) -> list[EditPlan]:
        if not isinstance(instruction, str) or not instruction.strip():
            raise InvalidRequestError("the instruction is empty: say what to change, e.g. 'make the circle red'",
                                      field="instruction")
        text = normalise(instruction)
        parts = clauses(text, lambda c: parse_clause(c) is not None)
        if len(parts) > MAX_PLANS:
            raise InvalidRequestError(f"the instruction asks for {len(parts)} edits; at most {MAX_PLANS} are planned "
                                      f"at once: split it into several requests", field="instruction")
        plans = []
        for part in parts:
            fields = parse_clause(part)
            if fields is None:
                raise InvalidRequestError(
                    f"could not understand {part!r} in the instruction: write it as e.g. 'make the circle red', "
                    "'remove the square', 'add a small star at the top left', 'replace the star with a heart', "
                    "'move the circle to the left', 'make the background white'", field="instruction")
            if fields.get("entity") in ("it", "them"):
                fields["entity"] = _antecedent(fields["entity"], part, plans)
            if fields["type"] != "add" and fields.get("entity") and fields["type"] != "background":
                fields.setdefault("location", split_location(fields["entity"])[1])
            if caption:
                fields, caption = edited_captions(fields, caption)
            fields = {k: v for k, v in fields.items() if v is not None}
            plans.append(EditPlan(instruction=canonical(fields), reverse=reverse_of(fields), text=part, **fields))
        return plans
