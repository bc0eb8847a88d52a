"""`kinship bench find`: the served ranking against the exhaustive one, true relatives' ranks, FindRelatives latency.

1. Starts the suite (`kinship serve embedder|indexer|ranker` as child processes on free
   ports, a fresh artifacts folder: the shipped artifact; Milvus Lite in a temporary
   folder, or the server at --milvus-uri).
2. Families: FIW families of the shipped artifact's held-out "test" part
   (`kinship.training.fiw.family_split`, the split its manifest records), each a child
   with a father and a mother that have photos; the child's photos (at most 3) go into
   the gallery, the parents' photos are the question. Other members of these families
   stay out of the gallery.
3. Distractors: real faces (every other FIW member's photos, at most 3 each, embedded by
   the suite's embedder) up to `--real-faces`, then synthetic records drawn from a
   Gaussian fitted to the real faces' [kinship; identity] vectors together (their mean
   and full covariance, each half normalised again), so that they look like faces, one
   record per synthetic person. The output says how many of each.
4. Enrols everything through the indexer (identity, kinship and combined collections),
   then asks FindRelatives (top 100) with the father alone and with both parents (the
   child's sex known), and with both parents and the sex not given, and scores the same families exhaustively with the ranker's own
   scorer (`kinship.bench.exhaustive`).

Embeddings of FIW photos are cached (`--cache`, default under the data folder of the
user) keyed by image path and model id, so a second run does not embed them again.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np

from kinship.artifacts import load_shipped
from kinship.bench.exhaustive import GalleryArrays, exhaustive_ranking, family_pool, per_photo_union, rank_among
from kinship.domain.people import Relation, Sex
from kinship.family_vectors import family_model_id
from kinship.ranker.public import ScoringConfig, relative_faces
from kinship.runtime.processes import die_with_parent
from kinship.v1 import (
    common_pb2,
    embedder_pb2,
    embedder_pb2_grpc,
    indexer_pb2,
    indexer_pb2_grpc,
    ranker_pb2,
    ranker_pb2_grpc,
)

TOP = 100
PHOTOS_PER_PERSON = 3
UPSERT_BATCH = 1000  # the indexer's default limit of records per Upsert
TENANT = ""
_SEX_PB = {Sex.MALE: common_pb2.SEX_MALE, Sex.FEMALE: common_pb2.SEX_FEMALE}


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_suite(data_dir: Path, milvus_uri: str, ranker_env: dict[str, str] | None = None) -> Iterator[dict]:
    """The three services as child processes on free ports; stopped (SIGTERM, then kill) on exit."""
    from kinship.cli.serve import wait_serving

    ports = {name: _free_port() for name in ("embedder", "indexer", "ranker")}
    address = {name: f"127.0.0.1:{port}" for name, port in ports.items()}
    artifacts = data_dir / "artifacts"  # empty: the shipped artifact
    artifacts.mkdir(parents=True, exist_ok=True)
    common = ["--log-level", "warning", "--access-log-sample", "0"]
    commands = {
        "embedder": ["--artifacts-dir", str(artifacts)],
        "indexer": ["--data-dir", str(data_dir), "--milvus-uri", milvus_uri, "--milvus-timeout-seconds", "120"],
        "ranker": [
            "--artifacts-dir", str(artifacts),
            "--embedder-address", address["embedder"], "--indexer-address", address["indexer"],
        ],
    }  # fmt: skip
    children: list[subprocess.Popen] = []
    try:
        for name, extra in commands.items():
            log = (data_dir / f"{name}.log").open("w")
            env = {**os.environ, **(ranker_env or {})} if name == "ranker" else None
            command = [sys.executable, "-m", "kinship.cli.main", "serve", name, "--port", str(ports[name])]
            # The services die with the bench, however it dies (runtime.processes).
            children.append(
                subprocess.Popen(
                    [*command, *extra, *common], stdout=log, stderr=log, env=env, preexec_fn=die_with_parent()
                )
            )
        for name, child in zip(commands, children, strict=True):
            if not wait_serving(address[name], time.monotonic() + 300, child):
                tail = (data_dir / f"{name}.log").read_text()[-2000:]
                raise RuntimeError(f"the {name} did not become SERVING; its log ends:\n{tail}")
        yield address
    finally:
        for child in reversed(children):
            child.terminate()
        for child in children:
            try:
                child.wait(60)
            except subprocess.TimeoutExpired:
                child.kill()


@dataclass
class Face:
    identity: np.ndarray
    kinship: np.ndarray
    quality: float


class Embeddings:
    """Most prominent face of each FIW photo through the suite's embedder, cached in an .npz file."""

    def __init__(self, root: Path, cache: Path, address: str, identity_model: str, kinship_model: str):
        self.root, self.cache, self.address = root, cache, address
        self.identity_model, self.kinship_model = identity_model, kinship_model
        self.faces: dict[str, Face | None] = {}
        if cache.exists():
            data = np.load(cache, allow_pickle=False)
            if str(data["models"]) == f"{identity_model}|{kinship_model}":
                for name, i, k, q in zip(
                    data["names"], data["identity"], data["kinship"], data["quality"], strict=True
                ):
                    self.faces[str(name)] = Face(i, k, float(q)) if q >= 0 else None

    def embed(self, names: list[str], progress: Callable[[str], None]) -> None:
        missing = [n for n in names if n not in self.faces]
        if not missing:
            return
        channel = grpc.insecure_channel(self.address)
        stub = embedder_pb2_grpc.EmbedderStub(channel)

        def one(name: str) -> tuple[str, Face | None]:
            request = embedder_pb2.EmbedRequest(
                image=(self.root / "images" / name).read_bytes(),
                model_id=self.identity_model,
                max_faces=0,
                additional_model_ids=[self.kinship_model],
            )
            try:
                reply = stub.Embed(request, timeout=60)
            except grpc.RpcError:
                return name, None  # no face or an unreadable photo: not usable, as in the ranker
            if not reply.faces:
                return name, None
            face = max(
                reply.faces,
                key=lambda f: (
                    max(0.0, f.box.x_max - f.box.x_min) * max(0.0, f.box.y_max - f.box.y_min) * f.detection_score
                ),
            )
            kin = next(e.values for e in face.additional_embeddings if e.model_id == self.kinship_model)
            return name, Face(np.asarray(face.embedding, np.float32), np.asarray(kin, np.float32), face.quality)

        started = time.monotonic()
        with ThreadPoolExecutor(4) as pool:
            for done, (name, face) in enumerate(pool.map(one, missing), start=1):
                self.faces[name] = face
                if done % 200 == 0 or done == len(missing):
                    rate = done / max(time.monotonic() - started, 1e-9)
                    progress(
                        f"embedded {done}/{len(missing)} photos ({rate:.0f}/s, ETA {(len(missing) - done) / rate:.0f} s)"
                    )
                if done % 2000 == 0:
                    self.save()
        channel.close()
        self.save()

    def save(self) -> None:
        names = sorted(self.faces)
        good = [self.faces[n] for n in names]
        dim_i = next((f.identity.size for f in good if f), 1)
        dim_k = next((f.kinship.size for f in good if f), 1)
        self.cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.cache.with_suffix(".tmp.npz")
        np.savez(
            tmp,
            models=np.array(f"{self.identity_model}|{self.kinship_model}"),
            names=np.array(names),
            identity=np.stack([f.identity if f else np.zeros(dim_i, np.float32) for f in good]),
            kinship=np.stack([f.kinship if f else np.zeros(dim_k, np.float32) for f in good]),
            quality=np.array([f.quality if f else -1.0 for f in good]),
        )
        tmp.replace(self.cache)


