"""The one error the engine raises for bad input or an unusable state:
:class:`CSLError` means nothing was written."""


class CSLError(ValueError):
    """Invalid input to a fiftyone-csl function. Nothing was written."""
