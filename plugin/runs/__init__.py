"""A run on a dataset and on disk: the names it owns
(:mod:`~fiftyone_csl.plugin.runs.record`), its folder
(:mod:`~fiftyone_csl.plugin.runs.store`), the locks kept in the database, and
every write to a dataset (:mod:`~fiftyone_csl.plugin.runs.writeback`, with
the one journal of commits and review decisions); reading, copying and
deleting runs (:mod:`~fiftyone_csl.plugin.runs.access`).
"""
