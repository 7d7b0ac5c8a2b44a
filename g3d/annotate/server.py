"""Start and stop a local Label Studio server for one user (``g3d annotate serve`` and the tests).

Label Studio lives in its own virtual environment (it pins its own label-studio-sdk, numpy and
Django): ``scripts/label-studio-venv.sh`` makes ``<repo>/.venv-ls``. The command is found at
``ServeConfig.executable``, ``$G3D_LABEL_STUDIO``, ``<repo>/.venv-ls/bin/label-studio``, or on
``PATH``, in that order.

The server runs with no network calls of its own (version check, analytics and error reporting
off), listens on loopback only, keeps its SQLite database and media in ``data_dir``, and serves
local files under ``document_root`` (a parent of the dataset folders) so pushes need no upload.
The first start on an empty ``data_dir`` runs ``label-studio init`` (database migrations, 30-40
s) and creates the user, a legacy token and a personal access token; they are kept in
``data_dir/g3d-credentials.json`` (mode 600) and reused by later starts (3-5 s).
"""

from __future__ import annotations

import atexit
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from g3d.annotate.client import LabelStudioError, error_detail

LS_VERSION = "1.23.2"
SCRIPT = "scripts/label-studio-venv.sh"
ENV_EXECUTABLE = "G3D_LABEL_STUDIO"
CREDENTIALS = "g3d-credentials.json"
DATABASE = "label_studio.sqlite3"
_STARTED = re.compile(r"Starting development server at (https?://[^\s/]+?):(\d+)/")
REPO = Path(__file__).resolve().parents[2]


@dataclass
class ServeConfig:
    """A local single-user Label Studio."""

    data_dir: Path  # database, media, secret key and g3d-credentials.json; created if missing
    document_root: Path | None = None  # LOCAL_FILES_DOCUMENT_ROOT (a parent of the dataset folders); None = no local files
    host: str = "127.0.0.1"  # interface to listen on (loopback: nobody else can connect)
    port: int = 8080  # first port tried; Label Studio moves to port+1... when it is busy
    username: str = "g3d@localhost"  # the one user's email (first start only)
    password: str | None = None  # None = a random one (first start), kept in g3d-credentials.json
    legacy_token: str | None = None  # None = a random one (first start); more than 5 characters
    legacy_tokens_enabled: bool = True  # accept the legacy token too (False: personal access tokens only)
    executable: str | None = None  # the label-studio command; None = $G3D_LABEL_STUDIO, .venv-ls, PATH
    start_timeout: float = 240.0  # seconds for init + start before giving up
    stop_timeout: float = 20.0  # seconds between SIGTERM and SIGKILL
    log_path: Path | None = None  # the server's output; None = data_dir/label-studio.log


def find_executable(explicit: str | None = None) -> str:
    """Path of the ``label-studio`` command; a missing one is a one-line error naming the script."""
    for where, path in (("--label-studio", explicit), (f"${ENV_EXECUTABLE}", os.environ.get(ENV_EXECUTABLE))):
        if path:  # asked for by name: that one or an error, never a silent fallback
            if os.path.isfile(path) and os.access(path, os.X_OK):
                return path
            raise LabelStudioError(
                f"{where} {path} is not an executable label-studio command: run {SCRIPT} "
                f"(installs label-studio=={LS_VERSION} into .venv-ls) or fix {where}"
            )
    candidates = [("the project's .venv-ls", str(REPO / ".venv-ls" / "bin" / "label-studio"))]
    on_path = shutil.which("label-studio")
    if on_path:
        candidates.append(("PATH", on_path))
    for _, path in candidates:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    looked = ", ".join(f"{where} ({p})" for where, p in candidates)
    raise LabelStudioError(
        f"no Label Studio server command found (looked at ${ENV_EXECUTABLE}, {looked}): run {SCRIPT} "
        f"(installs label-studio=={LS_VERSION} into .venv-ls) or set {ENV_EXECUTABLE}"
    )


def server_env(cfg: ServeConfig, creds: dict[str, str]) -> dict[str, str]:
    """The environment of the server process: data dir, user, no outgoing calls, local files."""
    env = dict(os.environ)
    for name in ("LABEL_STUDIO_API_KEY", "LABEL_STUDIO_URL"):  # the client's variables, not the server's
        env.pop(name, None)
    env.update(
        LABEL_STUDIO_BASE_DATA_DIR=str(Path(cfg.data_dir).resolve()),
        LABEL_STUDIO_USERNAME=creds["username"],
        LABEL_STUDIO_PASSWORD=creds["password"],
        LABEL_STUDIO_USER_TOKEN=creds["legacy_token"],
        LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN="true",  # read at the first start only; see _first_start
        LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK="true",
        LABEL_STUDIO_LATEST_VERSION_CHECK="false",
        LABEL_STUDIO_COLLECT_ANALYTICS="false",
        LABEL_STUDIO_SENTRY_DSN="",
        LABEL_STUDIO_FRONTEND_SENTRY_DSN="",
        PYTHONUNBUFFERED="1",
    )
    # Label Studio also reads the bare names (HOST, PORT, ...); pin the ones that would change it.
    env.setdefault("LABEL_STUDIO_HOST", "")
    if cfg.document_root is not None:
        env["LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED"] = "true"
        env["LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT"] = str(Path(cfg.document_root).resolve())
    else:
        env["LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED"] = "false"
    return env


