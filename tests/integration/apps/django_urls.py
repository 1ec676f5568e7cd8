"""Views and URLs of the Django test project (sync and async views)."""

import asyncio
import json

from django.http import HttpResponse, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt


def hello(request):
    return HttpResponse("hello from django", content_type="text/plain")


def item(request, item_id):
    return JsonResponse({"id": item_id, "q": request.GET.get("q"),
                         "method": request.method, "path": request.path,
                         "host": request.get_host()})


@csrf_exempt
def echo(request):
    return HttpResponse(request.body, status=201,
                        content_type=request.content_type or "application/octet-stream")


async def async_view(request):
    await asyncio.sleep(0)
    return HttpResponse(json.dumps({"async": True}), content_type="application/json")


def boom(request):
    raise RuntimeError("django view failed on purpose")


urlpatterns = [
    path("", hello),
    path("items/<int:item_id>", item),
    path("echo", echo),
    path("async", async_view),
    path("boom", boom),
]
