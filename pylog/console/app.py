"""The console's web application: Starlette routes rendering Jinja2
templates on the server (no JavaScript build). Every page talks to the
cluster through pylog's blocking client, on Starlette's worker threads, one
Client per thread (a Client is not thread-safe), so a slow broker holds a
worker, never the event loop.

Forms post and redirect (303) back to the page they change, with a notice
in the query string; a request the console refuses renders the error page
with a 4xx status, a broker that cannot be reached a 503.
"""
from __future__ import annotations

import contextlib
import os
import threading
import urllib.parse

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import RedirectResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from .. import __version__
from ..client import Client
from ..client.errors import ConnectionClosedError, error_name
from ..errors import PylogError
from ..protocol.error_codes import Errors
from . import cluster_data as data
from .charts import lag_chart

__all__ = ["create_app"]

HERE = os.path.dirname(os.path.abspath(__file__))

# Broker answers that mean the user's input was wrong (a 400 page, not a 502).
_BAD_INPUT = frozenset({
    Errors.INVALID_CONFIG, Errors.INVALID_TOPIC_EXCEPTION, Errors.TOPIC_ALREADY_EXISTS,
    Errors.INVALID_PARTITIONS, Errors.INVALID_REPLICATION_FACTOR, Errors.POLICY_VIOLATION,
    Errors.INVALID_REQUEST, Errors.RECORD_LIST_TOO_LARGE, Errors.MESSAGE_TOO_LARGE,
    Errors.INVALID_REPLICA_ASSIGNMENT, Errors.INVALID_RECORD, Errors.INVALID_TIMESTAMP,
})


class _Clients:
    """One pylog Client per worker thread, opened on first use, dropped
    after a connection failure so the next request connects afresh."""

    def __init__(self, bootstrap: str, timeout: float):
        self.bootstrap = bootstrap
        self.timeout = timeout
        self._local = threading.local()
        self._all: list[Client] = []
        self._lock = threading.Lock()

    def run(self, fn, *args, retry: bool = True):
        """fn(client, *args) on this thread's client; after a lost
        connection, once more on a new one if retry (reads only: a write
        whose outcome is unknown, a produce, must not be sent twice)."""
        for attempt in ((0, 1) if retry else (1,)):
            client = getattr(self._local, "client", None)
            if client is None:
                client = Client(self.bootstrap, client_id="pylog-console", timeout=self.timeout)
                self._local.client = client
                with self._lock:
                    self._all.append(client)
            try:
                return fn(client, *args)
            except ConnectionClosedError:
                self._drop(client)
                if attempt:
                    raise

    def _drop(self, client) -> None:
        self._local.client = None
        with self._lock:
            if client in self._all:
                self._all.remove(client)
        client.close()

    def close(self) -> None:
        with self._lock:
            clients, self._all = self._all, []
        for c in clients:
            c.close()


