"""Kinship model v2: a head over the identity model's feature map, learned from FIW families.

    FIW folder --family_split--> train (65%) | validation (15%) | test (20%)   by family, salted hash
    every crop, 3 views (crop, mirror, augmented) --identity trunk--> conv_13 maps (head "block", the
                         default) or bn1 maps (head "layer") + fc1, cached (resumable)
    train families:      SFace's last block ("block" only) and the identity layer (SFace pre_fc1 with fc1's
                         batch norm folded) fine-tuned with a contrastive loss (NT-Xent) over batches of kin
                         pairs from distinct families, dropout on the feature map; the layer's change is then
                         cut to rank r (a few directions) -> head.onnx
    validation families: per-relation calibration (kinship cosine + identity cosine -> log LR), thresholds
    test families:       the figures written into the manifest (never used to fit or choose anything)

Why this shape (measured; docs/kinship.md has the figures):
- Starting from the identity layer keeps what identifies a person, which is most of what
  relatives share; the learned correction adds what relatives share beyond it.
- Batches hold at most one pair per family, so no in-batch "negative" is secretly kin.
- Same-photo positives (two faces cut from one group picture) are left out: they teach
  lighting and camera, not kinship.
- Rank 16 of the change keeps the AUC of the full fine-tuned layer (within 0.002 on
  validation families) at 1.6 MB instead of 26 MB.

Needs PyTorch (the `train` extra); serving needs only onnxruntime.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime
from onnx import TensorProto, helper, numpy_helper

from kinship.artifacts import Calibration, RelationCalibration
from kinship.kinship_head import (
    BLOCK_BORROWED,
    BLOCK_FEATURE_MAP,
    IDENTITY_FEATURE_MAP,
    IDENTITY_OUTPUT,
    block_head_model,
    head_model,
)

from . import metrics
from .features import FACE_SIZE, augment
from .fiw import FiwDataset, ImagePair, family_split, image_pairs
from .network import fold_constants
from .pipeline import fit_relation, make_calibration

Report = Callable[[str], None]
Progress = Callable[[int, int], None]

#: FIW relation code -> the calibrations it feeds, most specific first (names as the ranker asks for them).
CODE_CALIBRATIONS = {
    "fd": ("father-daughter", "father"),
    "fs": ("father-son", "father"),
    "md": ("mother-daughter", "mother"),
    "ms": ("mother-son", "mother"),
    "bb": ("brother-brother", "brother", "sibling"),
    "ss": ("sister-sister", "sister", "sibling"),
    "sibs": ("brother-sister", "brother", "sister", "sibling"),
    "gfgd": ("grandfather-granddaughter", "grandfather"),
    "gfgs": ("grandfather-grandson", "grandfather"),
    "gmgd": ("grandmother-granddaughter", "grandmother"),
    "gmgs": ("grandmother-grandson", "grandmother"),
}
#: The relations of the verification benchmark (FIW's seven parent-child and sibling codes).
CORE_CODES = ("fd", "fs", "md", "ms", "bb", "ss", "sibs")
#: A calibration is fitted only from at least this many kin and as many non-kin pairs...
MIN_CALIBRATION_PAIRS = 20
#: ...except the ones every artifact must have (the ranker's last fallbacks), fitted from whatever there is.
REQUIRED_NAMES = ("father", "mother", "sibling")
LICENCE = (
    "Research use only. The weights were learned from FIW (Families In the Wild, RFIW 2020 training families: "
    "non-commercial research and educational use only, no warranty from Northeastern University) and inherit "
    "its terms; the identity model they read is OpenCV's SFace (Apache-2.0)."
)


@dataclass(frozen=True)
class HeadParams:
    rank: int = 16
    epochs: int = 35
    batch: int = 256
    learning_rate: float = 1e-4
    temperature: float = 0.1
    dropout: float = 0.5
    views: int = 3  # crop, mirror, and views - 2 augmented
    pairs_per_member_pair: int = 4  # image pairs per member pair for calibration and measurement
    seed: int = 0
    threads: int = 2
    #: "layer": only the identity layer is fine-tuned, over the cached bn1 map (the shipped head);
    #: "block": SFace's last block (conv_14) is fine-tuned too, over the cached conv_13 map.
    head: str = "layer"
    block_learning_rate: float = 1e-4
    block_input_dropout: float = 0.2
    #: "family": a batch is any kin pairs of distinct families; "relation": every batch holds pairs of one
    #: relation code (father-son, sisters, ...), so its negatives are other families' fathers and sons: the
    #: hard negatives a search faces (a candidate of the relative's relation, age and sex), not easy ones.
    batching: str = "family"

    def as_dict(self) -> dict:
        return asdict(self)


# -- the identity model's parts --------------------------------------------------------------------


def identity_layer(identity: onnx.ModelProto) -> tuple[np.ndarray, np.ndarray]:
    """SFace's identity layer as one affine map: fc1 = flatten(bn1) @ W.T + b (pre_fc1 Gemm, fc1 batch norm folded).

    `identity` must have its constants folded (network.fold_constants). ValueError when the
    graph does not end bn1 -> Flatten -> Gemm -> BatchNormalization -> fc1.
    """
    inits = {i.name: numpy_helper.to_array(i) for i in identity.graph.initializer}
    by_output = {o: n for n in identity.graph.node for o in n.output}
    norm = by_output.get(IDENTITY_OUTPUT)
    gemm = by_output.get(norm.input[0]) if norm is not None else None
    flatten = by_output.get(gemm.input[0]) if gemm is not None else None
    if (
        norm is None
        or norm.op_type != "BatchNormalization"
        or gemm is None
        or gemm.op_type != "Gemm"
        or flatten is None
        or flatten.op_type != "Flatten"
        or flatten.input[0] != IDENTITY_FEATURE_MAP
    ):
        raise ValueError("the identity model does not end bn1 -> Flatten -> Gemm -> BatchNormalization -> fc1 (SFace)")
    attributes = {a.name: a for a in gemm.attribute}
    weight = inits[gemm.input[1]].astype(np.float64)
    if "transB" not in attributes or attributes["transB"].i != 1:
        weight = weight.T
    bias = inits[gemm.input[2]].astype(np.float64)
    gamma, beta, mean, var = (inits[name].astype(np.float64) for name in norm.input[1:5])
    epsilon = next((a.f for a in norm.attribute if a.name == "epsilon"), 1e-5)
    scale = gamma / np.sqrt(var + epsilon)
    return (weight * scale[:, None]).astype(np.float32), ((bias - mean) * scale + beta).astype(np.float32)


def _trunk_with_feature_map(identity_bytes: bytes, feature_map: str = IDENTITY_FEATURE_MAP) -> bytes:
    model = onnx.ModelProto.FromString(identity_bytes)
    model.graph.output.append(helper.make_tensor_value_info(feature_map, TensorProto.FLOAT, ["N", 1024, 7, 7]))
    return model.SerializeToString()


def last_block(identity: onnx.ModelProto) -> dict[str, np.ndarray]:
    """SFace's last block (conv_14 depthwise and pointwise, batch norms folded; PReLU slopes; bn1 as scale and
    shift) from a constant-folded graph, in kinship_head.BLOCK_SHAPES' layout."""
    inits = {i.name: numpy_helper.to_array(i) for i in identity.graph.initializer}
    by_output = {o: n for n in identity.graph.node for o in n.output}
    try:
        bn1 = by_output[IDENTITY_FEATURE_MAP]
        pw_act = by_output[bn1.input[0]]
        pw = by_output[pw_act.input[0]]
        dw_act = by_output[pw.input[0]]
        dw = by_output[dw_act.input[0]]
    except KeyError as exc:
        raise ValueError(f"the identity model has no SFace last block before bn1 ({exc})") from None
    if (bn1.op_type, pw_act.op_type, pw.op_type, dw_act.op_type, dw.op_type) != (
        "BatchNormalization",
        "PRelu",
        "Conv",
        "PRelu",
        "Conv",
    ) or dw.input[0] != BLOCK_FEATURE_MAP:
        raise ValueError(
            f"the identity model does not end {BLOCK_FEATURE_MAP} -> Conv -> PRelu -> Conv -> PRelu -> bn1"
        )
    gamma, beta, mean, var = (inits[n].astype(np.float64) for n in bn1.input[1:5])
    epsilon = next((a.f for a in bn1.attribute if a.name == "epsilon"), 1e-5)
    scale = gamma / np.sqrt(var + epsilon)
    f32 = lambda name: inits[name].astype(np.float32)  # noqa: E731
    return {
        "dw_weight": f32(dw.input[1]),
        "dw_bias": f32(dw.input[2]),
        "dw_slope": f32(dw_act.input[1]).reshape(-1, 1, 1),
        "pw_weight": f32(pw.input[1]),
        "pw_bias": f32(pw.input[2]),
        "pw_slope": f32(pw_act.input[1]).reshape(-1, 1, 1),
        "bn_scale": scale.astype(np.float32).reshape(1, -1, 1, 1),
        "bn_shift": (beta - mean * scale).astype(np.float32).reshape(1, -1, 1, 1),
    }


