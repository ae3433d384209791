"""SIGTERM, in the order a service must stop: deregister, wait, then let the server stop.

Whatever server runs the app already handles SIGTERM its own way: uvicorn and gunicorn
stop accepting and drain, Flask's `app.run()` has no handler and dies. Stopping to accept
before the registry knows would send callers connection errors until their view
catches up, so the hook runs first: it asks the service to deregister and wait a short
grace (callers move away; requests still arrive and are served meanwhile), and only then
hands the signal to what handled it before -- the server's handler, or, when there was
none, a KeyboardInterrupt in the main thread, which is how werkzeug's development server
stops cleanly. Draining what is still in flight is then the server's (or, for `app.run()`,
the exit hook's).

Signal handlers can only be installed from the main thread; elsewhere `install` does
nothing. It may be called again (uvicorn installs its handlers after importing the app
when started by `uvicorn.run(app)`): it wraps whatever is installed now, once.
"""

from __future__ import annotations

import _thread
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

__all__ = ["SigtermHook"]

Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


class SigtermHook:
    """Calls `prepare()` (in a thread of its own) on SIGTERM, then passes the signal on."""

    def __init__(self, prepare: Callable[[], None]) -> None:
        self._prepare = prepare
        self._previous: Handler = None
        self._fired = False

    def install(self) -> bool:
        if threading.current_thread() is not threading.main_thread():
            return False
        current = signal.getsignal(signal.SIGTERM)
        if current == self._handle:
            return True
        self._previous = current
        signal.signal(signal.SIGTERM, self._handle)
        return True

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self._fired:  # a second SIGTERM: stop waiting, hand it on now
            self._pass_on(signum)
            return
        self._fired = True
        if not callable(self._previous) and self._previous != signal.SIG_IGN:
            # We will stop the main thread with interrupt_main(), which only works while
            # SIGINT has a Python handler -- and a process started in the background by a
            # shell ignores SIGINT. This runs in the main thread, where that can be set.
            signal.signal(signal.SIGINT, signal.default_int_handler)
        threading.Thread(
            target=self._run, args=(signum,), name="shoal-sigterm", daemon=True
        ).start()

    def _run(self, signum: int) -> None:
        try:
            self._prepare()
        finally:
            self._pass_on(signum)

    def _pass_on(self, signum: int) -> None:
        previous = self._previous
        if callable(previous):
            previous(signum, None)  # uvicorn's and gunicorn's handlers only set flags
        elif previous == signal.SIG_IGN:
            return
        else:
            _thread.interrupt_main()  # SIG_DFL: werkzeug and plain scripts stop on this
