"""scripts/mutation.sh refuses a part it does not know before it sets anything up."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_an_unknown_part_is_refused_with_the_parts_there_are() -> None:
    result = subprocess.run(["bash", str(ROOT / "scripts" / "mutation.sh"), "tilling"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.splitlines() == ["error: unknown part 'tilling'",
                                          "fix: name one of: gate contract tiling segmenter export"]
