"""Import ``MODULE:ATTR`` and adapt ASGI 2 apps to the ASGI 3 calling convention."""

import importlib
import inspect
import sys


class AppLoadError(Exception):
    """The app could not be imported; the message is meant for the command line."""


def load_app(spec, app_dir="."):
    if app_dir is not None and app_dir not in sys.path:
        sys.path.insert(0, app_dir)
    module_name, _, attrs = spec.partition(":")
    if not module_name or not attrs:
        raise AppLoadError(f"app {spec!r} must be in the form MODULE:ATTRIBUTE")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name and not module_name.startswith(f"{exc.name}."):
            raise  # a missing import *inside* the app: show the real traceback
        raise AppLoadError(f"could not import module {module_name!r}") from None
    app = module
    for attr in attrs.split("."):
        try:
            app = getattr(app, attr)
        except AttributeError:
            raise AppLoadError(f"attribute {attrs!r} not found in module {module_name!r}") from None
    return as_asgi3(app)


def as_asgi3(app):
    """Return an ASGI 3 callable for `app`, wrapping an ASGI 2 one (like uvicorn does)."""
    return ASGI2Adapter(app) if is_asgi2(app) else app


def is_asgi2(app):
    if inspect.isclass(app):
        # An ASGI 3 class is instantiated *and awaited*: it must define __await__.
        return not hasattr(app, "__await__")
    call = app if inspect.isroutine(app) else getattr(app, "__call__", None)
    if inspect.iscoroutinefunction(app) or inspect.iscoroutinefunction(call):
        return False
    # A plain callable: tell by how many arguments it takes.
    try:
        signature = inspect.signature(app)
    except (TypeError, ValueError):
        return False
    for args in ((None, None, None), (None,)):
        try:
            signature.bind(*args)
            return len(args) == 1
        except TypeError:
            continue
    return False


class ASGI2Adapter:
    """ASGI 2: ``app(scope)`` returns an instance, ``await instance(receive, send)``."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        instance = self.app(scope)
        await instance(receive, send)
