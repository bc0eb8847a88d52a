"""structlog set-up: one JSON object per line, with the request id of the call.

Interceptors bind `request_id`, `rpc` and `peer` into structlog's contextvars, so
every line logged while a call runs carries them without handlers passing them on.
Libraries' stdlib logging (grpc, pymilvus) is rendered the same way (JSON, or the
console format), so a service's log is one format throughout.
"""

from __future__ import annotations

import logging
import sys

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def configure_logging(level: str = "info", fmt: str = "json", service: str | None = None) -> None:
    """Configures structlog (and stdlib logging, for libraries) once per process."""
    numeric = _LEVELS.get(level, logging.INFO)
    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
    ]
    renderer = structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        # One write per line, so the lines of processes sharing a terminal never interleave.
        # sys.stderr as it is when a logger is made, not when this ran: a stream replaced
        # since (a test's captured stderr, closed after it) is never written to.
        logger_factory=lambda *_args: structlog.WriteLogger(sys.stderr),
        cache_logger_on_first_use=False,
    )
    _configure_stdlib(max(numeric, logging.WARNING), renderer)
    structlog.contextvars.clear_contextvars()
    if service:
        structlog.contextvars.bind_contextvars(service=service)


def get_logger(name: str | None = None) -> structlog.typing.FilteringBoundLogger:
    return structlog.get_logger(name) if name else structlog.get_logger()


def _configure_stdlib(level: int, renderer) -> None:
    """Libraries' stdlib log records through structlog's renderer, on stderr; one handler of ours on the root."""
    formatter = structlog.stdlib.ProcessorFormatter(
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        foreign_pre_chain=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    handler._kinship = True  # type: ignore[attr-defined]  # ours, replaced when configured again
    root = logging.getLogger()
    root.handlers = [h for h in root.handlers if not getattr(h, "_kinship", False)] + [handler]
    root.setLevel(level)
    quiet_milvus_lite_alloc_timestamp()


class _MilvusLiteAllocTimestamp(logging.Filter):
    """Drops grpc's ERROR traceback for Milvus Lite's unimplemented AllocTimestamp, and nothing else.

    pymilvus's MilvusClient.create_index waits for the index (wait_for_creating_index), which first
    asks the server for a timestamp (AllocTimestamp). Milvus Lite 3 runs in the indexer's own process
    as a Python grpc server whose servicer does not implement that method: the generated base class
    raises NotImplementedError("Method not implemented!"), grpc's server logs it as an ERROR with a
    traceback (logger grpc._server), and the client, by design (pymilvus's ignore_unimplemented), goes
    on with timestamp 0. Nothing fails, yet a first enrolment (which creates the collections and their
    indexes) printed seven alarming tracebacks. Only a record whose exception is that
    NotImplementedError raised in the AllocTimestamp method of pymilvus's generated servicer is dropped:
    any other failure of the server, AllocTimestamp's included, is still logged.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, NotImplementedError):
            return True
        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        code = tb.tb_frame.f_code if tb is not None else None
        return not (
            code is not None and code.co_name == "AllocTimestamp" and code.co_filename.endswith("milvus_pb2_grpc.py")
        )


def quiet_milvus_lite_alloc_timestamp() -> None:
    """Installs the filter on grpc's server logger (once): see _MilvusLiteAllocTimestamp for why."""
    logger = logging.getLogger("grpc._server")
    if not any(isinstance(f, _MilvusLiteAllocTimestamp) for f in logger.filters):
        logger.addFilter(_MilvusLiteAllocTimestamp())
