"""Package layout: names that do not clash and import directions that do not circle."""

import os
import subprocess
import sys
from pathlib import Path

import crop


def test_personalization_subpackage_does_not_shadow_the_function():
    # ``crop.personalize`` is the API function; the methods live in ``crop.personalization``.
    # A fresh interpreter, so no earlier import in this session hides a clash. Before the rename the
    # dotted path ``crop.personalize.crop`` resolved to an attribute of the function and failed.
    code = (
        "import crop; import crop.personalization.crop; "
        "assert callable(crop.personalize); assert callable(crop.personalization.crop.fit_crop); print('ok')"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(crop.__file__).parents[1]), *sys.path])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
