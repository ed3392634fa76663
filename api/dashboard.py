"""``/dashboard``: a browser dashboard of the App's components, behind the admin token.

* ``GET /dashboard`` shows a login form (and no data) until the admin token was
  given; ``POST /dashboard/login`` (JSON ``{"token": ...}``) then sets a signed
  session cookie (HttpOnly, SameSite=Strict, 12 h), keyed by the token so that
  changing the token ends every session.
* The page is server-rendered HTML; a small script (``static/dashboard.js``, shipped
  in the wheel, no CDN, no build step) re-fetches the rendered panels every two
  seconds (``GET /dashboard/panels``; ``?poll=<ms>`` on the page's URL changes it),
  plots counters' throughput from those polls,
  and calls actions.
* Actions (``POST /dashboard/actions/<name>``: cancel work, replay a dead letter,
  reset a limit, and whatever components registered) need the session cookie *and*
  the page's CSRF token in ``X-CSRF-Token``; a cross-origin ``Origin`` is refused.

Panels come from :mod:`rkit.operator` hooks: the built-in kinds' (:mod:`.panels`)
and those components register themselves.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import logging
import secrets
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import HTMLResponse, JSONResponse, Response

from rkit import App, ConfigError
from rkit.operator import Panel, Section, operator_hooks

from .auth import ENV_TOKEN
from .panels import register_builtins
from .validation import Name, strict_json

__all__ = ["COOKIE", "SESSION_SECONDS", "collect_panels", "render_panels", "router"]

logger = logging.getLogger("rkit.api.dashboard")

COOKIE = "rkit_dashboard"
SESSION_SECONDS = 12 * 3600
CSRF_HEADER = "x-csrf-token"
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
_STATIC_DIR = Path(__file__).resolve().parent / "static"
_STATIC = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}


class _Sessions:
    """Stateless signed sessions: ``<expires>.<nonce>.<mac>``; the CSRF token of a
    session is another MAC of it. The key is derived from the admin token."""

    def __init__(self, token: str | None) -> None:
        self.token = token.encode("utf-8") if token else None
        self._key = hashlib.sha256(b"rkit-dashboard\0" + (self.token or b"")).digest()

    def _mac(self, purpose: str, body: str) -> str:
        return hmac.new(self._key, f"{purpose}:{body}".encode(), hashlib.sha256).hexdigest()

    def check_token(self, given: Any) -> bool:
        if self.token is None or type(given) is not str:
            return False
        return hmac.compare_digest(given.strip().encode("utf-8"), self.token)

    def new(self) -> str:
        body = f"{int(time.time()) + SESSION_SECONDS}.{secrets.token_urlsafe(16)}"
        return f"{body}.{self._mac('s', body)}"

    def valid(self, cookie: str | None) -> str | None:
        """The session's body when ``cookie`` is a live session, else ``None``."""
        if self.token is None or not cookie or len(cookie) > 200:
            return None
        body, _, mac = cookie.rpartition(".")
        expires, _, _nonce = body.partition(".")
        if not hmac.compare_digest(mac, self._mac("s", body)):
            return None
        if not expires.isdigit() or int(expires) < time.time():
            return None
        return body

    def csrf(self, body: str) -> str:
        return self._mac("c", body)


def _json_body(raw: bytes) -> Any:
    """The body as strict JSON, or a 422 (``create_api``'s body guard has usually
    refused it already)."""
    try:
        return strict_json(raw.decode("utf-8") or "null")
    except (ValueError, RecursionError):  # also JSONDecodeError, UnicodeDecodeError
        raise HTTPException(422, detail="the body must be JSON") from None


