"""The fiftyone-csl engine, in layers that import downward only:
:mod:`~fiftyone_csl.plugin.core` -> :mod:`~fiftyone_csl.plugin.runs` ->
:mod:`~fiftyone_csl.plugin.audit` -> :mod:`~fiftyone_csl.plugin.review` ->
:mod:`~fiftyone_csl.plugin.api` (the public SDK). No operator or App code
lives here."""
