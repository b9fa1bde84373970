"""The fault-injection script in its short form: a kill of `elt load`, a kill of `elt run`,
a kill of the server mid-run, and every bad input; the full form runs by hand
(`python -m tests.fault_injection`)."""

from __future__ import annotations

import pytest

from tests.fault_injection import BAD_INPUTS, run_faults

pytestmark = pytest.mark.slow


def test_every_injected_fault_is_survived_and_every_bad_input_refused_in_one_line():
    lines: list[str] = []
    summary = run_faults(kills=2, server_kills=1, scale=0.002, seed=3, echo=lines.append)
    assert summary["failures"] == [], "\n".join(lines)
    assert summary["faults"] == 3 and summary["recovered"] == 3
    assert summary["bad_inputs_ok"] == len(BAD_INPUTS)
