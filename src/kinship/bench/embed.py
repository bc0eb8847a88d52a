"""`kinship bench embed`: the recognizer alone, the embedder service over gRPC, and the prepared model, in one run.

Three measurements on the same machine, side by side, so that their ratios hold on a
noisy one:

(a) raw: the default pack's prepared recognizer in one onnxruntime session using every
    core, on real aligned faces (the 6 of insightface's t1.jpg), at several batch sizes;
    the best is the model's own speed. It is measured again in rounds that alternate
    with the service's (b), so that both see the same background load of a shared
    machine, and their ratio is taken over those rounds;
(b) service: `kinship serve embedder` as a separate process with its default settings,
    fed the same faces as pre-aligned 112x112 PNG crops by `concurrency` callers over
    gRPC (both sides do the same model work), and beside it whole photos (decode,
    detection, alignment, embedding); and a lone caller, with and without the batching
    wait, for the latency the batching costs;
(c) the shipped SFace file in a plain session (only its unused inputs dropped, so that
    onnxruntime runs it at all) against the prepared one, one face at a time, and the
    cosine between their embeddings;
(d) the kinship model's cost: one embedder serving the shipped kinship artifact (its head
    grafted onto the identity graph) asked for identity AND kinship vectors of a whole
    photo, against one serving no artifact asked for the identity vector alone, by a lone
    caller, in alternating rounds; the ratio of their p50 latencies is what the kinship
    model adds to Embed;
(e) FindRelatives with two relatives (a father and a mother photo of the sample gallery)
    through two suites (`kinship serve all --sample-gallery`), one serving the shipped
    artifact and one serving none, by a lone caller in alternating rounds: what the
    kinship model adds to a search end to end (two Embeds, the kinship searches, scoring).

(a)-(c) run the embedder with no kinship artifact (ACTIVE says none) so that they
measure the identity model alone.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from kinship.runtime.processes import die_with_parent


@dataclass(frozen=True)
class Timing:
    faces_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def sample_faces() -> tuple[list[np.ndarray], bytes]:
    """The aligned faces of insightface's t1.jpg (via the default pack) and the photo's bytes."""
    from importlib import resources

    from kinship.embedder.public import ArcFaceAligner, decode_image, load_pack

    photo = (resources.files("insightface") / "data" / "images" / "t1.jpg").read_bytes()
    pixels = decode_image(photo, max_pixels=10**8).pixels
    pack = load_pack()
    aligner = ArcFaceAligner()
    crops = [aligner.align(pixels, d.landmarks) for d in pack.detector.detect(pixels)]
    return crops, photo


def time_loop(run: Callable[[], int], seconds: float) -> tuple[float, list[float]]:
    """Calls `run` (returns faces done) until `seconds` pass; (faces per second, per-call ms)."""
    run()  # warm-up
    latencies, faces = [], 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        t0 = time.perf_counter()
        faces += run()
        latencies.append((time.perf_counter() - t0) * 1000)
    return faces / (time.perf_counter() - started), latencies


class RawRecognizer:
    """The default pack's prepared recognizer in one session: what the model alone achieves."""

    def __init__(self, threads: int):
        from kinship.embedder.public import DEFAULT_PACK, SFaceRecognizer, create_session, recognizer_bytes

        session = create_session(recognizer_bytes(DEFAULT_PACK, dynamic_batch=True), intra_op_threads=threads)
        self.threads = threads
        self.recognizer = SFaceRecognizer(session, dimension=DEFAULT_PACK.dimension)

    def rate(self, crops: list[np.ndarray], batch: int, seconds: float) -> tuple[float, float]:
        """(faces per second, seconds measured) at one batch size."""
        blob = self.recognizer.blob([crops[i % len(crops)] for i in range(batch)])
        started = time.perf_counter()
        rate, _ = time_loop(lambda: (self.recognizer.run_blob(blob), batch)[1], seconds)
        return rate, time.perf_counter() - started


def measure_raw(crops: list[np.ndarray], seconds: float, threads: int, batches=(1, 4, 8, 16, 32)) -> dict:
    raw = RawRecognizer(threads)
    per_batch = {size: raw.rate(crops, size, seconds / len(batches))[0] for size in batches}
    best = max(per_batch, key=per_batch.get)
    return {"threads": threads, "faces_per_s_by_batch": per_batch, "best_batch": best, "faces_per_s": per_batch[best]}


