"""The long fuzz run: ``CONSENT_FUZZ_EXAMPLES=N`` loads the hypothesis profile "fuzz" (N examples per
target, no deadline, fresh random inputs each run). Without it the fuzz targets run with the profile
that tests/conftest.py loads, as part of the normal suite (``make fuzz`` sets it; see the README).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

FUZZ_EXAMPLES = int(os.environ.get("CONSENT_FUZZ_EXAMPLES", "0") or "0")

settings.register_profile(
    "fuzz",
    max_examples=max(FUZZ_EXAMPLES, 1),
    deadline=None,
    derandomize=False,
    # Fresh inputs only: the example database would replay the known failures first and stop there.
    # A failure prints its example and a @reproduce_failure blob instead.
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
if FUZZ_EXAMPLES > 0:
    settings.load_profile("fuzz")
