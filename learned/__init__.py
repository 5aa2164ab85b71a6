"""Learned baselines for `segint baselines --learned NAME,...` (issue 13).

Each learner is a function ``LearnedInput -> LearnedOutput`` (`learned.base`), fitted on the
training rows, early-stopped on the validation rows, scoring the test rows. ``LEARNED`` maps
each name to ``"module:function"``; `get_learner` imports the module only when asked, so
listing the names costs nothing and a learner's heavy dependencies (lightgbm, torch) load
only when it runs.

Layering: ``learned`` may import ``segint`` (library), ``model``, ``segrec`` and ``training``;
``segint``'s library modules never import ``learned`` (only the CLI command does, lazily).
"""

from __future__ import annotations

import importlib

from learned.base import LearnedInput, LearnedOutput, Learner

LEARNED: dict[str, str] = {
    "hazard-gbdt": "learned.hazard_gbdt:fit_predict",
    "din-slot": "learned.din_slot:fit_predict",
    "sasrec": "learned.sasrec:fit_predict",
    "tpm": "learned.tpm:fit_predict",
    "d2q": "learned.d2q:fit_predict",
}

__all__ = ["LEARNED", "Learner", "LearnedInput", "LearnedOutput", "get_learner"]


def get_learner(name: str) -> Learner:
    """The learner registered under ``name`` (imported now).

    Raises:
        KeyError: an unknown name (the message lists the known ones).
    """
    if name not in LEARNED:
        raise KeyError(f"unknown learned baseline {name!r}; choose from {', '.join(LEARNED)}")
    module, func = LEARNED[name].split(":")
    learner: Learner = getattr(importlib.import_module(module), func)
    return learner
