"""The fast versions of the reliability suite's server parts, against a real `earmark serve` process:
a short load burst while it ingests, and the attack cases with a short schemathesis run (issue 22)."""

from __future__ import annotations

import pytest

from .conftest import REAL

pytest.importorskip("httpx")


@pytest.mark.parametrize("part", ["load", "attack"])
def test_the_quick_server_part_meets_every_goal(part, tmp_path):
    import importlib

    from earmark_eval.reliability.part import Context

    if not REAL.is_dir():
        pytest.skip("the shared recordings are not beside the checkout")
    result = importlib.import_module(f"earmark_eval.reliability.{part}").run(
        Context(out=tmp_path, audio=REAL, quick=True, progress=lambda msg: None))
    assert result.goals and all(g.met for g in result.goals), [g for g in result.goals if not g.met]