@dataclass
class Family:
    family: str
    child: str
    sex: Sex
    child_photos: list[str]
    father_photos: list[str]
    mother_photos: list[str]


def test_families(dataset, split: dict[str, str], limit: int) -> list[Family]:
    """Children of held-out families with a father and a mother that have photos (one child per family)."""
    images: dict[tuple[str, str], list[str]] = {}
    for name, member in zip(dataset.images, dataset.image_member, strict=True):
        images.setdefault(member, []).append(name)
    parents: dict[tuple[str, str], dict[str, str]] = {}
    for pair in dataset.pairs:
        if split.get(pair.family) != "test" or pair.relation not in ("fs", "fd", "ms", "md"):
            continue
        # FIW codes name the parent first: elder (member1) is the parent, younger (member2) the child.
        role = "father" if pair.relation[0] == "f" else "mother"
        parents.setdefault((pair.family, pair.younger), {})[role] = pair.elder
    out, seen = [], set()
    for (family, child), known in sorted(parents.items()):
        if family in seen or set(known) != {"father", "mother"}:
            continue
        sex = {"M": Sex.MALE, "F": Sex.FEMALE}.get(dataset.sex.get((family, child), ""), Sex.UNSPECIFIED)
        if sex is Sex.UNSPECIFIED:
            continue
        seen.add(family)
        out.append(
            Family(
                family,
                child,
                sex,
                images[(family, child)][:PHOTOS_PER_PERSON],
                images[(family, known["father"])][:PHOTOS_PER_PERSON],
                images[(family, known["mother"])][:PHOTOS_PER_PERSON],
            )
        )
    return out[:limit]


