"""Imported by every Python process of a test job (on PYTHONPATH): makes a process that opens a chosen image
die (a poison image) or hang (a stuck worker), as a crashing or deadlocked decoder would.

FCN_TEST_KILL_ON_OPEN / FCN_TEST_HANG_ON_OPEN name the image; a hanging process first creates the file named by
FCN_TEST_HANG_MARK, so the test knows a worker is stuck without guessing a time.
"""

import os
import signal
import sys
import threading


def _on_open(event, args):
    if event != "open" or not args or not isinstance(args[0], (str, bytes, os.PathLike)):
        return
    path = os.fsdecode(args[0])
    kill, hang = os.environ.get("FCN_TEST_KILL_ON_OPEN"), os.environ.get("FCN_TEST_HANG_ON_OPEN")
    if kill and path.endswith(os.sep + kill):
        os.kill(os.getpid(), signal.SIGKILL)
    if hang and path.endswith(os.sep + hang):
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})  # as a call stuck in native code
        with open(os.environ["FCN_TEST_HANG_MARK"], "a"):
            pass
        threading.Event().wait()


if os.environ.get("FCN_TEST_KILL_ON_OPEN") or os.environ.get("FCN_TEST_HANG_ON_OPEN"):
    sys.addaudithook(_on_open)
