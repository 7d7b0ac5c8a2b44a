"""Bad connections and bad projects are one-line errors; the CLI prints them without a traceback."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest

from g3d.annotate.client import ConnectionConfig, LabelStudioError, connect
from g3d.annotate.configs import keypoint_schema, pose_schema
from g3d.annotate.push import PushConfig, push
from g3d.classes import get_preset

pytestmark = pytest.mark.slow

CLI = "import typer; from g3d.annotate.commands import annotate_app; app = typer.Typer(); app.add_typer(annotate_app, name='annotate'); app()"


def cli(*args, env=None, timeout=300):
    return subprocess.run([sys.executable, "-c", CLI, *args], capture_output=True, text=True, timeout=timeout, env=env)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and "Traceback" not in text
    return text


def _jwt(payload: dict) -> str:
    enc = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=")  # noqa: E731
    return f"{enc({'alg': 'HS256', 'typ': 'JWT'})}.{enc(payload)}.c2lnbmF0dXJl"


def test_server_down_and_not_label_studio(label_studio):
    down = f"http://127.0.0.1:{_free_port()}"
    with pytest.raises(LabelStudioError) as e:
        connect(ConnectionConfig(url=down, api_key=label_studio.legacy_token, timeout=5))
    assert _one_line(e.value).startswith(f"cannot reach Label Studio at {down}")
    with pytest.raises(LabelStudioError) as e:
        connect(ConnectionConfig(url=label_studio.url + "/static", api_key=label_studio.legacy_token))
    assert "does not answer like a Label Studio server" in _one_line(e.value)


def test_both_token_kinds_work_and_a_wrong_one_says_which_kind_was_tried(label_studio):
    for key, kind in ((label_studio.legacy_token, "legacy token"), (label_studio.personal_access_token, "personal access token")):
        with connect(ConnectionConfig(url=label_studio.url, api_key=key)) as conn:
            assert conn.kind == kind and conn.user_email == label_studio.username
            assert conn.users()[conn.user_id] == label_studio.username
    with pytest.raises(LabelStudioError) as e:
        connect(ConnectionConfig(url=label_studio.url, api_key="0123456789abcdef-wrong"))
    msg = _one_line(e.value)
    assert "refused the legacy token '0123...'" in msg and "HTTP 401" in msg and "0123456789abcdef-wrong" not in msg
    pat = label_studio.personal_access_token
    forged = pat.rsplit(".", 1)[0] + ".AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    with pytest.raises(LabelStudioError) as e:
        connect(ConnectionConfig(url=label_studio.url, api_key=forged))
    assert "refused the personal access token (JWT refresh token)" in _one_line(e.value)
    with pytest.raises(LabelStudioError, match="personal access token .* expired on"):
        connect(ConnectionConfig(url=label_studio.url, api_key=_jwt({"token_type": "refresh", "exp": time.time() - 60})))


def test_legacy_token_refused_by_the_organisation(label_studio):
    label_studio.set_legacy_tokens(False)
    try:
        with pytest.raises(LabelStudioError) as e:
            connect(ConnectionConfig(url=label_studio.url, api_key=label_studio.legacy_token))
        msg = _one_line(e.value)
        assert "refused the legacy token" in msg and "legacy token authentication has been disabled" in msg
        assert "pass a personal access token" in msg
        with connect(ConnectionConfig(url=label_studio.url, api_key=label_studio.personal_access_token)):
            pass
    finally:
        label_studio.set_legacy_tokens(True)
    with connect(ConnectionConfig(url=label_studio.url, api_key=label_studio.legacy_token)):
        pass


def test_title_clash_with_another_config_or_another_dataset(label_studio, small_dataset_factory):
    folder = small_dataset_factory("errors", seed=14, views=2, samples=2)
    cc = ConnectionConfig(url=label_studio.url, api_key=label_studio.personal_access_token)
    with connect(cc) as conn:
        conn.sdk.projects.create(title="someone else's project", label_config=keypoint_schema(get_preset("car")).xml)
        conn.sdk.projects.create(title="same config, not ours", label_config=pose_schema(get_preset("car")).xml)
    with pytest.raises(LabelStudioError) as e:
        push(PushConfig(folder=folder, kind="poses", connection=cc, title="someone else's project"))
    assert "has a different label config than g3d's poses config" in _one_line(e.value) and "--title" in str(e.value)
    with pytest.raises(LabelStudioError, match="was not made by g3d for this dataset"):
        push(PushConfig(folder=folder, kind="poses", connection=cc, title="same config, not ours"))
    with pytest.raises(Exception, match="Label Studio wants 3 to 50"):
        push(PushConfig(folder=folder, kind="poses", connection=cc, title="x" * 51))


def test_cli_push_pull_and_one_line_errors(label_studio, small_dataset_factory):
    folder = small_dataset_factory("cli", seed=15, views=2, samples=2)
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("LABEL_STUDIO_")}
    r = cli("annotate", "--help", env=env)
    assert r.returncode == 0 and all(c in r.stdout for c in ("push", "pull", "serve"))
    down = f"http://127.0.0.1:{_free_port()}"
    r = cli("annotate", "push", "poses", str(folder), "--url", down, "--api-key", "abcdefghij", env=env)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: cannot reach Label Studio"), r.stderr
    r = cli("annotate", "pull", str(folder), env=env)
    assert r.returncode == 2 and "no Label Studio URL" in r.stderr and "Traceback" not in r.stderr
    r = cli("annotate", "push", "boxes", str(folder), "--url", label_studio.url, "--api-key", label_studio.legacy_token, env=env)
    assert r.returncode == 2 and "unknown task kind 'boxes'" in r.stderr
    r = cli("annotate", "serve", "--label-studio", "/nonexistent/label-studio", "--data-dir", str(folder.parent / "ls"), env=env)
    assert r.returncode == 2 and "scripts/label-studio-venv.sh" in r.stderr and "Traceback" not in r.stderr

    env.update(LABEL_STUDIO_URL=label_studio.url, LABEL_STUDIO_API_KEY=label_studio.personal_access_token)
    r = cli("annotate", "push", "poses", str(folder), env=env)
    assert r.returncode == 0 and "2 tasks imported into new project" in r.stderr, r.stderr
    r = cli("annotate", "pull", str(folder), env=env)  # nobody has annotated yet: a report, not a crash
    assert r.returncode == 0 and "0/2 views annotated" in r.stderr and "unannotated_view: poses view 0" in r.stderr, r.stderr
    assert not (folder / "annotations" / "pose_bins.parquet").exists()
    with connect(ConnectionConfig(url=label_studio.url, api_key=label_studio.personal_access_token)) as conn:
        pid = json.loads((folder / "annotate" / "projects.json").read_text())["poses"]["project_id"]
        conn.sdk.actions.create(id="predictions_to_annotations", project=pid, selected_items={"all": True, "excluded": []})
    r = cli("annotate", "pull", str(folder), env=env)
    assert r.returncode == 0 and "2/2 views annotated" in r.stderr, r.stderr
    assert len(pq.read_table(folder / "annotations" / "pose_bins.parquet")) == 2


def test_restart_on_the_same_data_dir_is_quick_and_keeps_the_credentials(label_studio):
    before = dict(label_studio.creds)
    label_studio.stop()
    t0 = time.monotonic()
    label_studio.start()
    assert time.monotonic() - t0 < 60 and label_studio.creds == before
    with connect(ConnectionConfig(url=label_studio.url, api_key=label_studio.personal_access_token)) as conn:
        assert conn.user_email == label_studio.username
