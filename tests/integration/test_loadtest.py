"""`kinship loadtest` / `kinship soak` against a real server of the runtime on an ephemeral port.

Functional checks only (what is counted, which fields and codes appear); no timing is
asserted: performance is measured by the command itself, never by tests.
"""

from __future__ import annotations

import asyncio
import json
import os

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kinship.cli.main import main
from kinship.runtime import config
from kinship.runtime.server import ServerThread
from kinship.security.settings import server_settings
from kinship.v1 import embedder_pb2, embedder_pb2_grpc

GHZ_FIELDS = {
    "count",
    "total",
    "average",
    "fastest",
    "slowest",
    "rps",
    "histogram",
    "latencyDistribution",
    "statusCodeDistribution",
    "errorDistribution",
}


class SlowEmbedder(embedder_pb2_grpc.EmbedderServicer):
    """Embed echoes the image size; model_id 'slow' takes 30 ms (so a bound of 1 is reached), 'peer' names the caller."""

    async def Embed(self, request, context):
        if request.model_id == "slow":
            await asyncio.sleep(0.03)
        if request.model_id == "peer":
            return embedder_pb2.EmbedResponse(model_id=context.peer())
        return embedder_pb2.EmbedResponse(model_id="echo", image_width=len(request.image))

    async def ListModels(self, request, context):
        return embedder_pb2.ListModelsResponse()


class SlowService:
    name = "embedder"
    service_names = ("kinship.v1.Embedder",)

    def register(self, server) -> None:
        embedder_pb2_grpc.add_EmbedderServicer_to_server(SlowEmbedder(), server)

    async def check_ready(self) -> None:
        return None

    async def close(self) -> None:
        return None


def _settings(**values):
    flags = {"port": "0", **{k: str(v) for k, v in values.items()}}
    return config.resolve(server_settings("embedder", 0), flags, env={})


@pytest.fixture(scope="module")
def server():
    with ServerThread(lambda _s: SlowService(), _settings(max_concurrent_calls=1)) as srv:
        yield srv


def _loadtest(tmp_path, *args: str, command: str = "loadtest") -> tuple[int, str]:
    out = tmp_path / "report.out"
    code = main([command, *args, "--quiet", "-o", str(out)])
    return code, out.read_text() if out.exists() else ""


def test_closed_loop_health_report_has_ghz_fields_and_counts_every_call(server, tmp_path) -> None:
    code, text = _loadtest(
        tmp_path, server.address, "--call", "grpc.health.v1.Health/Check", "-c", "4", "-n", "60", "--json"
    )
    assert code == 0
    report = json.loads(text)
    assert GHZ_FIELDS <= set(report)
    assert report["count"] == 60
    assert report["statusCodeDistribution"] == {"OK": 60}
    assert report["errorDistribution"] is None
    assert sum(bucket["count"] for bucket in report["histogram"]) == 60
    assert abs(sum(bucket["frequency"] for bucket in report["histogram"]) - 1.0) < 1e-9
    percentages = [item["percentage"] for item in report["latencyDistribution"]]
    assert percentages == [10, 25, 50, 75, 90, 95, 99, 99.9]
    latencies = [item["latency"] for item in report["latencyDistribution"]]
    assert latencies == sorted(latencies)
    # ghz's units: durations in nanoseconds, histogram marks in seconds.
    assert report["fastest"] <= report["average"] <= report["slowest"]
    assert report["histogram"][-1]["mark"] == pytest.approx(report["slowest"] / 1e9, rel=1e-3)


def test_open_loop_sends_the_protobuf_json_body_and_counts_the_total(server, tmp_path) -> None:
    code, text = _loadtest(
        tmp_path, server.address, "--call", "kinship.v1.Embedder/Embed", "--rps", "200", "-n", "40",
        "--data", '{"image": "YWJj"}', "--json",
    )  # fmt: skip
    assert code == 0
    report = json.loads(text)
    assert report["count"] == 40 and report["statusCodeDistribution"] == {"OK": 40}
    assert report["options"]["rps"] == 200


