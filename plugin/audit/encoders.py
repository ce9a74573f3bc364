"""Frame encoders: a pretrained backbone run by the fastest runtime at hand.

An encoder turns a batch of decoded frames ``(N, H, W, 3)`` uint8 RGB into
features ``(N, D)`` float32. Three runtimes can run the same backbone:

- ``"torch"``: PyTorch, in inference mode with channels-last memory and, on
  the CPU, micro-batches of 4 frames, float32 (on CUDA too);
- ``"openvino"``: OpenVINO's CPU plugin (``pip install fiftyone-csl[fast]``),
  the model converted from the torch module in memory, float32 arithmetic,
  parallel requests of 4 frames;
- ``"onnxruntime"``: ONNX Runtime's CPU provider on a model exported once
  per process to a temporary file.

``runtime="auto"`` takes OpenVINO, then ONNX Runtime, when installed and the
device is the CPU, else torch: ``benchmarks/backbone.py`` measured OpenVINO
as the fastest path whose features match torch float32 within a cosine of
0.999 on every frame (5.4x the earlier torch path here, ONNX Runtime 5.0x).
bfloat16 broke that bound (0.994), so every runtime computes in float32.
"""

import hashlib
import json
import logging
import os
import shutil
import stat
import tempfile
import warnings
from importlib.util import find_spec

import numpy as np
import torch

from ...models.backbones import BACKBONES, build_backbone
from ..core.errors import CSLError
from ..core.utils import atomic_write_json, sha256_file

logger = logging.getLogger(__name__)

RUNTIMES = ("auto", "torch", "openvino", "onnxruntime")
AUTO_ORDER = ("openvino", "onnxruntime")  # fastest first, as measured by benchmarks/backbone.py


def available_runtimes() -> list:
    """The runtimes installed here, ``"torch"`` first."""
    return ["torch"] + [name for name in AUTO_ORDER if find_spec(name) is not None]


def resolve_runtime(runtime: str, device) -> str:
    """The runtime ``runtime`` means on ``device``; raises :class:`CSLError`
    if it is not installed or cannot run there."""
    if runtime not in RUNTIMES:
        raise CSLError(f"unknown backbone_runtime {runtime!r}; choose one of {list(RUNTIMES)}")
    on_cpu = torch.device(device).type == "cpu"
    if runtime == "auto":
        if on_cpu:
            for name in AUTO_ORDER:
                if find_spec(name) is not None:
                    return name
        return "torch"
    if runtime != "torch":
        if not on_cpu:
            raise CSLError(f"backbone_runtime {runtime!r} runs on the CPU; use 'torch' on {device}")
        if find_spec(runtime) is None:
            raise CSLError(
                f"backbone_runtime {runtime!r} is not installed: pip install {runtime} "
                "(or fiftyone-csl[fast]), or use 'torch'"
            )
    return runtime


def _split(images: np.ndarray, size: int) -> list:
    return [images[i : i + size] for i in range(0, len(images), size)]


class TorchEncoder:
    """The backbone in PyTorch: inference mode, channels-last inputs, and on
    the CPU micro-batches of ``micro_batch`` frames (4 ran about 3x faster
    than 32 here, presumably because a small batch's activations stay in
    cache);
    ``precision="bf16"`` runs it under bfloat16 autocast."""

    def __init__(
        self, model: torch.nn.Module, device, precision: str = "fp32", channels_last: bool = True,
        micro_batch: int | None = None,
    ):  # fmt: skip
        self.device = torch.device(device)
        self.channels_last = channels_last
        self.micro_batch = micro_batch or (4 if self.device.type == "cpu" else 1 << 30)
        self.model = model.to(self.device).eval()
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
        self.autocast = None if dtype is None else (self.device.type, dtype)

    def _encode(self, images: np.ndarray) -> np.ndarray:
        # images: (N, H, W, 3) uint8 -> (N, 3, H, W), channels-last in memory
        x = torch.from_numpy(images).to(self.device).permute(0, 3, 1, 2)
        x = x.contiguous(memory_format=torch.channels_last) if self.channels_last else x.contiguous()
        with torch.inference_mode():
            if self.autocast is None:
                out = self.model(x)
            else:
                with torch.autocast(*self.autocast):
                    out = self.model(x)
        return out.float().cpu().numpy()

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return np.concatenate([self._encode(part) for part in _split(images, self.micro_batch)])