# -- the feature-map cache --------------------------------------------------------------------------


@dataclass
class FeatureCache:
    """bn1 maps (images, views, 1024, 7, 7) float16 and raw fc1 (images, views, 128) of every crop, on disk."""

    folder: Path
    maps: np.ndarray
    identity: np.ndarray  # raw fc1 (not normalised)


def _read_crop(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"{path} cannot be decoded as an image")
    if image.shape[:2] != (FACE_SIZE, FACE_SIZE):
        image = cv2.resize(image, (FACE_SIZE, FACE_SIZE), interpolation=cv2.INTER_CUBIC)
    return image


def cache_feature_maps(
    dataset: FiwDataset,
    identity_bytes: bytes,
    cache_root: Path,
    *,
    views: int,
    seed: int,
    threads: int = 2,
    batch: int = 32,
    progress: Progress | None = None,
    feature_map: str = IDENTITY_FEATURE_MAP,
) -> FeatureCache:
    """Runs the identity trunk over every view of every crop once; resumes where an interrupted run stopped.

    The cache is keyed by the identity model, the image list and the views, so a changed
    model or data set never reads stale maps. Views: 0 the crop (what the embedder serves),
    1 its mirror, 2.. random variations (scale, rotation, shift, brightness, grey, flip).
    """
    key = hashlib.sha256()
    key.update(hashlib.sha256(identity_bytes).digest())
    key.update("\n".join(dataset.images).encode())
    key.update(f"views={views} seed={seed}".encode())
    if feature_map != IDENTITY_FEATURE_MAP:
        key.update(f"map={feature_map}".encode())
    folder = Path(cache_root) / f"fiw-{feature_map}-{key.hexdigest()[:16]}"
    folder.mkdir(parents=True, exist_ok=True)
    count = len(dataset.images)
    maps_path, identity_path, state_path = folder / f"{feature_map}.npy", folder / "fc1.npy", folder / "state.json"
    done = json.loads(state_path.read_text())["done"] if state_path.exists() else 0
    mode = "r+" if done else "w+"
    maps = np.lib.format.open_memmap(maps_path, mode, np.float16, (count, views, 1024, 7, 7))
    identity = np.lib.format.open_memmap(identity_path, mode, np.float32, (count, views, 128))
    if progress and done:
        progress(done, count)  # a resumed cache starts where it stopped
    if done < count:
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        session = onnxruntime.InferenceSession(
            _trunk_with_feature_map(identity_bytes, feature_map),
            sess_options=options,
            providers=["CPUExecutionProvider"],
        )
        root = dataset.root / "images"
        for start in range(done, count, batch):
            # Each chunk's augmentations come from its own seed: a resumed run makes the same views.
            rng = np.random.default_rng([seed, start])
            crops = [_read_crop(root / dataset.images[i]) for i in range(start, min(start + batch, count))]
            chunk = np.stack(crops).astype(np.float32)
            stack = [chunk, chunk[:, :, ::-1]] + [np.stack([augment(c, rng) for c in crops]) for _ in range(views - 2)]
            blob = np.stack(stack, 1).reshape(-1, FACE_SIZE, FACE_SIZE, 3)[..., ::-1].transpose(0, 3, 1, 2)
            fc1, feature = session.run([IDENTITY_OUTPUT, feature_map], {"data": np.ascontiguousarray(blob)})
            n = len(crops)
            maps[start : start + n] = feature.reshape(n, views, 1024, 7, 7).astype(np.float16)
            identity[start : start + n] = fc1.reshape(n, views, -1)
            if (start // batch) % 10 == 9 or start + n >= count:
                maps.flush()
                identity.flush()
                state_path.write_text(json.dumps({"done": start + n}))
            if progress:
                progress(start + n, count)
    return FeatureCache(folder, maps, identity)


# -- training -----------------------------------------------------------------------------------------


@dataclass
class TrainedHead:
    left: np.ndarray  # (d, r)
    right: np.ndarray  # (r, 50176)
    bias: np.ndarray  # (d,) the change of the identity layer's bias
    losses: list[float]
    seconds: float

    def embed(self, maps: np.ndarray, identity_raw: np.ndarray) -> np.ndarray:
        """What head.onnx computes, in numpy (float32): L2(fc1 + flat @ right.T @ left.T + bias)."""
        flat = maps.reshape(len(maps), -1).astype(np.float32)
        raw = (
            identity_raw
            + (flat @ self.right.T.astype(np.float16).astype(np.float32))
            @ self.left.T.astype(np.float16).astype(np.float32)
            + self.bias
        )
        return raw / np.linalg.norm(raw, axis=1, keepdims=True)

    def onnx(self) -> bytes:
        return head_model(self.left, self.right, self.bias)

    @property
    def head_inputs(self) -> dict[str, str]:
        """The head's inputs -> the identity graph's tensors (the manifest's network.inputs)."""
        return {"feature_map": IDENTITY_FEATURE_MAP, "identity": IDENTITY_OUTPUT}


def _kin_member_pairs(dataset: FiwDataset, families: set[str]) -> list[tuple[str, list[int], list[int], str]]:
    images_of = dataset.images_of()
    return [
        (p.family, images_of[(p.family, p.elder)], images_of[(p.family, p.younger)], p.relation)
        for p in dataset.pairs
        if p.family in families
    ]


def _batches(
    member_pairs: list[tuple[str, list[int], list[int], str]], size: int, by_relation: bool, rng: np.random.Generator
) -> list[list[int]]:
    """One epoch's batches of member-pair indices, at most one pair per family in a batch (no in-batch
    negative is secretly kin); with `by_relation`, each batch holds one relation code only."""
    groups: dict[str, list[int]] = {}
    for k in rng.permutation(len(member_pairs)):
        groups.setdefault(member_pairs[k][3] if by_relation else "", []).append(int(k))
    batches = []
    for group in groups.values():
        current, seen = [], set()
        for k in group:
            family = member_pairs[k][0]
            if family in seen:
                continue
            current.append(k)
            seen.add(family)
            if len(current) == size:
                batches.append(current)
                current, seen = [], set()
        if len(current) >= 2:
            batches.append(current)
    return [batches[i] for i in rng.permutation(len(batches))] if by_relation else batches


def _train_contrastive(
    dataset: FiwDataset,
    cache: FeatureCache,
    families: Sequence[str],
    params: HeadParams,
    forward: Callable,
    parameter_groups: list[dict],
    progress: Progress | None,
) -> list[float]:
    """NT-Xent over batches of kin pairs from distinct families: `forward(maps)` -> raw vectors. The loss per epoch."""
    import torch

    torch.set_num_threads(params.threads)
    rng = np.random.default_rng(params.seed)
    member_pairs = _kin_member_pairs(dataset, set(families))
    if len(member_pairs) < 2:
        raise ValueError(f"{len(member_pairs)} kin pairs in the training families: too few to train on")
    photo = dataset.image_photo
    used = sorted({i for _, a, b, _ in member_pairs for i in a + b})
    # Only the training families' maps are read into memory (float16), indexed through `where`.
    where = np.full(len(dataset.images), -1, np.int64)
    where[used] = np.arange(len(used))
    maps = torch.from_numpy(np.ascontiguousarray(cache.maps[used]))
    optimiser = torch.optim.AdamW(parameter_groups, lr=params.learning_rate, weight_decay=0.0)
    views = cache.maps.shape[1]

    def draw(elder: list[int], younger: list[int]) -> tuple[int, int] | None:
        for _ in range(8):
            i, j = int(rng.choice(elder)), int(rng.choice(younger))
            if photo[i] != photo[j]:
                return i, j
        return None

    if params.batching not in ("family", "relation"):
        raise ValueError(f"batching {params.batching!r}: choose family or relation")
    losses = []
    for epoch in range(params.epochs):
        batches = _batches(member_pairs, params.batch, params.batching == "relation", rng)
        epoch_losses = []
        for chosen in batches:
            drawn = [draw(member_pairs[k][1], member_pairs[k][2]) for k in chosen]
            drawn = [d for d in drawn if d is not None]
            if len(drawn) < 2:
                continue
            i = torch.from_numpy(where[[d[0] for d in drawn]])
            j = torch.from_numpy(where[[d[1] for d in drawn]])
            vi = torch.from_numpy(rng.integers(0, views, len(drawn)))
            vj = torch.from_numpy(rng.integers(0, views, len(drawn)))
            faces = torch.nn.functional.normalize(forward(torch.cat([maps[i, vi], maps[j, vj]]).float()), dim=-1)
            logits = faces @ faces.T / params.temperature
            logits.fill_diagonal_(float("-inf"))
            n = len(drawn)
            target = torch.cat([torch.arange(n) + n, torch.arange(n)])
            loss = torch.nn.functional.cross_entropy(logits, target)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            epoch_losses.append(float(loss.detach()))
        losses.append(float(np.mean(epoch_losses)) if epoch_losses else float("nan"))
        if progress:
            progress(epoch + 1, params.epochs)
    return losses


def _rank_cut(change: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray]:
    u, s, vt = np.linalg.svd(change, full_matrices=False)
    rank = min(rank, len(s))
    return (u[:, :rank] * s[:rank]).astype(np.float32), vt[:rank].astype(np.float32)


def train_head(
    dataset: FiwDataset,
    cache: FeatureCache,
    families: Sequence[str],
    weight: np.ndarray,
    bias: np.ndarray,
    params: HeadParams,
    progress: Progress | None = None,
) -> TrainedHead:
    """Fine-tunes the identity layer (weight, bias) on kin pairs of `families`; returns its rank-r change."""
    import torch

    torch.manual_seed(params.seed)
    started = time.perf_counter()
    layer = torch.nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(weight))
        layer.bias.copy_(torch.from_numpy(bias))
    dropout = torch.nn.Dropout(params.dropout)
    losses = _train_contrastive(
        dataset,
        cache,
        families,
        params,
        lambda maps: layer(dropout(maps.flatten(1))),
        [{"params": list(layer.parameters())}],
        progress,
    )
    left, right = _rank_cut(layer.weight.detach().numpy().astype(np.float64) - weight, params.rank)
    return TrainedHead(
        left=left,
        right=right,
        bias=(layer.bias.detach().numpy() - bias).astype(np.float32),
        losses=losses,
        seconds=time.perf_counter() - started,
    )


