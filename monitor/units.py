"""The five Mouse Grimace Scale action units, in the order every model and record uses."""

UNITS: tuple[str, ...] = (
    "orbital_tightening",
    "nose_bulge",
    "cheek_bulge",
    "ear_position",
    "whisker_change",
)
LEVELS = (0, 1, 2)
MAX_TOTAL = 2 * len(UNITS)