class OpenVINOEncoder:
    """The backbone converted to OpenVINO (input: uint8 NCHW, any batch),
    compiled for throughput: a batch is cut into micro-batches of
    ``micro_batch`` frames that the CPU plugin's streams run side by side.
    With ``cache_dir`` the converted model is kept there and read back by
    later processes (:func:`converted_model`)."""

    def __init__(
        self, model: torch.nn.Module, image_size: int, precision: str = "fp32", micro_batch: int = 4,
        hint: str = "THROUGHPUT", cache_dir: str | None = None,
    ):  # fmt: skip
        import openvino as ov  # optional: pip install fiftyone-csl[fast]

        core = ov.Core()
        converted, self.cached = converted_model(ov, core, model, image_size, cache_dir)
        config = {"INFERENCE_PRECISION_HINT": {"fp32": "f32", "bf16": "bf16"}[precision], "PERFORMANCE_HINT": hint}
        compiled = core.compile_model(converted, "CPU", config)
        self.micro_batch = micro_batch
        self.results = {}
        self.queue = ov.AsyncInferQueue(compiled, compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        self.queue.set_callback(self._done)

    def _done(self, request, index):
        self.results[index] = request.get_output_tensor(0).data.copy()

    def __call__(self, images: np.ndarray) -> np.ndarray:
        parts = _split(np.ascontiguousarray(images.transpose(0, 3, 1, 2)), self.micro_batch)
        self.results.clear()
        for index, part in enumerate(parts):
            self.queue.start_async({0: part}, index)
        self.queue.wait_all()
        return np.concatenate([self.results.pop(i) for i in range(len(parts))]).astype(np.float32, copy=False)


ENCODER_CACHE_FORMAT = 1
ENCODER_META = "encoder.json"
MODEL_FILES = ("model.xml", "model.bin")


def weights_digest(model: torch.nn.Module) -> str:
    """A sha256 of a module's state (names, shapes, dtypes and values)."""
    digest = hashlib.sha256()
    for name, value in sorted(model.state_dict().items()):
        digest.update(f"{name}:{tuple(value.shape)}:{value.dtype}".encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _regular(path: str) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _cached_files_ok(folder: str, key: str) -> bool:
    """The folder is a real one (no symbolic link on the way, none inside)
    whose ``encoder.json`` names ``key`` and the sha256 of both model files."""
    if os.path.islink(folder) or os.path.islink(os.path.dirname(folder)) or not os.path.isdir(folder):
        return False
    meta_path = os.path.join(folder, ENCODER_META)
    if not _regular(meta_path):
        return False
    try:
        with open(meta_path) as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return False
    files = meta.get("files") or {}
    if meta.get("key") != key or sorted(files) != sorted(MODEL_FILES):
        return False
    return all(_regular(os.path.join(folder, n)) and sha256_file(os.path.join(folder, n)) == files[n] for n in files)


def converted_model(ov, core, model: torch.nn.Module, image_size: int, cache_dir: str | None):
    """The backbone as an OpenVINO model, and whether it came from the cache.

    With ``cache_dir``, the converted model lives in
    ``<cache_dir>/encoders/openvino-<key>/``, keyed by the weights' sha256,
    the input size and the versions of OpenVINO, torch and this format. A
    folder is used only when its files match the sha256 recorded with them;
    it is written beside and renamed into place, so processes starting at
    once (workers on one machine) never read half a model; a folder that
    fails its check, or a symbolic link where it should be, is left alone and
    the model is converted in memory."""
    key_fields = dict(weights=weights_digest(model), size=image_size, openvino=ov.__version__,
                      torch=torch.__version__, format=ENCODER_CACHE_FORMAT)  # fmt: skip
    key = hashlib.sha256(json.dumps(key_fields, sort_keys=True).encode()).hexdigest()[:24]
    folder = os.path.join(cache_dir, "encoders", f"openvino-{key}") if cache_dir else None
    if folder is not None and _cached_files_ok(folder, key):
        return core.read_model(os.path.join(folder, "model.xml")), True
    example = torch.zeros(1, 3, image_size, image_size, dtype=torch.uint8)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # the converter traces with torch.jit
        converted = ov.convert_model(
            model.eval(), example_input=example, input=[ov.PartialShape([-1, 3, image_size, image_size])]
        )
    if folder is None:
        return converted, False
    if os.path.lexists(folder) or os.path.islink(os.path.dirname(folder)):  # not made by this call: not touched
        logger.warning("encoder cache %s fails its check (or is a link); the model is converted in memory", folder)
        return converted, False
    staging = None
    try:
        os.makedirs(os.path.dirname(folder), exist_ok=True)
        staging = tempfile.mkdtemp(prefix=".openvino-", dir=os.path.dirname(folder))
        ov.save_model(converted, os.path.join(staging, "model.xml"), compress_to_fp16=False)
        files = {n: sha256_file(os.path.join(staging, n)) for n in MODEL_FILES}
        atomic_write_json(os.path.join(staging, ENCODER_META), dict(key=key, files=files, **key_fields))
        os.rename(staging, folder)  # fails if another process got there first: theirs is as good
        staging = None
    except OSError as e:  # a read-only or full cache: the encoder still works
        if not os.path.isdir(folder):
            logger.warning("could not keep the converted encoder under %s: %s", cache_dir, e)
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    return converted, False


class ONNXEncoder:
    """The backbone exported to ONNX and run by ONNX Runtime's CPU provider,
    in micro-batches of ``micro_batch`` frames."""

    def __init__(self, model: torch.nn.Module, image_size: int, micro_batch: int = 8):
        import onnxruntime as ort  # optional: pip install fiftyone-csl[onnx]

        example = torch.zeros(1, 3, image_size, image_size, dtype=torch.uint8)
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "backbone.onnx")
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the exporter's notes on constant folding
                torch.onnx.export(
                    model.eval(), (example,), path, input_names=["images"], output_names=["features"],
                    dynamic_axes={"images": {0: "n"}, "features": {0: "n"}}, dynamo=False,
                )  # fmt: skip
            self.session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        self.micro_batch = micro_batch

    def __call__(self, images: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(images.transpose(0, 3, 1, 2))
        parts = [self.session.run(None, {"images": part})[0] for part in _split(x, self.micro_batch)]
        return np.concatenate(parts).astype(np.float32, copy=False)


def build_encoder(backbone: str, weights_path=None, device="cpu", runtime: str = "auto", cache_dir=None):
    """A pretrained ``backbone`` ready to encode frames, on the runtime that
    ``runtime`` resolves to (:func:`resolve_runtime`); ``cache_dir`` keeps
    OpenVINO's converted model for the next process.

    Returns ``(encoder, runtime_name)``: ``encoder(images (N, H, W, 3) uint8)
    -> features (N, D) float32``.
    """
    device = torch.device(device)
    name = resolve_runtime(runtime, device)
    model = build_backbone(backbone, weights_path)
    size = BACKBONES[backbone].image_size
    if name == "openvino":
        return OpenVINOEncoder(model, size, cache_dir=cache_dir), name
    if name == "onnxruntime":
        return ONNXEncoder(model, size), name
    return TorchEncoder(model, device), name  # float32 everywhere: reduced precision was not measured to hold


class LazyEncoder:
    """:func:`build_encoder`'s encoder, built on the first call (a run whose
    features are all cached never loads the backbone); ``runtime`` is known
    at once."""

    def __init__(self, backbone: str, weights_path=None, device="cpu", runtime: str = "auto", cache_dir=None):
        self.args = (backbone, weights_path, torch.device(device))
        self.runtime = resolve_runtime(runtime, self.args[2])
        self.cache_dir = cache_dir
        self.encoder = None

    def build(self) -> None:
        if self.encoder is None:
            self.encoder, _ = build_encoder(*self.args, runtime=self.runtime, cache_dir=self.cache_dir)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        self.build()
        return self.encoder(images)
