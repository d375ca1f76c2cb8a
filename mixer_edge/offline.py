"""No network traffic from mixer-edge or its dependencies unless the user asks for it.

mixer-edge itself never opens a connection (no model hubs, no data downloads). Two of its
dependencies would: OpenVINO's model conversion (`ov.convert_model`) and NNCF send usage events to
Google Analytics through `openvino_telemetry`, which counts a missing consent file as consent for
them (`enable_opt_in_dialog=False`) and posts from a forked child process. An OpenVINO export was
seen doing so, and a Ctrl-C then printed that child's traceback. Customers on air-gapped or
regulated networks must be able to rely on no connection at all.

So every mixer-edge process declines the consent check in-process, before those packages ask:
nothing is written to the user's consent file (~/intel/openvino_telemetry), so their own choice
for other tools stays theirs. MIXER_EDGE_TELEMETRY=1 leaves the dependencies as the user's consent
file configures them.
"""
from __future__ import annotations

import importlib.util
import os

ENV = "MIXER_EDGE_TELEMETRY"


def no_telemetry() -> bool:
    """Decline openvino_telemetry's consent check for this process (idempotent); False when the user
    asked for the dependencies' telemetry or the package is not installed."""
    if os.environ.get(ENV) == "1" or importlib.util.find_spec("openvino_telemetry") is None:
        return False
    from openvino_telemetry.utils import opt_in_checker

    def declined(self, enable_opt_in_dialog=None, disable_in_ci=False):
        return opt_in_checker.ConsentCheckResult.DECLINED

    opt_in_checker.OptInChecker.check = declined
    return True
