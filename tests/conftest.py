"""Shared test fixtures. ``tests/fixtures/`` holds the project's test data (see its READMEs).

``label_studio``: ONE real Label Studio server per test session, on 127.0.0.1 (the annotate and the
pipeline tests share it). The server command is ``$G3D_LABEL_STUDIO`` or
``<repo>/.venv-ls/bin/label-studio`` (made by ``scripts/label-studio-venv.sh``). When neither exists
the server tests FAIL with a message naming the script; ``G3D_SKIP_LABEL_STUDIO=1`` skips them
instead (an explicit opt-out). The server's data dir and its local-files document root are the
session's temporary folder, so every dataset made with ``tmp_path_factory`` is served as local
files. Its first start runs the database migrations (30-60 s on 2 cores); it is stopped with
SIGTERM at the end.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
SCRIPT = "scripts/label-studio-venv.sh"


@pytest.fixture(scope="session")
def stylegan_fixtures() -> Path:
    """Folder of the StyleGAN2 conformance fixtures (tests/fixtures/stylegan2)."""
    path = FIXTURES / "stylegan2"
    if not path.is_dir():
        pytest.fail(f"missing test data {path}: the checkout is incomplete (git checkout -- tests/fixtures)")
    return path


@pytest.fixture(autouse=True)
def _two_threads():
    """Tests run with the thread count CI has, so float results match between runs."""
    import torch

    torch.set_num_threads(2)
    yield


def _executable() -> str:
    env = os.environ.get("G3D_LABEL_STUDIO")
    if env:
        if not (os.path.isfile(env) and os.access(env, os.X_OK)):
            pytest.fail(f"G3D_LABEL_STUDIO={env} is not an executable file: run {SCRIPT} and unset it, or point it at a label-studio command")
        return env
    local = REPO / ".venv-ls" / "bin" / "label-studio"
    if local.is_file():
        return str(local)
    pytest.fail(
        f"no Label Studio server for the annotate tests: run {SCRIPT} (creates .venv-ls with label-studio 1.23.2, ~75 s) "
        "or set G3D_LABEL_STUDIO to a label-studio command; G3D_SKIP_LABEL_STUDIO=1 skips these tests"
    )


@pytest.fixture(scope="session")
def document_root(tmp_path_factory) -> Path:
    """The folder the server may serve as local files; datasets live below it."""
    return tmp_path_factory.getbasetemp()


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory, document_root):
    """A running Label Studio (``g3d.annotate.server.LabelStudioServer``): url, tokens, set_legacy_tokens."""
    from g3d.annotate.server import LabelStudioServer, ServeConfig

    if os.environ.get("G3D_SKIP_LABEL_STUDIO") == "1" and not os.environ.get("G3D_LABEL_STUDIO"):
        pytest.skip("G3D_SKIP_LABEL_STUDIO=1: Label Studio server tests skipped on request")
    exe = _executable()
    data = tmp_path_factory.mktemp("label-studio-data")
    cfg = ServeConfig(
        data_dir=data,
        document_root=document_root,
        port=18080 + os.getpid() % 1000,  # moved to the next free port if busy; read back from the log
        executable=exe,
        start_timeout=300.0,
        stop_timeout=20.0,
    )
    server = LabelStudioServer(cfg)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        assert server.process is None