@dataclass
class TrainedBlockHead:
    """SFace's last block fine-tuned (`block`, kinship_head.BLOCK_SHAPES) and the identity layer's rank-r change."""

    block: dict[str, np.ndarray]
    left: np.ndarray
    right: np.ndarray
    bias: np.ndarray
    borrowed: dict[str, np.ndarray]  # the identity graph's weights the head binds (kinship_head.BLOCK_BORROWED)
    losses: list[float]
    seconds: float

    def onnx(self) -> bytes:
        return block_head_model(self.block, self.left, self.right, self.bias)

    @property
    def head_inputs(self) -> dict[str, str]:
        return {"feature_map": BLOCK_FEATURE_MAP, "identity": IDENTITY_OUTPUT, **BLOCK_BORROWED}

    @functools.cached_property
    def _session(self) -> onnxruntime.InferenceSession:
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        return onnxruntime.InferenceSession(self.onnx(), sess_options=options, providers=["CPUExecutionProvider"])

    def embed(self, maps: np.ndarray, identity_raw: np.ndarray | None = None) -> np.ndarray:
        """What the served head computes (its own ONNX graph, float16 weights), from conv_13 maps."""
        out = []
        for start in range(0, len(maps), 256):
            chunk = np.ascontiguousarray(maps[start : start + 256], dtype=np.float32)
            out.append(self._session.run(["embedding"], {"feature_map": chunk, **self.borrowed})[0])
        return np.concatenate(out) if out else np.zeros((0, self.left.shape[0]), np.float32)


