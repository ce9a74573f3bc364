"""FiftyOne operators: thin wrappers, one engine call each."""

from .audit import AuditVideoLabels

OPERATORS = [AuditVideoLabels]


def register_operators(p):
    for operator in OPERATORS:
        p.register(operator)
