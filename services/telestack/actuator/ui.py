"""``/ui``: a server-rendered page for people: devices, their state, and buttons for their commands.

No frontend build and almost no JavaScript: each button is an HTML form that POSTs to the actuator, which
issues the command, waits up to ``ui_wait_s`` for the ack and redirects back to the page (post/redirect/get),
so the page shows the new state. Each form carries its own idempotency key, so a double submit switches once.
It works on a phone and from a Grafana dashboard link.

Sign-in: the person pastes a token once; it is kept in an HttpOnly, SameSite=Lax cookie scoped to ``/ui``
(Secure over HTTPS), so a link from another site opens the page signed in while a form posted from another
site carries no cookie. Forms also carry a CSRF token derived from the session token.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import re
import secrets
import time
from collections.abc import Iterable
from typing import Annotated, Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from telestack.actuator.deps import Service
from telestack.actuator.errors import InvalidCommand, Problem, RequestError, Unauthorized
from telestack.actuator.models import CommandStatus, DeviceView, command_status
from telestack.actuator.registry import ID_PATTERN, ArgSpec
from telestack.actuator.routes.commands import IDEMPOTENCY_KEY_PATTERN
from telestack.actuator.service import ActuatorService
from telestack.actuator.tokens import Principal

__all__ = ["COOKIE_NAME", "csrf_token", "render_login", "render_page", "router"]

COOKIE_NAME = "telestack_ui"
COOKIE_MAX_AGE_S = 7 * 24 * 3600

router = APIRouter(include_in_schema=False)


def csrf_token(token: str) -> str:
    """A per-session value that a page from another site cannot know."""
    return hmac.new(token.encode(), b"telestack-ui-csrf", hashlib.sha256).hexdigest()[:32]


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _ago(ms: float | None, now_ms: float) -> str:
    if ms is None:
        return "never"
    seconds = max(0, int((now_ms - ms) / 1000))
    if seconds < 60:
        return f"{seconds} s ago"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    if seconds < 86400:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} d ago"


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


_STYLE = """
*{box-sizing:border-box}body{margin:0;font:16px/1.4 system-ui,sans-serif;background:#f4f5f7;color:#1d2125}
header.top{display:flex;justify-content:space-between;align-items:center;padding:.75rem 1rem;
background:#1d2125;color:#fff}
header.top h1{font-size:1.1rem;margin:0}header.top form{margin:0}
main{max-width:60rem;margin:0 auto;padding:1rem;display:grid;gap:1rem;
grid-template-columns:repeat(auto-fill,minmax(17rem,1fr))}
.device{background:#fff;border-radius:.6rem;padding:1rem;box-shadow:0 1px 3px #0002}
.device h2{font-size:1.1rem;margin:0}.meta{color:#5e6c84;font-size:.85rem;margin:.1rem 0 .5rem}
.state{display:grid;grid-template-columns:auto 1fr;gap:.1rem .75rem;margin:.5rem 0}.state dt{color:#5e6c84}
.state div{display:contents}.state dd{margin:0;font-weight:600}.headline dd{font-size:1.3rem}
.actions{display:flex;flex-wrap:wrap;gap:.5rem;margin-top:.75rem}
.actions form{display:flex;gap:.4rem;align-items:center}
button{font:inherit;min-height:2.75rem;min-width:4.5rem;padding:.4rem .9rem;border:0;border-radius:.4rem;
background:#0052cc;color:#fff;cursor:pointer}button:disabled{opacity:.5}button.quiet{background:#42526e}
input{font:inherit;width:8rem;min-height:2.75rem;padding:.3rem .5rem;border:1px solid #c1c7d0;border-radius:.4rem}
.badge{display:inline-block;padding:0 .4rem;border-radius:.3rem;font-size:.8rem;background:#dfe1e6}
.badge.acked{background:#e3fcef;color:#006644}.badge.failed,.badge.timed_out{background:#ffebe6;color:#bf2600}
.badge.pending,.badge.sent{background:#deebff;color:#0747a6}
.flash{grid-column:1/-1;padding:.75rem 1rem;border-radius:.5rem;background:#e3fcef}.flash.error{background:#ffebe6}
.login{max-width:26rem;margin:3rem auto;background:#fff;padding:1.5rem;border-radius:.6rem}
.login input{width:100%;margin:.5rem 0 1rem}small{color:#5e6c84}
"""

_SCRIPT = """
document.querySelectorAll('form.command').forEach(function (form) {
  form.addEventListener('submit', function () {
    form.querySelectorAll('button').forEach(function (b) { b.disabled = true; b.textContent += '…'; });
  });
});
setInterval(function () {
  if (!document.hidden && !document.querySelector('input:focus')) { location.replace(location.pathname); }
}, 15000);
"""


def _document(title: str, body: str, nonce: str) -> str:
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<title>{_e(title)}</title><style nonce={nonce}>{_STYLE}</style></head>"
        f"<body>{body}<script nonce={nonce}>{_SCRIPT}</script></body></html>"
    )


def render_login(root: str, nonce: str, error: str | None = None) -> str:
    problem = f'<p class="flash error">{_e(error)}</p>' if error else ""
    body = (
        '<header class="top"><h1>telestack</h1></header><div class="login">'
        f"<h2>Sign in</h2>{problem}"
        f'<form method=post action="{_e(root)}/ui/login">'
        "<label for=token>Access token</label>"
        "<input id=token name=token type=password autocomplete=current-password required>"
        "<button type=submit>Sign in</button></form>"
        "<p><small>Ask an administrator for a token (<code>telestack tokens create</code>).</small></p></div>"
    )
    return _document("telestack: sign in", body, nonce)


def _arg_input(device: str, command: str, name: str, spec: ArgSpec) -> str:
    field_id = f"{device}-{command}-{name}"
    attributes = [f'id="{_e(field_id)}"', f'name="arg.{_e(name)}"', f'aria-label="{_e(name)}"']
    if spec.required:
        attributes.append("required")
    if spec.type in ("number", "integer"):
        attributes.append('type="number"')
        attributes.append(f'step="{_e(spec.step or (1 if spec.type == "integer" else "any"))}"')
        if spec.min is not None:
            attributes.append(f'min="{spec.min:g}"')
        if spec.max is not None:
            attributes.append(f'max="{spec.max:g}"')
    elif spec.type == "boolean":
        return (
            f'<select id="{_e(field_id)}" name="arg.{_e(name)}" aria-label="{_e(name)}">'
            "<option value=true>on</option><option value=false>off</option></select>"
        )
    else:
        attributes.append('type="text"')
        if spec.max_length:
            attributes.append(f'maxlength="{spec.max_length}"')
    if spec.default is not None:
        attributes.append(f'value="{_e(spec.default)}"')
    placeholder = name + (f" ({spec.unit})" if spec.unit else "")
    attributes.append(f'placeholder="{_e(placeholder)}"')
    return f"<input {' '.join(attributes)}>"


def _device_card(view: DeviceView, display: list[str], root: str, csrf: str, now_ms: float) -> str:
    first = [key for key in display if key in view.state]
    rest = [key for key in view.state if key not in first]
    state_rows = (
        "".join(
            f'<div class="{"headline" if key in first else "row"}">'
            f'<dt>{_e(key)}</dt><dd data-key="{_e(key)}">{_e(_value(view.state[key]))}</dd></div>'
            for key in first + rest
        )
        or "<dt>state</dt><dd>unknown</dd>"
    )
    seen_ms = view.last_seen.timestamp() * 1000 if view.last_seen else None
    last = view.last_command
    last_html = (
        f'<p class="meta">last: {_e(last.command)} {_e(" ".join(f"{k}={_value(v)}" for k, v in last.args.items()))} '
        f'<span class="badge {_e(last.state)}">{_e(last.state)}</span> by {_e(last.actor)}</p>'
        if last
        else ""
    )
    forms = []
    if view.can_command:
        for name, info in view.commands.items():
            inputs = "".join(_arg_input(view.id, name, arg, spec) for arg, spec in info.args.items())
            forms.append(
                f'<form class="command" method=post action="{_e(root)}/ui/devices/{_e(quote(view.id))}/commands">'
                f'<input type=hidden name=csrf value="{_e(csrf)}">'
                f'<input type=hidden name=key value="{secrets.token_urlsafe(12)}">'
                f'<input type=hidden name=command value="{_e(name)}">{inputs}'
                f'<button type=submit name=button value="{_e(name)}" title="{_e(info.description)}">{_e(name)}</button>'
                "</form>"
            )
    actions = f'<div class="actions">{"".join(forms)}</div>' if forms else ""
    description = f" · {_e(view.description)}" if view.description else ""
    return (
        f'<section class="device" id="device-{_e(view.id)}" data-device="{_e(view.id)}">'
        f"<h2>{_e(view.id)}</h2>"
        f'<p class="meta">{_e(view.type)} · {_e(view.site)}{description}</p>'
        f'<dl class="state">{state_rows}</dl>'
        f'<p class="meta">seen <span class="seen">{_e(_ago(seen_ms, now_ms))}</span></p>{last_html}{actions}</section>'
    )


def render_page(
    views: Iterable[tuple[DeviceView, list[str]]],
    *,
    who: str,
    root: str,
    csrf: str,
    nonce: str,
    now_ms: float,
    flash: CommandStatus | None = None,
    error: str | None = None,
) -> str:
    """The devices page; `views` pairs each device with the state keys its type shows first."""
    banner = ""
    if error:
        banner = f'<p class="flash error" role=alert>{_e(error)}</p>'
    elif flash is not None:
        kind = "error" if flash.state in ("failed", "timed_out") else ""
        outcome = f"{flash.device}: {flash.command} → {flash.state}"
        if flash.reason:
            outcome += f" ({flash.reason})"
        banner = f'<p class="flash {kind}" role=status data-state="{_e(flash.state)}">{_e(outcome)}</p>'
    cards = "".join(_device_card(view, display, root, csrf, now_ms) for view, display in views)
    body = (
        '<header class="top"><h1>telestack devices</h1>'
        f'<form method=post action="{_e(root)}/ui/logout"><input type=hidden name=csrf value="{_e(csrf)}">'
        f'<button class="quiet" type=submit title="signed in as {_e(who)}">Sign out</button></form></header>'
        f"<main>{banner}{cards or '<p>No device is visible to this token.</p>'}</main>"
    )
    return _document("telestack devices", body, nonce)


# --- routes ------------------------------------------------------------------------------------------------


def _html(content: str, nonce: str, status: int = 200) -> HTMLResponse:
    policy = (
        f"default-src 'none'; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; "
        "form-action 'self'; frame-ancestors 'self'; base-uri 'none'"
    )
    return HTMLResponse(content, status_code=status, headers={"Content-Security-Policy": policy})


def _root(request: Request) -> str:
    return str(request.scope.get("root_path", ""))


async def _form(request: Request) -> dict[str, str]:
    body = (await request.body()).decode("utf-8", "replace")
    return {key: values[-1] for key, values in parse_qs(body, keep_blank_values=True).items()}


def _session(request: Request, service: ActuatorService) -> tuple[str, Principal] | None:
    token = request.cookies.get(COOKIE_NAME)
    if not token:
        return None
    try:
        return token, service.authenticate(token)
    except Unauthorized:
        return None


def _page(
    request: Request,
    service: ActuatorService,
    token: str,
    principal: Principal,
    *,
    error: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    nonce = secrets.token_urlsafe(16)
    flash = None
    flash_id = request.query_params.get("command")
    if flash_id and error is None:
        record = service.tracker.get(flash_id)
        if record is not None and principal.can_see(record.device):
            flash = command_status(record)
    views = []
    for device_id in service.visible_devices(principal) if (principal.can_read() or principal.command_globs()) else []:
        views.append((service.device_view(principal, device_id), service.registry.device_type(device_id).display))
    page = render_page(
        views,
        who=principal.name,
        root=_root(request),
        csrf=csrf_token(token),
        nonce=nonce,
        now_ms=time.time() * 1000,
        flash=flash,
        error=error,
    )
    return _html(page, nonce, status)


def _login(request: Request, error: str | None = None, status: int = 200) -> HTMLResponse:
    nonce = secrets.token_urlsafe(16)
    return _html(render_login(_root(request), nonce, error), nonce, status)


@router.get("/ui")
async def ui_page(request: Request, service: Service) -> Response:
    session = _session(request, service)
    if session is None:
        return _login(request)
    return _page(request, service, *session)


@router.post("/ui/login")
async def ui_login(request: Request, service: Service) -> Response:
    token = (await _form(request)).get("token", "").strip()
    try:
        service.authenticate(token)
    except RequestError as exc:
        return _login(request, exc.detail, exc.status)
    response = RedirectResponse(f"{_root(request)}/ui", status_code=303)
    secure = service.options.ui_cookie_secure
    response.set_cookie(
        COOKIE_NAME,
        token,
        max_age=COOKIE_MAX_AGE_S,
        path=f"{_root(request)}/ui",
        httponly=True,
        samesite="lax",
        secure=secure == "always" or (secure == "auto" and request.url.scheme == "https"),
    )
    return response


@router.post("/ui/logout")
async def ui_logout(request: Request) -> Response:
    response = RedirectResponse(f"{_root(request)}/ui", status_code=303)
    response.delete_cookie(COOKIE_NAME, path=f"{_root(request)}/ui")
    return response


def _form_args(form: dict[str, str], specs: dict[str, ArgSpec]) -> dict[str, Any]:
    """Form strings → typed arguments (the registry then checks bounds)."""
    args: dict[str, Any] = {}
    problems: list[Problem] = []
    for key, raw in form.items():
        if not key.startswith("arg."):
            continue
        name = key[4:]
        spec = specs.get(name)
        text = raw.strip()
        if spec is None:
            args[name] = text  # refused by the registry with the usual message
            continue
        if text == "" and not spec.required:
            continue
        try:
            if spec.type == "number":
                args[name] = float(text)
            elif spec.type == "integer":
                args[name] = int(text)
            elif spec.type == "boolean":
                args[name] = {"true": True, "on": True, "1": True, "false": False, "off": False, "0": False}[
                    text.lower()
                ]
            else:
                args[name] = raw
        except (ValueError, KeyError):
            kind = {"integer": "an integer", "boolean": "on or off"}.get(spec.type, f"a {spec.type}")
            problems.append(Problem(("form", name), f"{name} must be {kind}, not {text!r}"))
    if problems:
        raise InvalidCommand("; ".join(p.msg for p in problems), problems)
    return args


@router.post("/ui/devices/{device}/commands")
async def ui_command(request: Request, service: Service, device: Annotated[str, Path(pattern=ID_PATTERN)]) -> Response:
    session = _session(request, service)
    if session is None:
        return _login(request, "Your session has ended: sign in again.", 401)
    token, principal = session
    form = await _form(request)
    if not hmac.compare_digest(form.get("csrf", ""), csrf_token(token)):
        return _page(
            request, service, token, principal, error="The form was stale or not from this page; try again.", status=403
        )
    command = form.get("command", "")
    try:
        specs = service.registry.command_spec(device, command).args if device in service.registry else {}
        args = _form_args(form, specs)
        # Each rendered form carries its own idempotency key: a double submit does not switch twice.
        key = form.get("key") or None
        if key is not None and not re.fullmatch(IDEMPOTENCY_KEY_PATTERN, key):
            key = None
        record, _ = await service.issue_command(principal, device, command, args, key)
    except RequestError as exc:
        return _page(request, service, token, principal, error=exc.detail, status=exc.status)
    await service.wait(record, service.options.ui_wait_s)
    return RedirectResponse(f"{_root(request)}/ui?command={record.id}#device-{quote(device)}", status_code=303)