def alternate(
    raw: RawRecognizer, crops, batch: int, address: str, requests, concurrency: int, seconds: float, rounds: int = 5
):
    """Raw and service measured in alternating rounds; (raw faces/s, service Timing, errors) over all rounds."""
    raw_faces = raw_time = service_faces = service_time = 0.0
    latencies_p50, latencies_p99, errors, count = [], [], 0, 0
    for _ in range(rounds):
        rate, elapsed = raw.rate(crops, batch, seconds / rounds)
        raw_faces += rate * elapsed
        raw_time += elapsed
        timing, failed = drive(address, requests, concurrency, seconds / rounds)
        service_faces += timing.faces_per_s * (seconds / rounds)
        service_time += seconds / rounds
        latencies_p50.append(timing.p50_ms)
        latencies_p99.append(timing.p99_ms)
        errors += failed
        count += timing.requests
    service = Timing(service_faces / service_time, median(latencies_p50), max(latencies_p99), count)
    return raw_faces / raw_time, service, errors


def measure_prep(seconds: float, threads: int, crops: list[np.ndarray]) -> dict:
    import onnx

    from kinship.embedder.public import (
        DEFAULT_PACK,
        SFaceRecognizer,
        create_session,
        drop_unused,
        pack_folder,
        read_verified,
        recognizer_bytes,
    )

    folder = pack_folder(DEFAULT_PACK)
    shipped = onnx.load_model_from_string(
        read_verified(folder / DEFAULT_PACK.recognizer.name, DEFAULT_PACK.recognizer.sha256)
    )
    drop_unused(shipped)  # the least onnxruntime needs to run it at all (it demands unused declared inputs)
    plain = SFaceRecognizer(
        create_session(shipped.SerializeToString(), intra_op_threads=threads), dimension=DEFAULT_PACK.dimension
    )
    prepared = SFaceRecognizer(
        create_session(recognizer_bytes(DEFAULT_PACK, dynamic_batch=True), intra_op_threads=threads),
        dimension=DEFAULT_PACK.dimension,
    )
    cosines = []
    for crop in crops:
        a, b = plain.embed(crop), prepared.embed(crop)
        cosines.append(float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)))
    batched = prepared.embed_batch(crops)
    for crop, row in zip(crops, batched, strict=True):
        a = plain.embed(crop)
        cosines.append(float(a @ row / np.linalg.norm(a) / np.linalg.norm(row)))
    blob = plain.blob(crops[:1])
    plain_rate, _ = time_loop(lambda: (plain.run_blob(blob), 1)[1], seconds / 2)
    prepared_rate, _ = time_loop(lambda: (prepared.run_blob(blob), 1)[1], seconds / 2)
    return {
        "threads": threads,
        "plain_faces_per_s": plain_rate,
        "prepared_faces_per_s": prepared_rate,
        "speedup": prepared_rate / plain_rate,
        "min_cosine": min(cosines),
    }


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class EmbedderProcess:
    """`kinship serve embedder` on a free port as a child process, stopped on exit."""

    def __init__(self, extra: list[str], *, artifact: bool = False):
        import tempfile

        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self._extra = extra
        self.process: subprocess.Popen | None = None
        # An artifacts folder without ACTIVE serves the shipped artifact; ACTIVE "none" serves none.
        self._folder = tempfile.TemporaryDirectory(prefix="kinship-bench-artifacts-")
        if not artifact:
            (Path(self._folder.name) / "ACTIVE").write_text("none\n")

    def __enter__(self) -> EmbedderProcess:
        from kinship.cli.serve import wait_serving

        cmd = [sys.executable, "-m", "kinship.cli.main", "serve", "embedder", "--port", str(self.port)]
        cmd += ["--log-level", "warning", "--artifacts-dir", self._folder.name, *self._extra]
        self.process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, preexec_fn=die_with_parent())
        if not wait_serving(self.address, time.monotonic() + 180, self.process):
            self.__exit__(None, None, None)
            raise RuntimeError(f"the embedder did not start ({' '.join(cmd)})")
        return self

    def __exit__(self, *exc) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self._folder.cleanup()


