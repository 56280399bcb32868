"""Updating a Static without laying the screen out again, when its height cannot change.

``Static.update`` asks for a layout by default: Textual then reflows the whole screen and repaints
every widget on it (~10-40 ms at 200x50 with the tables and meters). Two updates a second of a
one-line status or a timeline of the same number of lines cost more than the frame they are in.
"""

from __future__ import annotations

from textual.widgets import Static


def update(widget: Static, content, layout: bool = True) -> None:
    """``widget.update(content)``, laying out only if ``layout`` (Textuals before the ``layout``
    argument always lay out)."""
    try:
        widget.update(content, layout=layout)
    except TypeError:
        widget.update(content)
