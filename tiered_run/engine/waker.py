"""A thread that sleeps in poll(2) on the kernel's news of a run (backends.news) and wakes
the monitor when there is some, so an OOM kill is acted on at once however long the
monitor sleeps between samples."""

from __future__ import annotations

import os
import threading

from tiered_run.backends.news import KernelNews


class Waker:
    def __init__(self, news: KernelNews, wake: threading.Event) -> None:
        """Takes `news`, and closes it in `stop`."""
        self._news = news
        self._wake = wake
        self._stop_read, self._stop_write = os.pipe2(os.O_CLOEXEC)
        self._thread = threading.Thread(target=self._run, name="tiered-run-news", daemon=True)
        self._thread.start()

    @classmethod
    def started(cls, news: KernelNews | None, wake: threading.Event) -> Waker | None:
        """A waker on `news`; None (and `news` closed) where there is nothing to wait on."""
        if news:
            return cls(news, wake)
        if news is not None:
            news.close()
        return None

    def _run(self) -> None:
        try:
            while self._news.wait(self._stop_read):
                self._wake.set()
        except OSError:
            self._wake.set()  # no more news: the monitor samples at its interval again

    def stop(self) -> None:
        """End the thread and wait for it; safe to call twice."""
        if self._stop_write < 0:
            return
        os.write(self._stop_write, b"x")
        self._thread.join()
        self._news.close()
        os.close(self._stop_read)
        os.close(self._stop_write)
        self._stop_read = self._stop_write = -1
