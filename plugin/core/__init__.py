"""The numeric core: arrays and torch only, no FiftyOne.

Label sequences, checkpointed training, replay, scores, flags, the
simulation, error injection into label arrays, metrics and the array entry
point :func:`~fiftyone_csl.plugin.core.arrays.compute_csl_arrays`.
:class:`~fiftyone_csl.plugin.core.errors.CSLError` lives here, importing
nothing, for every layer above.
"""
