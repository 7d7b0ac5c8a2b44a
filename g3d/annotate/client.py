"""The connection to a Label Studio server: URL, API key, which kind of key, one-line errors.

Label Studio accepts two kinds of API key:

* a **personal access token** (the default since Label Studio 1.17): a JWT *refresh* token. It is
  exchanged at ``POST /api/token/refresh/`` for a short-lived access token, which is sent as
  ``Authorization: Bearer <access>``.
* a **legacy token**: any other string, sent as ``Authorization: Token <key>``. Organisations
  created since 1.17 reject it unless an admin enables legacy tokens.

:func:`connect` tells the two apart by decoding the key (a JWT is three base64url parts whose
payload has ``token_type``), checks that the server answers ``/health``, that the key is accepted,
and raises :class:`LabelStudioError` with one line that names the URL, the kind of key tried and
the fix. The ``label_studio_sdk`` client is imported only here, inside :func:`connect`.
"""

from __future__ import annotations

import base64
import json
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterator

from g3d.errors import G3DError, MissingDependencyError

PERSONAL = "personal access token"
LEGACY = "legacy token"

ENV_URL = "LABEL_STUDIO_URL"
ENV_KEY = "LABEL_STUDIO_API_KEY"


class LabelStudioError(G3DError):
    """The Label Studio server is unreachable, refused the key, or refused a request."""


@dataclass
class ConnectionConfig:
    """Where the server is and how to authenticate."""

    url: str | None = None  # base URL, e.g. http://127.0.0.1:8080; None = $LABEL_STUDIO_URL
    api_key: str | None = None  # personal access token or legacy token; None = $LABEL_STUDIO_API_KEY
    timeout: float = 60.0  # seconds per HTTP request (exports of thousands of tasks take a few)