async def _drive(address: str, requests: list, concurrency: int, seconds: float) -> tuple[Timing, int]:
    import grpc

    from kinship.v1 import embedder_pb2_grpc

    latencies: list[float] = []
    faces = 0
    errors = 0
    options = [("grpc.max_receive_message_length", 64 * 2**20), ("grpc.max_send_message_length", 64 * 2**20)]
    async with grpc.aio.insecure_channel(address, options=options) as channel:
        stub = embedder_pb2_grpc.EmbedderStub(channel)
        await stub.Embed(requests[0], timeout=60)  # warm-up
        stop_at = time.perf_counter() + seconds

        async def caller(offset: int) -> None:
            nonlocal faces, errors
            i = offset
            while time.perf_counter() < stop_at:
                t0 = time.perf_counter()
                try:
                    reply = await stub.Embed(requests[i % len(requests)], timeout=60)
                except grpc.aio.AioRpcError:
                    errors += 1
                    continue
                latencies.append((time.perf_counter() - t0) * 1000)
                faces += len(reply.faces)
                i += 1

        started = time.perf_counter()
        await asyncio.gather(*(caller(k) for k in range(concurrency)))
        elapsed = time.perf_counter() - started
    timing = Timing(faces / elapsed, percentile(latencies, 50), percentile(latencies, 99), len(latencies))
    return timing, errors


def drive(address: str, requests: list, concurrency: int, seconds: float) -> tuple[Timing, int]:
    return asyncio.run(_drive(address, requests, concurrency, seconds))


def measure_kinship_cost(photo: bytes, seconds: float, rounds: int = 4) -> dict:
    """(d): Embed of a whole photo, identity + kinship (shipped artifact) vs identity alone (none), alternating."""
    from kinship.artifacts import load_shipped
    from kinship.v1 import embedder_pb2

    kinship_id = load_shipped().kinship_model_id
    both = [embedder_pb2.EmbedRequest(image=photo, additional_model_ids=[kinship_id])]
    alone = [embedder_pb2.EmbedRequest(image=photo)]
    with_latencies: list[float] = []
    without_latencies: list[float] = []
    with EmbedderProcess([], artifact=True) as served, EmbedderProcess([]) as plain:
        for _ in range(rounds):
            for address, requests, into in (
                (served.address, both, with_latencies),
                (plain.address, alone, without_latencies),
            ):
                timing, _ = drive(address, requests, 1, seconds / rounds)
                into.append(timing.p50_ms)
    with_p50, without_p50 = median(with_latencies), median(without_latencies)
    return {
        "kinship_model_id": kinship_id,
        "embed_p50_ms_with_kinship": with_p50,
        "embed_p50_ms_identity_only": without_p50,
        "kinship_latency_ratio": with_p50 / without_p50,
    }


class SuiteProcess:
    """`kinship serve all --sample-gallery` on free ports and a fresh data folder, stopped on exit; with
    `artifact` False, ACTIVE says none (identity only)."""

    def __init__(self, *, artifact: bool):
        import tempfile

        self._folder = tempfile.TemporaryDirectory(prefix="kinship-bench-suite-")
        self.data = Path(self._folder.name)
        if not artifact:
            (self.data / "artifacts").mkdir()
            (self.data / "artifacts" / "ACTIVE").write_text("none\n")
        self.ports = {name: free_port() for name in ("embedder", "indexer", "ranker")}
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> SuiteProcess:
        cmd = [sys.executable, "-m", "kinship.cli.main", "serve", "all", "--sample-gallery"]
        cmd += ["--data-dir", str(self.data)]
        for name, port in self.ports.items():
            cmd += [f"--{name}-port", str(port)]
        log = self.data / "suite.log"
        with log.open("w") as out:
            env = {**os.environ, "KINSHIP_LOG_LEVEL": "warning"}
            self.process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 300
        # The sample gallery is enrolled once the three serve: ready when a two-parent search finds someone.
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-2000:]
                self.__exit__(None, None, None)
                raise RuntimeError(f"the suite did not start ({' '.join(cmd)}):\n{tail}")
            time.sleep(0.5)
        return self

    def _answers(self) -> bool:
        import grpc

        from kinship.v1 import ranker_pb2_grpc

        if not (self.data / "sample" / "gallery" / "group-person-2.jpg").exists():
            return False
        try:
            with grpc.insecure_channel(f"127.0.0.1:{self.ports['ranker']}") as channel:
                reply = ranker_pb2_grpc.KinshipRankerStub(channel).FindRelatives(self.two_parent_request(), timeout=30)
        except grpc.RpcError:
            return False
        return len(reply.candidates) > 0

    def __exit__(self, *exc) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self._folder.cleanup()

    def two_parent_request(self):
        from kinship.v1 import common_pb2, ranker_pb2

        gallery = self.data / "sample" / "gallery"
        request = ranker_pb2.FindRelativesRequest(top_n=5)
        for relation, name in (
            (common_pb2.RELATION_FATHER, "group-person-1.jpg"),
            (common_pb2.RELATION_MOTHER, "group-person-2.jpg"),
        ):
            relative = request.relatives.add(relation=relation)
            relative.photos.add(image=(gallery / name).read_bytes())
        return request


