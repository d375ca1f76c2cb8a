"""Test doubles' start-up hook (tests/doubles/README.md): with COREML_DOUBLE_MACOS set (e.g. 14.5),
this process says it is macOS on Apple silicon, so the Core ML paths of the artifact's scripts run
(against the coremltools double). Does nothing otherwise."""
import os
import platform

_MACOS = os.environ.get("COREML_DOUBLE_MACOS")
if _MACOS:
    platform.system = lambda: "Darwin"
    platform.mac_ver = lambda: (_MACOS, ("", "", ""), "arm64")
