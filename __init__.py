"""fiftyone-csl: find wrong frame labels in annotated videos from training
dynamics (Cumulative Sample Loss).

This directory is both a FiftyOne plugin (see ``fiftyone.yml``; FiftyOne calls
:func:`register`) and the Python package ``fiftyone_csl``::

    import fiftyone_csl as fcsl

    results = fcsl.compute_csl(dataset, "phase")
    print(results.top_segments(5))

The SDK is :mod:`fiftyone_csl.plugin.api`, re-exported here.
"""

# pytest collects the repository root as a package when it runs the tests
# below it; if the checkout's folder name is not an identifier it imports this
# file with no parent package, and the SDK (imported as fiftyone_csl by the
# tests) is not needed there.
if __package__:
    from .plugin.api import *  # noqa: F403 (the SDK: plugin/api.py lists it)
    from .plugin.api import __all__ as _SDK

__version__ = "0.1.0"


def register(p):
    # FiftyOne's operator classes load only when FiftyOne loads the plugin
    from .operators import register_operators

    register_operators(p)


__all__ = [*_SDK, "register"] if __package__ else ["register"]