def _b64json(part: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def jwt_payload(key: str) -> dict[str, Any] | None:
    """The claims of a JWT (signature not checked), or None when ``key`` is not a JWT."""
    parts = key.split(".")
    if len(parts) != 3:
        return None
    try:
        header, payload = _b64json(parts[0]), _b64json(parts[1])
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(header, dict) or "alg" not in header or not isinstance(payload, dict):
        return None
    return payload


def token_kind(key: str) -> str:
    """``"personal access token"`` for a JWT refresh token, ``"legacy token"`` for anything else.

    A JWT that cannot work as an API key (an access token, or an expired token) is a
    :class:`LabelStudioError` naming the problem.
    """
    payload = jwt_payload(key)
    if payload is None:
        return LEGACY
    kind = payload.get("token_type")
    if kind != "refresh":
        raise LabelStudioError(
            f"the API key {describe_key(key)} is a JWT {kind or 'without token_type'} token, not a personal access token: "
            "copy the personal access token from Label Studio's Account & Settings page"
        )
    exp = payload.get("exp")
    if exp is None:
        raise LabelStudioError(
            f"the personal access token {describe_key(key)} has no expiry and Label Studio will refuse it: create a new one in Account & Settings"
        )
    if float(exp) < time.time():
        when = datetime.fromtimestamp(float(exp), timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        raise LabelStudioError(
            f"the personal access token {describe_key(key)} expired on {when}: create a new one in Label Studio's Account & Settings page"
        )
    return PERSONAL


def describe_key(key: str) -> str:
    """A key shown without giving it away: its first 4 characters and its length."""
    return f"'{key[:4]}...' ({len(key)} characters)" if len(key) > 8 else f"({len(key)} characters)"


def error_detail(body: Any, limit: int = 300) -> str:
    """One line out of a Label Studio error body (``detail`` and ``validation_errors``)."""
    if isinstance(body, (bytes, bytearray)):
        body = body.decode(errors="replace")
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError:
            text = " ".join(body.split())
            return text[:limit] or "no details"
    if isinstance(body, dict):
        parts = []
        if body.get("detail"):
            parts.append(str(body["detail"]))
        errs = body.get("validation_errors")
        if isinstance(errs, dict):
            parts += [f"{k}: {'; '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in errs.items()]
        elif errs:
            parts.append(str(errs))
        if not parts:
            parts = [json.dumps(body)[:limit]]
        text = " | ".join(parts)
    else:
        text = str(body)
    text = " ".join(text.split())
    return text[:limit] + ("..." if len(text) > limit else "")


def resolve(cfg: ConnectionConfig) -> tuple[str, str]:
    """(url, api key) from the config or the environment; a missing one is a one-line error."""
    url = cfg.url or os.environ.get(ENV_URL)
    key = cfg.api_key or os.environ.get(ENV_KEY)
    if not url:
        raise LabelStudioError(f"no Label Studio URL: pass --url or set {ENV_URL} (start a local server with `g3d annotate serve`)")
    if not key:
        raise LabelStudioError(
            f"no Label Studio API key: pass --api-key or set {ENV_KEY} (a personal access token from Account & Settings, or a legacy token)"
        )
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise LabelStudioError(f"--url {url!r} is not an http(s) URL: pass e.g. --url http://127.0.0.1:8080")
    import httpx

    try:
        parsed = httpx.URL(url)
        if not parsed.host:
            raise ValueError("no host")
    except Exception as exc:  # httpx.InvalidURL, ValueError
        raise LabelStudioError(f"--url {url!r} is not a valid URL ({exc}): pass e.g. --url http://127.0.0.1:8080 or http://[::1]:8080") from None
    return url, key.strip()


class Connection:
    """An authenticated session with one Label Studio server.

    ``sdk`` is the ``label_studio_sdk.LabelStudio`` client; :meth:`request` makes the few calls
    the SDK does not offer (file upload, local-files probes) with the same credentials.
    """

    def __init__(self, url: str, api_key: str, kind: str, timeout: float) -> None:
        import httpx

        self.url = url
        self.api_key = api_key
        self.kind = kind
        self.timeout = timeout
        self.http = httpx.Client(base_url=url, timeout=timeout, follow_redirects=False)
        self._access: str | None = None
        self._access_exp = 0.0
        self.user_id: int | None = None
        self.user_email: str | None = None
        self._sdk = None
        self._users: dict[int, str] | None = None

    # -- authentication -------------------------------------------------------------------
    def _refresh(self) -> None:
        import httpx

        try:
            r = self.http.post("/api/token/refresh/", json={"refresh": self.api_key})
        except httpx.HTTPError as exc:
            raise unreachable(self.url, exc) from None
        if r.status_code != 200:
            raise LabelStudioError(
                f"Label Studio at {self.url} refused the {PERSONAL} (JWT refresh token) {describe_key(self.api_key)} "
                f"(HTTP {r.status_code}: {error_detail(r.content)}): create a new one in Account & Settings, or pass a legacy token"
            )
        access = r.json().get("access", "")
        payload = jwt_payload(access) or {}
        self._access = access
        self._access_exp = float(payload.get("exp", time.time() + 60))

    def headers(self) -> dict[str, str]:
        """The Authorization header for the next request (refreshing the access token if due)."""
        if self.kind == LEGACY:
            return {"Authorization": f"Token {self.api_key}"}
        if self._access is None or time.time() > self._access_exp - 30:
            self._refresh()
        return {"Authorization": f"Bearer {self._access}"}

    def refused(self, status: int, body: Any) -> LabelStudioError:
        """The one-line error for a 401/403 answer to this connection's key."""
        detail = error_detail(body)
        if self.kind == LEGACY:
            if "legacy" in detail.lower():
                fix = "pass a personal access token (Account & Settings), or ask an admin to enable legacy tokens (Organization > API Tokens Settings)"
            else:
                fix = "copy the key from Account & Settings (or pass a personal access token)"
            what = f"the {LEGACY} {describe_key(self.api_key)}"
        else:
            what = f"the {PERSONAL} (JWT refresh token) {describe_key(self.api_key)}"
            fix = "create a new one in Account & Settings, or pass a legacy token"
        return LabelStudioError(f"Label Studio at {self.url} refused {what} (HTTP {status}: {detail}): {fix}")

    # -- raw requests ---------------------------------------------------------------------
    def request(self, method: str, path: str, ok: tuple[int, ...] = (200, 201, 204), what: str | None = None, **kwargs: Any):
        """An authenticated request; a status outside ``ok`` is a :class:`LabelStudioError`."""
        import httpx

        headers = dict(kwargs.pop("headers", {}) or {})
        headers.update(self.headers())
        try:
            r = self.http.request(method, path, headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            raise unreachable(self.url, exc) from None
        if r.status_code in ok:
            return r
        if r.status_code == 401:
            raise self.refused(r.status_code, r.content)
        raise LabelStudioError(f"{what or f'{method} {path}'} failed on {self.url} (HTTP {r.status_code}: {error_detail(r.content)})")

    # -- the SDK --------------------------------------------------------------------------
    @property
    def sdk(self):
        """The ``label_studio_sdk.LabelStudio`` client (made on first use)."""
        if self._sdk is None:
            from label_studio_sdk import LabelStudio

            self._sdk = LabelStudio(base_url=self.url, api_key=self.api_key, timeout=self.timeout)
        return self._sdk

    @contextmanager
    def api(self, what: str) -> Iterator[None]:
        """Turn SDK and HTTP failures inside the block into one-line :class:`LabelStudioError` s."""
        import httpx
        from label_studio_sdk.core.api_error import ApiError

        try:
            yield
        except ApiError as exc:
            if exc.status_code == 401:
                raise self.refused(401, exc.body) from None
            raise LabelStudioError(f"{what} failed on {self.url} (HTTP {exc.status_code}: {error_detail(exc.body)})") from None
        except httpx.HTTPError as exc:
            raise unreachable(self.url, exc) from None

    def users(self) -> dict[int, str]:
        """User id -> email (the annotator names written on pull)."""
        if self._users is None:
            r = self.request("GET", "/api/users", what="listing users")
            self._users = {int(u["id"]): u.get("email") or u.get("username") or str(u["id"]) for u in r.json()}
        return self._users

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def unreachable(url: str, exc: Exception) -> LabelStudioError:
    reason = " ".join(str(exc).split()) or type(exc).__name__
    return LabelStudioError(
        f"cannot reach Label Studio at {url} ({reason}): start it (`g3d annotate serve`) or pass the right --url / {ENV_URL}"
    )


def connect(cfg: ConnectionConfig) -> Connection:
    """Check the server and the key; returns an authenticated :class:`Connection`.

    Raises :class:`LabelStudioError` (one line) when the server does not answer, does not look
    like Label Studio, or refuses the key; :class:`MissingDependencyError` without the SDK.
    """
    try:
        import httpx
        import label_studio_sdk  # noqa: F401
    except ImportError:
        raise MissingDependencyError("label-studio-sdk", "annotate", "g3d annotate") from None

    url, key = resolve(cfg)
    kind = token_kind(key)
    try:
        r = httpx.get(f"{url}/health", timeout=min(cfg.timeout, 10.0))
    except httpx.HTTPError as exc:
        raise unreachable(url, exc) from None
    try:
        healthy = r.status_code == 200 and r.json().get("status") == "UP"
    except ValueError:
        healthy = False
    if not healthy:
        raise LabelStudioError(
            f"{url} does not answer like a Label Studio server (GET /health -> HTTP {r.status_code}): check --url / {ENV_URL}"
        )
    conn = Connection(url, key, kind, cfg.timeout)
    try:
        me = conn.request("GET", "/api/current-user/whoami", what="checking the API key").json()
    except BaseException:
        conn.close()
        raise
    conn.user_id = me.get("id")
    conn.user_email = me.get("email") or me.get("username")
    return conn