def _find_latencies(address: str, request, seconds: float) -> tuple[list[float], bool]:
    import grpc

    from kinship.v1 import ranker_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        stub = ranker_pb2_grpc.KinshipRankerStub(channel)
        reply = stub.FindRelatives(request, timeout=60)  # warm-up
        latencies = []
        stop_at = time.perf_counter() + seconds
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            reply = stub.FindRelatives(request, timeout=60)
            latencies.append((time.perf_counter() - started) * 1000)
    return latencies, bool(reply.scoring.calibrated)


def measure_find_cost(seconds: float, rounds: int = 4) -> dict:
    """(e): FindRelatives with a father and a mother, shipped artifact vs none, alternating rounds."""
    p50s: dict[bool, list[float]] = {True: [], False: []}
    calibrated: dict[bool, bool] = {}
    with SuiteProcess(artifact=True) as served, SuiteProcess(artifact=False) as plain:
        for _ in range(rounds):
            for artifact, suite in ((True, served), (False, plain)):
                latencies, calibrated[artifact] = _find_latencies(
                    f"127.0.0.1:{suite.ports['ranker']}", suite.two_parent_request(), seconds / rounds
                )
                p50s[artifact].append(percentile(latencies, 50))
    if not calibrated[True] or calibrated[False]:
        raise RuntimeError(
            f"(e) expected a calibrated answer with the artifact and none without: got {calibrated[True]}, "
            f"{calibrated[False]}"
        )
    with_p50, without_p50 = median(p50s[True]), median(p50s[False])
    return {
        "find_two_parents_p50_ms_with_kinship": with_p50,
        "find_two_parents_p50_ms_identity_only": without_p50,
        "find_kinship_latency_ratio": with_p50 / without_p50,
    }


def run_kinship_cost(*, seconds: float, progress: Callable[[str], None]) -> dict:
    """Parts (d) and (e) alone: what the kinship model adds to Embed and to FindRelatives."""
    _, photo = sample_faces()
    progress("(d) whole photo: identity + kinship (shipped artifact) vs identity alone, alternating rounds")
    kinship = measure_kinship_cost(photo, seconds)
    progress("(e) FindRelatives, father + mother: two suites (shipped artifact, none), alternating rounds")
    return {**kinship, **measure_find_cost(seconds), "seconds_per_measurement": seconds}


