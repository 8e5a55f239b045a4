"""Priority classes of the cluster's events, and why they are ordered so.

At one instant the event kernel runs smaller priorities first:

``ARRIVAL`` (0)
    A request arrives and is routed and queued first, so that an iteration
    starting at the same instant can already batch it.  Requests a router
    held back (LAPS's batching window) are released at this priority too.
``STEP_DONE`` (1)
    A replica finishes an iteration, books its tokens and immediately plans
    the next one; arrivals of the same instant are already queued.
``WAKE`` (2)
    An idle replica starts planning after every arrival of the instant has
    been queued, so simultaneous arrivals share one first iteration.
"""

ARRIVAL = 0
STEP_DONE = 1
WAKE = 2
