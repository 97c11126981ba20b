"""A module with a bug in `clamp` and the tests it fails: the repair's editor tests."""

BUGGY = """def clamp(value, low, high):
    \"\"\"Limit value to [low, high].\"\"\"
    if value < low:
        return low
    if value < high:
        return high
    return value
"""
TESTS = """from mathx import clamp


def test_inside():
    assert clamp(5, 0, 10) == 5


def test_below():
    assert clamp(-3, 0, 10) == 0


def test_above():
    assert clamp(42, 0, 10) == 10
"""
