"""Which onnxruntime execution provider runs the models: chosen by configuration, never by accident.

`cpu` is the default. `cuda` and `tensorrt` need the GPU build of onnxruntime
(`onnxruntime-gpu` installed INSTEAD of `onnxruntime`: both ship the same module, and
two installed side by side break each other, as the two cv2 builds do). Any other
provider onnxruntime knows can be named in full (`OpenVINOExecutionProvider`, ...).

onnxruntime quietly runs a session on the CPU when the provider asked for is absent or
fails to load (a missing CUDA library, say). A deployment that asked for a GPU and
got the CPU would be many times slower without a word, so both cases raise here:
at start-up, before the service says SERVING.
"""

from __future__ import annotations

import onnxruntime

from kinship.runtime.errors import ConfigError

CPU = "CPUExecutionProvider"
#: Short names accepted by --execution-provider, and the provider list each stands for.
#: The CPU provider stays last in each list: onnxruntime runs there only the operators
#: the GPU provider lacks (a per-operator fallback, not a fallback of the session).
SHORT_NAMES: dict[str, list[str]] = {
    "cpu": [CPU],
    "cuda": ["CUDAExecutionProvider", CPU],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", CPU],
}


class ExecutionProviderError(ConfigError):
    """The execution provider asked for is not available: the embedder refuses to start."""


def resolve_providers(name: str, available: list[str] | None = None) -> list[str]:
    """The provider list for `name` (a short name or a full provider name); loud error when absent."""
    available = list(onnxruntime.get_available_providers() if available is None else available)
    key = name.strip()
    providers = SHORT_NAMES.get(key.lower(), [key, CPU] if key != CPU else [CPU])
    primary = providers[0]
    if primary not in available:
        hint = (
            " install the GPU build of onnxruntime in place of the CPU one (pip uninstall onnxruntime; "
            "pip install onnxruntime-gpu) on a machine with the NVIDIA driver and CUDA libraries,"
            if primary in ("CUDAExecutionProvider", "TensorrtExecutionProvider")
            else ""
        )
        raise ExecutionProviderError(
            f"execution provider {name!r} ({primary}) is not available in this onnxruntime "
            f"{onnxruntime.__version__} (available: {', '.join(available)});{hint} or choose one of the "
            "available providers with --execution-provider / KINSHIP_EMBEDDER_EXECUTION_PROVIDER. "
            "The embedder does not fall back to the CPU by itself"
        )
    return providers


def check_session_providers(session, wanted: list[str]) -> None:
    """Raises when the session does not run on the first provider asked for (onnxruntime's silent fallback)."""
    actual = list(session.get_providers())
    if not actual or actual[0] != wanted[0]:
        raise ExecutionProviderError(
            f"onnxruntime was asked for {wanted[0]} but the session runs on {', '.join(actual) or 'nothing'}: "
            "the provider failed to load (see onnxruntime's log for the missing library); fix the GPU set-up "
            "or choose another provider. The embedder does not fall back to the CPU by itself"
        )
