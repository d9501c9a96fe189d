"""`edgescaler demo` is the README's first command: it must scale out, and not on bad data."""

from __future__ import annotations

import re

from edgescaler import demo


def test_demo_scales_out_and_holds_on_nan() -> None:
    lines: list[str] = []
    assert demo.main(out=lines.append) == 0
    text = "\n".join(lines)
    scaled = re.findall(r"scaled \+(\d) task=(T-[0-9a-f]+)", text)
    assert len(scaled) >= 2, text
    assert "metrics_unavailable" in text and "nan" in text  # the NaN step is not acted on
    assert "cooling_down" in text
    assert f"ScaleOutCluster calls seen by the emulator: {len(scaled)}" in text
    for _, task in scaled:
        assert f"task={task} status=" in text  # recorded in the store with its task id
    assert "demo finished: scale-outs recorded with their task ids" in text
