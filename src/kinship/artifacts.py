"""Trained kinship artifacts: the versioned files `kinship train` writes and the services load.

An artifact is a folder under the artifacts directory (by default
`<data-dir>/artifacts`), named by its id:

    <artifacts-dir>/
      ACTIVE                     one line: the id of the artifact the services load
      <artifact-id>/
        manifest.json            what it is, what it is bound to, how it was made and measured
        head.onnx                format 2: the kinship head over the identity model's feature map
        kinship.onnx             format 1: the whole kinship network, aligned face -> kinship embedding

Format 2 (what `kinship train` writes now) ships only a head that reads the bound
identity model's own feature map and identity output (see `kinship.kinship_head`):
the embedder grafts it onto the identity graph and one run of the trunk gives both
vectors. Format 1 artifacts still load (their network runs beside the identity model).

Without an ACTIVE file the suite serves the artifact shipped inside the package
(`kinship.shipped`, trained on FIW families; see docs/model-packs.md): a fresh
install is calibrated. ACTIVE holding `none` serves no kinship model (uncalibrated
identity cosine), on purpose.

A format 1 network takes what the identity model of the same pack takes (an aligned
112x112 face, RGB, float32 0..255, NCHW, input `data`) and returns an
L2-normalised kinship embedding (output `embedding`). It is bound to one identity
model id: it shares that model's detector and alignment, and its calibration of
RELATION_SELF is of that model's similarity. The manifest's `calibration` turns a
cosine similarity into a log10 likelihood ratio per relation (see
`kinship.ranker.domain.calibration`).

This module only reads, checks and writes the files; it imports no service, so
the embedder, the ranker and the `kinship` command share one definition.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kinship.runtime.errors import ConfigError

#: Bumped whenever the manifest's meaning changes; older readers refuse newer formats.
ARTIFACT_FORMAT = "kinship-artifact/2"
#: Formats this version reads: 1 (a whole network), 2 (a head over the identity model's feature map).
READABLE_FORMATS = ("kinship-artifact/1", "kinship-artifact/2")
MANIFEST = "manifest.json"
ACTIVE = "ACTIVE"
#: What ACTIVE says to serve no kinship model at all (not even the shipped one).
NO_ARTIFACT = "none"
#: The id `kinship eval --artifact` and the CLI accept for the shipped artifact.
DEFAULT_ARTIFACT = "default"
NETWORK_INPUT = "data"
NETWORK_OUTPUT = "embedding"
#: network kinds: a whole network (format 1) or a head over the identity graph (format 2).
NETWORK_KIND_NETWORK = "network"
NETWORK_KIND_HEAD = "head"


class ArtifactError(ConfigError):
    """An artifact is missing, altered or does not fit the models served: the service refuses to start."""


@dataclass(frozen=True)
class RelationCalibration:
    """Linear logistic calibration of one relation:

        log10 LR = (slope * similarity + identity_slope * identity_similarity + intercept) / ln 10

    `similarity` is the cosine in the space of `model`; for kin relations the
    identity cosine of the same two faces is a second, weaker witness of kinship
    (`identity_slope`, 0 where it is not used). Fitted on out-of-fold similarities of
    kin and non-kin pairs with equal class weights, so the fitted log-odds is the
    natural log of the likelihood ratio.
    `max_abs_log10_lr` bounds what one comparison may say (no extrapolation past the
    evidence the calibration saw). `model` names whose similarity it calibrates:
    "kinship" (the artifact's network) or "identity" (the bound identity model).
    """

    name: str
    model: str
    slope: float
    intercept: float
    max_abs_log10_lr: float
    fitted_on: str
    kin_pairs: int
    non_kin_pairs: int
    identity_slope: float = 0.0


@dataclass(frozen=True)
class Calibration:
    calibration_id: str
    method: str
    relations: Mapping[str, RelationCalibration]
    #: RELATION_SELF evidence is discounted by an age gap: multiplied by 2 ** (-gap / half_life).
    self_age_gap_half_life_years: float = 15.0

    def get(self, name: str) -> RelationCalibration:
        try:
            return self.relations[name]
        except KeyError:
            raise ArtifactError(
                f"the calibration {self.calibration_id} has no relation {name!r} (it has {sorted(self.relations)})"
            ) from None


@dataclass(frozen=True)
class KinshipArtifact:
    """A loaded, verified artifact (the network's bytes are read on demand, see `network_bytes`)."""

    artifact_id: str
    path: Path
    identity_model_id: str
    kinship_model_id: str
    dimension: int
    network_file: str
    network_sha256: str
    calibration: Calibration
    created_at: str
    dataset: Mapping[str, Any] = field(default_factory=dict)
    training: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    software_version: str = ""
    network_kind: str = NETWORK_KIND_NETWORK
    #: The terms the weights are under (research use, from the training data's terms), "" when unstated.
    licence: str = ""
    #: True for the artifact shipped inside the package (served when no ACTIVE file exists).
    shipped: bool = False
    #: Format 2: the identity graph's tensors the head reads ({"feature_map": "bn1", "identity": "fc1"}).
    head_inputs: Mapping[str, str] = field(default_factory=dict)

    @property
    def format(self) -> str:
        return "kinship-artifact/2" if self.network_kind == NETWORK_KIND_HEAD else "kinship-artifact/1"

    def network_bytes(self) -> bytes:
        """The network file, after checking its sha256 against the manifest."""
        location = self.path / self.network_file
        try:
            data = location.read_bytes()
        except OSError as exc:
            raise ArtifactError(f"artifact {self.artifact_id}: cannot read {location}: {exc}") from exc
        actual = hashlib.sha256(data).hexdigest()
        if actual != self.network_sha256:
            raise ArtifactError(
                f"artifact {self.artifact_id}: {location} has sha256 {actual}, the manifest says "
                f"{self.network_sha256}; the file was altered: train again (kinship train) or restore it"
            )
        return data


def default_artifacts_dir(data_dir: Path | str) -> Path:
    return Path(data_dir) / "artifacts"


def kinship_model_id(artifact_id: str, identity_model_id: str) -> str:
    """The model id the embedder serves the network under; it names the identity model it is bound to."""
    return f"kinship-{artifact_id}@{identity_model_id}"


def _calibration_from(data: Mapping[str, Any]) -> Calibration:
    relations = {name: RelationCalibration(name=name, **values) for name, values in data["relations"].items()}
    return Calibration(
        calibration_id=data["calibration_id"],
        method=data["method"],
        relations=relations,
        self_age_gap_half_life_years=float(data.get("self_age_gap_half_life_years", 15.0)),
    )


def calibration_to_dict(calibration: Calibration) -> dict[str, Any]:
    return {
        "calibration_id": calibration.calibration_id,
        "method": calibration.method,
        "self_age_gap_half_life_years": calibration.self_age_gap_half_life_years,
        "relations": {
            name: {k: v for k, v in asdict(rel).items() if k != "name"} for name, rel in calibration.relations.items()
        },
    }


def load_artifact(folder: Path | str, *, shipped: bool = False) -> KinshipArtifact:
    """Reads and checks one artifact folder's manifest (the network's sha256 is checked when read)."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except FileNotFoundError:
        raise ArtifactError(f"{folder} holds no {MANIFEST}: it is not a kinship artifact") from None
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{folder / MANIFEST} cannot be read: {exc}") from exc
    if manifest.get("format") not in READABLE_FORMATS:
        raise ArtifactError(
            f"{folder / MANIFEST} has format {manifest.get('format')!r}; this version reads "
            f"{', '.join(repr(f) for f in READABLE_FORMATS)}: train a new artifact with this version (kinship train)"
        )
    try:
        network = manifest["network"]
        artifact = KinshipArtifact(
            artifact_id=manifest["artifact_id"],
            path=folder,
            identity_model_id=manifest["identity_model_id"],
            kinship_model_id=manifest["kinship_model_id"],
            dimension=int(network["dimension"]),
            network_file=network["file"],
            network_sha256=network["sha256"],
            calibration=_calibration_from(manifest["calibration"]),
            created_at=manifest["created_at"],
            dataset=manifest.get("dataset", {}),
            training=manifest.get("training", {}),
            metrics={k: float(v) for k, v in manifest.get("metrics", {}).items()},
            software_version=manifest.get("software_version", ""),
            network_kind=network.get("kind", NETWORK_KIND_NETWORK),
            licence=manifest.get("licence", ""),
            shipped=shipped,
            head_inputs=dict(network.get("inputs", {})),
        )
        if artifact.network_kind not in (NETWORK_KIND_NETWORK, NETWORK_KIND_HEAD):
            raise ValueError(f"unknown network kind {artifact.network_kind!r}")
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"{folder / MANIFEST} is incomplete or malformed ({exc!r}): train again") from exc
    if artifact.kinship_model_id != kinship_model_id(artifact.artifact_id, artifact.identity_model_id):
        raise ArtifactError(f"{folder / MANIFEST}: kinship_model_id does not match its artifact and identity model")
    return artifact


def shipped_artifact_dir() -> Path:
    """The folder of the artifact shipped in the package (`kinship.shipped`): the one named in its ACTIVE file."""
    import importlib.resources

    root = Path(str(importlib.resources.files("kinship.shipped")))
    artifact_id = active_artifact_id(root)
    if artifact_id is None:
        raise ArtifactError(f"the package's shipped artifacts ({root}) name no artifact: reinstall kinship-search")
    return root / artifact_id


def load_shipped() -> KinshipArtifact:
    """The artifact shipped in the package, checked."""
    return load_artifact(shipped_artifact_dir(), shipped=True)


def resolve_artifact(reference: str, artifacts_dir: Path | str) -> KinshipArtifact:
    """`default` (the shipped one), an artifact id in `artifacts_dir`, or a path to an artifact folder."""
    if reference == DEFAULT_ARTIFACT:
        return load_shipped()
    candidate = Path(reference)
    if (candidate / MANIFEST).is_file():
        return load_artifact(candidate)
    if (Path(artifacts_dir) / reference / MANIFEST).is_file():
        return load_artifact(Path(artifacts_dir) / reference)
    if (shipped_artifact_dir().parent / reference / MANIFEST).is_file():
        return load_artifact(shipped_artifact_dir().parent / reference, shipped=True)
    raise ArtifactError(
        f"no artifact {reference!r}: give 'default' (the shipped artifact), an artifact id in {artifacts_dir}, "
        "or the path of an artifact folder (one holding manifest.json)"
    )


def active_artifact_id(artifacts_dir: Path | str) -> str | None:
    """The id named in ACTIVE, or None when there is no ACTIVE file (or it is empty)."""
    marker = Path(artifacts_dir) / ACTIVE
    try:
        text = marker.read_text().strip()
    except FileNotFoundError:
        return None
    return text or None


def load_active(artifacts_dir: Path | str) -> KinshipArtifact | None:
    """The active artifact, checked: the one ACTIVE names, the shipped one when there is no ACTIVE file,
    None when ACTIVE says `none` (the suite then runs uncalibrated)."""
    artifact_id = active_artifact_id(artifacts_dir)
    if artifact_id is None:
        return load_shipped()
    if artifact_id == NO_ARTIFACT:
        return None
    folder = Path(artifacts_dir) / artifact_id
    if not folder.is_dir():
        raise ArtifactError(
            f"{Path(artifacts_dir) / ACTIVE} names artifact {artifact_id!r} but {folder} does not exist: "
            "train again (kinship train) or fix the ACTIVE file"
        )
    return load_artifact(folder)


def write_artifact(
    artifacts_dir: Path | str,
    *,
    artifact_id: str,
    identity_model_id: str,
    network: bytes,
    dimension: int,
    calibration: Calibration,
    created_at: str,
    dataset: Mapping[str, Any],
    training: Mapping[str, Any],
    metrics: Mapping[str, float],
    software_version: str,
    activate: bool = True,
    network_kind: str = NETWORK_KIND_NETWORK,
    head_inputs: Mapping[str, str] | None = None,
    licence: str = "",
) -> KinshipArtifact:
    """Writes a new artifact folder (never over an existing one) and, by default, makes it active.

    Files are written under a temporary name and renamed, so a crash never leaves a
    half-written artifact that ACTIVE points at.
    """
    root = Path(artifacts_dir)
    folder = root / artifact_id
    if folder.exists():
        raise ArtifactError(f"artifact {folder} exists already; artifacts are never overwritten")
    staging = root / f".{artifact_id}.partial"
    staging.mkdir(parents=True, exist_ok=False)
    head = network_kind == NETWORK_KIND_HEAD
    network_file = "head.onnx" if head else "kinship.onnx"
    (staging / network_file).write_bytes(network)
    described = {
        "kind": network_kind,
        "file": network_file,
        "sha256": hashlib.sha256(network).hexdigest(),
        "dimension": dimension,
        "output": NETWORK_OUTPUT,
    }
    if head:
        # Which tensors of the bound identity graph the head reads (see kinship.kinship_head).
        described["inputs"] = dict(head_inputs or {})
        described["input_format"] = "the bound identity model's feature map and raw identity output"
    else:
        described["input"] = NETWORK_INPUT
        described["input_format"] = "aligned 112x112 face, RGB, float32 0..255, NCHW (as the identity model)"
    manifest = {
        "format": "kinship-artifact/2" if head else "kinship-artifact/1",
        "licence": licence,
        "artifact_id": artifact_id,
        "created_at": created_at,
        "software_version": software_version,
        "identity_model_id": identity_model_id,
        "kinship_model_id": kinship_model_id(artifact_id, identity_model_id),
        "network": described,
        "dataset": dict(dataset),
        "training": dict(training),
        "metrics": dict(metrics),
        "calibration": calibration_to_dict(calibration),
    }
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    os.replace(staging, folder)
    if activate:
        activate_artifact(root, artifact_id)
    return load_artifact(folder)


def activate_artifact(artifacts_dir: Path | str, artifact_id: str) -> None:
    root = Path(artifacts_dir)
    if artifact_id != NO_ARTIFACT:
        load_artifact(root / artifact_id)  # refuse to activate something unreadable
    temporary = root / f".{ACTIVE}.tmp"
    temporary.write_text(artifact_id + "\n")
    os.replace(temporary, root / ACTIVE)