def borrowed_weights(identity: onnx.ModelProto) -> dict[str, np.ndarray]:
    inits = {i.name: numpy_helper.to_array(i) for i in identity.graph.initializer}
    return {name: inits[target].astype(np.float32) for name, target in BLOCK_BORROWED.items()}


def train_block_head(
    dataset: FiwDataset,
    cache: FeatureCache,
    families: Sequence[str],
    folded: onnx.ModelProto,
    params: HeadParams,
    progress: Progress | None = None,
) -> TrainedBlockHead:
    """Fine-tunes SFace's last block and identity layer from conv_13 maps (`cache`, made with BLOCK_FEATURE_MAP);
    `folded` is the identity model with its constants folded (network.fold_constants).

    The block starts from SFace's own weights (so the head starts as the identity model) and
    learns at a smaller rate than the identity layer; the layer's change is cut to rank r.
    """
    import torch

    torch.manual_seed(params.seed)
    started = time.perf_counter()
    weight, bias = identity_layer(folded)
    start = last_block(folded)
    as_tensor = {
        k: torch.nn.Parameter(torch.from_numpy(v.copy())) for k, v in start.items() if k not in ("bn_scale", "bn_shift")
    }
    scale, shift = torch.from_numpy(start["bn_scale"]), torch.from_numpy(start["bn_shift"])
    layer = torch.nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(weight))
        layer.bias.copy_(torch.from_numpy(bias))
    f = torch.nn.functional
    input_dropout, map_dropout = torch.nn.Dropout(params.block_input_dropout), torch.nn.Dropout(params.dropout)

    def forward(maps):
        x = f.conv2d(input_dropout(maps), as_tensor["dw_weight"], as_tensor["dw_bias"], padding=1, groups=1024)
        x = f.prelu(x, as_tensor["dw_slope"].reshape(-1))
        x = f.prelu(f.conv2d(x, as_tensor["pw_weight"], as_tensor["pw_bias"]), as_tensor["pw_slope"].reshape(-1))
        return layer(map_dropout(x * scale + shift).flatten(1))

    losses = _train_contrastive(
        dataset,
        cache,
        families,
        params,
        forward,
        [
            {"params": list(layer.parameters())},
            {"params": list(as_tensor.values()), "lr": params.block_learning_rate},
        ],
        progress,
    )
    left, right = _rank_cut(layer.weight.detach().numpy().astype(np.float64) - weight, params.rank)
    block = {k: v.detach().numpy().astype(np.float32) for k, v in as_tensor.items()}
    block.update(bn_scale=start["bn_scale"], bn_shift=start["bn_shift"])
    return TrainedBlockHead(
        block=block,
        left=left,
        right=right,
        bias=(layer.bias.detach().numpy() - bias).astype(np.float32),
        borrowed=borrowed_weights(folded),
        losses=losses,
        seconds=time.perf_counter() - started,
    )