class LabelStudioServer:
    """A running Label Studio process; a context manager that stops it (SIGTERM) on exit.

    After :meth:`start`: ``url`` (e.g. ``http://127.0.0.1:8080``), ``port``, ``username``,
    ``password``, ``legacy_token`` and ``personal_access_token`` (a JWT refresh token).
    """

    def __init__(self, cfg: ServeConfig, log: Callable[[str], None] | None = None) -> None:
        self.cfg = cfg
        self.log = log or (lambda m: None)
        self.data_dir = Path(cfg.data_dir).resolve()
        self.log_path = Path(cfg.log_path) if cfg.log_path else self.data_dir / "label-studio.log"
        self.process: subprocess.Popen | None = None
        self.url: str | None = None
        self.port: int | None = None
        self.creds: dict[str, str] = {}
        self.init_seconds = 0.0
        self.start_seconds = 0.0

    # -- credentials ----------------------------------------------------------------------
    @property
    def username(self) -> str:
        return self.creds["username"]

    @property
    def password(self) -> str:
        return self.creds["password"]

    @property
    def legacy_token(self) -> str:
        return self.creds["legacy_token"]

    @property
    def personal_access_token(self) -> str:
        return self.creds["personal_access_token"]

    def _load_creds(self) -> dict[str, str]:
        path = self.data_dir / CREDENTIALS
        stored: dict[str, str] = {}
        if path.is_file():
            try:
                stored = json.loads(path.read_text())
            except ValueError:
                raise LabelStudioError(f"{path} is not valid JSON: delete the data dir {self.data_dir} to start afresh") from None
        cfg = self.cfg
        creds = {
            "username": stored.get("username") or cfg.username,
            "password": stored.get("password") or cfg.password or secrets.token_urlsafe(12),
            "legacy_token": stored.get("legacy_token") or cfg.legacy_token or secrets.token_hex(20),
        }
        if stored.get("personal_access_token"):
            creds["personal_access_token"] = stored["personal_access_token"]
        if len(creds["legacy_token"]) <= 5:
            raise LabelStudioError(f"the legacy token must be longer than 5 characters, got {len(creds['legacy_token'])}: pass a longer one")
        return creds

    def _save_creds(self) -> None:
        path = self.data_dir / CREDENTIALS
        tmp = path.with_name(f".{path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(self.creds, fh, indent=2)
        os.replace(tmp, path)

    # -- process --------------------------------------------------------------------------
    def _run_init(self, exe: str, env: dict[str, str], deadline: float) -> None:
        """``label-studio init -q``: migrations, the user, the organisation (legacy tokens on)."""
        t0 = time.monotonic()
        self.log(f"label-studio: first start in {self.data_dir}: running migrations (30-40 s)")
        with open(self.log_path, "ab") as fh:
            try:
                done = subprocess.run(
                    [exe, "init", "-q", "--enable-legacy-api-token"],
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                    timeout=max(1.0, deadline - time.monotonic()),
                    cwd=self.data_dir,
                )
            except subprocess.TimeoutExpired:
                raise LabelStudioError(
                    f"label-studio init did not finish within {self.cfg.start_timeout:.0f} s (log: {self.log_path}): raise the start timeout"
                ) from None
        if done.returncode != 0 or not (self.data_dir / DATABASE).is_file():
            raise LabelStudioError(f"label-studio init failed with exit code {done.returncode}: {self._log_tail()} (log: {self.log_path})")
        self.init_seconds = time.monotonic() - t0

    def _log_tail(self, lines: int = 3) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no log"
        tail = [ln.strip() for ln in text if ln.strip()][-lines:]
        return " | ".join(tail)[-400:] or "empty log"

    def start(self) -> "LabelStudioServer":
        """Start the server (initialising ``data_dir`` first if needed) and wait for /health."""
        import httpx

        if self.process is not None:
            return self
        exe = find_executable(self.cfg.executable)
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LabelStudioError(f"cannot create the data dir {self.data_dir} ({exc.strerror}): choose a writable --data-dir") from None
        if self.cfg.document_root is not None and not Path(self.cfg.document_root).is_dir():
            raise LabelStudioError(f"--document-root {self.cfg.document_root} is not a folder: pass the folder that holds your datasets")
        self.creds = self._load_creds()
        env = server_env(self.cfg, self.creds)
        t0 = time.monotonic()
        deadline = t0 + self.cfg.start_timeout
        first = not (self.data_dir / DATABASE).is_file()
        if first:
            self._run_init(exe, env, deadline)
        self._save_creds()
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        logf = open(self.log_path, "ab")
        try:
            self.process = subprocess.Popen(
                [exe, "start", "--no-browser", "--internal-host", self.cfg.host, "--port", str(self.cfg.port)],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                start_new_session=True,  # Ctrl-C in a terminal reaches g3d, which stops the server
            )
        finally:
            logf.close()
        atexit.register(self.stop)
        try:
            self._wait_ready(offset, deadline, httpx)
            self.start_seconds = time.monotonic() - t0
            if "personal_access_token" not in self.creds:
                self._create_personal_access_token(httpx)
            self._apply_legacy_setting(httpx)
        except BaseException:
            self.stop()
            raise
        self._save_creds()
        return self

    def _wait_ready(self, offset: int, deadline: float, httpx) -> None:
        while True:
            if self.process.poll() is not None:
                raise LabelStudioError(
                    f"Label Studio exited with code {self.process.returncode} while starting: {self._log_tail()} (log: {self.log_path})"
                )
            if self.url is None:
                with open(self.log_path, "rb") as fh:
                    fh.seek(offset)
                    m = _STARTED.search(fh.read().decode(errors="replace"))
                if m:
                    self.port = int(m.group(2))
                    host = self.cfg.host if self.cfg.host not in ("0.0.0.0", "::") else "127.0.0.1"
                    self.url = f"http://{host}:{self.port}"
            if self.url is not None:
                try:
                    r = httpx.get(f"{self.url}/health", timeout=2.0)
                    if r.status_code == 200 and r.json().get("status") == "UP":
                        return
                except (httpx.HTTPError, ValueError):
                    pass
            if time.monotonic() > deadline:
                raise LabelStudioError(
                    f"Label Studio did not answer /health within {self.cfg.start_timeout:.0f} s: {self._log_tail()} (log: {self.log_path})"
                )
            time.sleep(0.25)

    def _post(self, httpx, path: str, headers: dict[str, str], body: dict[str, Any]):
        r = httpx.post(f"{self.url}{path}", json=body, headers=headers, timeout=30.0)
        return r

    def _create_personal_access_token(self, httpx) -> None:
        r = self._post(httpx, "/api/token/", {"Authorization": f"Token {self.legacy_token}"}, {})
        if r.status_code != 201:
            raise LabelStudioError(
                f"could not create a personal access token on {self.url} (HTTP {r.status_code}: {error_detail(r.content)}): "
                f"delete the data dir {self.data_dir} to start afresh"
            )
        self.creds["personal_access_token"] = r.json()["token"]

    def access_headers(self, httpx) -> dict[str, str]:
        """Bearer headers from the personal access token (works whatever the legacy setting)."""
        r = self._post(httpx, "/api/token/refresh/", {}, {"refresh": self.personal_access_token})
        if r.status_code != 200:
            raise LabelStudioError(f"the stored personal access token was refused by {self.url} ({error_detail(r.content)}): delete {self.data_dir}")
        return {"Authorization": f"Bearer {r.json()['access']}"}

    def set_legacy_tokens(self, enabled: bool) -> None:
        """Accept (or refuse) legacy tokens in the server's organisation."""
        import httpx

        r = self._post(
            httpx, "/api/jwt/settings", self.access_headers(httpx), {"api_tokens_enabled": True, "legacy_api_tokens_enabled": bool(enabled)}
        )
        if r.status_code not in (200, 201):
            raise LabelStudioError(f"could not change the token settings on {self.url} (HTTP {r.status_code}: {error_detail(r.content)})")

    def _apply_legacy_setting(self, httpx) -> None:
        r = httpx.get(f"{self.url}/api/jwt/settings", headers=self.access_headers(httpx), timeout=30.0)
        if r.status_code == 200 and bool(r.json().get("legacy_api_tokens_enabled")) != self.cfg.legacy_tokens_enabled:
            self.set_legacy_tokens(self.cfg.legacy_tokens_enabled)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after ``stop_timeout`` seconds. Safe to call twice."""
        proc, self.process = self.process, None
        try:
            atexit.unregister(self.stop)
        except Exception:  # pragma: no cover
            pass
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=self.cfg.stop_timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def __enter__(self) -> "LabelStudioServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
