"""Modal screens: help, buffer details, filters, jump-to-id, sort menu."""


def cycled(items, current, step: int):
    """The item ``step`` places after ``current`` in ``items``, wrapping around (from the first when
    ``current`` is not among them): what the screens' next/previous keys step through."""
    i = items.index(current) if current in items else 0
    return items[(i + step) % len(items)]
