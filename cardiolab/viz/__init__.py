"""HoloViews plots of sessions, beats and cohort models (no Panel here).

Every function returns a HoloViews object styled for the bokeh backend, which this
package registers on import (``holoviews.plotting.bokeh``, without the notebook
side effects of ``hv.extension``): show it in a notebook after
``hv.extension("bokeh")``, render it with ``hv.render(obj, backend="bokeh")``, or
compose it into a Panel dashboard.

- :mod:`.session`: :func:`session_view` (raw signals on one time axis, rasterised
  with datashader, beat markers, protocol epochs) and :func:`epoch_spans`.
- :mod:`.beats`: :func:`beat_series` (beat-to-beat series, flags visible) and
  :func:`beat_points` (a selectable per-beat Scatter for flagging beats).
- :mod:`.cohort`: :func:`forest_plot` (phase contrasts), :func:`timeline` (subjects
  and the fitted time course over mission days) and :func:`tau_profile` (likelihood
  profile of a time constant).
"""

import holoviews.plotting.bokeh  # noqa: F401  (registers the backend the plots style)

from .beats import beat_points, beat_series
from .cohort import forest_plot, tau_profile, timeline
from .session import epoch_spans, session_view

__all__ = [
    "beat_points",
    "beat_series",
    "epoch_spans",
    "forest_plot",
    "session_view",
    "tau_profile",
    "timeline",
]
