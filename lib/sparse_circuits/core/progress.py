"""Progress bars that show in a terminal, in JupyterLab and in a notebook run by papermill.

``tqdm.auto`` draws an ipywidgets bar inside a Jupyter kernel; a notebook executed by papermill saves that widget
in its first state (an empty bar), so the executed copy never shows progress. The notebook runner
(``app.notebooks``) sets ``TEXT_PROGRESS_ENV`` for its kernels (papermill starts them with its own environment);
with it set, bars are plain text (``tqdm.std``), which the executed notebook keeps as stream output.
"""

from __future__ import annotations

import os

TEXT_PROGRESS_ENV = "SPARSE_CIRCUITS_TEXT_PROGRESS"
"""Set to a non-empty value other than "0" for text bars even inside a Jupyter kernel."""


TEXT_MININTERVAL_S = 15.0
"""Seconds between two updates of a text bar (tqdm's ``mininterval``) unless the caller sets one."""


def text_progress() -> bool:
    """True when bars must be plain text (``TEXT_PROGRESS_ENV`` set)."""
    return os.environ.get(TEXT_PROGRESS_ENV, "") not in ("", "0")


def tqdm(iterable=None, **kwargs):
    """A ``tqdm`` bar over ``iterable`` (or a manual one: ``total=...``): text under ``TEXT_PROGRESS_ENV``,
    else ``tqdm.auto`` (a widget in Jupyter, text in a terminal)."""
    if text_progress():
        from tqdm.std import tqdm as bar

        # A saved notebook keeps every text update as a line: a few lines a minute, not one per step.
        kwargs.setdefault("mininterval", TEXT_MININTERVAL_S)
    else:
        from tqdm.auto import tqdm as bar
    return bar(iterable, **kwargs)
