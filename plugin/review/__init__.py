"""After an audit: suspect segments as rows
(:mod:`~fiftyone_csl.plugin.review.segments`), reviewers' decisions and
their undo, the budgeted frame queue (APU), the active labelling loop, and
reports.
"""
