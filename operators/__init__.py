"""FiftyOne operators and the CSL timeline panel: thin wrappers, one engine
call each."""

from .audit import AuditVideoLabels
from .decide import ReviewSegment, UndoReview
from .delete import DeleteRun
from .evaluate import EvaluateDetection
from .fanout import RunAuditPart
from .features import ComputeFrameFeatures
from .flag import FlagErrors
from .inject import InjectErrors
from .labelling import LabelActively
from .panel import CSLTimelinePanel
from .refresh import RefreshScores
from .replay import ReplayCheckpoints
from .review import SelectFramesForReview
from .train import TrainCheckpoints

OPERATORS = [
    AuditVideoLabels,
    ComputeFrameFeatures,
    TrainCheckpoints,
    ReplayCheckpoints,
    FlagErrors,
    RefreshScores,
    EvaluateDetection,
    InjectErrors,
    SelectFramesForReview,
    LabelActively,
    ReviewSegment,
    UndoReview,
    DeleteRun,
    RunAuditPart,
    CSLTimelinePanel,
]


def register_operators(p):
    for operator in OPERATORS:
        p.register(operator)
