"""Hatchling build hook: Uppy's built files into the package, from npm, as web/package-lock.json pins them.

Runs for the wheel and for editable installs (``pip install -e``). ``npm ci`` runs only when
web/node_modules does not match the lock file yet. The copied files are gitignored and reach the
wheel as hatch ``artifacts`` (pyproject.toml). Without npm a wheel build fails (a wheel without the
page would look fine and serve a 503); an editable install goes on without the page and says so,
so that a checkout still serves uploads on a machine without Node.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

#: (file in node_modules, file in the package)
FILES = (
    ("uppy/dist/uppy.min.js", "uppy.min.js"),
    ("uppy/dist/uppy.min.css", "uppy.min.css"),
)
TARGET = Path("src/pytusd/page/static/uppy")


class UppyHook(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        root = Path(self.root)
        web = root / "web"
        try:
            modules = npm_ci(web)
        except RuntimeError as exc:
            if version != "editable":
                raise
            print(f"pytusd build: {exc}; installing without the upload page", file=sys.stderr)
            return
        target = root / TARGET
        target.mkdir(parents=True, exist_ok=True)
        for source, name in FILES:
            shutil.copyfile(modules / source, target / name)


def npm_ci(web: Path) -> Path:
    """web/node_modules as the lock file pins it; RuntimeError with the reason if npm cannot make it."""
    modules = web / "node_modules"
    stamp = modules / ".pytusd-lock-sha256"
    digest = hashlib.sha256((web / "package.json").read_bytes() + (web / "package-lock.json").read_bytes())
    want = digest.hexdigest()
    if stamp.is_file() and stamp.read_text().strip() == want and all((modules / s).is_file() for s, _ in FILES):
        return modules
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError(
            "npm is not installed: the upload page needs Uppy's files from the npm registry at build time "
            "(install Node.js and npm, e.g. apt-get install nodejs npm; the built wheel needs no Node)"
        )
    result = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=web, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise RuntimeError(f"npm ci failed in {web}:\n{result.stdout}{result.stderr}")
    stamp.write_text(want + "\n")
    return modules