def synthetic(real: np.ndarray, count: int, dim_k: int, seed: int) -> np.ndarray:
    """`count` [kinship; identity] rows from a Gaussian with the real rows' mean and covariance, halves unit."""
    rng = np.random.default_rng(seed)
    mean = real.mean(axis=0)
    covariance = np.cov(real, rowvar=False) + 1e-6 * np.eye(real.shape[1])
    out = np.empty((count, real.shape[1]), np.float32)
    for start in range(0, count, 100_000):
        n = min(100_000, count - start)
        draws = rng.multivariate_normal(mean, covariance, size=n, method="cholesky")
        draws[:, :dim_k] /= np.linalg.norm(draws[:, :dim_k], axis=1, keepdims=True)
        draws[:, dim_k:] /= np.linalg.norm(draws[:, dim_k:], axis=1, keepdims=True)
        out[start : start + n] = draws
    return out


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(np.ceil(q * len(ordered))) - 1))] if ordered else float("nan")


def enrol(address: str, gallery: GalleryArrays, models: tuple[str, str], progress: Callable[[str], None]) -> None:
    """Identity, kinship and combined vectors through the indexer's BulkEnrol (one stream per collection,
    flushed at its end), then waits until Milvus has indexed every row, as `kinship bench index` does."""
    from kinship.cli.bench_index import wait_for_index

    identity_model, kinship_model = models
    channel = grpc.insecure_channel(address, options=[("grpc.max_send_message_length", 64 << 20)])
    stub = indexer_pb2_grpc.IndexerStub(channel)
    combined = gallery.combined
    for model, vectors in (
        (identity_model, gallery.identity),
        (kinship_model, gallery.kinship),
        (family_model_id(kinship_model), combined),
    ):
        started = time.monotonic()

        def batches(model: str = model, vectors: np.ndarray = vectors) -> Iterator[indexer_pb2.BulkEnrolRequest]:
            for start in range(0, len(gallery), UPSERT_BATCH):
                stop = min(len(gallery), start + UPSERT_BATCH)
                yield indexer_pb2.BulkEnrolRequest(
                    model_id=model,
                    records=[
                        indexer_pb2.GalleryRecord(
                            record_id=gallery.record_ids[k],
                            person_id=gallery.person_ids[k],
                            embedding=vectors[k].tolist(),
                            attributes=common_pb2.PersonAttributes(
                                sex=_SEX_PB.get(gallery.sex[k], common_pb2.SEX_UNSPECIFIED)
                            ),
                        )
                        for k in range(start, stop)
                    ],
                )

        for reply in stub.BulkEnrol(batches(), timeout=7200):
            if reply.failed_total:
                raise RuntimeError(f"the indexer refused records of {model}: {list(reply.failures)[:3]}")
            if reply.done or reply.received_total % 20_000 == 0:
                rate = reply.received_total / max(time.monotonic() - started, 1e-9)
                progress(f"{model}: enrolled {reply.enrolled_total}/{len(gallery)} ({rate:.0f} faces/s)")
    for model in (identity_model, kinship_model, family_model_id(kinship_model)):
        indexed_s, _ = wait_for_index(stub, model, len(gallery), settle_timeout=600)
        progress(f"{model}: every row indexed ({indexed_s:.0f} s)")
    channel.close()


