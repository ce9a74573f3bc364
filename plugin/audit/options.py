"""Options of a run that name FiftyOne-side things: the frame features."""

from dataclasses import asdict, dataclass, fields

from ..core.checks import check_bool, check_choice, check_float, check_int
from ..core.errors import CSLError
from .encoders import RUNTIMES
from .features import BACKBONES


@dataclass(frozen=True)
class FeatureSpec:
    """Where frame features come from: a frame-level vector field, or a
    backbone over decoded frames, every ``stride``-th frame or ``fps``
    frames per second of video, run by ``backbone_runtime``."""

    embeddings_field: str | None = None
    backbone: str | None = "efficientnet-lite0"
    backbone_weights: str | None = None
    stride: int = 1
    fps: float | None = None
    backbone_runtime: str = "auto"
    sparse_labels: bool = False

    @classmethod
    def make(
        cls, embeddings_field=None, backbone="efficientnet-lite0", backbone_weights=None, stride=1, fps=None,
        backbone_runtime="auto", sparse_labels=False,
    ):  # fmt: skip

        stride = check_int("stride", stride, 1)
        if fps is not None:
            fps = check_float("fps", fps, positive=True)
            if stride != 1:
                raise CSLError(f"give stride or fps, not both (stride={stride}, fps={fps})")
        check_choice("backbone_runtime", backbone_runtime, RUNTIMES)
        check_bool("sparse_labels", sparse_labels)
        if embeddings_field is not None:
            if not isinstance(embeddings_field, str) or not embeddings_field:
                raise CSLError(f"embeddings_field must be a field name; got {embeddings_field!r}")
            name = embeddings_field.removeprefix("frames.")
            return cls(name, None, None, stride, fps, backbone_runtime, sparse_labels)
        check_choice("backbone", backbone, BACKBONES)
        if backbone_weights is not None and not isinstance(backbone_weights, str):
            raise CSLError(f"backbone_weights must be a file path; got {backbone_weights!r}")
        return cls(None, backbone, backbone_weights, stride, fps, backbone_runtime, sparse_labels)

    def stride_for(self, frame_rate: float | None) -> int:
        """The frame stride of a video of ``frame_rate`` frames per second:
        ``stride``, or with ``fps`` the whole number of frames nearest to
        ``frame_rate / fps`` (at least 1)."""
        if self.fps is None:
            return self.stride
        if not frame_rate or frame_rate <= 0:
            raise CSLError("fps needs each video's frame rate, which could not be read")
        return max(1, int(round(frame_rate / self.fps)))

    @classmethod
    def from_dict(cls, d: dict) -> "FeatureSpec":
        defaults = cls()
        return cls(**{f.name: d.get(f.name, getattr(defaults, f.name)) for f in fields(cls)})

    def to_dict(self) -> dict:
        return asdict(self)
