"""A tiny module to try heedls on: suggestions, diagnostics, explanations and fixes."""


def mean(values):
    total = 0
    for i in range(len(values)):
        total += values[i]
    return total / len(values)


def median(values):
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2 == 1:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def spread(values):
    lowest = min(values)
    highest = max(values)
    return highest - lowest


def normalise(values):
    low = min(values)
    width = spread(values)
    result = []
    for i in range(len(
