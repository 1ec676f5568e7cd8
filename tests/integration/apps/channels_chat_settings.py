"""django_settings plus a channel layer on the asgi-bridge bus (channels_chat.py)."""

from django_settings import *  # noqa: F401,F403

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "asgi_bridge.channels_layer.BusChannelLayer",
        # Messages nobody receives expire after 3 s (the expiry test waits that long).
        "CONFIG": {"channel_capacity": {"full.*": 3}, "expiry": 3},
    },
}
