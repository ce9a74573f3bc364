"""``python -m fiftyone_csl register``: makes a pip-installed fiftyone-csl an
App plugin.

FiftyOne finds plugins as folders holding a ``fiftyone.yml`` under its
plugins directory (``fo.config.plugins_dir``, or ``FIFTYONE_PLUGINS_DIR``).
The installed package is such a folder; ``register`` links it there as
``fiftyone-csl`` (a symbolic link, so upgrades with pip take effect), and
``unregister`` removes that link. Neither touches anything it did not make:
an existing entry of that name that is not a link to this package is
refused.

Usage::

    python -m fiftyone_csl register [--plugins-dir DIR]
    python -m fiftyone_csl unregister [--plugins-dir DIR]
"""

import argparse
import os
import sys

LINK_NAME = "fiftyone-csl"
PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _plugins_dir(given: str | None) -> str:
    if given:
        return os.path.abspath(os.path.expanduser(given))
    if os.environ.get("FIFTYONE_PLUGINS_DIR"):
        return os.path.abspath(os.path.expanduser(os.environ["FIFTYONE_PLUGINS_DIR"]))
    import fiftyone as fo  # lazy: importing FiftyOne is slow; only its config is needed

    return os.path.abspath(os.path.expanduser(fo.config.plugins_dir))


def _ours(link: str) -> bool:
    return os.path.islink(link) and os.path.realpath(link) == os.path.realpath(PACKAGE_DIR)


def register(plugins_dir: str | None = None) -> str:
    """Links this package into FiftyOne's plugins directory; returns the link."""
    root = _plugins_dir(plugins_dir)
    if not os.path.isfile(os.path.join(PACKAGE_DIR, "fiftyone.yml")):
        raise SystemExit(f"{PACKAGE_DIR} has no fiftyone.yml: this installation cannot be a FiftyOne plugin")
    os.makedirs(root, exist_ok=True)
    link = os.path.join(root, LINK_NAME)
    if _ours(link):
        return link
    if os.path.lexists(link):
        raise SystemExit(f"{link} exists and is not a link to {PACKAGE_DIR}; nothing was changed")
    os.symlink(PACKAGE_DIR, link, target_is_directory=True)
    return link


def unregister(plugins_dir: str | None = None) -> str | None:
    """Removes the link :func:`register` made, if it is there."""
    link = os.path.join(_plugins_dir(plugins_dir), LINK_NAME)
    if not os.path.lexists(link):
        return None
    if not _ours(link):
        raise SystemExit(f"{link} is not a link to {PACKAGE_DIR}; nothing was removed")
    os.unlink(link)
    return link


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fiftyone_csl", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("register", "unregister"))
    parser.add_argument("--plugins-dir", help="FiftyOne's plugins directory (default: fo.config.plugins_dir)")
    args = parser.parse_args(argv)
    if args.command == "register":
        print(f"fiftyone-csl: App plugin registered at {register(args.plugins_dir)}")
    else:
        done = unregister(args.plugins_dir)
        print(f"fiftyone-csl: removed {done}" if done else "fiftyone-csl: no plugin link to remove")
    return 0


if __name__ == "__main__":
    sys.exit(main())