def test_past_the_admission_bound_the_report_counts_resource_exhausted(server, tmp_path) -> None:
    code, text = _loadtest(
        tmp_path, server.address, "--call", "kinship.v1.Embedder/Embed", "-c", "6", "-n", "60",
        "--data", '{"model_id": "slow"}', "--json",
    )  # fmt: skip
    assert code == 0
    report = json.loads(text)
    codes = report["statusCodeDistribution"]
    assert codes.get("OK", 0) > 0 and codes.get("ResourceExhausted", 0) > 0
    assert sum(codes.values()) == 60
    assert all(key.startswith("rpc error: code = ResourceExhausted desc = ") for key in report["errorDistribution"])
    assert set(report["kinship"]["by_status"]) == {"OK", "ResourceExhausted"}


def test_csv_and_prometheus_formats(server, tmp_path) -> None:
    code, text = _loadtest(
        tmp_path, server.address, "--call", "kinship.v1.Embedder/ListModels", "-n", "20", "-O", "csv"
    )
    assert code == 0
    lines = text.strip().splitlines()
    assert lines[0].startswith("group,name,count,rps,average_ms")
    assert lines[1].startswith("all,all,20,")
    code, text = _loadtest(
        tmp_path, server.address, "--call", "kinship.v1.Embedder/ListModels", "-n", "20", "-O", "prometheus"
    )
    assert code == 0
    families = {f.name: f for f in text_string_to_metric_families(text)}
    calls = families["kinship_loadtest_calls"].samples
    assert [(s.labels["code"], s.value) for s in calls if s.name.endswith("_total")] == [("OK", 20.0)]
    assert "kinship_loadtest_latency_quantile_seconds" in families


def test_a_scenario_mixes_calls_by_weight(server, tmp_path) -> None:
    scenario = tmp_path / "mix.toml"
    scenario.write_text(
        f'target = "{server.address}"\n'
        '[[calls]]\ncall = "grpc.health.v1.Health/Check"\nweight = 3\n'
        '[[calls]]\ncall = "kinship.v1.Embedder/Embed"\nweight = 1\ndata = \'{"image": "eHl6"}\'\n'
    )
    code, text = _loadtest(tmp_path, "--scenario", str(scenario), "-c", "2", "-n", "80", "--json")
    assert code == 0
    by_call = json.loads(text)["kinship"]["by_call"]
    assert set(by_call) == {"grpc.health.v1.Health/Check", "kinship.v1.Embedder/Embed"}
    assert by_call["grpc.health.v1.Health/Check"]["count"] > by_call["kinship.v1.Embedder/Embed"]["count"] > 0


def test_bad_input_is_a_clear_error(server, tmp_path, capsys) -> None:
    code, _ = _loadtest(tmp_path, server.address, "--call", "kinship.v1.Embedder/Embedd", "-n", "1")
    assert code == 2
    assert "has no method 'Embedd'; it has Embed, EmbedBatch, ListModels" in capsys.readouterr().err
    code, _ = _loadtest(
        tmp_path, server.address, "--call", "kinship.v1.Embedder/Embed", "-n", "1", "--data", '{"imag": 1}'
    )
    assert code == 2
    assert "not a kinship.v1.EmbedRequest in the protobuf JSON mapping" in capsys.readouterr().err


def test_an_unknown_service_is_looked_up_by_reflection(server, tmp_path, capsys) -> None:
    code, _ = _loadtest(tmp_path, server.address, "--call", "acme.v1.Nothing/Do", "-n", "1")
    assert code == 2
    assert "the server does not offer acme.v1.Nothing; it offers" in capsys.readouterr().err


def test_soak_reports_windows_errors_and_memory(server, tmp_path) -> None:
    code, text = _loadtest(
        tmp_path, server.address, "--call", "grpc.health.v1.Health/Check", "--rps", "100", "--duration", "2s",
        "--window", "1s", "--watch", f"tests={os.getpid()}", "--max-p99-drift", "1000", "--json",
        command="soak",
    )  # fmt: skip
    report = json.loads(text)
    soak = report["soak"]
    assert soak["errors"] == 0 and soak["checks"]["zero_errors"]
    assert len(report["kinship"]["windows"]) >= 2
    assert soak["memory_bytes"]["tests"]["start"] > 0 and soak["memory_bytes"]["tests"]["end"] > 0
    assert code == (0 if soak["passed"] else 1)


