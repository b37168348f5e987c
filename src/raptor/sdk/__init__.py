"""The SDK: decorators that turn notebook functions into Raptor assets, with zero skew.

Public names are re-exported lazily by :mod:`raptor` (SPEC 6). Modules, by concept:

* :mod:`~raptor.sdk.decorators` — ``@data_source``, ``@feature``, ``@model`` and the option
  decorators; every check that can be made at decoration time is made there.
* :mod:`~raptor.sdk.registry` — the explicit registry (``with Registry(): ...`` in tests).
* :mod:`~raptor.sdk.data_sources`, :mod:`~raptor.sdk.features`, :mod:`~raptor.sdk.models` —
  what a decorator returns: the TypedDict class itself (with ``cls.raptor``), and callable
  handles for features and models.
* :mod:`~raptor.sdk.source` — the exported program is the function's own source.
* :mod:`~raptor.sdk.rows`, :mod:`~raptor.sdk.execution`, :mod:`~raptor.sdk.timeline`,
  :mod:`~raptor.sdk.replay` — replay with production's rows, programs and semantics.
* :mod:`~raptor.sdk.training`, :mod:`~raptor.sdk.artifacts` — training sets and models.
* :mod:`~raptor.sdk.export`, :mod:`~raptor.sdk.plotting`, :mod:`~raptor.sdk.progress`.

Decisions:

* **Wrappers, not bare functions.** ``@feature``/``@model`` return a small callable handle
  (``functools.update_wrapper``: same name, docstring, ``__wrapped__``; calling it calls the
  function) so that notebooks get a repr that says what the feature is and typed
  ``.replay()``/``.manifest()``/``.export()``/``.plot()`` methods. ``@data_source`` returns the
  class itself (it is the rows' type in annotations) with its record as ``cls.raptor``.
  Option decorators return the function unchanged.
* **One program text.** The decorated function's source (decorators stripped) is exported
  and compiled by the engine's loader; replay runs that compiled program, never the Python
  function, so notebook and production run the same code. Names the function reads from its
  module are rejected at decoration time (production runs the function alone).
* **Production semantics offline.** Rows are production-shaped (JSON values, flattened,
  keys and timestamp kept); windows use the engine's integer buckets; values, versions and
  lists follow the state contract; the training join is backward-only. Replay assumes each
  event arrived at its event time (it cannot know arrival times).
* **No I/O at import.** Training data may be a path or a callable, read on first replay;
  pandas and numpy are imported by replay/training/export only.
"""
