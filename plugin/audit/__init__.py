"""The steps that read FiftyOne collections: what is checked before any work
(:mod:`~fiftyone_csl.plugin.audit.plan`), labels and features
(:mod:`~fiftyone_csl.plugin.audit.prepare`), the audit itself
(:mod:`~fiftyone_csl.plugin.audit.steps`), replay and re-scoring, the fan-out
over delegated workers, error injection, evaluation and the demo dataset.
"""