def test_soak_fails_when_calls_fail(server, tmp_path) -> None:
    code, text = _loadtest(
        tmp_path, server.address, "--call", "kinship.v1.Embedder/Embed", "--rps", "100", "--duration", "1s",
        "--data", '{"model_id": "slow"}', "--concurrency", "50", "--json", command="soak",
    )  # fmt: skip
    report = json.loads(text)
    assert report["soak"]["errors"] > 0 and not report["soak"]["checks"]["zero_errors"]
    assert code == 1


def test_a_target_that_does_not_answer_is_reported(tmp_path, capsys) -> None:
    from tests.conftest import free_port

    code, _ = _loadtest(
        tmp_path, f"127.0.0.1:{free_port()}", "--call", "grpc.health.v1.Health/Check", "-n", "1", "-t", "1s"
    )
    assert code == 1
    assert "is the service running?" in capsys.readouterr().err


def test_several_connections_are_separate_http2_connections(server) -> None:
    from kinship.loadtest.engine import CallPlan, RunOptions, _Channels

    request = embedder_pb2.EmbedRequest(model_id="peer").SerializeToString()

    async def peers() -> set[str]:
        channels = _Channels(RunOptions(connections=3))
        plan = CallPlan("Embed", server.address, "/kinship.v1.Embedder/Embed", [request])
        seen = set()
        for _ in range(6):
            reply = await channels.callable_for(plan)(request, timeout=5)
            seen.add(embedder_pb2.EmbedResponse.FromString(reply).model_id)
        await channels.close()
        return seen

    # The server sees each connection as its own peer (client address and port).
    assert len(asyncio.run(peers())) == 3


def test_record_writes_every_measured_call_and_watch_reports_cpu(server, tmp_path) -> None:
    import csv

    timings = tmp_path / "calls.csv"
    code, text = _loadtest(
        tmp_path, server.address, "--call", "grpc.health.v1.Health/Check", "-c", "2", "-n", "50", "--warmup", "0.2s",
        "--record", str(timings), "--watch", f"tests={os.getpid()}", "--json",
    )  # fmt: skip
    assert code == 0
    report = json.loads(text)
    rows = list(csv.DictReader(timings.open()))
    # The interceptor saw the same measured calls as the report (warm-up calls left out of both;
    # a call sent in the microseconds between the two clocks' readings of the boundary may fall either side).
    assert report["count"] == 50 and abs(len(rows) - 50) <= 1
    assert {row["code"] for row in rows} == {"OK"}
    processes = report["kinship"]["processes"]
    assert processes["tests"]["cpu_seconds"] is not None and processes["tests"]["rss_end"] > 0
    assert processes["loadtest"]["cpu_seconds"] > 0


@pytest.mark.parametrize("mode", [("-c", "4"), ("--rps", "300")], ids=["closed", "open"])
def test_the_threads_engine_counts_the_same_way(server, tmp_path, mode) -> None:
    timings = tmp_path / "calls.csv"
    code, text = _loadtest(
        tmp_path, server.address, "--call", "kinship.v1.Embedder/Embed", *mode, "-n", "60", "--engine", "threads",
        "--data", '{"model_id": "slow"}', "--record", str(timings), "--json",
    )  # fmt: skip
    assert code == 0
    report = json.loads(text)
    assert report["count"] == 60 and report["options"]["engine"] == "threads"
    codes = report["statusCodeDistribution"]
    assert sum(codes.values()) == 60 and codes.get("OK", 0) > 0
    assert len(timings.read_text().splitlines()) - 1 == 60


@pytest.mark.parametrize("engine", ["aio", "threads"])
def test_open_loop_latency_counts_from_the_due_time_not_the_send(server, tmp_path, engine) -> None:
    # 40 calls due at 100/s, each 30 ms, at most one in flight: the later ones wait for the
    # slot. Timed from their due time they show the wait (coordinated omission not hidden);
    # timed from the send they would all read about 30 ms.
    code, text = _loadtest(
        tmp_path, server.address, "--call", "kinship.v1.Embedder/Embed", "--rps", "100", "-n", "40",
        "--concurrency", "1", "--data", '{"model_id": "slow"}', "--engine", engine, "--json",
    )  # fmt: skip
    assert code == 0
    report = json.loads(text)
    assert report["statusCodeDistribution"] == {"OK": 40}
    # The last call is due at 0.39 s and cannot finish before 40 x 30 ms = 1.2 s.
    assert report["slowest"] > 0.6e9
    assert report["fastest"] < 0.2e9