# -- calibration and measurement on held-out families ---------------------------------------------------


@dataclass
class PairScores:
    pairs: list[ImagePair]
    kinship: np.ndarray  # cosine in the kinship space
    identity: np.ndarray  # identity cosine of the same two crops

    def of(self, codes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        mask = np.array([p.relation in codes for p in self.pairs], bool)
        labels = np.array([p.kin for p in self.pairs], float)[mask]
        return np.stack([self.kinship[mask], self.identity[mask]], 1), labels


def score_pairs(pairs: list[ImagePair], kinship: Callable[[list[int]], np.ndarray], identity: np.ndarray) -> PairScores:
    """Cosines of each pair: `kinship(images)` gives unit kinship vectors, `identity` (images, d) unit identity."""
    images = sorted({i for p in pairs for i in (p.image1, p.image2)})
    position = {image: k for k, image in enumerate(images)}
    vectors = kinship(images)
    a = [position[p.image1] for p in pairs]
    b = [position[p.image2] for p in pairs]
    kin = np.einsum("nd,nd->n", vectors[a], vectors[b])
    ident = np.einsum("nd,nd->n", identity[[p.image1 for p in pairs]], identity[[p.image2 for p in pairs]])
    return PairScores(pairs, kin, ident)


def fit_calibrations(scores: PairScores, described: str) -> dict[str, RelationCalibration]:
    """Every calibration name with enough pairs of its own; nothing borrowed (the ranker's fallbacks say what)."""
    names: dict[str, list[str]] = {}
    for code, feeds in CODE_CALIBRATIONS.items():
        for name in feeds:
            names.setdefault(name, []).append(code)
    out = {}
    for name, codes in names.items():
        design, labels = scores.of(codes)
        least = 2 if name in REQUIRED_NAMES else MIN_CALIBRATION_PAIRS
        if labels.sum() < least or (len(labels) - labels.sum()) < least:
            if name in REQUIRED_NAMES:
                raise ValueError(
                    f"the validation families hold {int(labels.sum())} kin and {int(len(labels) - labels.sum())} "
                    f"non-kin {name} pairs: too few to calibrate; train on more families"
                )
            continue
        out[name] = fit_relation(name, "kinship", design, labels, f"{described}: {'+'.join(codes)} pairs")
    return out


def self_pairs(dataset: FiwDataset, families: Sequence[str], rng: np.random.Generator, count: int = 2000):
    """Same person in two different photos, against two people of different families (for RELATION_SELF)."""
    wanted = set(families)
    members = [(m, imgs) for m, imgs in dataset.images_of().items() if m[0] in wanted]
    genuine = []
    for _, imgs in members:
        options = [(i, j) for i in imgs for j in imgs if i < j and dataset.image_photo[i] != dataset.image_photo[j]]
        for k in rng.permutation(len(options))[:3]:
            genuine.append(options[k])
    impostor = []
    while len(impostor) < max(len(genuine), count // 2):
        x, y = rng.integers(len(members), size=2)
        if members[x][0][0] != members[y][0][0]:
            impostor.append((int(rng.choice(members[x][1])), int(rng.choice(members[y][1]))))
    return genuine, impostor


def fit_self(identity: np.ndarray, genuine, impostor, described: str) -> RelationCalibration:
    scores = np.array([identity[i] @ identity[j] for i, j in genuine + impostor])
    labels = np.concatenate([np.ones(len(genuine)), np.zeros(len(impostor))])
    return fit_relation("self", "identity", scores, labels, described)


def calibration_name_of(calibration: Calibration, code: str) -> str:
    """The calibration the ranker uses for a FIW code (most specific present)."""
    for name in CODE_CALIBRATIONS[code]:
        if name in calibration.relations:
            return name
    raise KeyError(code)


def _name_or_none(calibration: Calibration, code: str) -> str | None:
    try:
        return calibration_name_of(calibration, code)
    except KeyError:
        return None


def thresholds_of(calibration: Calibration, scores: PairScores) -> dict[str, float]:
    """Per calibration name: the log10 LR threshold of best accuracy on the calibration pairs themselves."""
    out = {}
    for name, rel in calibration.relations.items():
        if rel.model != "kinship":
            continue
        codes = [c for c in CODE_CALIBRATIONS if _name_or_none(calibration, c) == name]
        if not codes:
            continue
        design, labels = scores.of(codes)
        llr = log10_lrs(rel, design)
        out[name] = metrics.best_accuracy_threshold(llr, labels)
    return out


def log10_lrs(rel: RelationCalibration, design: np.ndarray) -> np.ndarray:
    from kinship.ranker.public import log10_lr

    return np.asarray(log10_lr(rel, design[:, 0], design[:, 1]), dtype=np.float64)


def measure(calibration: Calibration, thresholds: dict[str, float], scores: PairScores) -> dict:
    """Verification and calibration per FIW code and overall, through the ranker's own calibration code;
    beside the plain identity cosine of the same pairs (AUC, TAR; its accuracy at its best threshold)."""
    per_relation: dict[str, dict] = {}
    pooled_llr, pooled_labels, pooled_identity = [], [], []
    for code in CODE_CALIBRATIONS:
        design, labels = scores.of([code])
        if len(labels) == 0 or labels.min() == labels.max():
            continue
        try:
            name = calibration_name_of(calibration, code)
        except KeyError:
            per_relation[code] = {"pairs": int(len(labels)), "calibrated": False}
            continue
        llr = log10_lrs(calibration.get(name), design)
        threshold = thresholds.get(name, 0.0)
        per_relation[code] = {
            "pairs": int(len(labels)),
            "calibration": name,
            "auc": metrics.auc(llr, labels),
            "accuracy": metrics.accuracy(llr, labels, threshold),
            "tar_at_far_1pct": metrics.tar_at_far(llr, labels, 0.01),
            "cllr": metrics.cllr(llr, labels),
            "cllr_min": metrics.cllr_min(llr, labels),
            "kinship_cosine_auc": metrics.auc(design[:, 0], labels),
            "baseline": {
                "auc": metrics.auc(design[:, 1], labels),
                "accuracy": metrics.accuracy(
                    design[:, 1], labels, metrics.best_accuracy_threshold(design[:, 1], labels)
                ),
                "tar_at_far_1pct": metrics.tar_at_far(design[:, 1], labels, 0.01),
            },
        }
        pooled_llr.append(llr)
        pooled_labels.append(labels)
        pooled_identity.append(design[:, 1])
    if not pooled_llr:
        raise ValueError("no relation of the pairs can be scored by this calibration")
    llr, labels, ident = np.concatenate(pooled_llr), np.concatenate(pooled_labels), np.concatenate(pooled_identity)
    core = [per_relation[c] for c in CORE_CODES if c in per_relation and "auc" in per_relation[c]]
    overall = {
        "auc": metrics.auc(llr, labels),
        "tar_at_far_1pct": metrics.tar_at_far(llr, labels, 0.01),
        "cllr": metrics.cllr(llr, labels),
        "cllr_min": metrics.cllr_min(llr, labels),
        "ece": metrics.expected_calibration_error(llr, labels),
        "mean_accuracy_core": float(np.mean([r["accuracy"] for r in core])) if core else float("nan"),
        "pairs": int(len(labels)),
    }
    baseline = {
        "auc": metrics.auc(ident, labels),
        "tar_at_far_1pct": metrics.tar_at_far(ident, labels, 0.01),
        "mean_accuracy_core": float(np.mean([r["baseline"]["accuracy"] for r in core])) if core else float("nan"),
    }
    return {
        "verification": {
            "overall": overall,
            **{
                c: {k: r[k] for k in ("auc", "accuracy", "tar_at_far_1pct", "pairs")}
                for c, r in per_relation.items()
                if "auc" in r
            },
        },
        "calibration": {
            "overall": {k: overall[k] for k in ("cllr", "cllr_min", "ece")},
            **{c: {k: r[k] for k in ("cllr", "cllr_min")} for c, r in per_relation.items() if "auc" in r},
        },
        "baseline": {"overall": baseline, **{c: r["baseline"] for c, r in per_relation.items() if "auc" in r}},
        "per_relation": per_relation,
    }


def summary_metrics(result: dict) -> dict[str, float]:
    """The manifest's flat metrics (family-held-out test part)."""
    overall = result["verification"]["overall"]
    out = {
        "auc": overall["auc"],
        "mean_accuracy": overall["mean_accuracy_core"],
        "tar_at_far_1pct": overall["tar_at_far_1pct"],
        "cllr": overall["cllr"],
        "baseline_auc": result["baseline"]["overall"]["auc"],
    }
    for code, values in result["per_relation"].items():
        if "auc" in values:
            out[f"auc_{code}"] = values["auc"]
            out[f"baseline_auc_{code}"] = values["baseline"]["auc"]
    return out


# -- the whole run --------------------------------------------------------------------------------------


@dataclass
class HeadRun:
    head: TrainedHead | TrainedBlockHead
    calibration: Calibration
    thresholds: dict[str, float]
    split: dict[str, list[str]]
    test: dict
    validation: dict
    cache_seconds: float


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def run(
    dataset: FiwDataset,
    identity_bytes: bytes,
    cache_root: Path,
    params: HeadParams,
    *,
    families: Sequence[str] | None = None,
    report: Report | None = None,
    progress_factory: Callable[[str, int], Progress | None] | None = None,
) -> HeadRun:
    """Cache, train on the training part, calibrate on validation, measure on test (see the module docstring)."""
    say = report or (lambda _text: None)
    bar = progress_factory or (lambda _label, _total: None)
    started = time.perf_counter()
    cache = cache_feature_maps(
        dataset,
        identity_bytes,
        cache_root,
        views=params.views,
        seed=params.seed,
        threads=params.threads,
        progress=bar("feature maps", len(dataset.images)),
        feature_map=BLOCK_FEATURE_MAP if params.head == "block" else IDENTITY_FEATURE_MAP,
    )
    cache_seconds = time.perf_counter() - started
    parts = family_split(families if families is not None else dataset.families)
    split = {part: sorted(f for f, p in parts.items() if p == part) for part in ("train", "validation", "test")}
    say(
        f"families: {len(split['train'])} train, {len(split['validation'])} validation, {len(split['test'])} test "
        "(by salted hash of the family id)"
    )
    folded = fold_constants(identity_bytes)
    weight, bias = identity_layer(folded)
    if params.head == "block":
        # Untrained, the block head must be the identity model itself: else the graph was read wrong.
        unchanged = TrainedBlockHead(
            block=last_block(folded),
            left=np.zeros((weight.shape[0], 1), np.float32),
            right=np.zeros((1, weight.shape[1]), np.float32),
            bias=np.zeros(weight.shape[0], np.float32),
            borrowed=borrowed_weights(folded),
            losses=[],
            seconds=0.0,
        )
        check = unchanged.embed(np.asarray(cache.maps[:4, 0]))
        if float(np.min(np.einsum("nd,nd->n", check, _unit(cache.identity[:4, 0])))) < 0.999:
            raise RuntimeError("SFace's last block read from the graph does not reproduce the model's fc1 output")
        head = train_block_head(
            dataset, cache, split["train"], folded, params, progress=bar("training epochs", params.epochs)
        )
    elif params.head == "layer":
        check = cache.maps[:4, 0].reshape(4, -1).astype(np.float32) @ weight.T + bias
        if not np.allclose(check, cache.identity[:4, 0], atol=1e-2 * float(np.abs(cache.identity[:4, 0]).max())):
            raise RuntimeError("the identity layer read from the graph does not reproduce the model's fc1 output")
        head = train_head(
            dataset, cache, split["train"], weight, bias, params, progress=bar("training epochs", params.epochs)
        )
    else:
        raise ValueError(f"head {params.head!r}: choose layer or block")
    say(f"trained in {head.seconds:.0f} s; loss {head.losses[0]:.3f} -> {head.losses[-1]:.3f}")

    identity = _unit(cache.identity[:, 0])

    def kinship(images: list[int]) -> np.ndarray:
        return head.embed(np.asarray(cache.maps[images, 0]), cache.identity[images, 0])

    rng = np.random.default_rng(params.seed + 1)
    validation_pairs = image_pairs(dataset, split["validation"], rng, per_pair=params.pairs_per_member_pair)
    validation = score_pairs(validation_pairs, kinship, identity)
    relations = fit_calibrations(validation, f"{len(split['validation'])} FIW validation families")
    genuine, impostor = self_pairs(dataset, split["validation"], rng)
    relations["self"] = fit_self(
        identity, genuine, impostor, "identity cosine, one FIW member in two different photos vs two families"
    )
    calibration = make_calibration(relations)
    thresholds = thresholds_of(calibration, validation)
    test_pairs = image_pairs(
        dataset, split["test"], np.random.default_rng(params.seed + 2), per_pair=params.pairs_per_member_pair
    )
    test = measure(calibration, thresholds, score_pairs(test_pairs, kinship, identity)) if test_pairs else {}
    return HeadRun(
        head=head,
        calibration=calibration,
        thresholds=thresholds,
        split=split,
        test=test,
        validation=measure(calibration, thresholds, validation),
        cache_seconds=cache_seconds,
    )


def restrict(dataset: FiwDataset, max_families: int) -> FiwDataset:
    """The first `max_families` families in salted-hash order (all three parts represented): a quick run."""
    ordered = sorted(dataset.families, key=lambda f: hashlib.sha256(f"smoke:{f}".encode()).hexdigest())
    kept = set(ordered[:max_families])
    index = [i for i, member in enumerate(dataset.image_member) if member[0] in kept]
    return FiwDataset(
        root=dataset.root,
        images=tuple(dataset.images[i] for i in index),
        image_member=tuple(dataset.image_member[i] for i in index),
        image_photo=tuple(dataset.image_photo[i] for i in index),
        sex={m: s for m, s in dataset.sex.items() if m[0] in kept},
        pairs=tuple(p for p in dataset.pairs if p.family in kept),
        skipped_pairs=dataset.skipped_pairs,
    )


def dataset_digest(dataset: FiwDataset) -> str:
    text = (
        "\n".join(dataset.images)
        + "\n"
        + "\n".join(f"{p.relation},{p.family},{p.elder},{p.younger}" for p in dataset.pairs)
    )
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()
