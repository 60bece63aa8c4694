"""One OpenVINO ``Core`` for the whole process, so that no CPU plugin is ever unloaded while the process runs.

OpenVINO's CPU plugin (2026.4; added for AMX) gives the thread that loads it a signal stack of its
own and, when the ``Core`` that loaded it goes, puts back the stack it found. Two Cores dropped in
the order they were made (a model reloaded: load the new one, drop the old one) put back the first
plugin's stack, already unmapped: the next signal with a Python handler on that thread (Ctrl-C,
SIGTERM, a DataLoader worker's exit) then kills the process with a segmentation fault
(two anomalib ``OpenVINOInferencer`` s show it; ``tests/deploy/test_deploy.py`` checks ours). A Core
that lives as long as the process never puts a stack back.
"""

from __future__ import annotations

import functools


@functools.cache
def shared_core():
    """The process's ``openvino.Core``: every compile and device query of this package goes through it."""
    import openvino as ov

    return ov.Core()
