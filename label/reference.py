"""The reference panel's text: each unit and level described in this project's own words.

A reminder for trained raters, not a substitute for MGS training: score what you see on this
image, and press x for a unit you cannot see well enough rather than guessing.
"""

from __future__ import annotations

from monitor.units import UNITS

# unit -> (short name, what to look at, level 0, level 1, level 2)
REFERENCE: dict[str, tuple[str, str, str, str, str]] = {
    "orbital_tightening": (
        "Eyes", "the lids and the skin around the eye",
        "Eye open and round; lids relaxed.",
        "Eye visibly narrowed, lids drawn partway together; a fold may show around it.",
        "Eye squeezed to a slit or shut, with tight wrinkles around it."),
    "nose_bulge": (
        "Nose", "the top line of the nose, from the tip back towards the eyes",
        "Nose bridge smooth and flat.",
        "A slight rounded swelling on the bridge of the nose.",
        "A clear rounded lump on the bridge; skin may crease across it."),
    "cheek_bulge": (
        "Cheek", "the area between the eye and the whisker pad",
        "Cheek flat, no swelling.",
        "Cheek a little rounded outward.",
        "Cheek clearly puffed out: a distinct round mass below and in front of the eye."),
    "ear_position": (
        "Ears", "how the ears stand and how far apart they are",
        "Ears upright, facing forward or sideways, well apart.",
        "Ears beginning to fold or turn back; the gap between them narrower.",
        "Ears laid flat back against the head, close together, often looking pointed."),
    "whisker_change": (
        "Whiskers", "the angle and stiffness of the whiskers",
        "Whiskers relaxed, fanning out and curving gently down.",
        "Whiskers somewhat stiffer, partly drawn back or together.",
        "Whiskers stiff and straight, pulled back along the face or bunched forward."),
}
assert tuple(REFERENCE) == UNITS  # the page lists units in the order records use
NOT_SCOREABLE = "Not scoreable: the part is hidden, blurred or out of the picture. Do not guess."