def _esc(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        v = int(v) if v.is_integer() else round(v, 4)
    return html.escape(str(v), quote=True)


def _attr_json(v: Any) -> str:
    return html.escape(json.dumps(v, separators=(",", ":"), default=str), quote=True)


def _render_section(kind: str, s: Mapping[str, Any]) -> str:
    key = f"{kind}/{s['title']}"
    out = [f'<div class="section" data-section="{_esc(key)}">', f"<h3>{_esc(s['title'])}</h3>"]
    if s["stats"]:
        out.append('<dl class="stats">')
        for k, v in s["stats"].items():
            out.append(f'<div><dt>{_esc(k)}</dt><dd data-stat="{_esc(k)}">{_esc(v)}</dd></div>')
        out.append("</dl>")
    for label, (done, total) in s.get("progress", {}).items():
        ok = isinstance(done, int | float) and isinstance(total, int | float) and total > 0
        pct = f"{min(1.0, max(0.0, done / total)):.0%}" if ok else "?"
        out.append(
            f'<div class="progress" data-progress="{_esc(label)}"><span>{_esc(label)}</span>'
            f'<progress value="{_esc(done if ok else 0)}" max="{_esc(total if ok else 1)}">'
            f"{pct}</progress><span>{_esc(done)} / {_esc(total)} ({pct})</span></div>"
        )
    for name in s["series"]:
        value = s["stats"].get(name, 0)
        out.append(
            f'<figure class="spark"><svg data-spark="{_esc(key)}#{_esc(name)}" '
            f'data-value="{_esc(value)}" viewBox="0 0 200 40" width="200" height="40" '
            f'role="img" aria-label="{_esc(name)} per poll"></svg>'
            f"<figcaption>{_esc(name)} per poll, last 5 minutes</figcaption></figure>"
        )
    if s["actions"]:
        out.append('<p class="actions">')
        out += [_button(a) for a in s["actions"]]
        out.append("</p>")
    if s["columns"]:
        out.append("<table><thead><tr>")
        out += [f"<th>{_esc(c)}</th>" for c in s["columns"]]
        has_actions = any(s["row_actions"])
        if has_actions:
            out.append("<th></th>")
        out.append("</tr></thead><tbody>")
        for i, row in enumerate(s["rows"]):
            out.append("<tr>")
            out += [f'<td data-col="{_esc(c)}">{_esc(row.get(c))}</td>' for c in s["columns"]]
            if has_actions:
                acts = s["row_actions"][i] if i < len(s["row_actions"]) else []
                out.append("<td>" + "".join(_button(a) for a in acts) + "</td>")
            out.append("</tr>")
        if not s["rows"]:
            out.append(f'<tr><td colspan="{len(s["columns"]) + 1}" class="empty">none</td></tr>')
        out.append("</tbody></table>")
    if s.get("truncated"):
        out.append('<p class="note">first rows only</p>')
    if s.get("note"):
        out.append(f'<p class="note">{_esc(s["note"])}</p>')
    out.append("</div>")
    return "".join(out)


def _button(a: Mapping[str, Any]) -> str:
    confirm = f' data-confirm="{_esc(a["confirm"])}"' if a.get("confirm") else ""
    return (
        f'<button type="button" data-action="{_esc(a["action"])}" '
        f'data-args="{_attr_json(a["args"])}"{confirm}>{_esc(a["label"])}</button>'
    )


def render_panels(panels: Sequence[Mapping[str, Any]]) -> str:
    """The panels' HTML (what the page shows and ``/dashboard/panels`` returns)."""
    out = []
    for p in panels:
        out.append(f'<section class="panel" data-kind="{_esc(p["kind"])}">')
        out.append(f"<h2>{_esc(p['title'])}</h2>")
        if p.get("error"):
            out.append(f'<p class="error">could not read: {_esc(p["error"])}</p>')
        if not p["sections"] and not p.get("error"):
            out.append('<p class="empty">nothing yet</p>')
        out += [_render_section(p["kind"], s) for s in p["sections"]]
        out.append("</section>")
    return "".join(out)


async def _panel(app: App, panel: Panel) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": panel.kind, "title": panel.title, "sections": []}
    try:
        sections: Sequence[Section] = await panel.collect(app)
        out["sections"] = [s.to_dict() for s in sections]
    except Exception as exc:  # one broken panel must not hide the others
        logger.exception("dashboard panel %s failed", panel.kind)
        out["error"] = type(exc).__name__
    return out


async def collect_panels(app: App) -> list[dict[str, Any]]:
    """Every registered panel's current data (JSON-ready), in display order."""
    return [await _panel(app, p) for p in operator_hooks(app).panels()]


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="stylesheet" href="/dashboard/static/dashboard.css">
{meta}
<script src="/dashboard/static/dashboard.js" defer></script>
</head><body>
<header><h1>{title}</h1>{header}</header>
<main>{main}</main>
</body></html>
"""

_LOGIN = """<form id="login" class="login" autocomplete="off">
<label for="token">Admin token</label>
<input id="token" name="token" type="password" required>
<button type="submit">Sign in</button>
<p id="login-error" class="error" role="alert"></p>
</form>{disabled}"""


def _page(title: str, main: str, *, csrf: str | None = None, namespace: str = "") -> str:
    meta = f'<meta name="csrf-token" content="{_esc(csrf)}">' if csrf else ""
    header = ""
    if csrf:
        header = (
            f'<span class="ns">namespace {_esc(namespace)}</span>'
            '<span id="updated" class="updated"></span><span id="flash" role="status"></span>'
            '<button type="button" id="logout">Sign out</button>'
        )
    return _PAGE.format(title=_esc(title), meta=meta, header=header, main=main)


def router(app: App, *, admin_token: str | None) -> APIRouter:
    """The dashboard's routes (mounted at ``/dashboard`` by ``create_api``, outside
    the bearer guard: they check the session cookie themselves)."""
    register_builtins(app)
    sessions = _Sessions(admin_token)
    r = APIRouter(tags=["dashboard"], include_in_schema=False)
    title = f"rkit · {app.namespace}"

    def session(request: Request) -> str | None:
        return sessions.valid(request.cookies.get(COOKIE))

    def require(request: Request, *, mutation: bool) -> str:
        body = session(request)
        if body is None:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="sign in first")
        if mutation:
            origin = request.headers.get("origin")
            if origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}":
                raise HTTPException(status.HTTP_403_FORBIDDEN, detail="cross-origin request")
            given = request.headers.get(CSRF_HEADER, "")
            if not hmac.compare_digest(given.encode(), sessions.csrf(body).encode()):
                raise HTTPException(status.HTTP_403_FORBIDDEN, detail="missing or wrong CSRF token")
        return body

    @r.get("", response_class=HTMLResponse)
    async def page(request: Request) -> HTMLResponse:
        headers = {
            "Cache-Control": "no-store",
            "X-Frame-Options": "DENY",
            "Content-Security-Policy": _CSP,
            "Referrer-Policy": "no-referrer",
        }
        body = session(request)
        if body is None:
            disabled = ""
            if sessions.token is None:
                disabled = f'<p class="error">No admin token is configured (set {ENV_TOKEN}).</p>'
            html_ = _page(title, _LOGIN.format(disabled=disabled))
            return HTMLResponse(html_, headers=headers)
        panels = render_panels(await collect_panels(app))
        main = f'<div id="panels">{panels}</div>'
        return HTMLResponse(
            _page(title, main, csrf=sessions.csrf(body), namespace=app.namespace), headers=headers
        )

    @r.post("/login")
    async def login(request: Request) -> Response:
        if sessions.token is None:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                detail=f"admin API disabled: no admin token configured (set {ENV_TOKEN})",
            )
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/json":  # a cross-site form cannot send JSON unasked
            raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, detail="send JSON")
        data = _json_body(await request.body())
        given = data.get("token") if isinstance(data, dict) else None
        if not sessions.check_token(given):
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="wrong admin token")
        resp = JSONResponse({"ok": True})
        resp.set_cookie(
            COOKIE,
            sessions.new(),
            max_age=SESSION_SECONDS,
            path="/dashboard",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return resp

    @r.post("/logout")
    async def logout(request: Request) -> Response:
        require(request, mutation=True)
        resp = JSONResponse({"ok": True})
        resp.delete_cookie(COOKIE, path="/dashboard", httponly=True, samesite="strict")
        return resp

    @r.get("/panels", response_class=HTMLResponse)
    async def panels_html(request: Request) -> HTMLResponse:
        require(request, mutation=False)
        body = render_panels(await collect_panels(app))
        return HTMLResponse(body, headers={"Cache-Control": "no-store"})

    @r.get("/data")
    async def data(request: Request) -> JSONResponse:
        require(request, mutation=False)
        out = {"namespace": app.namespace, "panels": await collect_panels(app)}
        return JSONResponse(out, headers={"Cache-Control": "no-store"})

    @r.post("/actions/{name}")
    async def action(name: Name, request: Request) -> JSONResponse:
        require(request, mutation=True)
        found = operator_hooks(app).action(name)
        if found is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no dashboard action {name!r}")
        raw = await request.body()
        args = _json_body(raw) if raw else {}
        if not isinstance(args, dict):
            raise HTTPException(422, detail="the body must be a JSON object of arguments")
        try:
            result = await found.run(app, args)
        except LookupError as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc.args[0])) from None
        except (ConfigError, ValueError) as exc:
            raise HTTPException(422, detail=str(exc)) from None
        logger.info(
            "dashboard action %s", name, extra={"component": "dashboard", "event": "action"}
        )
        return JSONResponse({"action": name, "result": dict(result)})

    @r.get("/static/{filename}")
    async def static(filename: str) -> Response:
        media = _STATIC.get(filename)
        if media is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="not found")
        text = (_STATIC_DIR / filename).read_text("utf-8")
        return Response(text, media_type=media, headers={"Cache-Control": "no-cache"})

    return r
