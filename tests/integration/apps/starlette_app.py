"""A Starlette app, as its authors would write it, served unmodified."""

import contextlib

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route


@contextlib.asynccontextmanager
async def lifespan(app):
    app.state.started = True
    yield


async def homepage(request: Request):
    return PlainTextResponse("hello from starlette")


async def item(request: Request):
    return JSONResponse({"id": request.path_params["item_id"],
                         "q": request.query_params.get("q"),
                         "started": getattr(request.app.state, "started", False)})


async def echo(request: Request):
    body = await request.body()
    return PlainTextResponse(body.decode(), status_code=201,
                             headers={"x-length": str(len(body))})


async def stream(request: Request):
    async def parts():
        for i in range(3):
            yield f"part{i};"
    return StreamingResponse(parts(), media_type="text/plain")


async def cookies(request: Request):
    response = PlainTextResponse("cookies")
    response.set_cookie("a", "1")
    response.set_cookie("b", "2")
    return response


async def boom(request: Request):
    raise RuntimeError("starlette route failed on purpose")


app = Starlette(routes=[
    Route("/", homepage),
    Route("/items/{item_id:int}", item),
    Route("/echo", echo, methods=["POST"]),
    Route("/stream", stream),
    Route("/cookies", cookies),
    Route("/boom", boom),
], lifespan=lifespan)
