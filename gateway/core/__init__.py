"""The decisions, as pure code: no I/O, no clock, no threads.

Every area is a state machine with the same shape::

    step(state, event, now) -> (state, effects)

* ``state`` is a frozen dataclass; ``step`` returns a new one (or the same object when nothing changed).
* ``event`` is a small frozen dataclass describing something that happened (a reading, a timer tick,
  an admin action).
* ``now`` is monotonic seconds, passed in by the runtime; core code never reads a clock.
* ``effects`` is a tuple of small frozen dataclasses describing what the runtime must do (set a PoE
  port, replace a route, write a journal event).  Effects are *desired state*: the runtime may apply
  them again and again, and they must be idempotent.

See :mod:`gateway.core.base` for the shared types and :mod:`gateway.core.example` for a worked example.
"""