def run_bench(*, seconds: float, concurrency: int, progress: Callable[[str], None]) -> dict:
    from kinship.embedder.public import available_cores
    from kinship.v1 import embedder_pb2

    cores = available_cores()
    progress("preparing faces (default pack on t1.jpg)")
    crops, photo = sample_faces()
    crop_requests = []
    for crop in crops:
        ok, png = cv2.imencode(".png", crop)
        crop_requests.append(embedder_pb2.EmbedRequest(image=png.tobytes(), pre_aligned=True))
    photo_requests = [embedder_pb2.EmbedRequest(image=photo)]
    progress(f"(a) raw recognizer, {cores} threads, batches 1-32")
    raw = measure_raw(crops, seconds, cores)
    raw_recognizer = RawRecognizer(cores)
    progress("(c) shipped SFace in a plain session vs prepared")
    prep = measure_prep(seconds, cores, crops)
    progress(f"(b) service over gRPC: {concurrency} callers with pre-aligned crops, then whole photos")
    with EmbedderProcess([]) as server:
        progress(f"(a)+(b) raw at batch {raw['best_batch']} and the service with crops, in alternating rounds")
        raw_alternating, service, service_errors = alternate(
            raw_recognizer, crops, raw["best_batch"], server.address, crop_requests, concurrency, 2 * seconds
        )
        photos, photo_errors = drive(server.address, photo_requests, concurrency, seconds)
        lone, _ = drive(server.address, crop_requests, 1, seconds / 2)
    progress("(b) lone caller without the batching wait")
    with EmbedderProcess(["--batch-max-wait-ms", "0"]) as server:
        lone_no_wait, _ = drive(server.address, crop_requests, 1, seconds / 2)
    progress("(d) whole photo: identity + kinship (shipped artifact) vs identity alone, alternating rounds")
    kinship = measure_kinship_cost(photo, seconds)
    progress("(e) FindRelatives, father + mother: two suites (shipped artifact, none), alternating rounds")
    find = measure_find_cost(seconds)
    return {
        **kinship,
        **find,
        "cores": cores,
        "concurrency": concurrency,
        "seconds_per_measurement": seconds,
        "raw_faces_per_s": raw_alternating,
        "raw_best_batch": raw["best_batch"],
        "raw_faces_per_s_by_batch": raw["faces_per_s_by_batch"],
        "service_faces_per_s": service.faces_per_s,
        "service_to_raw_ratio": service.faces_per_s / raw_alternating,
        "p50_ms": service.p50_ms,
        "p99_ms": service.p99_ms,
        "service_errors": service_errors + photo_errors,
        "photo_faces_per_s": photos.faces_per_s,
        "photo_p50_ms": photos.p50_ms,
        "photo_p99_ms": photos.p99_ms,
        "lone_p50_ms": lone.p50_ms,
        "lone_p50_ms_without_batch_wait": lone_no_wait.p50_ms,
        "prep_plain_faces_per_s": prep["plain_faces_per_s"],
        "prep_prepared_faces_per_s": prep["prepared_faces_per_s"],
        "prep_speedup": prep["speedup"],
        "prep_min_cosine": prep["min_cosine"],
    }


def _kinship_lines(result: dict) -> list[str]:
    return [
        f"(d) Embed of a whole photo (6 faces), lone caller: identity + kinship {result['embed_p50_ms_with_kinship']:.1f} ms "
        f"p50 vs identity alone {result['embed_p50_ms_identity_only']:.1f} ms = {result['kinship_latency_ratio']:.2f}x "
        f"({result['kinship_model_id']})",
        f"(e) FindRelatives, father + mother, sample gallery, lone caller: with the artifact "
        f"{result['find_two_parents_p50_ms_with_kinship']:.1f} ms p50 vs without "
        f"{result['find_two_parents_p50_ms_identity_only']:.1f} ms = {result['find_kinship_latency_ratio']:.2f}x",
    ]


def describe_kinship_cost(result: dict) -> str:
    return "\n".join(
        [f"kinship bench embed --kinship-only: {result['seconds_per_measurement']:.0f} s per measurement"]
        + _kinship_lines(result)
    )


def describe(result: dict) -> str:
    by_batch = ", ".join(f"{k}: {v:.1f}" for k, v in result["raw_faces_per_s_by_batch"].items())
    return "\n".join(
        [
            f"kinship bench embed: {result['cores']} cores, {result['concurrency']} callers, "
            f"{result['seconds_per_measurement']:.0f} s per measurement",
            f"(a) raw recognizer: {result['raw_faces_per_s']:.1f} faces/s at batch {result['raw_best_batch']}, "
            f"in rounds alternating with (b) (scan by batch: {by_batch})",
            f"(b) service, pre-aligned crops: {result['service_faces_per_s']:.1f} faces/s = "
            f"{result['service_to_raw_ratio']:.0%} of raw; p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms",
            f"    service, whole photos (6 faces): {result['photo_faces_per_s']:.1f} faces/s; "
            f"p50 {result['photo_p50_ms']:.1f} ms, p99 {result['photo_p99_ms']:.1f} ms",
            f"    lone caller p50: {result['lone_p50_ms']:.1f} ms with the batching wait, "
            f"{result['lone_p50_ms_without_batch_wait']:.1f} ms without",
            f"(c) prepared vs plain SFace session: {result['prep_speedup']:.2f}x "
            f"({result['prep_prepared_faces_per_s']:.1f} vs {result['prep_plain_faces_per_s']:.1f} faces/s, {result['cores']} threads), "
            f"min cosine {result['prep_min_cosine']:.7f}",
            *_kinship_lines(result),
            f"errors: {result['service_errors']}",
        ]
    )


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")
