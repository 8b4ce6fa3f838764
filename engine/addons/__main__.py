"""``python -m engine.addons download [lora|reference|upscale|describe ...]``: fetch the add-ons' weights.

``python -m engine.addons check`` prints one line per configured add-on that cannot be used.
Errors are one line on stderr and exit status 1, never a traceback.
"""

from __future__ import annotations

import argparse
import sys

from ..settings_base import SettingsError
from . import ADDONS, addon_problems, available, download
from .settings import AddonMissing, AddonSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.addons", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    fetch = sub.add_parser("download", help="fetch the weights of the configured add-ons (safetensors only)")
    fetch.add_argument("addons", nargs="*", metavar="ADDON",
                       help=f"some of: {', '.join(ADDONS)} (default: all configured)")
    sub.add_parser("check", help="say which configured add-ons cannot be used, and why")
    args = parser.parse_args(argv)
    try:
        settings = AddonSettings.from_env()
        if args.command == "download":
            for addon, result in download(settings, list(args.addons) or None).items():
                print(f"{addon}: {result if result else 'nothing to fetch (off, local or tiny)'}")
            return 0
        for addon, line in addon_problems(settings).items():
            print(f"{addon}: {line}")
        print(f"available: {', '.join(available(settings)) or 'none'}")
        return 0
    except (AddonMissing, SettingsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