def _human_bytes(n) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def create_app(bootstrap: str, request_timeout_ms: int = 30000, title: str = "pylog console") -> Starlette:
    """The console for the cluster at bootstrap ("host:port[,...]")."""
    clients = _Clients(bootstrap, request_timeout_ms / 1000.0)
    templates = Jinja2Templates(directory=os.path.join(HERE, "templates"))
    env = templates.env
    env.filters["bytes"] = _human_bytes
    env.filters["ids"] = lambda xs: ",".join(str(x) for x in xs)
    env.globals.update(title=title, bootstrap=bootstrap, version=__version__, lag_chart=lag_chart)

    async def call(fn, *args):
        return await run_in_threadpool(clients.run, fn, *args)

    async def change(fn, *args):
        return await run_in_threadpool(clients.run, fn, *args, retry=False)

    def page(request, name, status=200, **context):
        context.setdefault("notice", request.query_params.get("notice"))
        context["status"] = status
        return templates.TemplateResponse(request, name, context, status_code=status)

    def back(url: str, notice: str):
        return RedirectResponse(f"{url}?{urllib.parse.urlencode({'notice': notice})}", status_code=303)

    async def form_of(request) -> dict:
        form = await request.form()
        return {k: v for k, v in form.items() if isinstance(v, str)}

    # --- pages ---

    async def cluster(request):
        return page(request, "cluster.html", info=await call(data.cluster_overview), section="cluster")

    async def topics(request):
        return page(request, "topics.html", topics=await call(data.topics_overview), section="topics",
                    show_internal=request.query_params.get("internal") == "1")

    async def create_topic(request):
        form = await form_of(request)
        await change(data.create_topic, form.get("name", ""), form.get("partitions", ""),
                   form.get("replication", ""), form.get("configs", ""))
        name = form["name"].strip()
        return back(f"/topics/{urllib.parse.quote(name, safe='')}", f"Created topic {name}.")

    async def topic(request):
        name = request.path_params["name"]
        return page(request, "topic.html", topic=await call(data.topic_detail, name), section="topics")

    async def topic_config(request):
        name = request.path_params["name"]
        form = await form_of(request)
        key = form.get("key", "")
        if form.get("action") == "delete":
            await change(data.set_topic_config, name, key, None)
            notice = f"Removed the override of {key.strip()}."
        else:
            await change(data.set_topic_config, name, key, form.get("value", ""))
            notice = f"Set {key.strip()}={form.get('value', '')}."
        return back(f"/topics/{urllib.parse.quote(name, safe='')}", notice)

    async def messages(request):
        name = request.path_params["name"]
        params = dict(request.query_params)
        result = await call(data.browse_messages, name, params)
        return page(request, "messages.html", result=result, q=params, section="topics")

    async def produce(request):
        name = request.path_params["name"]
        form = await form_of(request)
        partition, offset = await change(data.produce_message, name, form)
        query = urllib.parse.urlencode({"partition": partition, "from": "offset", "offset": offset,
                                        "notice": f"Produced to partition {partition} at offset {offset}."})
        return RedirectResponse(f"/topics/{urllib.parse.quote(name, safe='')}/messages?{query}",
                                status_code=303)

    async def groups(request):
        return page(request, "groups.html", groups=await call(data.list_groups), section="groups")

    async def group(request):
        gid = request.path_params["group"]
        return page(request, "group.html", group=await call(data.group_detail, gid), section="groups")

    async def reset(request):
        gid = request.path_params["group"]
        form = await form_of(request)
        plan = await change(data.reset_group_offsets, gid, form)
        moved = ", ".join(f"{t}-{p}: {o}" for (t, p), o in sorted(plan.items()))
        return back(f"/groups/{urllib.parse.quote(gid, safe='')}", f"Offsets reset ({moved}).")

    async def transactions(request):
        return page(request, "transactions.html", transactions=await call(data.transactions_overview),
                    section="transactions")

    # --- errors ---

    async def console_error(request, exc: data.ConsoleError):
        return page(request, "error.html", status=exc.status, message=exc.message)

    async def broker_error(request, exc: PylogError):
        code = getattr(exc, "error_code", None)
        if isinstance(exc, ConnectionClosedError):
            status, what = 503, "The cluster cannot be reached"
        elif code == Errors.UNKNOWN_TOPIC_OR_PARTITION:
            status, what = 404, "Not found"
        elif code in _BAD_INPUT:
            status, what = 400, "The cluster refused the request"
        else:
            status, what = 502, "The cluster answered with an error"
        name = error_name(code) if code is not None else type(exc).__name__
        return page(request, "error.html", status=status, message=f"{what}: {exc}",
                    error_name=name)

    async def http_error(request, exc: HTTPException):
        message = "There is no such page." if exc.status_code == 404 else str(exc.detail)
        return page(request, "error.html", status=exc.status_code,
                    message=message)

    routes = [
        Route("/", cluster),
        Route("/topics", topics, methods=["GET"]),
        Route("/topics", create_topic, methods=["POST"]),
        Route("/topics/{name}", topic),
        Route("/topics/{name}/config", topic_config, methods=["POST"]),
        Route("/topics/{name}/messages", messages, methods=["GET"]),
        Route("/topics/{name}/messages", produce, methods=["POST"]),
        Route("/groups", groups),
        Route("/groups/{group}", group),
        Route("/groups/{group}/reset", reset, methods=["POST"]),
        Route("/transactions", transactions),
        Mount("/static", StaticFiles(directory=os.path.join(HERE, "static")), name="static"),
    ]
    @contextlib.asynccontextmanager
    async def lifespan(_app):
        try:
            yield
        finally:
            clients.close()

    class _SameOrigin:
        """Refuse a form post whose Origin is another site (a page elsewhere
        posting to a console it can reach through the user's browser):
        browsers send Origin with every form POST; tools that send none pass."""

        def __init__(self, inner):
            self.inner = inner

        async def __call__(self, scope, receive, send):
            if scope["type"] == "http" and scope["method"] == "POST":
                headers = dict(scope["headers"])
                origin = headers.get(b"origin", b"").decode("latin-1")
                host = headers.get(b"host", b"").decode("latin-1")
                if origin and urllib.parse.urlsplit(origin).netloc != host:
                    request = Request(scope, receive)
                    response = page(request, "error.html", status=403,
                                    message=f"Refused a form sent from another site ({origin}).")
                    await response(scope, receive, send)
                    return
            await self.inner(scope, receive, send)

    app = Starlette(middleware=[Middleware(_SameOrigin)], routes=routes, exception_handlers={
        data.ConsoleError: console_error, PylogError: broker_error, HTTPException: http_error},
        lifespan=lifespan)
    app.state.clients = clients
    return app