def _photos(root: Path, names: list[str]) -> list[ranker_pb2.Photo]:
    return [ranker_pb2.Photo(image=(root / "images" / n).read_bytes()) for n in names]


def run_bench(
    *,
    gallery_size: int,
    families: int,
    milvus_uri: str,
    dataset_dir: Path,
    cache: Path,
    real_faces: int | None,
    seed: int,
    progress: Callable[[str], None],
    family_pool_size: int | None = None,
) -> dict:
    from kinship.training.fiw import family_split, load_fiw

    artifact = load_shipped()
    config = ScoringConfig.from_artifact(artifact)
    models = (artifact.identity_model_id, artifact.kinship_model_id)
    dataset = load_fiw(dataset_dir)
    split = family_split(dataset.families)
    chosen = test_families(dataset, split, families)
    if not chosen:
        raise RuntimeError(f"no held-out family of {dataset_dir} has a child with a father and a mother")
    with (
        tempfile.TemporaryDirectory(prefix="kinship-bench-find-") as tmp,
        running_suite(Path(tmp), milvus_uri) as address,
    ):
        embeddings = Embeddings(dataset.root, cache, address["embedder"], *models)
        question = sorted({n for f in chosen for n in (*f.child_photos, *f.father_photos, *f.mother_photos)})
        progress(f"embedding the {len(chosen)} families' {len(question)} photos")
        embeddings.embed(question, progress)
        # Real distractors: members of every other family, at most PHOTOS_PER_PERSON photos each.
        kept_out = {f.family for f in chosen}
        by_member: dict[tuple[str, str], list[str]] = {}
        for name, member in zip(dataset.images, dataset.image_member, strict=True):
            if member[0] not in kept_out:
                by_member.setdefault(member, []).append(name)
        distractor_photos = [n for m in sorted(by_member) for n in by_member[m][:PHOTOS_PER_PERSON]]
        child_faces = sum(len(f.child_photos) for f in chosen)
        wanted = max(0, gallery_size - child_faces)
        if real_faces is not None:
            wanted_real = min(wanted, real_faces)
        else:
            wanted_real = wanted
        distractor_photos = distractor_photos[:wanted_real]
        progress(f"embedding {len(distractor_photos)} real distractor photos")
        embeddings.embed(distractor_photos, progress)

        record_ids, person_ids, identity, kinship, sexes = [], [], [], [], []

        def add(person: str, names: list[str], sex: Sex) -> None:
            for name in names:
                face = embeddings.faces.get(name)
                if face is not None:
                    record_ids.append(name.replace("/", ":"))
                    person_ids.append(person)
                    identity.append(face.identity)
                    kinship.append(face.kinship)
                    sexes.append(sex)

        for f in chosen:
            add(f"{f.family}:{f.child}", f.child_photos, f.sex)
        sex_of = {"M": Sex.MALE, "F": Sex.FEMALE}
        real_members = {}
        for name in distractor_photos:
            fam, member = name.split("/")[:2]
            real_members.setdefault((fam, member), []).append(name)
        for (fam, member), names in real_members.items():
            sex = sex_of.get(dataset.sex.get((fam, member), ""), Sex.UNSPECIFIED)
            add(f"{fam}:{member}", names, sex)
        real_count = len(record_ids)
        dim_k = kinship[0].size
        synthetic_count = max(0, gallery_size - real_count)
        if synthetic_count:
            progress(
                f"drawing {synthetic_count} synthetic distractors from a Gaussian fitted to {real_count} real faces"
            )
            real = np.concatenate([np.stack(kinship), np.stack(identity)], axis=1).astype(np.float64)
            drawn = synthetic(real, synthetic_count, dim_k, seed)
            rng = np.random.default_rng(seed + 1)
            synthetic_sex = np.where(rng.random(synthetic_count) < 0.5, Sex.MALE, Sex.FEMALE)
        else:
            drawn = np.zeros((0, dim_k + identity[0].size), np.float32)
            synthetic_sex = np.zeros(0, dtype=object)
        gallery = GalleryArrays(
            record_ids + [f"syn:{k}" for k in range(synthetic_count)],
            # One record per synthetic person: two independent draws would be two strangers' faces under one
            # person id, whose best-record-per-photo score no real person's photos reach.
            person_ids + [f"syn-{k}" for k in range(synthetic_count)],
            np.concatenate([np.stack(identity), drawn[:, dim_k:]]).astype(np.float32),
            np.concatenate([np.stack(kinship), drawn[:, :dim_k]]).astype(np.float32),
            np.concatenate([np.array(sexes, dtype=object), synthetic_sex]),
        )
        progress(f"enrolling {len(gallery)} faces ({real_count} real, {synthetic_count} synthetic)")
        enrol(address["indexer"], gallery, models, progress)

        ranker = ranker_pb2_grpc.KinshipRankerStub(grpc.insecure_channel(address["ranker"]))
        # The first search loads the collections (Milvus Lite builds the index then): not timed.
        progress("loading the collections (first search, not timed)")
        time.sleep(3)  # bounded-consistency reads see the last writes after a few seconds
        warm = ranker_pb2.FindRelativesRequest(top_n=TOP)
        warm.relatives.add(
            relation=common_pb2.RELATION_FATHER, photos=_photos(dataset.root, chosen[0].father_photos[:1])
        )
        for _ in range(2):
            ranker.FindRelatives(warm, timeout=900)
        results: dict[str, dict] = {}
        # The child's sex known (the filter every search then applies), and not known for two parents.
        for parents in ("father", "both", "both-sex-unknown"):
            served_ranks, exhaustive_ranks, overlaps, latencies = [], [], [], []
            today, pool_recall, per_photo_adds = [], [], []
            same_order, score_gap = [], 0.0
            pool_covers, both_cover, today_ranks = [], [], []
            for n, f in enumerate(chosen, start=1):
                relatives = [("father", Relation.FATHER, common_pb2.RELATION_FATHER, f.father_photos)]
                sex = Sex.UNSPECIFIED if parents == "both-sex-unknown" else f.sex
                if parents != "father":
                    relatives.append(("mother", Relation.MOTHER, common_pb2.RELATION_MOTHER, f.mother_photos))
                relatives = [r for r in relatives if any(embeddings.faces.get(p) for p in r[3])]
                if not relatives:
                    continue
                request = ranker_pb2.FindRelativesRequest(
                    top_n=TOP, missing_person=ranker_pb2.MissingPerson(sex=_SEX_PB.get(sex, common_pb2.SEX_UNSPECIFIED))
                )
                family = []
                for label, relation, relation_pb, names in relatives:
                    usable = [p for p in names if embeddings.faces.get(p)]
                    request.relatives.add(label=label, relation=relation_pb, photos=_photos(dataset.root, usable))
                    faces = [embeddings.faces[p] for p in usable]
                    family.append(
                        relative_faces(
                            relation,
                            np.stack([x.identity for x in faces]),
                            np.stack([x.kinship for x in faces]),
                            quality=[x.quality for x in faces],
                            label=label,
                        )
                    )
                started = time.perf_counter()
                reply = ranker.FindRelatives(request, timeout=120)
                latencies.append((time.perf_counter() - started) * 1000)
                served = [c.person_id for c in reply.candidates]
                exhaustive, exhaustive_scores = exhaustive_ranking(family, gallery, config, sex, TOP)
                same_order.append(served == exhaustive)
                reference = dict(zip(exhaustive, exhaustive_scores, strict=True))
                for c in reply.candidates:
                    if c.person_id in reference:
                        score_gap = max(score_gap, abs(c.log10_likelihood_ratio - reference[c.person_id]))
                truth = f"{f.family}:{f.child}"
                served_ranks.append(served.index(truth) + 1 if truth in served else None)
                exhaustive_ranks.append(exhaustive.index(truth) + 1 if truth in exhaustive else None)
                overlaps.append(len(set(served) & set(exhaustive)) / max(1, min(TOP, len(exhaustive))))
                union = per_photo_union(family, gallery, sex, 100)
                pool = family_pool(family, gallery, config, sex, 1000)
                in_pool = truth in pool
                # Today's path: the per-photo union (top 100 per photo and space), then the same exact scorer.
                today_ranks.append(rank_among(family, gallery, config, union, truth))
                # How much of the exhaustive top 100 an exact search could find: the family pool alone,
                # and with the per-photo union beside it (what --per-photo-search would add).
                wanted = set(exhaustive)
                pool_covers.append(len(wanted & pool) / max(1, len(wanted)))
                both_cover.append(len(wanted & (pool | union)) / max(1, len(wanted)))
                today.append(truth in union)
                pool_recall.append(in_pool)
                per_photo_adds.append(truth in union and not in_pool)
                if n % 10 == 0 or n == len(chosen):
                    progress(f"{parents}: {n}/{len(chosen)} families asked")
            results[parents] = {
                "served": _ranks(served_ranks),
                "exhaustive": _ranks(exhaustive_ranks),
                "served_vs_exhaustive_top100": float(np.mean(overlaps)),
                "served_order_equals_exhaustive": float(np.mean(same_order)),
                "exact_pool_covers_exhaustive_top100": float(np.mean(pool_covers)),
                "exact_pool_and_union_cover_exhaustive_top100": float(np.mean(both_cover)),
                "max_abs_log10_lr_difference": score_gap,
                "today_candidate_recall": float(np.mean(today)),
                "today_served": _ranks([r if r is not None and r <= TOP else None for r in today_ranks]),
                "family_pool_recall": float(np.mean(pool_recall)),
                "per_photo_adds_recall": float(np.mean(per_photo_adds)),
                "p50_ms": statistics.median(latencies),
                "p99_ms": _percentile(latencies, 0.99),
                "calls": len(latencies),
            }
    return {
        "gallery": len(gallery),
        "families": len(chosen),
        "distractors": {
            "real_faces": real_count - child_faces_in(gallery, chosen),
            "synthetic": synthetic_count,
            "synthetic_model": "Gaussian fitted to the real faces' [kinship; identity] vectors (mean and full "
            "covariance of both spaces together), each half normalised",
        },
        "true_children_faces": child_faces_in(gallery, chosen),
        "families_from": f"{dataset_dir} held-out 'test' families ({artifact.artifact_id}'s family split)",
        "milvus": milvus_uri or "Milvus Lite (temporary file)",
        "artifact_id": artifact.artifact_id,
        "ranker_family_pool": 1000 if family_pool_size is None else family_pool_size,
        "served_vs_exhaustive_top100": results["both"]["served_vs_exhaustive_top100"],
        "one_parent": results["father"],
        "two_parents": results["both"],
        "two_parents_sex_unknown": results["both-sex-unknown"],
    }


def child_faces_in(gallery: GalleryArrays, chosen: list[Family]) -> int:
    children = {f"{f.family}:{f.child}" for f in chosen}
    return sum(1 for p in gallery.person_ids if p in children)


def _ranks(ranks: list[int | None]) -> dict:
    found = [r for r in ranks if r is not None]
    return {
        "true_in_top10": float(np.mean([r is not None and r <= 10 for r in ranks])) if ranks else float("nan"),
        "true_in_top100": float(np.mean([r is not None for r in ranks])) if ranks else float("nan"),
        # Beyond the top 100 a rank is unknown: counted as 101 for the median.
        "true_rank_median": float(np.median([r if r is not None else TOP + 1 for r in ranks])) if ranks else None,
        "found": len(found),
    }
