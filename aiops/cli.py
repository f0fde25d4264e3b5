"""The ``aiops`` command line (being written)."""


def main() -> None:
    raise SystemExit("aiops: not built yet")
